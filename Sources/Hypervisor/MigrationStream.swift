import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Splits QEMU's pre-copy migration stream (the guest's RAM in it) as it arrives.
///
/// The pages of one RAM block, the guest's RAM, go into a file at their offsets: QEMU sends
/// every page once while the guest runs, then again each page the guest wrote since, and the
/// last round with the guest stopped, so the last copy of each page is the RAM at the stop.
/// Pages in `excluded` ranges are never written (what is left out never leaves guest RAM).
/// Everything else (the other RAM blocks: firmware, ROMs; every device's state) is copied into
/// a device-state stream that loads with that block left as it is in its file.
///
/// The format is QEMU's (`migration/savevm.c`, `migration/ram.c`, QEMU 7.2): a header, the
/// configuration section, then the `ram` section (start, parts, end), each page a big-endian
/// word of offset and flags, the block's name unless it continues the last, then a zero
/// byte or the page. Once the `ram` section has ended, the rest (device sections, which
/// carry no lengths) is copied as it is. Nothing QEMU sends is trusted: names, offsets and
/// sizes are checked, any other flag or section is refused, and the copy is bounded.
public final class MigrationStreamSplitter {
    public struct Stats: Equatable, Sendable {
        /// Guest RAM pages written (a page sent twice counts twice), and zero pages.
        public var pagesWritten = 0
        public var zeroPages = 0
        /// Pages of the excluded ranges dropped as they came.
        public var excludedPages = 0
        /// Bytes of the device-state stream.
        public var deviceBytes: Int64 = 0
    }

    static let magic: UInt32 = 0x5145_564D
    static let version: UInt32 = 3
    static let pageSize = 4096
    /// Flags of a page record (`RAM_SAVE_FLAG_*`).
    enum Flag {
        static let zero: UInt64 = 0x02
        static let memSize: UInt64 = 0x04
        static let page: UInt64 = 0x08
        static let eos: UInt64 = 0x10
        static let `continue`: UInt64 = 0x20
        static let known: UInt64 = zero | memSize | page | eos | `continue`
    }
    enum Section {
        static let eof: UInt8 = 0x00
        static let start: UInt8 = 0x01
        static let part: UInt8 = 0x02
        static let end: UInt8 = 0x03
        static let full: UInt8 = 0x04
        static let configuration: UInt8 = 0x07
        static let footer: UInt8 = 0x7E
    }
    /// A device-state stream larger than this is refused (the firmware and ROM blocks and the
    /// devices are a few MiB; a VGA's memory tens).
    public static let maxDeviceBytes: Int64 = 1 << 30

    let input: Int32
    let ramBlock: String
    let ramBytes: Int64
    let ramFile: Int32
    let deviceFile: Int32
    let excluded: [Range<Int64>]
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0
    private var end = 0
    private var out: [UInt8] = []
    private var written: [UInt64]
    public private(set) var stats = Stats()

    /// `input` is the stream's read end; `ramFile` a file of `ramBytes` (holes) that receives
    /// block `ramBlock`'s pages; `deviceFile` receives the rest.
    public init(input: Int32, ramBlock: String, ramBytes: Int64, ramFile: Int32, deviceFile: Int32, excluded: [Range<Int64>]) {
        self.input = input
        self.ramBlock = ramBlock
        self.ramBytes = ramBytes
        self.ramFile = ramFile
        self.deviceFile = deviceFile
        self.excluded = excluded.filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        written = [UInt64](repeating: 0, count: Int((ramBytes / Int64(Self.pageSize) + 63) / 64))
    }

    static func damaged(_ why: String) -> SparcError { SparcError("QEMU's migration stream is not as sparc reads it: \(why)") }

    // MARK: reading

    /// At least `count` bytes buffered, or the stream ended.
    private func fill(_ count: Int) throws {
        if end - start >= count { return }
        if start > 0 {
            buffer.withUnsafeMutableBufferPointer { b in
                _ = memmove(b.baseAddress!, b.baseAddress! + start, end - start)
            }
            end -= start
            start = 0
        }
        while end - start < count {
            let n = buffer.withUnsafeMutableBufferPointer { b in read(input, b.baseAddress! + end, b.count - end) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Self.damaged(n == 0 ? "it ended early" : "cannot read it: \(String(cString: strerror(errno)))") }
            end += n
        }
    }

    private func bytes(_ count: Int, copy: Bool = true) throws -> ArraySlice<UInt8> {
        try fill(count)
        let slice = buffer[start..<(start + count)]
        start += count
        if copy { try emit(slice) }
        return slice
    }

    private func u8(copy: Bool = true) throws -> UInt8 { try bytes(1, copy: copy).first! }
    private func be32(copy: Bool = true) throws -> UInt32 { try bytes(4, copy: copy).reduce(0) { $0 << 8 | UInt32($1) } }
    private func be64(copy: Bool = true) throws -> UInt64 { try bytes(8, copy: copy).reduce(0) { $0 << 8 | UInt64($1) } }
    private func name(copy: Bool = true) throws -> String {
        let length = Int(try u8(copy: copy))
        return String(decoding: try bytes(length, copy: copy), as: UTF8.self)
    }

    // MARK: writing

    private func emit<C: Collection>(_ bytes: C) throws where C.Element == UInt8 {
        out.append(contentsOf: bytes)
        if out.count >= 1 << 20 { try flush() }
    }

    private func emit64(_ value: UInt64) throws {
        try emit((0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) })
    }

    private func flush() throws {
        stats.deviceBytes += Int64(out.count)
        guard stats.deviceBytes <= Self.maxDeviceBytes else { throw Self.damaged("its device state passes \(Self.maxDeviceBytes >> 20) MiB") }
        guard out.withUnsafeBytes({ FileSystem.writeAll(fd: deviceFile, $0) }) else { throw SparcError.posix("cannot write the device state", "") }
        out.removeAll(keepingCapacity: true)
    }

    private func isExcluded(_ offset: Int64) -> Bool {
        // Few ranges per page: a binary search for the last range starting at or before it.
        var lo = 0
        var hi = excluded.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if excluded[mid].lowerBound <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && excluded[lo - 1].contains(offset)
    }

    private func writePage(_ data: ArraySlice<UInt8>?, at offset: Int64) throws {
        let index = Int(offset / Int64(Self.pageSize))
        let seen = written[index / 64] & (1 << UInt64(index % 64)) != 0
        if isExcluded(offset) {
            stats.excludedPages += 1
            return
        }
        if let data {
            try data.withUnsafeBytes { try FileSystem.writeAll(fd: ramFile, $0, at: offset, path: "the copy of guest RAM") }
            written[index / 64] |= 1 << UInt64(index % 64)
            stats.pagesWritten += 1
        } else {
            // A page that became zero after it was written is a hole again.
            if seen { try FileSystem.punchHole(ramFile, offset: offset, length: Int64(Self.pageSize), path: "guest RAM") }
            stats.zeroPages += 1
        }
    }

    // MARK: the stream

    /// Reads the stream to its end; returns what was split.
    public func run() throws -> Stats {
        guard try be32() == Self.magic, try be32() == Self.version else { throw Self.damaged("no QEMU migration header") }
        var ramSection: UInt32?
        var blocks: [String: Int64] = [:]
        sections: while true {
            let kind = try u8()
            switch kind {
            case Section.configuration:
                let length = Int(try be32())
                guard length <= 256 else { throw Self.damaged("a machine name of \(length) bytes") }
                _ = try bytes(length)
            case Section.start, Section.full:
                let id = try be32()
                let idstr = try name()
                _ = try be32()  // instance
                _ = try be32()  // version
                guard idstr == "ram" else {
                    // The first section that is not RAM: devices follow, to the end as they are.
                    guard ramSection != nil else { throw Self.damaged("section '\(idstr.terminalSafe)' before the RAM") }
                    break sections
                }
                guard ramSection == nil, kind == Section.start else { throw Self.damaged("a second RAM section") }
                ramSection = id
                try ramRecords(blocks: &blocks)
            case Section.part, Section.end:
                guard try be32() == ramSection else { throw Self.damaged("a part of an unknown section") }
                try ramRecords(blocks: &blocks)
                if kind == Section.end {
                    // Its footer, then the devices.
                    if try peek() == Section.footer { _ = try u8(); _ = try be32() }
                    break sections
                }
            case Section.footer:
                _ = try be32()
            default:
                throw Self.damaged("section kind \(kind) where RAM was expected")
            }
        }
        guard blocks[ramBlock] != nil else { throw Self.damaged("no RAM block '\(ramBlock.terminalSafe)'") }
        // The rest, as it is, to the end.
        try emit(buffer[start..<end])
        start = end
        while true {
            let n = buffer.withUnsafeMutableBufferPointer { b in read(input, b.baseAddress!, b.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Self.damaged("cannot read it: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            try emit(buffer[0..<n])
        }
        try flush()
        return stats
    }

    private func peek() throws -> UInt8 {
        try fill(1)
        return buffer[start]
    }

    /// One section's page records, to its end-of-section mark.
    private func ramRecords(blocks: inout [String: Int64]) throws {
        while true {
            let word = try be64(copy: false)
            let flags = word & 0xFFF
            let offset = word & ~0xFFF
            guard flags & ~Flag.known == 0 else { throw Self.damaged("page flags \(String(flags, radix: 16)) (compression or XBZRLE is not read)") }
            if flags & Flag.memSize != 0 {
                try emit64(word)
                guard blocks.isEmpty else { throw Self.damaged("the RAM blocks listed twice") }
                var listed: UInt64 = 0
                while listed < offset {
                    let block = try name()
                    let length = try be64()
                    guard blocks.count < 256, blocks[block] == nil, length > 0, length <= UInt64(Int64.max) else { throw Self.damaged("RAM block list") }
                    blocks[block] = Int64(length)
                    listed += length
                }
                guard listed == offset, blocks[ramBlock] == ramBytes else {
                    throw Self.damaged("RAM block '\(ramBlock.terminalSafe)' is not \(ramBytes) bytes")
                }
                continue
            }
            if flags & Flag.eos != 0 {
                try emit64(word)
                return
            }
            let block: String
            if flags & Flag.continue != 0 {
                guard let current else { throw Self.damaged("a page continues no block") }
                block = current
            } else {
                block = try name(copy: false)
            }
            guard let length = blocks[block], offset < UInt64(length) else { throw Self.damaged("a page outside its block") }
            let isZero = flags & Flag.zero != 0
            guard isZero != (flags & Flag.page != 0) else { throw Self.damaged("a page record neither zero nor data") }
            if block == ramBlock {
                if isZero {
                    _ = try bytes(1, copy: false)
                    try writePage(nil, at: Int64(offset))
                } else {
                    try writePage(try bytes(Self.pageSize, copy: false), at: Int64(offset))
                }
                // The next record of another block names it, so `continue` stays valid.
                current = block
                continue
            }
            // Another block's page: into the device state, naming its block when the last
            // page written there was of another block.
            let named = lastEmittedBlock == block
            try emit64(named ? word | Flag.continue : word & ~Flag.continue)
            if !named {
                try emit([UInt8(block.utf8.count)])
                try emit(Array(block.utf8))
            }
            try emit(try bytes(isZero ? 1 : Self.pageSize, copy: false))
            current = block
            lastEmittedBlock = block
        }
    }

    /// The block of the last page read (QEMU's `continue` refers to it, across sections) and
    /// of the last page copied into the device state.
    private var current: String?
    private var lastEmittedBlock: String?
}

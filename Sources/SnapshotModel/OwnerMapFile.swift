import Foundation
import SparcSupport

/// Whose memory a byte is in: a process mapping, or a kind of kernel memory, or free.
public struct PageOwner: Codable, Equatable, Sendable {
    public var pid: Int32?
    public var command: GuestText?
    /// "[heap]", "[stack]", "[anon]", a file path; or the frame's kind when no process maps it.
    public var mapping: GuestText
    /// Other processes that map the same page.
    public var alsoMappedBy: [Int32]

    public init(pid: Int32?, command: GuestText?, mapping: GuestText, alsoMappedBy: [Int32] = []) {
        self.pid = pid
        self.command = command
        self.mapping = mapping
        self.alsoMappedBy = alsoMappedBy
    }

    /// How a screen shows it (escaped: names and paths come from the bundle).
    public var description: String {
        guard let pid else { return mapping.description }
        let others = alsoMappedBy.isEmpty ? "" : " (also pid \(alsoMappedBy.map(String.init).joined(separator: ",")))"
        return "pid \(pid) \(command ?? "?") \(mapping)" + others
    }
}

/// What a frame is when no process maps it, as a bundle records it (one byte per frame).
public enum FrameKind: UInt8, Sendable, CaseIterable {
    case kernel = 0, free, slab, pageTable, pageCache, anonymous, zeroPage, reserved, hole

    public var label: String {
        switch self {
        case .kernel: return "kernel/unknown"
        case .free: return "free"
        case .slab: return "kernel/slab"
        case .pageTable: return "kernel/page-table"
        case .pageCache: return "page cache"
        case .anonymous: return "anonymous (unmapped)"
        case .zeroPage: return "zero page"
        case .reserved: return "kernel/reserved"
        case .hole: return "no RAM"
        }
    }
}

/// The bundle's owner map (`owners.bin`): for every process (excluded ones left out) the runs
/// of frames each of its mappings held, and one `FrameKind` byte per frame. Holds no page
/// content and only command names.
///
/// Binary and read as a stream, because a bundle is hostile: every count is bounded before it
/// is used, the frame kinds stay in the file (read a byte at a time when a hit needs one), and
/// what is kept in memory (the run index, the names) has a ceiling that keeps a reader under
/// ~150 MiB whatever the file says. Little-endian:
///
///     "SPARCOWN" u32 version=1  u32 pageSize  u64 frameCount  u32 processCount
///     frameCount bytes of FrameKind
///     processCount × { i32 pid  u16 len, command  u32 mappingCount
///                      mappingCount × { u16 len, name  u32 runCount  runCount × (u64 first, u64 count) } }
public enum OwnerMapFile {
    public static let magic = Array("SPARCOWN".utf8)
    public static let version: UInt32 = 1
    static let headerBytes = 8 + 4 + 4 + 8 + 4

    /// Ceilings a reader holds a file to (and a writer never exceeds).
    public struct Limits: Sendable {
        public var processes = 1 << 20
        public var mappingsPerProcess = 1 << 16
        public var commandBytes = 256
        public var nameBytes = 4096
        /// Runs over all mappings: each costs 24 bytes in memory.
        public var runs = 4 << 20
        /// Command and mapping-name bytes over the whole file.
        public var textBytes = 32 << 20
        public init() {}
    }

    /// One process as the writer takes it.
    public struct Process {
        public var pid: Int32
        public var command: String
        public var mappings: [(name: String, runs: [(first: UInt64, count: UInt64)])]
        public init(pid: Int32, command: String, mappings: [(name: String, runs: [(first: UInt64, count: UInt64)])]) {
            self.pid = pid
            self.command = command
            self.mappings = mappings
        }
    }

    /// Writes an owner map to a new file (exclusive, mode 0600). Names longer than the limits
    /// are cut, never refused: the map only attributes hits.
    public static func write(processes: [Process], frameKinds: Data, pageSize: Int = 4096, to path: String, limits: Limits = Limits()) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot create", path) }
        defer { close(fd) }
        var out = Data()
        out.reserveCapacity(1 << 20)
        func flush(_ force: Bool = false) throws {
            if force || out.count >= 1 << 20 {
                try FileSystem.writeAll(fd: fd, out, path: path)
                out.removeAll(keepingCapacity: true)
            }
        }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func text(_ s: String, max: Int) {
            var bytes = Array(s.utf8.prefix(max))
            // Never cut inside a UTF-8 sequence.
            while !bytes.isEmpty, String(validating: bytes, as: UTF8.self) == nil { bytes.removeLast() }
            u16(UInt16(bytes.count))
            out.append(contentsOf: bytes)
        }
        let kept = Array(processes.prefix(limits.processes))
        out.append(contentsOf: magic)
        u32(version)
        u32(UInt32(pageSize))
        u64(UInt64(frameKinds.count))
        u32(UInt32(kept.count))
        try flush(true)
        try FileSystem.writeAll(fd: fd, frameKinds, path: path)
        var runsLeft = limits.runs
        for p in kept {
            withUnsafeBytes(of: p.pid.littleEndian) { out.append(contentsOf: $0) }
            text(p.command, max: limits.commandBytes)
            let mappings = p.mappings.prefix(limits.mappingsPerProcess)
            u32(UInt32(mappings.count))
            for m in mappings {
                text(m.name, max: limits.nameBytes)
                let runs = m.runs.prefix(max(0, runsLeft))
                runsLeft -= runs.count
                u32(UInt32(runs.count))
                for r in runs {
                    u64(r.first)
                    u64(r.count)
                }
                try flush()
            }
        }
        try flush(true)
        guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", path) }
    }
}

/// Looks up the owner of a frame in a bundle's owner map (see `OwnerMapFile`).
public final class OwnerIndex: @unchecked Sendable {
    struct Entry {
        var first: UInt64
        var count: UInt32
        var process: UInt32
        var mapping: UInt32
    }

    struct ProcessRecord {
        var pid: Int32
        var command: String
        var mappings: [String]
    }

    let processes: [ProcessRecord]
    let entries: [Entry]
    /// The frame kinds: in memory (legacy JSON maps), or at `kindsOffset` of `file`.
    let kinds: Data?
    let file: ByteSource?
    let kindsOffset: Int64
    let frameCount: UInt64
    private let cache = SharedBox<(start: UInt64, bytes: [UInt8])>((0, []))

    /// The longest run an entry may claim: 4 GiB of frames (16 TiB), more than any guest.
    static let maxRunFrames: UInt64 = 1 << 32

    init(processes: [ProcessRecord], entries: [Entry], kinds: Data?, file: ByteSource?, kindsOffset: Int64, frameCount: UInt64) {
        self.processes = processes
        self.entries = entries.sorted { $0.first < $1.first }
        self.kinds = kinds
        self.file = file
        self.kindsOffset = kindsOffset
        self.frameCount = frameCount
    }

    /// Reads an `owners.bin` of a bundle whose RAM has `frames` frames; a file that breaks a
    /// limit or does not parse is refused with one line.
    public convenience init(file: ByteSource, frames: UInt64, limits: OwnerMapFile.Limits = .init()) throws {
        func bad(_ why: String) -> SparcError { SparcError("\(Path.base(of: file.path)): not a valid owner map (\(why))", kind: .negative) }
        var reader = BufferedReader(file)
        guard try reader.bytes(8) == OwnerMapFile.magic else { throw bad("no SPARCOWN header") }
        guard try reader.u32() == OwnerMapFile.version else { throw bad("unknown version") }
        guard try reader.u32() == 4096 else { throw bad("page size") }
        let frameCount = try reader.u64()
        guard frameCount <= frames else { throw bad("\(frameCount) frame kinds for \(frames) frames of RAM") }
        let processCount = Int(try reader.u32())
        guard processCount <= limits.processes else { throw bad("\(processCount) processes") }
        let kindsOffset = reader.offset
        try reader.skip(Int64(frameCount))
        var processes: [ProcessRecord] = []
        var entries: [Entry] = []
        var textBytes = 0
        for p in 0..<processCount {
            let pid = Int32(bitPattern: try reader.u32())
            let command = try reader.text(max: limits.commandBytes) ?? { throw bad("a command name") }()
            let mappingCount = Int(try reader.u32())
            guard mappingCount <= limits.mappingsPerProcess else { throw bad("\(mappingCount) mappings of pid \(pid)") }
            var names: [String] = []
            textBytes += command.utf8.count
            for m in 0..<mappingCount {
                let name = try reader.text(max: limits.nameBytes) ?? { throw bad("a mapping name") }()
                textBytes += name.utf8.count
                guard textBytes <= limits.textBytes else { throw bad("more than \(limits.textBytes) bytes of names") }
                names.append(name)
                let runCount = Int(try reader.u32())
                guard entries.count + runCount <= limits.runs else { throw bad("more than \(limits.runs) runs") }
                for _ in 0..<runCount {
                    let first = try reader.u64()
                    let count = try reader.u64()
                    // A run that is empty, wraps or lies outside RAM is dropped, not trusted.
                    guard count > 0, count <= Self.maxRunFrames, first < frames, count <= frames - first else { continue }
                    entries.append(Entry(first: first, count: UInt32(count), process: UInt32(p), mapping: UInt32(m)))
                }
            }
            processes.append(ProcessRecord(pid: pid, command: command, mappings: names))
        }
        guard reader.offset == file.size else { throw bad("\(file.size - reader.offset) bytes after the last process") }
        self.init(processes: processes, entries: entries, kinds: nil, file: file, kindsOffset: kindsOffset, frameCount: frameCount)
    }

    /// The largest legacy `owners.json` read (bundles of format 2): Foundation's JSONDecoder
    /// takes up to ~30 times a dense map's size in memory (measured, debug build: 16 MiB took 470 MiB, 6 MiB 220 MiB).
    public static let maxLegacyJSONBytes: Int64 = 4 << 20

    /// A format-2 owner map too large to decode within sparc's memory ceiling.
    public struct LegacyMapTooLarge: Error, CustomStringConvertible {
        public var bytes: Int64
        public var description: String { "owners.json is \(bytes) bytes, more than the \(OwnerIndex.maxLegacyJSONBytes) read of a format-2 owner map" }
    }

    /// Reads a format-2 bundle's `owners.json` (bounded by `maxLegacyJSONBytes`).
    public convenience init(legacyJSON file: OpenedFile, frames: UInt64) throws {
        struct Legacy: Decodable {
            struct Mapping: Decodable {
                var name: String
                var runs: [[UInt64]]
            }
            struct Process: Decodable {
                var pid: Int32
                var command: String
                var mappings: [Mapping]
            }
            var processes: [Process]
            var frameClasses: Data
        }
        guard file.size <= Self.maxLegacyJSONBytes else { throw LegacyMapTooLarge(bytes: file.size) }
        let map: Legacy
        do { map = try JSONDecoder().decode(Legacy.self, from: try file.readAll()) } catch let e as SparcError { throw e } catch {
            throw SparcError("owners.json: not a valid owner map", kind: .negative)
        }
        var entries: [Entry] = []
        for (p, process) in map.processes.enumerated() {
            for (m, mapping) in process.mappings.enumerated() {
                for run in mapping.runs where run.count == 2 {
                    let (first, count) = (run[0], run[1])
                    guard count > 0, count <= Self.maxRunFrames, first <= UInt64.max - count else { continue }
                    entries.append(Entry(first: first, count: UInt32(count), process: UInt32(p), mapping: UInt32(m)))
                }
            }
        }
        let processes = map.processes.map { ProcessRecord(pid: $0.pid, command: $0.command, mappings: $0.mappings.map(\.name)) }
        self.init(
            processes: processes, entries: entries, kinds: map.frameClasses, file: nil, kindsOffset: 0,
            frameCount: UInt64(map.frameClasses.count))
        _ = frames
    }

    /// Who owned frame `pfn` at the checkpoint.
    public func owner(ofFrame pfn: UInt64) -> PageOwner {
        // Entries sorted by first frame: scan back from the last one starting at or before pfn.
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].first <= pfn { lo = mid + 1 } else { hi = mid }
        }
        var owners: [Entry] = []
        var i = lo - 1
        while i >= 0 && owners.count < 64 {
            let e = entries[i]
            if e.first + UInt64(e.count) > pfn { owners.append(e) }
            if pfn - e.first > 1 << 20 { break }  // no run is that long in practice
            i -= 1
        }
        if let first = owners.last {
            let process = processes[Int(first.process)]
            let others = Array(Set(owners.dropLast().map { processes[Int($0.process)].pid }).subtracting([process.pid])).sorted()
            return PageOwner(
                pid: process.pid, command: GuestText(process.command), mapping: GuestText(process.mappings[Int(first.mapping)]), alsoMappedBy: others)
        }
        return PageOwner(pid: nil, command: nil, mapping: GuestText((kind(ofFrame: pfn) ?? .kernel).label), alsoMappedBy: [])
    }

    /// The recorded kind of a frame no process maps (nil past the recorded frames).
    public func kind(ofFrame pfn: UInt64) -> FrameKind? {
        guard pfn < frameCount else { return nil }
        if let kinds { return FrameKind(rawValue: kinds[kinds.startIndex + Int(pfn)]) ?? .kernel }
        guard let file else { return nil }
        // Hits cluster: a 64 KiB window of the kinds is kept.
        let window: UInt64 = 64 << 10
        let cached = cache.value
        if pfn >= cached.start, pfn - cached.start < UInt64(cached.bytes.count) {
            return FrameKind(rawValue: cached.bytes[Int(pfn - cached.start)]) ?? .kernel
        }
        let start = pfn - pfn % window
        var bytes = [UInt8](repeating: 0, count: Int(min(window, frameCount - start)))
        guard let n = try? bytes.withUnsafeMutableBytes({ try file.read(into: $0, at: kindsOffset + Int64(start)) }), n == bytes.count else { return nil }
        cache.value = (start, bytes)
        return FrameKind(rawValue: bytes[Int(pfn - start)]) ?? .kernel
    }
}

/// Reads a file front to back through a 1 MiB buffer, with bounds on every read.
struct BufferedReader {
    let file: ByteSource
    private var buffer: [UInt8] = []
    private var position = 0
    private(set) var offset: Int64 = 0
    private var bufferStart: Int64 = 0

    init(_ file: ByteSource) { self.file = file }

    private mutating func fill(_ need: Int) throws {
        guard buffer.count - position < need else { return }
        let keep = Array(buffer[position...])
        bufferStart += Int64(position)
        let want = max(need, 1 << 20)
        var fresh = [UInt8](repeating: 0, count: want - keep.count)
        let got = try fresh.withUnsafeMutableBytes { try file.read(into: $0, at: bufferStart + Int64(keep.count)) }
        buffer = keep + fresh.prefix(got)
        position = 0
        guard buffer.count >= need else { throw SparcError("\(Path.base(of: file.path)): ends in the middle of a record", kind: .negative) }
    }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        try fill(n)
        defer {
            position += n
            offset += Int64(n)
        }
        return Array(buffer[position..<position + n])
    }

    /// A little-endian integer.
    mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        try fill(size)
        let value = buffer.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
        position += size
        offset += Int64(size)
        return value
    }

    mutating func u16() throws -> UInt16 { try integer(UInt16.self) }
    mutating func u32() throws -> UInt32 { try integer(UInt32.self) }
    mutating func u64() throws -> UInt64 { try integer(UInt64.self) }

    /// A length-prefixed UTF-8 string of at most `max` bytes (nil when longer or not UTF-8).
    mutating func text(max: Int) throws -> String? {
        let n = Int(try u16())
        guard n <= max else { return nil }
        return String(validating: try bytes(n), as: UTF8.self)
    }

    /// Moves past `n` bytes without reading them.
    mutating func skip(_ n: Int64) throws {
        let inBuffer = Int64(buffer.count - position)
        if n <= inBuffer {
            position += Int(n)
        } else {
            bufferStart += Int64(buffer.count) + (n - inBuffer)
            buffer = []
            position = 0
        }
        offset += n
        guard offset <= file.size else { throw SparcError("\(Path.base(of: file.path)): ends in the middle of a record", kind: .negative) }
    }
}

import Dispatch
import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A disk read as the guest sees it, by byte offset (QEMU's NBD export of a frozen layer).
public protocol GuestDiskSource: AnyObject {
    var size: Int64 { get }
    /// The ranges of `range` that may hold data; the rest reads as zeros and is not read.
    func dataRanges(in range: Range<Int64>) throws -> [Range<Int64>]
    /// Reads `count` bytes at `offset`.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws
}

/// What to store of a disk, and what an earlier checkpoint of the same disk already holds.
public struct GuestDiskRequest {
    public var source: GuestDiskSource
    /// The disk's member in an earlier stored checkpoint (`disk.img`).
    public var parent: StoredCheckpoint.Member?
    /// The ranges written since that checkpoint (its dirty bitmap); nil: read everything.
    public var changedSinceParent: [Range<Int64>]?
    /// Ranges stored as zeros (swap slots left out), never as the disk holds them.
    public var zeroed: [Range<Int64>]

    public init(source: GuestDiskSource, parent: StoredCheckpoint.Member? = nil, changedSinceParent: [Range<Int64>]? = nil, zeroed: [Range<Int64>] = []) {
        self.source = source
        self.parent = parent
        self.changedSinceParent = changedSinceParent
        self.zeroed = zeroed
    }
}

/// A disk stored as the guest sees it, and what it cost.
public struct StoredGuestDisk {
    public var member: StoredCheckpoint.Member
    /// Its bundle digest (`ChunkedDigest`), for the manifest.
    public var digest: String
    public var report: StoreReport
    /// Bytes read from the disk (the rest was reused from the parent, or known zeros).
    public var readBytes: Int64
    /// Chunks taken from the parent without reading.
    public var reusedChunks: Int
    /// Whether the parent was used (false: everything was read).
    public var incremental: Bool
}

extension StoredCheckpoint.Member {
    /// Its bundle digest from the chunk hashes recorded with it (a disk kept as the guest sees
    /// it), without reading a chunk; nil without one hash per chunk.
    public var recordedDigest: String? {
        guard let hashes = digestHashes, hashes.count == chunks.count else { return nil }
        return ChunkedDigest.combine(size: size, chunks: hashes.map { CheckpointStore.bytes(hex: $0) })
    }
}

extension CheckpointStore {
    /// The member name of a disk stored as the guest sees it: a sparse raw image.
    public static let guestDiskMember = Manifest.Member.diskImage.rawValue

    /// Whether `parent` can serve as the earlier state of a disk of `size` bytes: a guest-view
    /// disk member of the same size, cut as this code cuts, with every chunk's hash.
    public static func isReusableParent(_ parent: StoredCheckpoint.Member, size: Int64) -> Bool {
        parent.name == guestDiskMember && parent.size == size && parent.lengths == nil && parent.chunkBytes == ChunkedDigest.chunkSize
            && parent.digestHashes?.count == parent.chunks.count && parent.extents() != nil
            && parent.digestHashes!.allSatisfy { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }
    }

    /// Stores a disk as the guest sees it, one chunk per `ChunkedDigest` chunk (2 MiB, fixed
    /// offsets: a guest's block stays where it is), as member `disk.img`.
    ///
    /// With a parent and the ranges changed since it, only the chunks those ranges touch are
    /// read; the others are the parent's (ids and digest hashes). Chunks around zeroed ranges,
    /// now or in the parent, are always read again: the parent's zeros are not the disk's
    /// bytes, and the disk's bytes are not the zeros asked for now. Hold `lease()` until the
    /// checkpoint listing the member is stored, so `gc` leaves its chunks alone.
    public func storeGuestDisk(
        _ request: GuestDiskRequest, compress: Bool = true, progress: ((_ done: Int64, _ total: Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> StoredGuestDisk {
        let size = request.source.size
        let unit = ChunkedDigest.chunkSize
        let count = Int((size + Int64(unit) - 1) / Int64(unit))
        let parent = request.parent.flatMap { Self.isReusableParent($0, size: size) ? $0 : nil }
        let changed = parent == nil ? nil : request.changedSinceParent
        let zeroed = Self.merged(request.zeroed.filter { !$0.isEmpty && $0.lowerBound >= 0 && $0.upperBound <= size })
        let parentZeroed = (parent?.zeroed ?? []).compactMap { $0.count == 2 && $0[0] < $0[1] ? $0[0]..<$0[1] : nil }

        // Which chunks must be read: all, or those touched by a change or a zeroed range.
        var mustRead = [Bool](repeating: changed == nil, count: count)
        if let changed {
            for r in changed + zeroed + parentZeroed where !r.isEmpty {
                let first = Int(max(0, r.lowerBound) / Int64(unit))
                let last = Int(min(size - 1, r.upperBound - 1) / Int64(unit))
                if first <= last { for i in first...last { mustRead[i] = true } }
            }
        }

        var ids = [String](repeating: "", count: count)
        var hashes = [[UInt8]](repeating: [], count: count)
        var report = StoreReport(name: Self.guestDiskMember)
        var readBytes: Int64 = 0
        var reused = 0
        var pending: [(index: Int, data: Data)] = []

        func flush() throws {
            guard !pending.isEmpty else { return }
            let digests = SharedBox([[UInt8]](repeating: [], count: pending.count))
            DispatchQueue.concurrentPerform(iterations: pending.count) { k in
                let (i, data) = pending[k]
                let h = data.withUnsafeBytes { ChunkedDigest.chunkHash($0.baseAddress!, count: $0.count, index: i, size: size) }
                digests.mutate { $0[k] = h }
            }
            let stored = try storeBatch(pending.map(\.data), compress: compress, report: &report)
            for (k, item) in pending.enumerated() {
                ids[item.index] = stored[k]
                hashes[item.index] = digests.value[k]
            }
            pending.removeAll(keepingCapacity: true)
        }

        let buffer = UnsafeMutableRawPointer.allocate(byteCount: unit, alignment: 4096)
        defer { buffer.deallocate() }
        // Data ranges are asked for a window at a time, not per chunk (one round trip per GiB).
        let window = Int64(512 * unit)
        var known: (range: Range<Int64>, data: [Range<Int64>]) = (0..<0, [])
        for i in 0..<count {
            if cancel?.isCancelled == true { throw SparcError("cancelled", kind: .operational, posixCode: ECANCELED) }
            let offset = Int64(i) * Int64(unit)
            let length = Int(min(Int64(unit), size - offset))
            if !mustRead[i], let parent {
                ids[i] = parent.chunks[i]
                hashes[i] = Self.bytes(hex: parent.digestHashes![i])
                reused += 1
                report.chunks += 1
                if parent.chunks[i].isEmpty { report.zeroChunks += 1 } else { report.sharedChunks += 1 }
                continue
            }
            if !known.range.contains(offset) {
                let end = min(size, offset + window)
                known = (offset..<end, try request.source.dataRanges(in: offset..<end))
            }
            let chunkRange = offset..<(offset + Int64(length))
            let data = known.data.compactMap { r -> Range<Int64>? in
                let lo = max(r.lowerBound, chunkRange.lowerBound)
                let hi = min(r.upperBound, chunkRange.upperBound)
                return lo < hi ? lo..<hi : nil
            }
            memset(buffer, 0, length)
            for r in data {
                try request.source.read(into: buffer + Int(r.lowerBound - offset), count: Int(r.count), at: r.lowerBound)
                readBytes += Int64(r.count)
            }
            for z in zeroed {
                let lo = max(z.lowerBound, chunkRange.lowerBound)
                let hi = min(z.upperBound, chunkRange.upperBound)
                if lo < hi { memset(buffer + Int(lo - offset), 0, Int(hi - lo)) }
            }
            pending.append((i, Data(bytes: buffer, count: length)))
            if pending.count == Self.batchChunks { try flush() }
            if i % 64 == 63 { progress?(offset + Int64(length), size) }
        }
        try flush()
        progress?(size, size)
        report.logicalBytes = size
        let member = StoredCheckpoint.Member(
            name: Self.guestDiskMember, size: size, chunkBytes: unit, chunks: ids, lengths: nil,
            digestHashes: hashes.map { $0.map { String(format: "%02x", $0) }.joined() },
            zeroed: zeroed.isEmpty ? nil : zeroed.map { [$0.lowerBound, $0.upperBound] })
        return StoredGuestDisk(
            member: member, digest: ChunkedDigest.combine(size: size, chunks: hashes), report: report, readBytes: readBytes, reusedChunks: reused,
            incremental: parent != nil && changed != nil)
    }

    static func merged(_ ranges: [Range<Int64>]) -> [Range<Int64>] {
        var out: [Range<Int64>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    public static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var it = hex.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            func v(_ c: UInt8) -> UInt8 { c >= 97 ? c - 87 : c >= 65 ? c - 55 : c - 48 }
            out.append(v(a) << 4 | v(b))
        }
        return out
    }
}

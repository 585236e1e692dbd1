import Dispatch
import Foundation
import SparcSupport

/// What a sparse memory-image copy wrote.
public struct SparseCopyStats: Codable, Equatable, Sendable {
    /// Logical size of the image (the guest RAM size).
    public var bytes: Int64
    /// Bytes written as data.
    public var dataBytes: Int64
    /// Bytes left as holes because they were zero.
    public var zeroBytes: Int64
    /// Bytes left as holes because they were excluded.
    public var excludedBytes: Int64
    /// Bytes left as holes because the guest held them free (not counted in `excludedBytes`).
    public var freeBytes: Int64 = 0
    public var sha256: String

    public init(bytes: Int64, dataBytes: Int64, zeroBytes: Int64, excludedBytes: Int64, freeBytes: Int64 = 0, sha256: String) {
        self.bytes = bytes
        self.dataBytes = dataBytes
        self.zeroBytes = zeroBytes
        self.excludedBytes = excludedBytes
        self.freeBytes = freeBytes
        self.sha256 = sha256
    }
}

/// Copies guest RAM into a sparse image file and back.
///
/// Zero pages (and excluded ranges) become holes, so the image costs only what the
/// guest really uses. The SHA-256 of the logical image is computed on a second core
/// while the first one copies, so hashing adds no wall time.
public enum SparseImage {
    static let page = 4096
    static let maxRun = 8 << 20

    /// Normalises byte ranges: sorted, clipped to `size`, overlaps merged.
    public static func normalize(_ ranges: [Range<Int64>], size: Int64) -> [Range<Int64>] {
        mergedRanges(ranges.compactMap { r in
            let lo = max(0, r.lowerBound)
            let hi = min(size, r.upperBound)
            return lo < hi ? lo..<hi : nil
        })
    }

    /// Writes the RAM file at `source` to a new sparse file at `destination`, leaving
    /// zero pages and `excluding` ranges as holes. The destination must not exist.
    public static func save(
        from source: String, to destination: String, excluding: [Range<Int64>] = [],
        progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> SparseCopyStats {
        let src = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard src >= 0 else { throw SparcError.posix("cannot read guest RAM", source) }
        defer { close(src) }
        return try save(fromDescriptor: src, path: source, to: destination, excluding: excluding, progress: progress, cancel: cancel)
    }

    /// The same, from a RAM file the caller opened (and checked); `free` ranges (memory the
    /// guest held free) are left out as the excluded ones are, and counted apart.
    public static func save(
        fromDescriptor src: Int32, path source: String, to destination: String, excluding: [Range<Int64>] = [], free: [Range<Int64>] = [],
        progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> SparseCopyStats {
        var st = stat()
        fstat(src, &st)
        let size = Int64(st.st_size)
        guard size > 0 else { throw SparcError("guest RAM file \(source) is empty") }
        let map = mmap(nil, Int(size), PROT_READ, MAP_SHARED, src, 0)
        guard let map, map != MAP_FAILED else { throw SparcError.posix("cannot map guest RAM", source) }
        defer { munmap(map, Int(size)) }
        madvise(map, Int(size), MADV_SEQUENTIAL)
        nonisolated(unsafe) let base = UnsafeRawPointer(map)

        let output = try NewFile(destination, size: size)
        let dst = output.fd

        let excludedOnly = normalize(excluding, size: size)
        let excluded = normalize(excludedOnly + free, size: size)
        let freeBytes = length(of: excluded) - length(of: excludedOnly)
        // Digest the image as it will read back (RAM with excluded ranges as zeros), on
        // another core while this one copies.
        let digest = SharedBox("")
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            digest.value = Self.digest(base, size: size, excluded: excluded, cancel: cancel)
        }

        var dataBytes: Int64 = 0
        var zeroBytes: Int64 = 0
        var excludedBytes: Int64 = 0
        var runStart: Int64 = -1
        var writeError: SparcError?
        func flush(_ end: Int64) {
            guard runStart >= 0, writeError == nil else {
                runStart = -1
                return
            }
            var off = runStart
            while off < end {
                let n = pwrite(dst, base + Int(off), Int(end - off), off_t(off))
                if n < 0 {
                    if errno == EINTR { continue }
                    writeError = SparcError.posix("cannot write", destination)
                    break
                }
                off += Int64(n)
            }
            dataBytes += end - runStart
            runStart = -1
        }
        var exIndex = 0
        var offset: Int64 = 0
        var lastReport: Int64 = 0
        while offset < size && writeError == nil {
            let chunkEnd = min(size, offset + Int64(page))
            while exIndex < excluded.count && excluded[exIndex].upperBound <= offset { exIndex += 1 }
            let ex = exIndex < excluded.count ? excluded[exIndex] : nil
            if let ex, ex.lowerBound <= offset {
                // Inside an excluded range: skip to its end.
                flush(offset)
                let end = min(size, ex.upperBound)
                excludedBytes += end - offset
                offset = end
                continue
            }
            // A page that is partly excluded is written up to the exclusion.
            let end = ex.map { min(chunkEnd, $0.lowerBound) } ?? chunkEnd
            if ZeroPage.isZero(base + Int(offset), count: Int(end - offset)) {
                flush(offset)
                zeroBytes += end - offset
            } else {
                if runStart < 0 { runStart = offset }
                if end - runStart >= Int64(maxRun) { flush(end) }
            }
            offset = end
            if offset - lastReport >= 64 << 20 {
                lastReport = offset
                progress?(offset, size)
                if cancel?.isCancelled == true { writeError = SparcError("memory copy cancelled") }
            }
        }
        flush(offset)
        group.wait()
        if let writeError { throw writeError }
        progress?(size, size)
        output.keep()
        return SparseCopyStats(
            bytes: size, dataBytes: dataBytes, zeroBytes: zeroBytes, excludedBytes: excludedBytes - freeBytes, freeBytes: freeBytes,
            sha256: digest.value)
    }

    /// Bytes covered by normalised ranges.
    static func length(of ranges: [Range<Int64>]) -> Int64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// The `ChunkedDigest` of `size` bytes at `base` with the `excluded` ranges read as zeros.
    static func digest(_ base: UnsafeRawPointer, size: Int64, excluded: [Range<Int64>], cancel: Cancellation? = nil) -> String {
        let chunk = Int64(ChunkedDigest.chunkSize)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: ChunkedDigest.chunkSize, alignment: 4096)
        defer { scratch.deallocate() }
        var hashes: [[UInt8]] = []
        var next = 0
        for c in 0..<ChunkedDigest.chunkCount(size) {
            if c % 32 == 0 && cancel?.isCancelled == true { return "" }
            let lo = Int64(c) * chunk
            let n = ChunkedDigest.chunkLength(c, size: size)
            let hi = lo + Int64(n)
            while next < excluded.count && excluded[next].upperBound <= lo { next += 1 }
            if next < excluded.count && excluded[next].lowerBound < hi {
                memcpy(scratch, base + Int(lo), n)
                var k = next
                while k < excluded.count && excluded[k].lowerBound < hi {
                    let a = max(lo, excluded[k].lowerBound)
                    let b = min(hi, excluded[k].upperBound)
                    memset(scratch + Int(a - lo), 0, Int(b - a))
                    k += 1
                }
                hashes.append(ChunkedDigest.hash(chunk: scratch, count: n, index: c, size: size))
            } else {
                hashes.append(ChunkedDigest.hash(chunk: base + Int(lo), count: n, index: c, size: size))
            }
        }
        return ChunkedDigest.combine(size: size, chunks: hashes)
    }

    /// Copies a sparse image into a new RAM file, checking it against `expectedDigest` as it
    /// goes: what is hashed is what is written, read once from the given descriptor. On a
    /// mismatch the new file is removed and nothing is left behind.
    public static func load(
        from source: ByteSource, to destination: String, expectedSize: Int64, expectedDigest: String,
        progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws {
        guard let file = source as? OpenedFile else {
            // A stored member, decrypted as it is read: copied as it is hashed, holes left as holes.
            guard source.size == expectedSize else {
                throw BundleError.damaged(member: "memory.img", why: "\(source.size) bytes, the manifest says \(expectedSize)")
            }
            let output = try NewFile(destination, size: source.size)
            let digest = try ChunkedDigest.digest(source: source, progress: progress, cancel: cancel) { bytes, offset in
                try FileSystem.writeAll(fd: output.fd, bytes, at: offset, path: destination)
            }
            guard digest == expectedDigest else { throw BundleError.tampered(member: "memory.img") }
            output.keep()
            return
        }
        try load(from: file, to: destination, expectedSize: expectedSize, expectedDigest: expectedDigest, progress: progress, cancel: cancel)
    }

    /// Copies a memory image file into a new sparse file (see above), checking its digest.
    static func load(
        from source: OpenedFile, to destination: String, expectedSize: Int64, expectedDigest: String,
        progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws {
        guard source.size == expectedSize else {
            throw BundleError.damaged(member: "memory.img", why: "\(source.size) bytes, the manifest says \(expectedSize)")
        }
        let output = try NewFile(destination, size: source.size)
        let digest = try ChunkedDigest.digest(
            fd: source.fd, size: source.size, path: source.path, copyTo: output.fd, progress: progress, cancel: cancel)
        guard digest == expectedDigest else {
            throw BundleError.tampered(member: "memory.img")
        }
        output.keep()
    }
}

/// A new file of a given size that is removed again unless `keep()` is called, so a failed
/// copy leaves nothing behind.
public final class NewFile {
    public let fd: Int32
    public let path: String
    private var kept = false

    public init(_ path: String, size: Int64) throws {
        // Fail before any property is set: a throwing init of a fully set object runs deinit,
        // which would remove a file that was there before.
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot create", path) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let error = SparcError.posix("cannot size", path)
            close(fd)
            unlink(path)
            throw error
        }
        self.fd = fd
        self.path = path
    }

    public func keep() { kept = true }

    deinit {
        close(fd)
        if !kept { unlink(path) }
    }
}

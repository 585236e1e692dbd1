import CNBD
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A disk QEMU exports over NBD, read-only (libnbd): its bytes as the guest sees them, which
/// ranges hold data, and which a dirty bitmap marks.
public final class NBDDisk {
    let handle: OpaquePointer
    /// The export's size, checked against what the caller expected.
    public let size: Int64
    /// The dirty bitmap the server agreed to report, if one was asked for.
    public let bitmap: String?

    /// Connects to `export` on `socket`; `expectedSize` is the disk's virtual size as sparc
    /// knows it (an export of another size is refused: QEMU's word is not trusted for it).
    public convenience init(socket: String, export: String, bitmap: String?, expectedSize: Int64) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard let h = sparc_nbd_open(socket, export, bitmap, &error, error.count) else {
            throw SparcError("cannot read the disk QEMU exports: \(String(cString: error))")
        }
        try self.init(handle: h, bitmap: bitmap, expectedSize: expectedSize)
    }

    /// Takes over a connected handle (closed on failure).
    init(handle h: OpaquePointer, bitmap: String?, expectedSize: Int64) throws {
        // Checked before the object is whole: a throw after that would run deinit, closing twice.
        let served = sparc_nbd_size(h)
        guard served == expectedSize else {
            sparc_nbd_close(h)
            throw SparcError("QEMU serves the disk with \(served) bytes, not its \(expectedSize)")
        }
        handle = h
        size = served
        self.bitmap = bitmap.flatMap { sparc_nbd_has_bitmap(h, $0) == 1 ? $0 : nil }
    }

    deinit { sparc_nbd_close(handle) }

    /// Reads `count` bytes at `offset` (within the disk).
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws {
        guard offset >= 0, count >= 0, offset + Int64(count) <= size else { throw SparcError("a disk read beyond its end") }
        var error = [CChar](repeating: 0, count: 512)
        guard sparc_nbd_read(handle, buffer, count, UInt64(offset), &error, error.count) == 0 else {
            throw SparcError("cannot read the disk QEMU exports: \(String(cString: error))")
        }
    }

    /// The ranges of `range` the server flags: with `bitmap` nil, those that may hold data
    /// (neither hole nor zero); else those the bitmap marks dirty. Adjacent ranges are merged.
    public func flagged(_ range: Range<Int64>, bitmap: String? = nil) throws -> [Range<Int64>] {
        let maxExtents = 4096
        var lengths = [UInt64](repeating: 0, count: maxExtents)
        var flags = [UInt32](repeating: 0, count: maxExtents)
        var error = [CChar](repeating: 0, count: 512)
        var out: [Range<Int64>] = []
        var offset = max(0, range.lowerBound)
        let end = min(range.upperBound, size)
        while offset < end {
            // The protocol's lengths are 32-bit: ask for at most 1 GiB at a time.
            let want = UInt64(min(end - offset, 1 << 30))
            let n = sparc_nbd_extents(handle, bitmap, UInt64(offset), want, &lengths, &flags, Int32(maxExtents), &error, error.count)
            guard n >= 0 else { throw SparcError("cannot read the disk's \(bitmap.map { "dirty bitmap \($0)" } ?? "allocation"): \(String(cString: error))") }
            guard n > 0 else { throw SparcError("QEMU reported no extents for the disk at byte \(offset)") }
            var at = offset
            for i in 0..<Int(n) {
                let length = Int64(min(lengths[i], UInt64(end - at)))
                guard length > 0 else { break }
                let marked = bitmap == nil ? (flags[i] & 3) == 0 : (flags[i] & 1) != 0
                if marked {
                    if let last = out.last, last.upperBound == at { out[out.count - 1] = last.lowerBound..<(at + length) } else { out.append(at..<(at + length)) }
                }
                at += length
                if at >= end { break }
            }
            guard at > offset else { throw SparcError("QEMU reported an empty extent for the disk at byte \(offset)") }
            offset = at
        }
        return out
    }
}

extension NBDDisk {
    /// Serves `image` with qemu-nbd, started by libnbd through socket activation and ended when
    /// the connection closes: for writing (a qcow2 sparc just made), or read-only with one of
    /// the image's persistent dirty bitmaps (`bitmap`).
    public convenience init(serving image: String, format: String, expectedSize: Int64, readOnlyWith bitmap: String? = nil) throws {
        guard let qemuNBD = Subprocess.which("qemu-nbd") else { throw SparcError("qemu-nbd not found in PATH (install it: apt-get install qemu-utils)") }
        // -f: never probed.
        var argv = [qemuNBD, "--format=\(format)", "--cache=writeback", "--aio=threads"]
        if let bitmap { argv += ["--read-only", "--bitmap=\(bitmap)"] }
        argv.append(image)
        var error = [CChar](repeating: 0, count: 512)
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        guard let h = cArgs.withUnsafeBufferPointer({ sparc_nbd_open_command($0.baseAddress!, bitmap, &error, error.count) }) else {
            throw SparcError("cannot serve \(image) with qemu-nbd: \(String(cString: error))")
        }
        try self.init(handle: h, bitmap: bitmap, expectedSize: expectedSize)
    }

    /// Writes `count` bytes at `offset` (within the disk).
    public func write(_ buffer: UnsafeRawPointer, count: Int, at offset: Int64) throws {
        guard offset >= 0, count >= 0, offset + Int64(count) <= size else { throw SparcError("a disk write beyond its end") }
        var error = [CChar](repeating: 0, count: 512)
        guard sparc_nbd_write(handle, buffer, count, UInt64(offset), &error, error.count) == 0 else {
            throw SparcError("cannot write the disk: \(String(cString: error))")
        }
    }

    /// Makes every write so far durable.
    public func flush() throws {
        var error = [CChar](repeating: 0, count: 512)
        guard sparc_nbd_flush(handle, &error, error.count) == 0 else { throw SparcError("cannot flush the disk: \(String(cString: error))") }
    }
}

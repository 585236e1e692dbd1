#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes read by offset: a regular file (`OpenedFile`), or a member of a stored checkpoint
/// decrypted chunk by chunk as it is read. Searches, scans and the owner map read through it,
/// so that what they read need not be a file at all.
public protocol ByteSource: AnyObject {
    /// What to call it in messages and hits.
    var path: String { get }
    /// The size when it was opened: every read is checked against it.
    var size: Int64 { get }
    /// Reads up to `buffer.count` bytes at `offset` into `buffer`; fewer only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int
    /// The ranges that hold data, in order (what lies between reads as zeros), each widened
    /// by `before` bytes in front (a pattern that starts with zeros) and `after` behind (one
    /// that ends with zeros): a hole alone never holds a pattern with a non-zero byte, so
    /// holes are never scanned. The whole source when it cannot tell.
    func dataRegions(before: Int, after: Int) -> [Range<Int>]
}

extension OpenedFile: ByteSource {
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("cannot read", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Data extents from SEEK_DATA/SEEK_HOLE: holes are never read.
    public func dataRegions(before: Int, after: Int) -> [Range<Int>] {
        let size = Int(self.size)
        var regions: [Range<Int>] = []
        var pos = 0
        while pos < size {
            let data = lseek(fd, off_t(pos), seekData)
            if data < 0 { break }
            var hole = lseek(fd, data, seekHole)
            if hole < 0 { hole = off_t(size) }
            let lo = max(regions.last?.upperBound ?? 0, Int(data) - before)
            regions.append(min(lo, Int(data))..<min(size, Int(hole) + after))
            pos = Int(hole)
        }
        return regions
    }
}

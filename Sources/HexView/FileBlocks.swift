import Foundation
import SparcSupport

/// A regular file read block by block with pread(2), never through a memory mapping.
///
/// Bundles belong to whoever made them: a file mapped while its owner truncates it raises
/// SIGBUS on the next page touched, which kills the process. Read instead, a truncated file
/// gives a short read, which becomes one clear error (`Changed`). The copy costs little next
/// to the scan.
public final class FileBlocks: @unchecked Sendable {
    public let file: OpenedFile
    public var fd: Int32 { file.fd }
    /// The size when the file was opened: every read is checked against it.
    public let size: Int

    /// The file is no longer what it was when opened (shorter now).
    public struct Changed: Error, CustomStringConvertible {
        public var path: String
        public var expected: Int
        public var now: Int64?
        public var description: String {
            "\(path) changed while it was read (it was \(expected) bytes\(now.map { ", it is \($0) now" } ?? "")): read it again once nobody writes it"
        }
    }

    public init(_ file: OpenedFile) {
        self.file = file
        size = Int(file.size)
    }

    /// Reads `range` (clipped to the file) and hands `body` a pointer to its bytes.
    public func withBytes<R>(_ range: Range<Int>, _ body: (UnsafePointer<UInt8>, Int) throws -> R) throws -> R {
        let lo = max(0, range.lowerBound)
        let hi = min(size, range.upperBound)
        let count = max(0, hi - lo)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count))
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(lo + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("cannot read", file.path)
            }
            if n == 0 {
                var st = stat()
                throw Changed(path: file.path, expected: size, now: fstat(fd, &st) == 0 ? Int64(st.st_size) : nil)
            }
            done += n
        }
        return try body(UnsafePointer(buffer), count)
    }

    /// The bytes of `range` (for small reads: contexts, previews).
    public func bytes(_ range: Range<Int>) throws -> [UInt8] {
        try withBytes(range) { p, n in Array(UnsafeBufferPointer(start: p, count: n)) }
    }
}

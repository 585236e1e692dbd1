import Foundation
import SparcSupport

/// A regular file read block by block with pread(2), never through a memory mapping.
///
/// Bundles belong to whoever made them: a file mapped while its owner truncates it raises
/// SIGBUS on the next page touched, which kills the process. Read instead, a truncated file
/// gives a short read, which becomes one clear error (`Changed`). The copy costs little next
/// to the scan.
public final class FileBlocks: @unchecked Sendable {
    public let source: ByteSource
    /// The size when the source was opened: every read is checked against it.
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

    public init(_ source: ByteSource) {
        self.source = source
        size = Int(source.size)
    }

    /// Data regions (holes skipped), widened by `before` and `after` bytes.
    public func dataRegions(before: Int = 0, after: Int) -> [Range<Int>] { source.dataRegions(before: before, after: after) }

    /// Reads `range` (clipped to the file) and hands `body` a pointer to its bytes.
    public func withBytes<R>(_ range: Range<Int>, _ body: (UnsafePointer<UInt8>, Int) throws -> R) throws -> R {
        let lo = max(0, range.lowerBound)
        let hi = min(size, range.upperBound)
        let count = max(0, hi - lo)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count))
        defer { buffer.deallocate() }
        let done = try source.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: count), at: Int64(lo))
        if done < count {
            var now: Int64?
            if let file = source as? OpenedFile {
                var st = stat()
                now = fstat(file.fd, &st) == 0 ? Int64(st.st_size) : nil
            }
            throw Changed(path: source.path, expected: size, now: now)
        }
        return try body(UnsafePointer(buffer), count)
    }

    /// The bytes of `range` (for small reads: contexts, previews).
    public func bytes(_ range: Range<Int>) throws -> [UInt8] {
        try withBytes(range) { p, n in Array(UnsafeBufferPointer(start: p, count: n)) }
    }
}

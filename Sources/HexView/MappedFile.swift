import Foundation
import SparcSupport

/// A regular file mapped read-only, for scanning without reading it whole.
public final class MappedFile {
    public let file: OpenedFile
    public var fd: Int32 { file.fd }
    public let size: Int
    public let bytes: UnsafePointer<UInt8>?

    /// Maps an opened file (opened without blocking on a FIFO, refused if not regular).
    public init(_ file: OpenedFile) throws {
        self.file = file
        size = Int(file.size)
        guard size > 0 else {
            bytes = nil
            return
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, file.fd, 0), map != MAP_FAILED else {
            throw SparcError.posix("cannot map", file.path)
        }
        madvise(map, size, MADV_SEQUENTIAL)
        bytes = UnsafePointer(map.assumingMemoryBound(to: UInt8.self))
    }

    convenience init(_ path: String) throws {
        try self.init(OpenedFile(regular: path, followSymlinks: true))
    }

    deinit {
        if let bytes { munmap(UnsafeMutableRawPointer(mutating: bytes), size) }
    }
}

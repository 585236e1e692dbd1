import Foundation
import SparcSupport

/// A regular file mapped read-only, for scanning without reading it whole.
final class MappedFile {
    let fd: Int32
    let size: Int
    let bytes: UnsafePointer<UInt8>?

    /// Opens without blocking (a FIFO must not hang a search) and refuses anything but a regular file.
    init(_ path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SparcError.posix("cannot read", path) }
        var st = stat()
        fstat(fd, &st)
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw SparcError("\(path) is not a regular file")
        }
        size = Int(st.st_size)
        guard size > 0 else {
            bytes = nil
            return
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            close(fd)
            throw SparcError.posix("cannot map", path)
        }
        madvise(map, size, MADV_SEQUENTIAL)
        bytes = UnsafePointer(map.assumingMemoryBound(to: UInt8.self))
    }

    deinit {
        if let bytes { munmap(UnsafeMutableRawPointer(mutating: bytes), size) }
        close(fd)
    }
}

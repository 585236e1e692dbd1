#if canImport(Glibc)
    import Glibc
#endif
import SnapshotModel
import SparcSupport

/// Reads guest-physical memory of a paused guest.
public protocol GuestPhysicalMemory {
    /// `count` bytes at guest-physical `address` into `buffer`; false where that is not RAM.
    func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool
}

extension GuestPhysicalMemory {
    /// Eight little-endian bytes at `address`.
    func word(_ address: UInt64) -> UInt64? {
        var value: UInt64 = 0
        return withUnsafeMutableBytes(of: &value) { read(address, into: $0) } ? UInt64(littleEndian: value) : nil
    }
}

/// Guest RAM as QEMU's RAM file holds it, read with pread (the file is never mapped: a
/// guest's records are read, not trusted, and a short file is an answer, not a SIGBUS).
public struct RAMFileMemory: GuestPhysicalMemory {
    public let fd: Int32
    public let layout: PhysicalLayout
    public let size: Int64

    /// `fd` stays the caller's.
    public init(fd: Int32, layout: PhysicalLayout) {
        self.fd = fd
        self.layout = layout
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
    }

    public func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard let base = buffer.baseAddress else { return true }
        let ranges = layout.fileRanges(physical: address, length: UInt64(buffer.count))
        // A range that crosses into the PCI hole or past RAM is not RAM as a whole.
        guard ranges.reduce(0, { $0 + ($1.upperBound - $1.lowerBound) }) == Int64(buffer.count) else { return false }
        var done = 0
        for r in ranges {
            guard r.upperBound <= size else { return false }
            var off = r.lowerBound
            while off < r.upperBound {
                let n = pread(fd, base + done, Int(r.upperBound - off), off_t(off))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                off += Int64(n)
                done += n
            }
        }
        return true
    }
}

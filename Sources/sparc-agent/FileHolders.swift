#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// A file's identity: its device and inode, as /proc/PID/maps and stat(2) both tell it.
struct FileKey: Hashable {
    var major: UInt64
    var minor: UInt64
    var inode: UInt64

    init(major: UInt64, minor: UInt64, inode: UInt64) {
        self.major = major
        self.minor = minor
        self.inode = inode
    }

    init(_ st: stat) {
        (major, minor) = Self.split(device: UInt64(st.st_dev))
        inode = UInt64(st.st_ino)
    }

    /// A device number's major and minor (glibc's major()/minor() are macros Swift does not see).
    static func split(device dev: UInt64) -> (major: UInt64, minor: UInt64) {
        (((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)), (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
    }
}

/// Which processes hold each file, open or mapped: the test of whether a memory-only file
/// is the excluded processes' alone.
struct FileHolders {
    var holders: [FileKey: Set<Int32>] = [:]

    /// Kernel threads hold no files: only user processes are read.
    static func scan() -> FileHolders {
        var out = FileHolders()
        for p in GuestSystem.stats() where p.flags & GuestSystem.pfKthread == 0 {
            for m in ExclusionCollector.allMappings(p.pid) {
                if let key = m.file { out.holders[key, default: []].insert(p.pid) }
            }
            let dir = "/proc/\(p.pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                var st = stat()
                guard stat("\(dir)/\(fd)", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                out.holders[FileKey(st), default: []].insert(p.pid)
            }
        }
        return out
    }
}

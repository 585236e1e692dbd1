#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import GuestProcfs

#if canImport(Glibc)
    import Glibc
#endif

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

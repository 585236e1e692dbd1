#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestProcfs
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Detached SysV segments they created.
struct SysVMemoryChannel: ExclusionChannel {
    let phase = "shm"
    let kernelScopeOnly = true
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws { collector.collectSysVSegments(processes) }
}

/// SysV shared memory segments the excluded processes created and detached from.
extension ExclusionCollector {
    struct SysVSegment {
        var id: Int32
        var size: Int
        var creator: Int32
        var attached: Int
    }

    /// The SysV shared memory segments (/proc/sysvipc/shm).
    static func sysvSegments() -> [SysVSegment] {
        // key shmid perms size cpid lpid nattch …
        (GuestSystem.readText("/proc/sysvipc/shm") ?? "").split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 7, let id = Int32(f[1]), let size = Int(f[3]), let cpid = Int32(f[4]), let n = Int(f[6]) else { return nil }
            return SysVSegment(id: id, size: size, creator: cpid, attached: n)
        }
    }

    /// Detached SysV segments the excluded processes created: no page table leads to them
    /// any more, yet they outlive a detach and hold what was written. Attached here
    /// read-only, their resident pages are found as a file's are. (A segment still attached
    /// is in its processes' page tables: mapped by excluded processes alone it is left out
    /// with their pages, mapped by another process it is that process's memory too.)
    func collectSysVSegments(_ processes: [ExcludedProcess]) {
        let pids = Set(processes.map(\.pid))
        for segment in Self.sysvSegments() where pids.contains(segment.creator) && segment.attached == 0 {
            guard let base = shmat(segment.id, nil, SHM_RDONLY), base != UnsafeMutableRawPointer(bitPattern: -1) else {
                warnings.append("SysV segment \(segment.id) of pid \(segment.creator) could not be attached, its pages were kept: \(String(cString: strerror(errno)))")
                continue
            }
            defer { shmdt(base) }
            let length = (segment.size + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            for pfn in Self.residentFrames(base: base, length: length) {
                let start = pfn * UInt64(Self.pageSize)
                byteRanges[.shm, default: []].append(start..<start + UInt64(Self.pageSize))
            }
        }
    }
}

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

/// After a restore, with the guest still frozen: kill what was excluded, drop its page cache.
enum Cleanup {
    static func run(_ request: CleanupRequest) -> CleanupResult {
        var result = CleanupResult()
        // Before any kill: a killed writer's reader must find its pipe empty, not zeroed.
        let drain = (request.drain ?? []).filter { ExclusionCollector.startTime($0.pid) == $0.startTime }
        let exited = request.drainExited ?? []
        if !drain.isEmpty || !exited.isEmpty {
            do {
                try ExclusionCollector.loadHelper()
                let answer = try ExclusionCollector.askHelper("drain", drain.map(\.pid), exited: exited)
                for line in answer.split(separator: "\n") where line.hasPrefix("dropped ") {
                    result.droppedBuffers = Int(line.split(separator: " ").last ?? "", radix: 16)
                }
            } catch {
                result.warnings.append("unread data of the excluded processes' pipes and sockets could not be dropped (readers may see zeros): \((error as? AgentFailure)?.message ?? "\(error)")")
            }
        }
        for p in request.kill {
            guard ExclusionCollector.startTime(p.pid) == p.startTime else {
                result.missing.append(p.pid)
                continue
            }
            // Frozen tasks still die of SIGKILL (cgroup v2 freezer).
            if kill(p.pid, SIGKILL) == 0 { result.killed.append(p.pid) } else { result.missing.append(p.pid) }
        }
        let deadline = Date().addingTimeInterval(10)
        for pid in result.killed {
            while Date() < deadline {
                let state = GuestSystem.stat(of: pid)?.state
                if state == nil || state == "Z" || state == "X" { break }
                usleep(5000)
            }
            if let s = GuestSystem.stat(of: pid), s.state != "Z" && s.state != "X" {
                result.warnings.append("pid \(pid) did not die after SIGKILL (state \(s.state))")
            }
        }
        // Their detached SysV segments were zeroed: gone with their creators, nobody attaches zeros.
        let drained = Set(drain.map(\.pid)), ended = Set(result.killed)
        for segment in ExclusionCollector.sysvSegments() where segment.attached == 0 && drained.contains(segment.creator) && ended.contains(segment.creator) {
            if shmctl(segment.id, IPC_RMID, nil) != 0 {
                result.warnings.append("cannot remove SysV segment \(segment.id): \(String(cString: strerror(errno)))")
            }
        }
        for file in request.evictFiles.map(\.unescaped) {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                result.warnings.append("cannot open \(file) to evict its cache: \(String(cString: strerror(errno)))")
                continue
            }
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
            // Pages a running process maps cannot be dropped; they were shared at the checkpoint, so saved as they were.
            // A page nobody maps that stays is the one to worry about: it may be a zeroed one.
            let left = ExclusionCollector.cachedFrames(ofOpenFile: file)
            let unmapped = left.filter { (ExclusionCollector.readFrameEntry("/proc/kpagecount", $0) ?? 0) == 0 }.count
            if unmapped > 0 {
                result.warnings.append("\(unmapped) page(s) of \(file) that no process maps stayed in the page cache after eviction")
            }
            if left.count > unmapped { result.stillMapped = (result.stillMapped ?? [:]).merging([GuestText(file): left.count - unmapped]) { $0 + $1 } }
            if left.isEmpty { result.evicted.append(GuestText(file)) }
        }
        for file in request.removeFiles.map(\.unescaped) {
            if unlink(file) == 0 { result.removed.append(GuestText(file)) } else {
                result.warnings.append("cannot remove \(file): \(String(cString: strerror(errno)))")
            }
        }
        return result
    }
}

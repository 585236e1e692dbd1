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

/// What can only be named: kernel keys, memory files they wrote and closed, servers they
/// talked to, journald, PID 1, transient units.
struct PossibleCopiesChannel: ExclusionChannel {
    let phase = "copies"
    let kernelScopeOnly = true
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws {
        collector.warnAboutUncoveredCopies(processes)
        collector.possibleCopies += Conversations.possibleCopies(
            talks: collector.talks, excluded: processes, exited: collector.exitedPids,
            ownCgroup: Freezer.cgroup(of: String(collector.agentPid)).flatMap { $0 == "/" ? nil : $0 })
    }
}

/// Copies sparc cannot leave out without harming someone else: named, with what to do.
extension ExclusionCollector {
    /// Warns by name about kernel copies sparc cannot attribute to a process: key payloads
    /// in the kernel keyring, and POSIX shared memory files nobody holds open any more.
    func warnAboutUncoveredCopies(_ processes: [ExcludedProcess]) {
        let uids = Set(processes.compactMap { GuestSystem.uid(of: $0.pid) })
        // /proc/keys: ID FLAGS USAGE TIMEOUT PERM UID GID TYPE DESCRIPTION: SUMMARY
        var keys = 0
        for line in (GuestSystem.readText("/proc/keys") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 8, let uid = UInt32(f[5]), uids.contains(uid), ["user", "logon", "big_key", "encrypted", "trusted"].contains(String(f[7])) else { continue }
            // systemd's bookkeeping (each service's "invocation_id" key, under sshd's privileged process too) holds no one's data.
            if f[8].hasPrefix("invocation_id") { continue }
            keys += 1
        }
        if keys > 0 {
            possibleCopies.append("kernel keyring: \(keys) key(s) of the excluded processes' users are not left out (the kernel does not say which process added a key; payloads stay in the bundle)")
        }
        // A file on a memory-only file system written since the first excluded process started
        // and open by none of them: one of them may have written it and closed it. The whole
        // tree counts (/dev/shm/d/inner as /dev/shm/note).
        let earliest = processes.compactMap { Self.startTime($0.pid) }.min() ?? 0
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let uptime = GuestSystem.uptime()
        let since = Date().timeIntervalSince1970 - uptime + Double(earliest) / max(ticks, 1)
        let held = removeFiles.union(evictFiles).union(keptMemoryFiles.keys)
        for path in Self.recentMemoryFiles(owners: uids, since: since - 1) where !held.contains(path) {
            possibleCopies.append(
                "\(path.terminalSafe) (on a memory-only file system, written since the excluded processes started, open by none of them) is not left out: remove it, or exclude a process that holds it open")
        }
    }

    /// Directories whose trees hold users' memory-only files: /dev/shm, and /tmp and the
    /// users' runtime directories where they are memory-only.
    static func memoryFileRoots(owners: Set<UInt32>) -> [String] {
        var roots = ["/dev/shm"]
        for dir in ["/tmp"] + owners.sorted().map({ "/run/user/\($0)" }) {
            let magic = sparc_fs_type(dir)
            if magic == tmpfsMagic || magic == ramfsMagic { roots.append(dir) }
        }
        return roots
    }

    /// Regular files under the memory-file roots owned by `owners` and modified since `since`
    /// (seconds since the epoch); walked without following links, 16 levels and 20,000 entries at most.
    static func recentMemoryFiles(owners: Set<UInt32>, since: Double) -> [String] {
        var found: [String] = []
        var budget = 20_000
        func walk(_ dir: String, depth: Int) {
            guard depth < 16, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names.sorted() {
                budget -= 1
                guard budget > 0 else { return }
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: walk(path, depth: depth + 1)
                case S_IFREG where owners.contains(st.st_uid) && Double(st.st_mtim.tv_sec) >= since && st.st_size > 0: found.append(path)
                default: break
                }
            }
        }
        for root in memoryFileRoots(owners: owners) { walk(root, depth: 0) }
        return found
    }
}

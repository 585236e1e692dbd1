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

/// Resolving an exclusion request to the processes and terminals it names.
extension ExclusionCollector {
    struct Resolved {
        var processes: [ExcludedProcess]
        var ttys: [String]
        var ttySessions: [TTYSession] = []
    }

    static func startTime(_ pid: Int32) -> UInt64? {
        GuestSystem.stat(of: pid)?.startTime
    }

    static func normalizeTTY(_ name: String) -> String { TTYNames.normalize(name) }

    func resolve() throws -> Resolved {
        let all = GuestSystem.stats()
        let byPid = Dictionary(all.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        let isKernel = { (p: GuestSystem.Stat) in p.flags & GuestSystem.pfKthread != 0 }
        var children: [Int32: [Int32]] = [:]
        for p in all { children[p.ppid, default: []].append(p.pid) }
        var reasons: [Int32: String] = [:]
        var order: [Int32] = []
        func add(_ pid: Int32, _ reason: String) {
            if reasons[pid] == nil {
                reasons[pid] = reason
                order.append(pid)
            }
        }
        for pid in request.pids {
            guard let p = byPid[pid] else { throw AgentFailure(.notFound, "no process with pid \(pid) in the guest") }
            if isKernel(p) { throw AgentFailure(.invalidArgument, "pid \(pid) is a kernel thread, which has no user memory to exclude") }
            add(pid, "pid \(pid)")
        }
        for name in request.names {
            let matches = all.filter { p in
                guard !isKernel(p) else { return false }
                if p.comm == name { return true }
                let argv0 = GuestSystem.commandLine(p.pid, comm: p.comm).split(separator: " ").first.map(String.init) ?? ""
                let base = argv0.split(separator: "/").last.map(String.init) ?? argv0
                return base == name || base == "-" + name
            }
            if matches.isEmpty { throw AgentFailure(.notFound, "no process named '\(name)' in the guest") }
            for p in matches { add(p.pid, "name \(name)") }
        }
        var ttys: [String] = []
        var holders: [Int: [Int32]]?
        let known = Set(GuestSystem.ttys().map(\.name.unescaped))
        let sessions = GuestSystem.ttySessions(all)
        // A terminal tagged by its session: that session, or nothing (pty numbers are reused).
        for pinned in request.ttySessions ?? [] {
            let now = sessions[Self.normalizeTTY(pinned.tty)]
            guard now == TTYSession(tty: Self.normalizeTTY(pinned.tty), leader: pinned.leader, leaderStart: pinned.leaderStart) else {
                let other = now.map { "it belongs to the session of pid \($0.leader) now" } ?? "it has no session now"
                throw AgentFailure(
                    .notFound, "the session of pid \(pinned.leader) on \(pinned.tty) has ended (\(other)): tag the terminal again")
            }
        }
        for raw in request.ttys + (request.ttySessions ?? []).map(\.tty) {
            let tty = Self.normalizeTTY(raw)
            guard known.contains(tty) else {
                throw AgentFailure(.notFound, "no terminal '\(raw)' in the guest (known: \(known.sorted().joined(separator: ", ")))")
            }
            guard !ttys.contains(tty) else { continue }
            ttys.append(tty)
            for p in all where TTYNames.name(ttyNr: p.ttyNr) == tty && !isKernel(p) { add(p.pid, "on \(tty)") }
            if tty.hasPrefix("pts/"), let index = Int(tty.dropFirst(4)) {
                if holders == nil { holders = GuestSystem.ptyMasterHolders() }
                for holder in holders?[index] ?? [] { add(holder, "holds the master of \(tty)") }
            }
        }
        let lineage = ForkLineage.shared
        // Processes bring along what they started, and only that: their children, what they
        // forked (the kernel's fork events, kept across reparenting: a daemon that
        // double-forked and left its session), and the members of a session or process group
        // they lead (a `(cmd &)` orphan, reparented to init, stays in both). Never a process
        // for where it lives (a cgroup): on a guest without logind every SSH session shares
        // ssh.service's cgroup with the listener and other users' daemons. Repeated until
        // nothing more joins.
        var bySession: [Int32: [Int32]] = [:]
        var byGroup: [Int32: [Int32]] = [:]
        for p in all where !isKernel(p) {
            bySession[p.session, default: []].append(p.pid)
            byGroup[p.pgrp, default: []].append(p.pid)
        }
        var i = 0
        while i < order.count {
            let parent = order[i]
            let p = byPid[parent]
            for child in children[parent] ?? [] where byPid[child].map(isKernel) == false { add(child, "child of \(parent)") }
            // Forked by it, whatever became of the parent link since (a daemon that double-forked).
            for child in lineage.descendants(of: parent).sorted()
            where byPid[child].map({ !isKernel($0) && $0.startTime >= (p?.startTime ?? 0) }) == true {
                add(child, "forked by \(parent)")
            }
            if p?.session == parent {
                for member in bySession[parent] ?? [] { add(member, "in the session of \(parent)") }
            }
            if p?.pgrp == parent {
                for member in byGroup[parent] ?? [] { add(member, "in the process group of \(parent)") }
            }
            i += 1
        }
        if reasons[1] != nil {
            throw AgentFailure(.invalidArgument, "pid 1 (init) cannot be excluded: the guest cannot run on without it (\(reasons[1]!))")
        }
        if let r = reasons[agentPid] {
            throw AgentFailure(.invalidArgument, "the sparc agent (pid \(agentPid)) cannot be excluded: it carries out the restore (\(r))")
        }
        // Its keeper (and, on busybox, its wrapper) share its cgroup, which is never frozen: they stay too.
        if let own = Freezer.cgroup(of: String(agentPid)), own != "/" {
            for pid in order where Freezer.cgroup(of: String(pid)) == own {
                throw AgentFailure(.invalidArgument, "pid \(pid) is part of the sparc agent (its cgroup \(own)) and cannot be excluded (\(reasons[pid]!))")
            }
        }
        let processes = order.compactMap { pid -> ExcludedProcess? in
            guard let p = byPid[pid], let start = Optional(p.startTime) else {
                warnings.append("pid \(pid) exited during collection")
                return nil
            }
            // The command name only: arguments live in the excluded memory and may be the secret.
            return ExcludedProcess(pid: pid, command: p.comm, reason: reasons[pid]!, startTime: start)
        }
        return Resolved(processes: processes, ttys: ttys, ttySessions: ttys.compactMap { sessions[$0] })
    }
}

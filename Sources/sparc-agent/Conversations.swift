#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The processes the excluded ones talked to while they ran, and what those keep.
///
/// The kernel helper names who holds the other end of an excluded process's unix socket, and
/// who read from a pipe one of them wrote into ("talked KIND HOLDER"). Such a process — a
/// terminal multiplexer's server they attached to, journald, PID 1 — may keep what it was
/// sent (a pane's scrollback, a journal entry, a transient unit's command line). Excluding
/// it could kill a bystander (another user's tmux server), so it is named, with what to add,
/// as a possible copy; --strict refuses.
enum Conversations {
    struct Talk: Hashable {
        var holder: Int32
        var kind: String
    }

    /// One note per process talked to, and the transient units started since the excluded
    /// processes began (systemd-run asks PID 1 over D-Bus: nothing links the unit to them).
    static func possibleCopies(talks: Set<Talk>, excluded: [ExcludedProcess], exited: [Int32], ownCgroup: String?) -> [String] {
        var notes: [String] = []
        let excludedPids = Set(excluded.map(\.pid))
        var byHolder: [Int32: Set<String>] = [:]
        for t in talks where !excludedPids.contains(t.holder) && t.holder != getpid() {
            // The agent and its keeper hand out terminals and exec pipes: not a server of theirs.
            if let own = ownCgroup, Freezer.cgroup(of: String(t.holder)) == own { continue }
            byHolder[t.holder, default: []].insert(t.kind)
        }
        var toldJournald = false
        for (holder, kinds) in byHolder.sorted(by: { $0.key < $1.key }) {
            let comm = GuestSystem.stat(of: holder)?.comm ?? "?"
            let via = kinds.sorted().map { $0 == "pipe" ? "a pipe" : "a unix socket" }.joined(separator: " and ")
            if comm == "systemd-journal" {
                toldJournald = true
                notes.append(journaldNote(holder: holder, count: journalEntries(of: excluded.map(\.pid) + exited)))
            } else if holder == 1 {
                notes.append("PID 1 (\(comm)) talked with the excluded processes over \(via) (systemctl, systemd-run): its memory may keep what they gave it; PID 1 cannot be left out")
            } else {
                notes.append(
                    "pid \(holder) (\(comm)) talked with the excluded processes over \(via): what they sent it (typed keys, a pane's scrollback, a request) may be in its memory; add --exclude-pid \(holder) to leave it out")
            }
        }
        // A message logged by a process that has exited since (logger) left no connection to
        // see: the journal itself says whose entries it holds.
        if !toldJournald, let count = journalEntries(of: excluded.map(\.pid) + exited), count > 0 {
            let journald = GuestSystem.stats().first { $0.comm == "systemd-journal" }?.pid
            notes.append(journaldNote(holder: journald, count: count))
        }
        notes += transientUnits(since: excluded.map(\.startTime).min() ?? 0, excluded: excludedPids)
        return notes
    }

    static func journaldNote(holder: Int32?, count: Int?) -> String {
        let entries = count.map { "\($0) journal entr\($0 == 1 ? "y" : "ies") of theirs" } ?? "their journal entries"
        let who = holder.map { "journald (pid \($0))" } ?? "journald"
        return "\(who) received messages from the excluded processes: \(entries) stay in its files on disk and their mapped pages (journalctl _PID=… shows them; sparc does not edit the journal)"
    }

    /// How many journal entries the processes logged (journalctl reads the files; nil without it).
    static func journalEntries(of pids: [Int32]) -> Int? {
        guard !pids.isEmpty, let journalctl = Subprocess.which("journalctl") else { return nil }
        let matches = pids.prefix(256).map { "_PID=\($0)" }.flatMap { [$0, "+"] }.dropLast()
        guard let r = try? Subprocess.run([journalctl, "-q", "--no-pager", "-o", "cat"] + matches, timeout: 20, outputLimit: 64 << 20),
            r.status == 0
        else { return nil }
        return r.stdout.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

    /// Transient units (run-*.service, run-*.scope: systemd-run) whose processes all started
    /// after `since` (clock ticks since boot) and are not excluded.
    static func transientUnits(since: UInt64, excluded: Set<Int32>) -> [String] {
        guard since > 0, FileSystem.exists("/sys/fs/cgroup/cgroup.controllers") else { return [] }
        var notes: [String] = []
        var budget = 5000
        func walk(_ dir: String, depth: Int) {
            guard depth < 6, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names.sorted() {
                budget -= 1
                guard budget > 0 else { return }
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
                if name.hasPrefix("run-") && (name.hasSuffix(".service") || name.hasSuffix(".scope")) {
                    let pids = (GuestSystem.readText(path + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
                    let starts = pids.compactMap { GuestSystem.stat(of: $0)?.startTime }
                    guard !pids.isEmpty, !pids.contains(where: excluded.contains), let first = starts.min(), first >= since else { continue }
                    notes.append(
                        "transient unit \(name.terminalSafe) (pid \(pids.map(String.init).joined(separator: ", "))) started after the excluded processes did: if they started it (systemd-run), its command line and memory may hold their data, and PID 1 keeps the command line; add --exclude-pid \(pids[0])")
                } else {
                    walk(path, depth: depth + 1)
                }
            }
        }
        walk("/sys/fs/cgroup", depth: 0)
        return notes
    }
}

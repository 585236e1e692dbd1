#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import GuestProcfs
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Reads processes and terminals from the guest's /proc and /sys.
enum GuestSystem {
    static let pfKthread = ProcStat.pfKthread

    typealias Stat = ProcStat

    /// Reads a small /proc or /sys file with plain system calls (FileManager is slow under TCG),
    /// at most `limit` bytes of it.
    static func readBytes(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = read(fd, &buf, min(buf.count, limit - out.count))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n < 0 && out.isEmpty ? nil : out }
            out += buf[0..<n]
        }
        return out
    }

    static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The command line of a process, or `[comm]` for kernel threads. Reads at most 64 KiB: the
    /// list keeps 1 KiB of it (a process's arguments can be megabytes).
    static func commandLine(_ pid: Int32, comm: String) -> String {
        var args = (readBytes("/proc/\(pid)/cmdline", limit: 64 << 10) ?? []).split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        while args.last == "" { args.removeLast() }
        return args.isEmpty ? "[\(comm)]" : args.joined(separator: " ")
    }

    /// Every process's stat line, parsed: enough to resolve targets without reading more.
    static func stats() -> [Stat] {
        pids().compactMap(stat(of:))
    }

    /// One process's stat line, parsed; nil once it has gone.
    static func stat(of pid: Int32) -> Stat? { readBytes("/proc/\(pid)/stat").flatMap(ProcStat.parse) }

    static func userNames() -> [UInt32: String] {
        var map: [UInt32: String] = [0: "root"]
        for line in (readText("/etc/passwd") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > 2, let uid = UInt32(f[2]) { map[uid] = String(f[0]) }
        }
        return map
    }

    static func pids() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = Int32(name) { out.append(pid) }
        }
        return out.sorted()
    }

    /// The real user id of a process (the `Uid:` line of /proc/PID/status), nil when it is gone.
    static func uid(of pid: Int32) -> UInt32? {
        for line in (readText("/proc/\(pid)/status") ?? "").split(separator: "\n") where line.hasPrefix("Uid:") {
            return UInt32(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first ?? "")
        }
        return nil
    }

    /// Seconds since the guest booted (/proc/uptime), 0 when unreadable.
    static func uptime() -> Double {
        Double(readText("/proc/uptime")?.split(separator: " ").first ?? "0") ?? 0
    }

    /// Every process, each command line cut to its share of the frame (see `ProcessListBudget`).
    static func processes() -> [GuestProcess] { ProcessListBudget.fit(allProcesses()) }

    static func allProcesses() -> [GuestProcess] {
        let users = userNames()
        let pageKiB = Int64(sysconf(Int32(_SC_PAGESIZE)) / 1024)
        var list: [GuestProcess] = []
        for pid in pids() {
            guard let st = stat(of: pid) else { continue }
            let uid = uid(of: pid) ?? 0
            let kernel = st.flags & pfKthread != 0
            let command = commandLine(pid, comm: st.comm)
            list.append(
                GuestProcess(
                    pid: pid, ppid: st.ppid, user: users[uid] ?? String(uid), state: st.state, tty: TTYNames.name(ttyNr: st.ttyNr),
                    rssKiB: st.rssPages * pageKiB, command: command, kernelThread: kernel, unit: kernel ? nil : unit(of: pid)))
        }
        return list
    }

    /// The systemd unit a process runs in: the last part of its cgroup v2 path when that names
    /// a unit (`/system.slice/ssh.service` → `ssh.service`); nil otherwise (no systemd).
    static func unit(of pid: Int32) -> String? {
        guard let path = Freezer.cgroup(of: String(pid)), let last = path.split(separator: "/").last else { return nil }
        let name = String(last)
        return [".service", ".scope", ".socket", ".mount", ".swap"].contains { name.hasSuffix($0) } ? name : nil
    }

    /// Serial ports with real hardware behind them (not the `uart:unknown` placeholders).
    static func serialPorts() -> [String] {
        (readText("/proc/tty/driver/serial") ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 1, f[1].hasPrefix("uart:"), f[1] != "uart:unknown", let n = Int(f[0].dropLast()) else {
                return nil
            }
            return "ttyS\(n)"
        }
    }

    static func ttys() -> [GuestTTY] {
        var byName: [String: [Int32]] = [:]
        for name in serialPorts() { byName[name] = [] }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/pts")) ?? [] where Int(entry) != nil {
            byName["pts/\(entry)"] = []
        }
        for p in allProcesses() where !p.kernelThread {
            if let t = p.tty?.unescaped { byName[t, default: []].append(p.pid) }
        }
        let holders = ptyMasterHolders()
        let sessions = ttySessions()
        return byName.keys.sorted { a, b in
            let (ka, kb) = (TTYNames.kind(a).rawValue, TTYNames.kind(b).rawValue)
            return ka == kb ? naturalLess(a, b) : ka < kb
        }.map { name in
            let index = name.hasPrefix("pts/") ? Int(name.dropFirst(4)) : nil
            return GuestTTY(
                name: name, kind: TTYNames.kind(name), pids: byName[name]!.sorted(), holders: index.flatMap { holders[$0] } ?? [],
                session: sessions[name])
        }
    }

    /// The session each terminal belongs to: the session leader that has it as controlling
    /// terminal (the oldest, should a pid have been reused), with its start time.
    static func ttySessions(_ all: [Stat]? = nil) -> [String: TTYSession] {
        var out: [String: TTYSession] = [:]
        for p in (all ?? stats()) where p.session == p.pid && p.flags & pfKthread == 0 {
            guard let tty = TTYNames.name(ttyNr: p.ttyNr) else { continue }
            if let known = out[tty], known.leaderStart <= p.startTime { continue }
            out[tty] = TTYSession(tty: tty, leader: p.pid, leaderStart: p.startTime)
        }
        return out
    }

    /// Which processes hold the master side of each pty (by pty index), from one pass over
    /// every process's descriptors.
    static func ptyMasterHolders() -> [Int: [Int32]] {
        var holders: [Int: [Int32]] = [:]
        for pid in pids() {
            let dir = "/proc/\(pid)/fd"
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for fd in fds {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\(fd)"),
                    target == "/dev/ptmx" || target == "/dev/pts/ptmx"
                else { continue }
                for line in (readText("/proc/\(pid)/fdinfo/\(fd)") ?? "").split(separator: "\n") where line.hasPrefix("tty-index:") {
                    if let index = Int(line.dropFirst("tty-index:".count).trimmed), holders[index]?.contains(pid) != true {
                        holders[index, default: []].append(pid)
                    }
                }
            }
        }
        return holders
    }
}

/// Orders names so that `pts/2` comes before `pts/10`.
func naturalLess(_ a: String, _ b: String) -> Bool {
    func key(_ s: String) -> (String, Int) {
        let digits = s.reversed().prefix { $0.isNumber }
        return (String(s.dropLast(digits.count)), Int(String(digits.reversed())) ?? -1)
    }
    let (ka, kb) = (key(a), key(b))
    return ka.0 == kb.0 ? ka.1 < kb.1 : ka.0 < kb.0
}

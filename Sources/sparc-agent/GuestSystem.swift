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

/// Reads processes and terminals from the guest's /proc and /sys.
enum GuestSystem {
    static let pfKthread: UInt64 = 0x0020_0000

    struct Stat {
        var pid: Int32
        var comm: String
        var state: String
        var ppid: Int32
        var ttyNr: Int
        var flags: UInt64
        var rssPages: Int64
    }

    static func readText(_ path: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: d, as: UTF8.self)
    }

    static func parseStat(_ text: String) -> Stat? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        guard let pid = Int32(text[..<open].trimmed) else { return nil }
        let comm = String(text[text.index(after: open)..<close])
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field n is rest[n-3].
        guard rest.count > 21 else { return nil }
        return Stat(
            pid: pid, comm: comm, state: String(rest[0]), ppid: Int32(rest[1]) ?? 0, ttyNr: Int(rest[4]) ?? 0,
            flags: UInt64(rest[6]) ?? 0, rssPages: Int64(rest[21]) ?? 0)
    }

    /// Names a terminal from the `tty_nr` field of /proc/PID/stat.
    static func ttyName(_ ttyNr: Int) -> String? {
        if ttyNr == 0 { return nil }
        let major = (ttyNr >> 8) & 0xfff
        let minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00)
        switch major {
        case 4 where minor >= 64: return "ttyS\(minor - 64)"
        case 4: return "tty\(minor)"
        case 136...143: return "pts/\((major - 136) * 256 + minor)"
        case 5 where minor == 1: return "console"
        case 5 where minor == 0: return "tty"
        default: return "\(major):\(minor)"
        }
    }

    static func ttyKind(_ name: String) -> GuestTTY.Kind {
        if name.hasPrefix("ttyS") { return .serial }
        if name.hasPrefix("pts/") { return .pty }
        if name == "console" { return .console }
        if name.hasPrefix("tty"), Int(name.dropFirst(3)) != nil { return .virtualConsole }
        return .other
    }

    static func userNames() -> [UInt32: String] {
        var map: [UInt32: String] = [0: "root"]
        for line in (readText("/etc/passwd") ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > 2, let uid = UInt32(f[2]) { map[uid] = String(f[0]) }
        }
        return map
    }

    static func pids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.sorted()
    }

    static func processes() -> [GuestProcess] {
        let users = userNames()
        let pageKiB = Int64(sysconf(Int32(_SC_PAGESIZE)) / 1024)
        var list: [GuestProcess] = []
        for pid in pids() {
            guard let statText = readText("/proc/\(pid)/stat"), let st = parseStat(statText) else { continue }
            var uid: UInt32 = 0
            for line in (readText("/proc/\(pid)/status") ?? "").split(separator: "\n") where line.hasPrefix("Uid:") {
                uid = UInt32(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first ?? "0") ?? 0
            }
            let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
            var args = raw.split(separator: 0, omittingEmptySubsequences: false).map {
                String(decoding: $0, as: UTF8.self)
            }
            while args.last == "" { args.removeLast() }
            let kernel = st.flags & pfKthread != 0
            let command = args.isEmpty ? "[\(st.comm)]" : args.joined(separator: " ")
            list.append(
                GuestProcess(
                    pid: pid, ppid: st.ppid, user: users[uid] ?? String(uid), state: st.state, tty: ttyName(st.ttyNr),
                    rssKiB: st.rssPages * pageKiB, command: command, kernelThread: kernel))
        }
        return list
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
        for p in processes() where !p.kernelThread {
            if let t = p.tty { byName[t, default: []].append(p.pid) }
        }
        return byName.keys.sorted { a, b in
            let (ka, kb) = (ttyKind(a).rawValue, ttyKind(b).rawValue)
            return ka == kb ? naturalLess(a, b) : ka < kb
        }.map { GuestTTY(name: $0, kind: ttyKind($0), pids: byName[$0]!.sorted()) }
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

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The guest side of `sparc terminal`: a separate process that holds a pty master and
/// relays it to the second serial port (ttyS1), as a terminal program would. Typed data
/// never passes through the agent.
enum TerminalRelay {
    static let statePath = "/run/sparc-terminal"
    static let device = "/dev/ttyS1"

    /// Returns the running relay, or starts one and waits for it to report.
    static func ensure(cgroup: String) throws -> TerminalInfo {
        if let info = current() { return info }
        unlink(statePath)
        let agent = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/sbin/sparc-agent"
        let script = "echo $$ > \(cgroup)/cgroup.procs 2>/dev/null; setsid \(agent) relay \(device) </dev/null >/dev/null 2>&1 &"
        let r = try Subprocess.run(["/bin/sh", "-c", script])
        guard r.status == 0 else { throw AgentFailure(.failed, "cannot start the terminal relay: \(r.stderrSummary)") }
        for _ in 0..<200 {
            if var info = current() {
                info.started = true
                return info
            }
            usleep(25_000)
        }
        throw AgentFailure(.failed, "the terminal relay did not start (is there a second serial port, \(device)?)")
    }

    static func current() -> TerminalInfo? {
        guard let text = GuestSystem.readText(statePath) else { return nil }
        let f = text.split(separator: " ").map { $0.trimmed }
        guard f.count == 3, let relay = Int32(f[0]), let shell = Int32(f[1]), kill(relay, 0) == 0 else { return nil }
        return TerminalInfo(relayPid: relay, shellPid: shell, tty: f[2], started: false)
    }

    /// root's shell from /etc/passwd, if it is there and runnable, else /bin/sh.
    static func loginShell() -> String {
        for line in (GuestSystem.readText("/etc/passwd") ?? "").split(separator: "\n") where line.hasPrefix("root:") {
            if let shell = line.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init),
                access(shell, X_OK) == 0
            {
                return shell
            }
        }
        return "/bin/sh"
    }

    /// The relay process itself.
    static func run(device: String) -> Never {
        let serial = open(device, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard serial >= 0 else { exit(1) }
        var tio = termios()
        tcgetattr(serial, &tio)
        cfmakeraw(&tio)
        tcsetattr(serial, TCSANOW, &tio)
        let master = sparc_open_pty_master()
        var name = [CChar](repeating: 0, count: 64)
        guard master >= 0, sparc_pty_slave_name(master, &name, name.count) == 0 else { exit(1) }
        let slave = String(cString: name)
        var size = winsize(ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &size)

        // The shell gets the slave as its controlling terminal: new session, then open it.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, slave, O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        posix_spawnattr_setflags(&attr, Int16(Subprocess.posixSpawnSetsid))
        // root's login shell (bash on a distribution, sh on busybox), as a terminal program would start.
        let login = loginShell()
        let shellArgs: [String] = [login, "-l"]
        let shellEnv: [String] = ["PATH=/sbin:/usr/sbin:/bin:/usr/bin", "HOME=/root", "TERM=xterm"]
        let argv: [UnsafeMutablePointer<CChar>?] = shellArgs.map { strdup($0) } + [nil]
        let env: [UnsafeMutablePointer<CChar>?] = shellEnv.map { strdup($0) } + [nil]
        var shell: pid_t = 0
        guard posix_spawn(&shell, login, &actions, &attr, argv, env) == 0 else { exit(1) }
        let short = slave.hasPrefix("/dev/") ? String(slave.dropFirst(5)) : slave
        try? FileSystem.writeAtomically(Data("\(getpid()) \(shell) \(short)\n".utf8), to: statePath, mode: 0o644)

        var buf = [UInt8](repeating: 0, count: 4096)
        relay: while true {
            var fds = [pollfd(fd: serial, events: Int16(POLLIN), revents: 0), pollfd(fd: master, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for (i, p) in fds.enumerated() where p.revents != 0 {
                let from = i == 0 ? serial : master
                let to = i == 0 ? master : serial
                let n = read(from, &buf, buf.count)
                if n <= 0 {
                    if i == 1 { break relay }  // the shell is gone
                    continue
                }
                _ = buf.withUnsafeBytes { FileSystem.writeAll(fd: to, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
        }
        unlink(statePath)
        var status: Int32 = 0
        waitpid(shell, &status, WNOHANG)
        exit(0)
    }
}

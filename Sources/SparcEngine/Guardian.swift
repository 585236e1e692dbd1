import CSparcSupport
import Foundation
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A small process that outlives a checkpoint or restore to undo it, should that command die
/// while it holds the guest paused or frozen.
///
/// A command killed outright (SIGKILL, a crash trap, the OOM killer) cannot run its own undo,
/// and the guest must not wait for the next sparc command or the agent's lease: it runs again
/// within a second. The guardian is sparc itself (the hidden `guard` command), started in a
/// session of its own (a Ctrl-C or a closed terminal does not reach it) with the read end of a
/// pipe whose only writer is the command. The kernel closes that writer however the command
/// ends; the guardian then waits until the command is gone and runs the recovery the next
/// command would run (`recoverAbandoned`): it resumes QEMU, thaws the guest (a restore's
/// excluded processes ended first) and removes the partial bundle. After a command that ended
/// well it finds no marker and does nothing.
///
/// `$SPARC_GUARDIAN=off` starts none (the tests of the fallbacks behind it: the next command,
/// the lease).
public final class Guardian {
    /// The program to run as the guardian; nil (library users, tests) starts none.
    nonisolated(unsafe) public static var executable: String?

    private var writer: Int32
    private let pid: pid_t

    private init(writer: Int32, pid: pid_t) {
        self.writer = writer
        self.pid = pid
    }

    /// Starts a guardian for VM `name`, or returns nil when none can or should run (the
    /// command goes on: the next command and the lease remain).
    static func watch(vm name: String, connect: String? = nil) -> Guardian? {
        guard let executable, ProcessInfo.processInfo.environment["SPARC_GUARDIAN"] != "off" else { return nil }
        var fds: [Int32] = [-1, -1]
        guard sparc_pipe_cloexec(&fds) == 0 else { return nil }
        defer { close(fds[0]) }
        let argv = [executable, "guard", "--name", name, "--watch", String(getpid())] + (connect.map { ["--connect", $0] } ?? [])
        guard let pid = try? Subprocess.spawn(argv, stdin: fds[0], newSession: true)
        else {
            close(fds[1])
            return nil
        }
        return Guardian(writer: fds[1], pid: pid)
    }

    /// The command is done with the guest (its markers removed, or left on purpose for a
    /// later command): the guardian ends without looking.
    func release() {
        guard writer >= 0 else { return }
        var done: UInt8 = 1
        _ = write(writer, &done, 1)
        close(writer)
        writer = -1
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    deinit { release() }

    /// The guardian's own work (the `guard` command): waits for the watched command to end,
    /// then undoes what it left. Returns what it did, if anything.
    public static func run(vm name: String, watching command: pid_t, manager: VMManager) -> String? {
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        var byte: UInt8 = 0
        // One byte: the command released it. End of file without it: the command died.
        while true {
            let n = read(0, &byte, 1)
            if n == 1 { return nil }
            if n == 0 || (n < 0 && errno != EINTR) { break }
        }
        // Its descriptors close before it is gone: wait (bounded) until it no longer runs, so
        // that the recovery does not take it for a command still at work.
        for _ in 0..<500 where ProcessLiveness.isRunning(command) { usleep(2_000) }
        return manager.recoverAbandoned(name, by: "its guardian")
    }
}

/// Whether a process still runs (a zombie does not).
enum ProcessLiveness {
    /// The state letter and start time of `pid` (fields 3 and 22 of /proc/PID/stat).
    static func stat(_ pid: pid_t) -> (state: Character, startTime: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else {
            return nil
        }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let start = UInt64(fields[19]) else { return nil }
        return (state, start)
    }

    /// Runs and is not a zombie (nor dead) — when `startTime` is given, the same process.
    static func isRunning(_ pid: pid_t, startTime: UInt64? = nil) -> Bool {
        guard let s = stat(pid), s.state != "Z", s.state != "X" else { return false }
        return startTime.map { $0 == s.startTime } ?? true
    }
}

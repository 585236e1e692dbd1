#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif
import CSparcSupport

/// The outcome of a finished child process.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: Data
    /// The child's process id (gone by now).
    public var pid: pid_t = 0
    /// The child ran past its timeout and was killed with its session.
    public var timedOut = false
    /// Output past the limit was dropped.
    public var truncated = false
    /// The run was cancelled and the child killed with its session.
    public var cancelled = false
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    /// The last non-empty line of stderr, for one-line error messages.
    public var stderrSummary: String {
        stderrText.split(separator: "\n").map { $0.trimmed }
            .last { !$0.isEmpty } ?? "exit status \(status)"
    }
}

/// Runs programs with `posix_spawn`, capturing output without a shell in between.
public enum Subprocess {
    /// Finds an executable by name in `PATH` (or returns the path if it contains a slash).
    public static func which(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        for dir in (path ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Spawns `argv` and returns its pid; the caller owns the given file descriptors' lifetimes.
    /// `inherit` maps descriptor numbers in the child to descriptors of ours (QEMU's `-add-fd`).
    public static func spawn(
        _ argv: [String], stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
        environment: [String: String]? = nil, newSession: Bool = false, inherit: [Int32: Int32] = [:]
    ) throws -> pid_t {
        guard let exe = argv.first else { throw SparcError("empty command") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let devnull = "/dev/null"
        if let stdin { posix_spawn_file_actions_adddup2(&actions, stdin, 0) } else {
            posix_spawn_file_actions_addopen(&actions, 0, devnull, O_RDONLY, 0)
        }
        if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout, 1) } else {
            posix_spawn_file_actions_addopen(&actions, 1, devnull, O_WRONLY, 0)
        }
        if let stderr { posix_spawn_file_actions_adddup2(&actions, stderr, 2) } else {
            posix_spawn_file_actions_addopen(&actions, 2, devnull, O_WRONLY, 0)
        }
        // Standard streams are set up first; the inherited descriptors are moved out of the
        // way of their targets, so one dup2 cannot overwrite the source of another.
        var parked: [Int32] = []
        defer { parked.forEach { close($0) } }
        for (target, source) in inherit.sorted(by: { $0.key < $1.key }) {
            let high = fcntl(source, F_DUPFD_CLOEXEC, 256)
            guard high >= 0 else { throw SparcError.posix("cannot pass descriptor \(source)") }
            parked.append(high)
            posix_spawn_file_actions_adddup2(&actions, high, target)
        }
        // Nothing else of ours reaches the child, whatever was opened without O_CLOEXEC.
        _ = sparc_spawn_close_from(&actions, (inherit.keys.max() ?? 2) + 1)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= Subprocess.posixSpawnSetsid }
        posix_spawnattr_setflags(&attr, Int16(flags))
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc: Int32
        if exe.contains("/") {
            rc = posix_spawn(&pid, exe, &actions, &attr, &cArgs, &cEnv)
        } else {
            rc = posix_spawnp(&pid, exe, &actions, &attr, &cArgs, &cEnv)
        }
        if rc != 0 { throw SparcError.posix("cannot run", exe, errno: rc) }
        return pid
    }

    /// Waits for a child and returns its exit status (128+signal when killed).
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return exitStatus(status)
    }

    /// How a raw `waitpid` status reads: "killed by signal 9" or "exit status 1".
    public static func describe(_ status: Int32) -> String {
        let sig = status & 0x7f
        return sig == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(sig)"
    }

    /// Decodes a raw `waitpid` status into a shell-style exit status.
    public static func exitStatus(_ status: Int32) -> Int32 {
        let sig = status & 0x7f
        if sig == 0 { return (status >> 8) & 0xff }
        return 128 + sig
    }

    /// Runs `argv` to completion, feeding `input` and collecting stdout and stderr.
    ///
    /// With a `timeout` the child runs in a session of its own (as with `newSession`) and the
    /// whole session is killed when the time is up (`timedOut` says so). At most `outputLimit` bytes of each
    /// stream are kept; the rest is read and dropped so the child never blocks on a full pipe.
    /// Output stops being awaited a moment after the child exits, so a grandchild that kept
    /// the pipes open cannot hold the caller.
    public static func run(
        _ argv: [String], input: Data? = nil, environment: [String: String]? = nil,
        timeout: TimeInterval? = nil, outputLimit: Int = 256 << 20, newSession: Bool = false, cancel: Cancellation? = nil
    ) throws -> ProcessResult {
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        var inPipe: [Int32] = [-1, -1]
        guard Subprocess.makePipe(&outPipe) == 0 else { throw SparcError.posix("pipe") }
        guard Subprocess.makePipe(&errPipe) == 0 else {
            outPipe.forEach { close($0) }
            throw SparcError.posix("pipe")
        }
        if input != nil, Subprocess.makePipe(&inPipe) != 0 {
            (outPipe + errPipe).forEach { close($0) }
            throw SparcError.posix("pipe")
        }
        let pid: pid_t
        do {
            pid = try spawn(
                argv, stdin: input != nil ? inPipe[0] : nil, stdout: outPipe[1], stderr: errPipe[1],
                environment: environment, newSession: newSession || timeout != nil || cancel != nil)
        } catch {
            for fd in outPipe + errPipe + inPipe where fd >= 0 { close(fd) }
            throw error
        }
        close(outPipe[1])
        close(errPipe[1])
        if input != nil { close(inPipe[0]) }
        var collector = OutputCollector(
            pid: pid, outFD: outPipe[0], errFD: errPipe[0], input: input, inFD: input != nil ? inPipe[1] : -1,
            deadline: timeout.map { monotonicNow() + $0 }, limit: outputLimit, cancel: cancel)
        collector.run()
        close(outPipe[0])
        close(errPipe[0])
        let status = collector.exitStatus ?? wait(pid)
        return ProcessResult(
            status: status, stdout: collector.out, stderr: collector.err, pid: pid, timedOut: collector.timedOut,
            truncated: collector.truncated, cancelled: collector.cancelled)
    }

    /// Seconds on the monotonic clock.
    static func monotonicNow() -> TimeInterval {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return TimeInterval(ts.tv_sec) + TimeInterval(ts.tv_nsec) / 1e9
    }
}

/// Reads a child's stdout and stderr while writing its stdin, without deadlocking on full
/// pipes, and enforces the deadline and the output limit of `Subprocess.run`.
struct OutputCollector {
    let pid: pid_t
    let outFD: Int32
    let errFD: Int32
    var pending: Data
    var inFD: Int32
    var deadline: TimeInterval?
    let limit: Int
    var out = Data()
    var err = Data()
    var timedOut = false
    var truncated = false
    let cancel: Cancellation?
    var cancelled = false
    /// Set once the child has been reaped here.
    var exitStatus: Int32?
    /// How long output is still awaited after the child exited or was killed.
    static let grace: TimeInterval = 2

    init(pid: pid_t, outFD: Int32, errFD: Int32, input: Data?, inFD: Int32, deadline: TimeInterval?, limit: Int, cancel: Cancellation? = nil) {
        self.cancel = cancel
        self.pid = pid
        self.outFD = outFD
        self.errFD = errFD
        self.pending = input ?? Data()
        self.inFD = inFD
        self.deadline = deadline
        self.limit = limit
    }

    mutating func run() {
        if inFD >= 0 {
            _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
            if pending.isEmpty { closeInput() }
        }
        var open: Set<Int32> = [outFD, errFD]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var giveUpAt: TimeInterval?
        var lastReapCheck = Subprocess.monotonicNow()
        while !open.isEmpty || inFD >= 0 {
            let now = Subprocess.monotonicNow()
            if let giveUpAt, now >= giveUpAt { break }
            if let d = deadline, now >= d {
                timedOut = true
                deadline = nil
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                giveUpAt = now + Self.grace
            }
            if !cancelled, giveUpAt == nil, cancel?.isCancelled == true {
                cancelled = true
                deadline = nil
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                giveUpAt = now + Self.grace
            }
            var fds: [pollfd] = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            // Wake at least once a second to notice an exited child whose pipes a grandchild holds.
            let until = [deadline, giveUpAt].compactMap { $0 }.min().map { max(0, $0 - now) } ?? 1
            let n = poll(&fds, nfds_t(fds.count), Int32(min(until, cancel == nil ? 1 : 0.05) * 1000) + 1)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            // At least once a second (output or not): has the child exited?
            if exitStatus == nil, n == 0 || now - lastReapCheck >= 1 {
                lastReapCheck = now
                if reap() { giveUpAt = min(giveUpAt ?? .infinity, Subprocess.monotonicNow() + Self.grace) }
            }
            if n == 0 { continue }
            for p in fds where p.revents != 0 {
                if p.fd == inFD {
                    let w = pending.withUnsafeBytes { write(inFD, $0.baseAddress, $0.count) }
                    if w > 0 { pending.removeFirst(w) }
                    if w < 0 && errno != EAGAIN || pending.isEmpty { closeInput() }
                    continue
                }
                let r = read(p.fd, &buffer, buffer.count)
                if r > 0 {
                    keep(buffer, count: r, stdout: p.fd == outFD)
                } else if r == 0 || errno != EINTR && errno != EAGAIN {
                    open.remove(p.fd)
                }
            }
        }
        if inFD >= 0 { closeInput() }
    }

    private mutating func keep(_ bytes: [UInt8], count: Int, stdout: Bool) {
        let room = limit - (stdout ? out.count : err.count)
        if count > room { truncated = true }
        let n = max(0, min(count, room))
        if n == 0 { return }
        if stdout { out.append(bytes, count: n) } else { err.append(bytes, count: n) }
    }

    private mutating func closeInput() {
        close(inFD)
        inFD = -1
    }

    /// Reaps the child if it has exited.
    private mutating func reap() -> Bool {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return false }
        exitStatus = Subprocess.exitStatus(status)
        return true
    }
}

extension Subprocess {
    /// glibc's POSIX_SPAWN_SETSID, which Swift does not see without _GNU_SOURCE.
    public static let posixSpawnSetsid: Int32 = 0x80

    /// Creates a close-on-exec pipe atomically (pipe2 with O_CLOEXEC); returns 0 or -1.
    public static func makePipe(_ fds: inout [Int32]) -> Int32 {
        if fds.count < 2 { fds = [0, 0] }
        return fds.withUnsafeMutableBufferPointer { sparc_pipe_cloexec($0.baseAddress!) }
    }
}

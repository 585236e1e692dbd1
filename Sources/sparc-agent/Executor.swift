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

/// Runs operator commands in the guest on behalf of the host.
///
/// A small shell prologue moves the command into the guest cgroup before it execs,
/// so it is frozen and thawed with everything else. Output is relayed once and not kept.
enum Executor {
    static let outputLimit = 16 << 20

    static func run(_ request: ExecRequest, cgroup: String) throws -> ExecResult {
        guard !request.argv.isEmpty else { throw AgentFailure(.invalidArgument, "exec needs a command") }
        let join = "echo $$ > \(cgroup)/cgroup.procs 2>/dev/null; "
        if request.detach {
            let script = join + "setsid \"$@\" </dev/null >/dev/null 2>&1 & echo $!"
            let r = try Subprocess.run(["/bin/sh", "-c", script, "sparc-exec"] + request.argv)
            guard r.status == 0, let pid = Int32(r.stdoutText.trimmed) else {
                throw AgentFailure(.failed, "could not start \(request.argv[0]): \(r.stderrSummary)")
            }
            return ExecResult(status: nil, pid: pid)
        }
        let argv = ["/bin/sh", "-c", join + "exec \"$@\"", "sparc-exec"] + request.argv
        return try runAttached(argv, input: request.stdin ?? Data(), timeoutMs: request.timeoutMs)
    }

    static func runAttached(_ argv: [String], input: Data, timeoutMs: Int) throws -> ExecResult {
        var outP: [Int32] = [0, 0]
        var errP: [Int32] = [0, 0]
        var inP: [Int32] = [0, 0]
        guard Subprocess.makePipe(&outP) == 0, Subprocess.makePipe(&errP) == 0, Subprocess.makePipe(&inP) == 0 else {
            throw AgentFailure(.failed, "pipe: \(String(cString: strerror(errno)))")
        }
        let pid: pid_t
        do {
            pid = try Subprocess.spawn(argv, stdin: inP[0], stdout: outP[1], stderr: errP[1], newSession: true)
        } catch {
            (outP + errP + inP).forEach { close($0) }
            throw AgentFailure(.failed, "\(error)")
        }
        close(outP[1])
        close(errP[1])
        close(inP[0])
        _ = fcntl(inP[1], F_SETFL, fcntl(inP[1], F_GETFL) | O_NONBLOCK)
        var pending = input
        var inOpen = true
        if pending.isEmpty {
            close(inP[1])
            inOpen = false
        }
        var out = Data()
        var err = Data()
        var open: Set<Int32> = [outP[0], errP[0]]
        let deadline = timeoutMs > 0 ? Date().addingTimeInterval(Double(timeoutMs) / 1000) : nil
        var timedOut = false
        var buf = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inOpen { fds.append(pollfd(fd: inP[1], events: Int16(POLLOUT), revents: 0)) }
            var wait: Int32 = -1
            if let deadline {
                wait = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
                if wait == 0 && !timedOut {
                    timedOut = true
                    kill(-pid, SIGKILL)
                }
            }
            let rc = poll(&fds, nfds_t(fds.count), timedOut ? 1000 : wait)
            if rc < 0 && errno == EINTR { continue }
            if rc <= 0 {
                if timedOut { break }
                continue
            }
            for p in fds where p.revents != 0 {
                if inOpen && p.fd == inP[1] {
                    let n = pending.withUnsafeBytes { Glibc.write(inP[1], $0.baseAddress, $0.count) }
                    if n > 0 { pending.removeFirst(n) }
                    if pending.isEmpty || (n < 0 && errno != EAGAIN) {
                        close(inP[1])
                        inOpen = false
                    }
                    continue
                }
                let n = read(p.fd, &buf, buf.count)
                if n > 0 {
                    if p.fd == outP[0] {
                        if out.count < outputLimit { out.append(buf, count: n) }
                    } else if err.count < outputLimit {
                        err.append(buf, count: n)
                    }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.remove(p.fd)
                }
            }
        }
        if inOpen { close(inP[1]) }
        close(outP[0])
        close(errP[0])
        let status = Subprocess.wait(pid)
        return ExecResult(status: status, pid: pid, stdout: out, stderr: err, timedOut: timedOut)
    }
}

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

    /// Runs a command to its end in a session of its own (killed whole at the time limit),
    /// feeding its input and keeping at most `outputLimit` bytes of each output stream.
    static func runAttached(_ argv: [String], input: Data, timeoutMs: Int) throws -> ExecResult {
        let r: ProcessResult
        do {
            r = try Subprocess.run(
                argv, input: input, timeout: timeoutMs > 0 ? Double(timeoutMs) / 1000 : nil, outputLimit: outputLimit,
                newSession: true)
        } catch {
            throw AgentFailure(.failed, "\(error)")
        }
        return ExecResult(status: r.status, pid: r.pid, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut)
    }
}

import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Starts and ends QEMU processes that outlive the `sparc` command that started them.
public enum QEMUProcess {
    /// Finds QEMU in PATH or explains how to get it.
    public static func locateBinary(_ name: String = QEMUCommand.binaryName) throws -> String {
        guard let path = Subprocess.which(name) else {
            throw SparcError("QEMU not found: \(name) is not in PATH (install it: apt-get install qemu-system-x86)")
        }
        return path
    }

    public static func locateQemuImg() throws -> String {
        guard let path = Subprocess.which("qemu-img") else {
            throw SparcError("qemu-img not found in PATH (install it: apt-get install qemu-utils)")
        }
        return path
    }

    /// The version QEMU prints, e.g. "7.2.22".
    public static func version(binary: String) -> String {
        guard let r = try? Subprocess.run([binary, "--version"]), r.status == 0 else { return "unknown" }
        let words = r.stdoutText.split(separator: " ")
        if let i = words.firstIndex(of: "version"), i + 1 < words.count { return String(words[i + 1]) }
        return "unknown"
    }

    /// Spawns QEMU in its own session with stderr in `layout.errorLog`, then waits until
    /// its monitor answers. Throws with QEMU's own message if it exits first.
    /// `inherit` maps QEMU's descriptor numbers to ours (its disk fd sets).
    public static func launch(_ argv: [String], layout: RuntimeLayout, inherit: [Int32: Int32] = [:], timeout: TimeInterval = 20)
        throws -> (pid: pid_t, qmp: QMPClient)
    {
        unlink(layout.qmpSocket)
        let err = open(layout.errorLog, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard err >= 0 else { throw SparcError.posix("cannot create", layout.errorLog) }
        let pid: pid_t
        do {
            pid = try Subprocess.spawn(argv, stdout: err, stderr: err, newSession: true, inherit: inherit)
        } catch {
            close(err)
            throw error
        }
        close(err)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw SparcError("QEMU failed to start: \(lastError(layout) ?? "exit status \(Subprocess.exitStatus(status))")")
            }
            if FileSystem.exists(layout.qmpSocket), let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 10) {
                return (pid, qmp)
            }
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = Subprocess.wait(pid)
                throw SparcError("QEMU did not open its monitor within \(Int(timeout)) s")
            }
            usleep(20_000)
        }
    }

    /// The last line QEMU wrote to stderr, without its "qemu-system-x86_64: " prefix.
    public static func lastError(_ layout: RuntimeLayout) -> String? {
        guard let data = try? FileSystem.readFile(layout.errorLog) else { return nil }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.trimmed }.filter { !$0.isEmpty }
        guard var last = lines.last else { return nil }
        if let r = last.range(of: QEMUCommand.binaryName + ": ") { last = String(last[r.upperBound...]) }
        return last
    }

    /// Waits for a process to exit (it may not be our child), up to `timeout`. A zombie
    /// counts once its threads have let go of its files: the group leader turns zombie while
    /// the others still hold the disk images (and their locks).
    public static func waitForExit(_ pid: pid_t, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while FileSystem.processAlive(pid) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return true }
            if isZombie(pid), allThreadsGone(pid) { return true }
            if Date() > deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// True when a zombie's other threads have exited too (its files are released then).
    static func allThreadsGone(_ pid: pid_t) -> Bool {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return true }
        return tasks.allSatisfy { $0 == String(pid) }
    }

    public static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? FileSystem.readFile("/proc/\(pid)/stat") else { return false }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].trimmed.hasPrefix("Z")
    }

    /// True when `pid` is a QEMU process (guards against a recycled pid in a stale state file).
    public static func isQEMU(_ pid: pid_t) -> Bool {
        guard FileSystem.processAlive(pid), !isZombie(pid),
            let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        else { return false }
        return exe.contains("qemu-system")
    }
}

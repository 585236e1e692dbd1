import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// The Debian 12 guest (`make guest-debian`: systemd, journald, sshd, bash, the sparc-guest
/// package with its DKMS-built helper) under TCG, one boot for the class.
final class DebianTests: GuestTestCase {
    override class var vmName: String { "deb" }
    override class var startArguments: [String] { ["--guest", "debian", "--memory", "1024", "--agent-timeout", "240"] }

    /// Waits until systemd has finished booting and returns its state (running or degraded).
    @discardableResult
    func systemState(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        var state = ""
        for _ in 0..<240 {
            state = try sparc.run(["exec", "--name", vm, "--", "systemctl", "is-system-running"]).stdout.trimmed
            if state == "running" || state == "degraded" { return state }
            usleep(500_000)
        }
        XCTFail("systemd did not finish booting: \(state)", file: file, line: line)
        return state
    }

    func ttys() throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(try sparc.ok(["ttys", "--name", vm, "--json"]).utf8)) as! [[String: Any]]
    }

    func pid(of pattern: String) throws -> Int32? {
        Int32(try guest("pgrep -o -f '\(pattern)' || true"))
    }

    /// SPARC's experiment in a real SSH session: a secret is joined in bash on the session's
    /// pty and printed to it; excluding the session (and the in-guest ssh client, which stands
    /// for the remote machine) leaves no copy anywhere but the disk; after restore the session
    /// is gone and the system runs on.
    func testSecretInAnSSHSessionIsLeftOut() throws {
        let stateBefore = try systemState()
        try guest("systemd-run --quiet --unit=sparc-counter sh -c 'i=0; while :; do i=$((i+1)); echo $i > /run/counter; sleep 0.2; done'")

        // The ssh client runs in a terminal (sparc terminal's relay pty) and logs in over loopback.
        let terminal = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal", "--name", vm, "--json"]).utf8)) as! [String: Any]
        let clientTTY = terminal["tty"] as! String
        try sparc.ok(["terminal", "--name", vm, "--send", "ssh -tt root@localhost\\n"])
        var sessionTTY: String?
        for _ in 0..<120 where sessionTTY == nil {
            usleep(500_000)
            for t in try ttys() where (t["name"] as? String) != clientTTY && (t["kind"] as? String) == "pty" {
                let holders = (t["holders"] as? [Int]) ?? []
                let pids = (t["pids"] as? [Int]) ?? []
                if !holders.isEmpty && !pids.isEmpty { sessionTTY = t["name"] as? String }
            }
        }
        guard let sessionTTY else { return XCTFail("no SSH session appeared: \(try sparc.ok(["ttys", "--name", vm]))") }
        let ttyTable = try sparc.ok(["ttys", "--name", vm])
        XCTAssertTrue(ttyTable.split(separator: "\n").contains { $0.hasPrefix(sessionTTY) && $0.contains("sshd: root@\(sessionTTY)") }, ttyTable)

        // Typed in two halves, joined in bash, printed to the session's terminal.
        let first = Self.randomSecret("SSH").prefix(16)
        let second = Self.randomSecret("ssh").suffix(16)
        let secret = String(first + second)
        try sparc.ok(["terminal", "--name", vm, "--send", "A=\(first); B=\(second); S=\"$A$B\"; echo \"the secret is $S\"\\n"])
        sleep(2)
        let sessionBash = try XCTUnwrap(Int32(try guest("pgrep -t \(sessionTTY) -x bash")), "the session's login shell")
        let sessionSSHD = try XCTUnwrap(try pid(of: "sshd: root@\(sessionTTY)"), "the session's sshd")
        let listener = try XCTUnwrap(try pid(of: "sshd.*listener"))
        let journald = try XCTUnwrap(try pid(of: "systemd-journald"))

        let (channels, pids) = try standardChannels(fileDirectory: "/var/tmp")
        let all = [Channel(name: "SSH session: joined in bash, printed to sshd's pty", secret: secret)] + channels
        let targets = ["--exclude-tty", sessionTTY, "--exclude-tty", clientTTY] + pids.flatMap { ["--exclude-pid", String($0)] }
        let (_, bundles) = try effectivenessTable(all, targets: targets, tag: "debian")
        let excluded = Set(try BundleReader(path: bundles[2]).manifest.exclusion.processes.map(\.pid))
        XCTAssertTrue(excluded.contains(sessionBash) && excluded.contains(sessionSSHD), "\(excluded)")

        let restore = try sparc.run(["restore", bundles[2], "--name", vm, "--replace"])
        XCTAssertEqual(restore.status, 0, restore.stderr)
        let alive = try livePids()
        for p in excluded { XCTAssertFalse(alive.contains(p), "excluded pid \(p) runs on after restore") }
        for (what, p) in [("sshd", listener), ("journald", journald), ("systemd", 1)] {
            XCTAssertTrue(alive.contains(p), "\(what) (pid \(p)) must run on")
        }
        let count = Int(try guest("cat /run/counter")) ?? 0
        sleep(1)
        XCTAssertGreaterThan(Int(try guest("cat /run/counter")) ?? 0, count, "the counter unit runs on")
        XCTAssertEqual(try systemState(), stateBefore)
        XCTAssertEqual(try guest("systemctl is-active sshd"), "active")
        try assertNoKernelComplaint()
        XCTAssertFalse(try guest("journalctl -q -o cat --since '-5min' | grep -c 'status=11/SEGV' || true") != "0", "an excluded process ran on zeroed memory")
        try guest("systemctl stop sparc-counter")
    }

    /// systemd keeps managing its units across a freeze; freeze, collect, kill and thaw hold
    /// with hundreds of processes and threads.
    func testSystemdAndHundredsOfProcesses() throws {
        let stateBefore = try systemState()
        // 300 processes in a unit, and one process with 64 threads, both excluded; 100 bystanders.
        try guest("systemd-run --quiet --unit=sparc-many sh -c 'for i in $(seq 300); do sleep 10000 & done; wait'")
        let threads = try detach("exec sparc-probe threads 64")
        _ = try detach("for i in $(seq 100); do sleep 10000 & done; wait")
        for _ in 0..<120 where (Int(try guest("systemctl show -p TasksCurrent --value sparc-many")) ?? 0) < 301 { usleep(250_000) }
        let manyMain = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-many")))
        let listUnits = "systemctl list-units --no-legend --plain | awk '{print $1, $3, $4}' | sort"
        let units = try guest(listUnits)
        XCTAssertEqual(try guest("ls /proc/\(threads)/task | wc -l"), "65")
        let bundle = work + "/many.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(manyMain), "--exclude-pid", String(threads)])
        XCTAssertEqual(try guest(listUnits), units, "a thaw leaves systemd's view of its units as it was")
        let excluded = try BundleReader(path: bundle).manifest.exclusion.processes
        XCTAssertGreaterThanOrEqual(excluded.count, 302, out)
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let alive = try livePids()
        XCTAssertEqual(excluded.filter { alive.contains($0.pid) }.map(\.pid), [], "every excluded process is gone")
        XCTAssertGreaterThanOrEqual(Int(try guest("pgrep -c -x sleep")) ?? 0, 100, "the bystanders run on")
        // The excluded unit's processes were killed: that unit (and only it) has failed.
        XCTAssertEqual(try guest("systemctl --failed --no-legend --plain | awk '{print $1}'"), "sparc-many.service")
        try guest("pkill -x sleep; systemctl reset-failed sparc-many 2>/dev/null; true")
        XCTAssertEqual(try systemState(), stateBefore)
    }

    /// Without the kernel helper for the guest's kernel, --scope all refuses with the reason
    /// and --scope user still works.
    func testMissingHelperRefusesScopeAllOnly() throws {
        let ko = try guest("modinfo -n sparc_helper")
        XCTAssertTrue(ko.contains("/updates/dkms/"), ko)
        try guest("rmmod sparc_helper 2>/dev/null; mv \(ko) /root/helper.off; depmod")
        defer { _ = try? guest("mv /root/helper.off \(ko); depmod") }
        let victim = try detach("while :; do sleep 1000; done")
        try sparc.fails(
            ["checkpoint", "--name", vm, "-o", work + "/nohelper.sparc", "--exclude-pid", String(victim)],
            message: "not built for the guest's kernel")
        XCTAssertFalse(FileSystem.exists(work + "/nohelper.sparc"))
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/user.sparc", "--exclude-pid", String(victim), "--scope", "user"])
        try guest("kill \(victim)")
    }

    /// The VM's disk is its own: what the guest writes survives stop and start; a checkpoint
    /// still holds the disk of its moment and a restore takes the disk back to it.
    func testDiskKeepsItsWritesAcrossStopAndStart() throws {
        try systemState()
        try guest("echo before > /root/kept; sync")
        let bundle = work + "/disk.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        try guest("echo after > /root/kept; sync")
        try sparc.ok(["vm", "stop", "--name", vm])
        let disk = runtime + "-state/disks/\(vm).qcow2"
        let check = try Subprocess.run(["qemu-img", "check", disk])
        XCTAssertEqual(check.status, 0, "the VM's own disk is clean after stop: \(check.stdoutText)")
        try sparc.ok(["vm", "start", "--name", vm] + Self.startArguments)
        XCTAssertEqual(try guest("cat /root/kept"), "after", "a write survives stop and start")
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertEqual(try guest("cat /root/kept"), "before", "restore takes the disk back")
        try guest("rm -f /root/kept; sync")
    }
}

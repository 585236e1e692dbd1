import Foundation
import GuestQuery
import SnapshotModel
import SparcSupport
import XCTest

/// The Debian 12 guest (`make guest-debian`: systemd, journald, sshd, bash, the sparc-guest
/// package with its DKMS-built helper) under TCG, one boot for the class.
final class DebianTests: GuestTestCase {
    override class var vmName: String { "deb" }
    /// A free host port forwarded to the guest's sshd.
    static let sshPort: Int = freeTCPPort()
    override class var startArguments: [String] {
        ["--guest", "debian", "--memory", "1024", "--agent-timeout", "240", "--net", "user,hostfwd=tcp:127.0.0.1:\(sshPort)-:22"]
    }

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
        JSONOutput.list(try sparc.ok(["ttys", "--name", vm, "--json"]), "ttys")!
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
        let began = try guest("date +%s")
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
        XCTAssertTrue(try advances("/run/counter"), "the counter unit runs on")
        XCTAssertEqual(try systemState(), stateBefore)
        XCTAssertEqual(try guest("systemctl is-active sshd"), "active")
        try assertNoKernelComplaint()
        XCTAssertFalse(try guest("journalctl -q -o cat --since @\(began) | grep -c 'status=11/SEGV' || true") != "0", "an excluded process ran on zeroed memory")
        try guest("systemctl stop sparc-counter")
    }

    /// The agent dies (SIGKILL, as a crash would) while a checkpoint holds the guest frozen:
    /// systemd, frozen too, cannot run its stop hook, so the agent's keeper thaws the guest at
    /// once instead of leaving it frozen for good; systemd then restarts the agent, and the
    /// checkpoint, whose guest ran between collection and pause, writes no bundle.
    func testAgentKilledWhileTheGuestIsFrozenIsThawedByItsKeeper() throws {
        try systemState()
        try guest("rm -f /run/ticks; systemd-run --quiet --unit=sparc-tick sh -c 'while :; do date +%s.%N >> /run/ticks; sleep 0.2; done'")
        let victim = try detach("while :; do sleep 1000; done")
        let agent = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-agent")))
        XCTAssertEqual(try guest("pgrep -f 'sparc-agen[t] keeper \(agent)$' | wc -l"), "1", "the agent has its keeper")
        let cgroup = try guest("sed -n 's/^0:://p' /proc/\(agent)/cgroup")
        // The killer lives in the agent's own cgroup, which is never frozen.
        // It waits for the freeze (init's cgroup frozen), lets it hold for 3 s, then kills.
        let killer = try detach(
            "echo $$ > /sys/fs/cgroup\(cgroup)/cgroup.procs; while ! grep -q 'frozen 1' /sys/fs/cgroup/init.scope/cgroup.events; do sleep 0.2; done; sleep 3; date +%s.%N > /run/killed-at; kill -9 \(agent)"
        )
        defer { _ = try? guest("kill \(killer) 2>/dev/null; true") }
        var killerCgroup = ""
        for _ in 0..<20 where killerCgroup != cgroup {
            killerCgroup = try guest("sed -n 's/^0:://p' /proc/\(killer)/cgroup")
            usleep(100_000)
        }
        XCTAssertEqual(killerCgroup, cgroup, "the killer runs in the agent's own cgroup")
        let out = work + "/agent-killed.sparc"
        let r = try sparc.run(
            ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(victim)],
            environment: ["SPARC_FAULT": "checkpoint-after-collect:stall=25", "SPARC_FREEZE_LEASE": "120"])
        XCTAssertNotEqual(r.status, 0, "a checkpoint whose guest ran between collection and pause fails: \(r.stdout)")
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
        XCTAssertFalse(FileSystem.exists(out), "no bundle")
        try systemState()
        XCTAssertNotEqual(try guest("systemctl show -p MainPID --value sparc-agent"), String(agent), "systemd restarted the agent")
        // The ticks stopped at the freeze and went on within seconds of the kill, not after the 120 s lease.
        let killedAt = try XCTUnwrap(Double(try guest("cat /run/killed-at")))
        let ticks = try guest("cat /run/ticks").split(separator: "\n").compactMap { Double($0) }
        let resumed = try XCTUnwrap(ticks.first { $0 > killedAt }, "ticks after the kill")
        XCTAssertLessThan(resumed - killedAt, 5, "the keeper thawed the guest \(resumed - killedAt) s after the agent died")
        XCTAssertTrue(zip(ticks, ticks.dropFirst()).contains { $1 - $0 > 2.5 }, "the guest was frozen (3 s) before the kill")
        XCTAssertTrue(try guest("journalctl -q -o cat -u sparc-agent | grep -c 'ended with the guest frozen' || true") != "0")
        try guest("systemctl stop sparc-tick; kill \(victim); rm -f /run/ticks /run/killed-at")
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
        // The agent reports each process's unit; the unit is left out by a config rule naming it.
        let listed = try XCTUnwrap(JSONOutput.list(try sparc.ok(["ps", "--name", vm, "--json"]), "processes"))
        XCTAssertEqual(listed.first { ($0["pid"] as? Int).map(Int32.init) == manyMain }?["unit"] as? String, "sparc-many.service")
        XCTAssertTrue(listed.contains { ($0["command"] as? String)?.hasPrefix("sshd") == true && $0["unit"] as? String == "ssh.service" }, "\(listed)")
        let config = work + "/units.toml"
        try Data("[exclude]\nunits = [\"sparc-many.service\"]\n".utf8).write(to: URL(fileURLWithPath: config))
        let bundle = work + "/many.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(threads)], environment: ["SPARC_CONFIG": config])
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
        // Left as found: the module back and loaded by the agent as at its start (with the
        // terminal offsets from BTF; its write ledger records from then on).
        defer {
            _ = try? guest("mv /root/helper.off \(ko); depmod")
            reloadKernelHelperThroughTheAgent()
        }
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
        let disk = runtime + "-state/disks/\(vm).qcow2"
        // Baseline: QEMU quit under a mounted file system leaves a journal to recover at the next boot.
        try sparc.ok(["vm", "stop", "--name", vm, "--force"])
        try sparc.ok(["vm", "start", "--name", vm] + Self.startArguments)
        XCTAssertTrue(try guest("dmesg").contains("EXT4-fs (vda1): recovery complete"), "a forced stop needs journal recovery")
        XCTAssertEqual(try guest("cat /root/kept"), "after", "a write survives stop and start")
        try systemState()
        // A stop shuts the guest down: services stop, the file system unmounts clean.
        let stop = try sparc.ok(["vm", "stop", "--name", vm])
        XCTAssertTrue(stop.contains("shut down"), stop)
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("guest shut down (systemctl poweroff"))
        let check = try Subprocess.run(["qemu-img", "check", disk])
        XCTAssertEqual(check.status, 0, "the VM's own disk is clean after stop: \(check.stdoutText)")
        try sparc.ok(["vm", "start", "--name", vm] + Self.startArguments)
        let dmesg = try guest("dmesg")
        XCTAssertTrue(dmesg.contains("EXT4-fs (vda1): mounted"), dmesg)
        XCTAssertFalse(dmesg.contains("recovery"), "no journal recovery after a clean stop: \(dmesg)")
        XCTAssertEqual(try guest("cat /root/kept"), "after", "a write survives stop and start")
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertEqual(try guest("cat /root/kept"), "before", "restore takes the disk back")
        try guest("rm -f /root/kept; sync")
    }

    /// The disk boots itself (GRUB and the guest's own kernel): its bundles need no kernel file
    /// of the host's, so they restore after the host's copies are gone.
    func testDiskBootedGuestRestoresWithoutHostKernelFiles() throws {
        let stateBefore = try systemState()
        XCTAssertTrue(try guest("cat /proc/cmdline").hasPrefix("BOOT_IMAGE=/vmlinuz"), "booted by GRUB from its own disk")
        let bundle = work + "/ownkernel.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let manifest = try BundleReader(path: bundle).manifest
        XCTAssertNil(manifest.machine.kernel)
        XCTAssertNil(manifest.machine.initrd)
        // The host's kernel files: the image's copies and anything in sparc's boot store.
        let image = ProcessInfo.processInfo.environment["SPARC_DEBIAN_GUEST_DIR"] ?? FileSystem.absolute("build/guest-debian")
        let moved = work + "/moved-boot"
        try FileSystem.makeDirectories(moved)
        var away: [(String, String)] = []
        defer { for (from, to) in away { rename(to, from) } }
        for f in [image + "/vmlinuz", image + "/initrd.img"] + ((try? FileManager.default.contentsOfDirectory(atPath: runtime + "-state/boot")) ?? []).map({ runtime + "-state/boot/" + $0 }) {
            let to = moved + "/" + Path.base(of: f)
            if rename(f, to) == 0 { away.append((f, to)) }
        }
        XCTAssertGreaterThanOrEqual(away.count, 2)
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertEqual(try guest("cat /etc/hostname"), "sparc-debian")
        XCTAssertEqual(try systemState(), stateBefore)
    }

    /// ssh from the host into the guest through `--net user`'s forwarded port.
    func sshFromHost(_ command: String) throws -> ProcessResult {
        let key = (ProcessInfo.processInfo.environment["SPARC_DEBIAN_GUEST_DIR"] ?? FileSystem.absolute("build/guest-debian")) + "/ssh-key"
        return try Subprocess.run(
            [
                "timeout", "60", "ssh", "-i", key, "-p", String(Self.sshPort), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command,
            ])
    }

    /// The guest's network works through QEMU's user networking: the host reaches its sshd
    /// through a forwarded port, before a checkpoint and again after a restore.
    func testHostReachesTheGuestOverSSHBeforeAndAfterRestore() throws {
        try systemState()
        var before = try sshFromHost("cat /etc/hostname")
        for _ in 0..<60 where before.status != 0 {
            sleep(1)  // DHCP may still be answering
            before = try sshFromHost("cat /etc/hostname")
        }
        XCTAssertEqual(before.status, 0, before.stderrText)
        XCTAssertEqual(before.stdoutText.trimmed, "sparc-debian")
        XCTAssertTrue(try guest("ip -4 -o addr show").contains("10.0.2.15/"), "the card got its address by DHCP")
        let bundle = work + "/net.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        XCTAssertEqual(try BundleReader(path: bundle).manifest.machine.network?.forwards, ["tcp:127.0.0.1:\(Self.sshPort)-:22"])
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let after = try sshFromHost("cat /etc/hostname; systemctl is-active sshd")
        XCTAssertEqual(after.status, 0, "ssh into the restored guest: \(after.stderrText)")
        XCTAssertEqual(after.stdoutText.split(separator: "\n").map(String.init), ["sparc-debian", "active"])
        try sparc.fails(["vm", "start", "--name", "badnet", "--guest", "debian", "--net", "user,hostfwd=tcp::99999-:22"], message: "--net must be")
    }

    /// A restored guest wakes at the checkpoint's time; the agent steps its clock and RTC to
    /// the host's before it runs on, and the history records the step.
    func testRestoreSetsTheGuestClockToTheHosts() throws {
        try systemState()
        let bundle = work + "/clock.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        sleep(12)
        let out = try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        // The step proves the guest was behind (by about the 12 s waited) before the agent set it.
        let step = out.range(of: #"forward ([0-9.]+) s"#, options: .regularExpression).map { Double(out[$0].split(separator: " ")[1]) ?? 0 }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(step, out), 10, out)
        // The guest's clock read between two readings of the host's: within that bracket (and a
        // second for the RTC's whole seconds), however long the reading took.
        var hostBefore = Date().timeIntervalSince1970
        let guestNow = Double(try guest("date +%s.%N")) ?? 0
        var hostAfter = Date().timeIntervalSince1970
        XCTAssertTrue((hostBefore - 1)...(hostAfter + 1) ~= guestNow, "guest clock \(guestNow) set to the host's (\(hostBefore)…\(hostAfter))")
        hostBefore = Date().timeIntervalSince1970
        let rtc = Double(try guest("cat /sys/class/rtc/rtc0/since_epoch")) ?? 0
        hostAfter = Date().timeIntervalSince1970
        XCTAssertTrue((hostBefore - 2)...(hostAfter + 1) ~= rtc, "guest RTC \(rtc) set to the host's (\(hostBefore)…\(hostAfter))")
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("guest clock stepped forward"))
    }

    /// An excluded systemd service is killed before any of its threads runs on its zeroed
    /// memory. The baseline (--no-kill lets it run) shows the journal would tell.
    func testExcludedServiceIsKilledBeforeItRuns() throws {
        try systemState()
        // Its own copy of bash (on disk) and a builtin sleep: when it runs on zeroed memory it harms
        // no page cache page another process uses.
        func service(_ unit: String) throws -> Int32 {
            try guest(
                "cp /usr/bin/bash /var/tmp/\(unit)-bash; rm -f /run/\(unit).fifo; mkfifo /run/\(unit).fifo; systemd-run --quiet --unit=\(unit) /var/tmp/\(unit)-bash -c 'S=$(head -c 16 /dev/urandom | od -An -tx1); exec 3<>/run/\(unit).fifo; while :; do read -t 0.05 -u 3; done'"
            )
            var main: Int32 = 0
            for _ in 0..<40 where main == 0 {
                main = Int32(try guest("systemctl show -p MainPID --value \(unit)")) ?? 0
                if main == 0 { usleep(250_000) }
            }
            return main
        }
        func outcome(_ unit: String) throws -> String {
            for _ in 0..<40 {
                let r = try guest("systemctl show -p ExecMainCode,ExecMainStatus --value \(unit) | paste -sd/")
                if r != "0/0" { return r }
                usleep(250_000)
            }
            return "still running"
        }
        let bundle = work + "/service.sparc"
        // Baseline: the service left to run on its zeroed memory dies of it (CLD_KILLED=2 or CLD_DUMPED=3, not by SIGKILL).
        let victim = try service("sparc-zeroed")
        let clean = work + "/service-clean.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", clean])
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(victim)])
        try sparc.ok(["restore", bundle, "--name", vm, "--replace", "--no-kill"])
        let baseline = try outcome("sparc-zeroed")
        XCTAssertNotEqual(baseline, "2/9", "with --no-kill the zeroed service ran: \(baseline)")
        XCTAssertNotEqual(baseline, "still running")
        // Pages of shared libraries that only it had touched were zeroed and outlive it in the page
        // cache (--no-kill's hazard; dropping caches misses any another process maps by then): the
        // guest goes back to the checkpoint taken before, whole.
        try sparc.ok(["restore", clean, "--name", vm, "--replace", "--allow-rollback"])
        try guest("systemctl stop sparc-zeroed 2>/dev/null; systemctl reset-failed sparc-zeroed 2>/dev/null; true")

        let excluded = try service("sparc-excluded")
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle + "2", "--exclude-pid", String(excluded)])
        // Its program is a file only it runs: the code is the file's own contents and stays (nothing to evict).
        XCTAssertFalse(try BundleReader(path: bundle + "2").manifest.exclusion.evictFiles.contains { $0.unescaped.hasSuffix("-bash") })
        try sparc.ok(["restore", bundle + "2", "--name", vm, "--replace"])
        XCTAssertEqual(try outcome("sparc-excluded"), "2/9", "killed by SIGKILL, never a fault of its own")
        let journal = try guest("journalctl -q -o cat -u sparc-excluded.service | grep -E 'status=[0-9]+/(SEGV|BUS|ILL|ABRT|FPE|TRAP)|dumped' || true")
        XCTAssertEqual(journal, "", "the excluded service ran on zeroed memory")
        XCTAssertEqual(try guest("dmesg | grep -c 'bash\\[\(excluded)\\].*segfault' || true"), "0")
        try guest("systemctl reset-failed sparc-excluded 2>/dev/null; rm -f /var/tmp/sparc-*-bash /run/sparc-*.fifo")
    }

    /// What sshd logs about a login attempt is kept by journald (another process's memory and a
    /// file, which exclusion rightly keeps); search names journald and its journal file as owners.
    func testJournaldCopiesAreAttributedToJournald() throws {
        try systemState()
        let secret = Self.randomSecret("user")
        _ = try guest("ssh -o BatchMode=yes -o ConnectTimeout=5 \(secret)@localhost true 2>/dev/null; journalctl --sync; true")
        XCTAssertTrue(try guest("journalctl -q -o cat -u ssh.service | grep -c \(secret) || true") != "0", "sshd logged the name")
        let bundle = work + "/journal.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let json = try sparc.ok(["search", secret, bundle, "--json"])
        let hits = try XCTUnwrap(JSONOutput.list(json, "hits"))
        let owners = hits.compactMap { $0["owner"] as? [String: Any] }
        XCTAssertTrue(owners.contains { ($0["command"] as? String) == "systemd-journal" || ($0["command"] as? String) == "systemd-journald" }, json)
        XCTAssertTrue(owners.contains { (($0["mapping"] as? String) ?? "").contains("/journal/") }, "the journal file: \(json)")
        let text = try sparc.ok(["search", secret, bundle])
        XCTAssertTrue(text.contains("systemd-journal"), text)
    }

    /// The credential gate on a systemd guest with sshd: a key assembled in a process is
    /// refused with its pid; the guest's own SSH host keys (in the page cache once sshd read
    /// them) are accepted through the VM's allow-list by fingerprint; sshd's constants (a
    /// dummy hash, key headers) are no findings; the checkpoint that excludes the holder passes.
    func testCredentialGateOnTheDebianGuest() throws {
        try systemState()
        // sshd reads its host keys for every connection.
        _ = try guest("ssh -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no nobody@localhost true 2>/dev/null; true")
        let holder = try assembled("aws", seed: 777)
        let refused = work + "/gate-refused.sparc"
        let gate = try sparc.run(["checkpoint", "--name", vm, "-o", refused, "--refuse-secrets", "--json"])
        XCTAssertEqual(gate.status, 1, gate.stderr + gate.stdout)
        XCTAssertTrue(gate.stderr.contains("pid \(holder) (sparc-probe)") && gate.stderr.contains("--exclude-pid \(holder)"), gate.stderr)
        XCTAssertFalse(FileSystem.exists(refused))
        let output = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(gate.stdout.utf8)) as? [String: Any])
        let findings = ((output["scan"] as? [String: Any])?["scan"] as? [String: Any])?["findings"] as? [[String: Any]] ?? []
        func owner(_ f: [String: Any]) -> [String: Any] { f["owner"] as? [String: Any] ?? [:] }
        func rule(_ f: [String: Any]) -> String { (f["rule"] as? [String: Any])?["id"] as? String ?? "" }
        XCTAssertEqual(findings.filter { owner($0)["pid"] as? Int == Int(holder) }.map(rule), ["aws_access_key_id"])
        let hostKeys = findings.filter { rule($0) == "openssh_private_key" && owner($0)["pid"] == nil }
        XCTAssertGreaterThanOrEqual(hostKeys.count, 1, "sshd's host keys in the page cache: \(findings)")
        let others = findings.filter { owner($0)["pid"] as? Int != Int(holder) && !(rule($0) == "openssh_private_key" && owner($0)["pid"] == nil) }
        XCTAssertEqual(others.count, 0, "nothing else (sshd's constants are not secrets): \(others)")

        // The VM's own allow-list accepts exactly those keys.
        let allowList = runtime + "-state/scan-allow/" + vm
        try FileSystem.makeDirectories(Path.directory(of: allowList))
        let lines = ["# the guest's SSH host keys"] + hostKeys.compactMap { $0["fingerprint"] as? String }
        try (lines.joined(separator: "\n") + "\n").write(toFile: allowList, atomically: true, encoding: .utf8)
        let passed = work + "/gate-passed.sparc"
        let ok = try sparc.run(["checkpoint", "--name", vm, "-o", passed, "--refuse-secrets", "--exclude-pid", String(holder)])
        XCTAssertEqual(ok.status, 0, ok.stderr + ok.stdout)
        XCTAssertTrue(ok.stdout.contains("no credentials found") && ok.stdout.contains("allowed)"), ok.stdout)
        try? FileManager.default.removeItem(atPath: allowList)
        _ = try? guest("kill \(holder)")
    }

    /// Pages of an excluded process that the guest swapped out (to a swap file, then to a swap
    /// partition) leave no copy in the bundle, its disk state included; the baseline shows the
    /// secret in the swap area on the disk first.
    func testSwappedPagesOfExcludedProcessesAreLeftOut() throws {
        let stateBefore = try systemState()
        let areas = [
            ("swap file", "/var/swapfile", "dd if=/dev/zero of=/var/swapfile bs=1M count=128 status=none && chmod 600 /var/swapfile && mkswap -q /var/swapfile"),
            ("swap partition", "/dev/vda2", "mkswap -q /dev/vda2"),
        ]
        for (what, area, make) in areas {
            try guest("\(make) && swapon \(area)")
            defer { _ = try? guest("swapoff \(area); rm -f /var/swapfile") }
            // The secret lives in a bash variable only (made in the guest, read back once); bash waits in a builtin, no forks.
            let unit = "sparc-swapped-\(area.hasPrefix("/dev") ? "part" : "file")"
            try guest(
                "rm -f /run/\(unit).fifo /run/\(unit).wait; mkfifo /run/\(unit).fifo /run/\(unit).wait; systemd-run --quiet --unit=\(unit) bash -c 'S=\(Self.generate); printf %s \"$S\" > /run/\(unit).fifo; exec 3<>/run/\(unit).wait; while :; do read -t 1000 -u 3; done'"
            )
            let secret = try readFifo("/run/\(unit).fifo")
            XCTAssertEqual(secret.count, 32)
            let pid = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value \(unit)")))
            // Reclaim the unit's memory: its anonymous pages go to swap.
            try guest("echo 64M > /sys/fs/cgroup/system.slice/\(unit).service/memory.reclaim 2>/dev/null; sync; true")
            let swapped = Int(try guest("awk '/VmSwap/ {print $2}' /proc/\(pid)/status")) ?? 0
            XCTAssertGreaterThan(swapped, 0, "\(what): the process has pages in swap")

            func hits(_ bundle: String) throws -> [String: Int] {
                let json = try sparc.run(["search", secret, bundle, "--json"]).stdout
                let found = JSONOutput.list(json, "hits") ?? []
                return Dictionary(grouping: found.compactMap { ($0["file"] as? String).map { Path.base(of: $0) } }, by: { $0 }).mapValues(\.count)
            }
            let baseline = work + "/swap-\(unit)-base.sparc"
            try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
            let before = try hits(baseline)
            XCTAssertGreaterThan(before["disk.qcow2"] ?? 0, 0, "\(what): baseline holds the secret in swap on the disk: \(before)")

            let excluded = work + "/swap-\(unit)-excluded.sparc"
            let out = try sparc.ok(["checkpoint", "--name", vm, "-o", excluded, "--exclude-pid", String(pid)])
            XCTAssertEqual(try hits(excluded), [:], "\(what): no copy in any file, disk included: \(out)")
            let manifest = try BundleReader(path: excluded).manifest
            XCTAssertGreaterThan(manifest.exclusion.bytesByKind["swap"] ?? 0, 0)
            try sparc.ok(["verify", excluded])
            // Restored, the owner is killed before it could read its zeroed slots; the swap area stays sound.
            try sparc.ok(["restore", excluded, "--name", vm, "--replace"])
            XCTAssertFalse(try livePids().contains(pid))
            XCTAssertEqual(try guest("swapoff \(area) && echo off"), "off")
            try guest("systemctl reset-failed \(unit) 2>/dev/null; rm -f /run/\(unit).fifo /run/\(unit).wait")
        }
        XCTAssertEqual(try systemState(), stateBefore)
        try assertNoKernelComplaint()
    }

    /// On systemd, as the reviewers found it: a session (the child of a service's main process,
    /// as sshd's sessions share ssh.service's cgroup without logind) writes its secret into a FIFO and a
    /// unix socket that bystander services hold, its senders exit, and three bystanders live in
    /// its cgroup (the two readers and another user's sleeper, none started by it). The baseline
    /// holds the queued copies; excluding the session leaves none in any file; the restore ends
    /// the session only, and the readers find a clean end (no zeros, no secret).
    func testQueuesAndCgroupBystandersOnSystemd() throws {
        try systemState()
        try guest("rm -rf /run/dq; mkdir /run/dq; mkfifo /run/dq/fifo")
        let places = [("fifo", "/run/dq/fifo"), ("unix", "/run/dq/unix")]
        for (i, (kind, place)) in places.enumerated() {
            try guest("systemd-run --quiet --unit=sparc-dq-reader\(i) sparc-probe recv-late \(kind) \(place) /run/dq/out-\(i)")
        }
        try guest("for i in 0 1; do while [ ! -e /run/dq/out-$i.ready ]; do sleep 0.1; done; done")
        // The service's main process stands for sshd's listener; the session is its child.
        try guest(
            "cat > /run/dq/session.sh <<'EOF'\necho $$ > /run/dq/session-pid; S=\(Self.generate); printf %s \"$S\" > /run/dq/secret\n"
                + "printf %s \"$S\" > /run/dq/fifo; printf %s \"$S\" | sparc-probe send-close unix /run/dq/unix exit\n"
                + "echo sent > /run/dq/sent; exec sleep 100011\nEOF\n"
                + "systemd-run --quiet --unit=sparc-dq-session bash -c 'bash /run/dq/session.sh & exec sleep 100013'")
        try guest("while [ ! -e /run/dq/sent ]; do sleep 0.1; done")
        let secret = try guest("cat /run/dq/secret; rm /run/dq/secret")
        XCTAssertEqual(secret.count, 32)
        let session = try XCTUnwrap(Int32(try guest("cat /run/dq/session-pid")))
        let readers = try (0..<places.count).map { try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-dq-reader\($0)"))) }
        let sleeper = try XCTUnwrap(Int32(try guest("setsid -f setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 100012 </dev/null >/dev/null 2>&1; sleep 0.2; pgrep -u nobody -f 'sleep 100012'")))
        let cgroup = "/sys/fs/cgroup/system.slice/sparc-dq-session.service/cgroup.procs"
        try guest("for p in \((readers + [sleeper]).map(String.init).joined(separator: " ")); do echo $p > \(cgroup); done")
        let members = Set(try guest("cat \(cgroup)").split(separator: "\n").compactMap { Int32($0) })
        XCTAssertTrue(Set(readers + [sleeper, session]).isSubset(of: members), "the bystanders share the session's cgroup: \(members)")

        let baseline = work + "/dq-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        let before = try SecretScan.hits(secret, inBundle: baseline)["memory.img"] ?? 0
        XCTAssertGreaterThanOrEqual(before, places.count, "the baseline holds the queued copies")
        let bundle = work + "/dq.sparc"
        let said = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(session)])
        let after = try SecretScan.hits(secret, inBundle: bundle, disk: true).values.reduce(0, +)
        XCTAssertEqual(after, 0, "no copy in any file: \(said)")
        print("effectiveness: queues others hold on systemd: baseline \(before) hit(s), excluded \(after)")
        let excluded = Set(try BundleReader(path: bundle).manifest.exclusion.processes.map(\.pid))
        XCTAssertTrue(excluded.isDisjoint(with: readers + [sleeper]), "no bystander excluded for its cgroup: \(excluded)")

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let alive = try livePids()
        XCTAssertFalse(alive.contains(session), "the session was ended")
        XCTAssertTrue(Set(readers + [sleeper]).isSubset(of: alive), "every bystander lives on")
        try guest("for p in \(readers.map(String.init).joined(separator: " ")); do kill -USR1 $p; done; for i in 0 1; do n=0; while ! grep -q '^END' /run/dq/out-$i 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; done")
        for i in places.indices {
            XCTAssertFalse(try guest("od -c /run/dq/out-\(i)").contains("\\0"), "reader \(places[i]) read no zeros")
            XCTAssertFalse(try guest("cat /run/dq/out-\(i)").contains(secret), "reader \(places[i]) did not read the secret")
            XCTAssertTrue(["END eof", "END again", "END reset"].contains(try guest("tail -n 1 /run/dq/out-\(i)")), "reader \(places[i]) found a clean end")
        }
        try guest("kill \(sleeper); systemctl stop sparc-dq-reader0 sparc-dq-reader1 sparc-dq-session 2>/dev/null; true")
        try assertNoKernelComplaint()
    }

    /// The servers an excluded session talked to keep what it gave them: a tmux server another
    /// session started (attached to and typed into), journald (a message logged with logger,
    /// which exits at once) and a transient unit (systemd-run) with the secret in its command
    /// line. Each is named as a possible copy with what to add; --strict refuses; following the
    /// advice leaves the tmux server's and the unit's copies out too.
    func testServersTheExcludedSessionTalkedToAreNamed() throws {
        try systemState()
        try guest("tmux kill-server 2>/dev/null; tmux new-session -d -s shared 'exec bash --norc'")
        let server = try XCTUnwrap(Int32(try guest("tmux display -p -t shared '#{pid}'")))
        try guest(
            """
            rm -f /run/sess.*; mkfifo /run/sess.cmd; cat > /run/sess.sh <<'EOF'
            S=SESS$(tr -dc A-Za-z0-9 </dev/urandom | head -c 28)
            printf %s "$S" > /run/sess.secret
            exec 3<>/run/sess.cmd
            tmux -C attach -t shared <&3 >/dev/null 2>&1 &
            printf 'send-keys -t shared ": %s" Enter\n' "$S" >&3
            logger -t sparc-test "$S"
            systemd-run --quiet bash -c ": $S; while :; do sleep 100008; done"
            echo ready > /run/sess.ready
            while :; do sleep 1000; done
            EOF
            systemd-run --quiet --unit=sparc-session bash /run/sess.sh; while [ ! -e /run/sess.ready ]; do sleep 0.2; done
            """)
        // The secret never passes the agent's channel (host-to-guest buffers keep it): the
        // pane is checked against the file the session wrote, before it is read and removed.
        try guest("i=0; until tmux capture-pane -p -t shared | grep -q -F -f /run/sess.secret || [ $i -gt 100 ]; do sleep 0.2; i=$((i+1)); done")
        let secret = try guest("cat /run/sess.secret; rm /run/sess.secret")
        XCTAssertEqual(secret.count, 32)
        let session = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-session")))
        let unitPid = try XCTUnwrap(Int32(try guest("pgrep -f '100008; done' | head -1")))

        let baseline = work + "/talk-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        let owners = try sparc.run(["search", secret, baseline]).stdout
        XCTAssertTrue(owners.contains("tmux"), "the baseline holds the secret in the tmux server: \(owners)")

        let named = work + "/talk-named.sparc"
        let said = try sparc.ok(["checkpoint", "--name", vm, "-o", named, "--exclude-pid", String(session)])
        XCTAssertTrue(said.contains("POSSIBLE COPY: pid \(server) (tmux"), said)
        XCTAssertTrue(said.contains("--exclude-pid \(server)"), said)
        XCTAssertTrue(said.contains("journald"), said)
        XCTAssertTrue(said.contains("transient unit run-"), said)
        XCTAssertTrue(said.contains("--exclude-pid \(unitPid)"), said)
        try sparc.fails(
            ["checkpoint", "--name", vm, "-o", work + "/talk-strict.sparc", "--exclude-pid", String(session), "--strict"], message: "--strict")
        XCTAssertFalse(FileSystem.exists(work + "/talk-strict.sparc"), "--strict left no bundle")

        let advised = work + "/talk-advised.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", advised, "--exclude-pid", String(session), "--exclude-pid", String(server), "--exclude-pid", String(unitPid)])
        let left = try sparc.run(["search", secret, advised]).stdout
        // Copies stay only where they were named and not excluded (journald, PID 1): no hit
        // is owned by the tmux server, its pane's shell or the transient unit's bash.
        let leftOwners = left.split(separator: "\n").compactMap { hit -> Substring? in
            guard let open = hit.range(of: " ascii [") ?? hit.range(of: " utf16le ["), let close = hit.range(of: "]  ", range: open.upperBound..<hit.endIndex)
            else { return nil }
            return hit[open.upperBound..<close.lowerBound]
        }
        XCTAssertFalse(leftOwners.contains { $0.contains("tmux") || $0.contains("bash") }, "no copy in the tmux server, its pane or the unit: \(leftOwners)")
        print("effectiveness: servers the excluded session talked to: \(try SecretScan.hits(secret, inBundle: baseline).values.reduce(0, +)) hit(s) in the baseline, \(leftOwners.count) after excluding the session and the named processes (owners: \(Set(leftOwners.map { $0.split(separator: " ").prefix(3).joined(separator: " ") }).sorted()))")
        try guest("tmux kill-server 2>/dev/null; systemctl stop sparc-session; true")
    }

    /// A shell loop that wakes every second, swapped out and back in again and again, leaves
    /// copies of its secret in slots its page tables no longer point to (freed, or held by the
    /// swap cache). Excluded, none of them reaches the bundle's disk state: the baseline
    /// (--save-free-memory) shows them first. A bystander swapped out beside it finds its memory
    /// intact after the restore, also when the guest drops its clean pages and reads them back
    /// from swap, and swapoff reads every slot still in use.
    func testSwapSlotsTheGuestNoLongerUsesAreZeroed() throws {
        let stateBefore = try systemState()
        try guest("mkswap -q /dev/vda2 && swapon /dev/vda2")
        defer { _ = try? guest("swapoff /dev/vda2 2>/dev/null; true") }
        try guest(
            "rm -f /run/loop.fifo /run/loop.count /run/swap-bystander.state; mkfifo /run/loop.fifo; systemd-run --quiet --unit=sparc-loop bash -c 'S=LOOP\(Self.generate); printf %s \"$S\" > /run/loop.fifo; i=0; while :; do T=\"$S$i\"; i=$((i+1)); echo $i > /run/loop.count; sleep 1; done'"
        )
        let secret = try readFifo("/run/loop.fifo")
        XCTAssertEqual(secret.count, 36)
        try guest(
            "systemd-run --quiet --unit=sparc-swap-bystander bash -c 'B=$(head -c 300000 /dev/urandom | base64 -w0); S=$(printf %s \"$B\" | md5sum); n=0; while :; do n=$((n+1)); if [ \"$(printf %s \"$B\" | md5sum)\" = \"$S\" ]; then echo ok $n > /run/swap-bystander.state; else echo BAD > /run/swap-bystander.state; fi; sleep 1; done'"
        )
        let loop = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-loop")))
        let bystander = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-swap-bystander")))
        /// Reclaims the units' memory (their pages go to swap), then waits until each has run
        /// again (and so read its pages back in): what the guest records, not a time.
        func swapOutAndIn(_ units: [String], rounds: Int) throws {
            let reclaim = units.map { "echo 64M > /sys/fs/cgroup/system.slice/\($0).service/memory.reclaim 2>/dev/null" }.joined(separator: "; ")
            let marks = units.map { $0 == "sparc-loop" ? "/run/loop.count" : "/run/swap-bystander.state" }
            let waits = marks.map { "c=$(cat \($0)); while [ \"$(cat \($0))\" = \"$c\" ]; do sleep 0.2; done" }.joined(separator: "; ")
            try guest("while [ ! -s /run/loop.count ] || [ ! -s /run/swap-bystander.state ]; do sleep 0.2; done; for k in $(seq \(rounds)); do \(reclaim); \(waits); done")
        }
        try swapOutAndIn(["sparc-loop", "sparc-swap-bystander"], rounds: 6)
        XCTAssertGreaterThan(Int(try guest("awk '/VmSwap/ {print $2}' /proc/\(bystander)/status")) ?? 0, 0, "the bystander has pages in swap")

        let baseline = work + "/swap-loop-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline, "--exclude-pid", String(loop), "--save-free-memory"])
        let before = try SecretScan.hits(secret, inBundle: baseline, disk: true)
        XCTAssertGreaterThan(before["disk.qcow2"] ?? 0, 0, "the baseline's disk holds copies in slots nobody uses: \(before)")
        print("effectiveness: swap slots the guest no longer uses: baseline \(before)")

        let bundle = work + "/swap-loop.sparc"
        let said = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(loop)])
        XCTAssertEqual(try SecretScan.hits(secret, inBundle: bundle, disk: true).values.reduce(0, +), 0, "no copy in any file, disk included: \(said)")
        XCTAssertGreaterThan(try BundleReader(path: bundle).manifest.freeMemory?.swapBytes ?? 0, 0)
        XCTAssertTrue(said.contains("swap: "), said)

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertFalse(try livePids().contains(loop))
        XCTAssertTrue(try livePids().contains(bystander))
        // The guest drops the bystander's clean pages and reads them back from the slots sparc kept.
        try swapOutAndIn(["sparc-swap-bystander"], rounds: 3)
        XCTAssertTrue(try guest("cat /run/swap-bystander.state").hasPrefix("ok "))
        XCTAssertEqual(try guest("swapoff /dev/vda2 && echo off"), "off")
        try swapOutAndIn(["sparc-swap-bystander"], rounds: 1)
        XCTAssertTrue(try guest("cat /run/swap-bystander.state").hasPrefix("ok "), "the bystander's memory is intact after swapoff read every slot")
        try guest("systemctl stop sparc-swap-bystander; systemctl reset-failed sparc-loop sparc-swap-bystander 2>/dev/null; true")
        XCTAssertEqual(try systemState(), stateBefore)
        try assertNoKernelComplaint()
    }

    /// A service's daemon that double-forked and left its session (reparented to init, a
    /// session of its own) keeps the secret; the fork events lead to it, so excluding the
    /// service's main process takes it along, and restore ends it.
    func testDoubleForkedDaemonInTheCgroupIsExcluded() throws {
        try systemState()
        try guest(
            "rm -f /run/daemon; mkfifo /run/daemon; systemd-run --quiet --unit=sparc-daemon bash -c '(setsid bash -c \"S=\\$(tr -dc A-Za-z0-9 </dev/urandom | head -c 32); printf %s \\\"\\$S\\\" > /run/daemon; exec 3<>/run/daemon-wait; while :; do read -t 1000 -u 3; done\" &); exec 3<>/run/daemon-main; while :; do read -t 1000 -u 3; done'"
        )
        let secret = try readFifo("/run/daemon")
        XCTAssertEqual(secret.count, 32)
        let main = try XCTUnwrap(Int32(try guest("systemctl show -p MainPID --value sparc-daemon")))
        let daemon = try XCTUnwrap(Int32(try guest("for p in $(cat /sys/fs/cgroup/system.slice/sparc-daemon.service/cgroup.procs); do [ $p != \(main) ] && echo $p; done | head -n 1")))
        XCTAssertEqual(try guest("awk '{print $4}' /proc/\(daemon)/stat"), "1", "the daemon was reparented to init")
        let baseline = work + "/daemon-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds the daemon's secret")
        let bundle = work + "/daemon.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(main)])
        // The kernel's fork events lead to it (never its cgroup: see the bystanders' test).
        XCTAssertTrue(out.contains("pid \(daemon) ") && out.contains("forked by \(main)"), out)
        let hits = try sparc.run(["search", secret, bundle])
        XCTAssertTrue(hits.stdout.split(separator: "\n").allSatisfy { !$0.contains("memory.img") && !$0.contains("devices.vmstate") }, hits.stdout)
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let alive = try livePids()
        XCTAssertFalse(alive.contains(daemon) || alive.contains(main), "the service and its daemon were ended")
        try guest("systemctl reset-failed sparc-daemon 2>/dev/null; rm -f /run/daemon /run/daemon-wait /run/daemon-main; true")
        try assertNoKernelComplaint()
    }
}

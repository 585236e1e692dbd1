import Foundation
import GuestQuery
import SnapshotModel
import SparcEngine
import SparcSupport
import XCTest

/// End-to-end against the real default guest under TCG: one VM is booted for the whole
/// class and every test leaves it running and thawed.
final class GuestLifecycleTests: GuestTestCase {
    override class var vmName: String { "e2e" }

    func counter(file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let text = try guest("cat /data/counter", file: file, line: line)
        guard let v = Int(text) else {
            XCTFail("counter unreadable: '\(text)'", file: file, line: line)
            return -1
        }
        return v
    }

    func assertNoLeftovers(in dir: String, file: StaticString = #filePath, line: UInt = #line) {
        let stray = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.contains(".partial") }
        XCTAssertEqual(stray, [], "partial bundle left behind in \(dir)", file: file, line: line)
    }

    // MARK: -

    func testProcessesTerminalsAndExec() throws {
        let ps = try sparc.ok(["ps", "--name", vm])
        let rows = ps.split(separator: "\n").map(String.init)
        XCTAssertTrue(rows[0].contains("PID") && rows[0].contains("COMMAND"))
        XCTAssertTrue(rows.contains { $0.hasSuffix(" init") && $0.trimmed.hasPrefix("1 ") }, ps)
        XCTAssertTrue(rows.contains { $0.hasSuffix("/sbin/sparc-agent") }, ps)
        XCTAssertTrue(rows.contains { $0.contains("ttyS0") && $0.hasSuffix("-/bin/sh") }, "console shell on ttyS0: \(ps)")

        let json = try sparc.ok(["ps", "--name", vm, "--json"])
        let list = try XCTUnwrap(JSONOutput.list(json, "processes"), json)
        let shell = list.first { ($0["command"] as? String) == "-/bin/sh" }
        XCTAssertEqual(shell?["tty"] as? String, "ttyS0")
        XCTAssertTrue(list.allSatisfy { $0["kernelThread"] as? Bool == false })

        let ttys = try sparc.ok(["ttys", "--name", vm, "--json"])
        let ttyList = try XCTUnwrap(JSONOutput.list(ttys, "ttys"), ttys)
        let serial = ttyList.first { ($0["name"] as? String) == "ttyS0" }
        XCTAssertEqual(serial?["kind"] as? String, "serial")
        XCTAssertTrue((serial?["pids"] as? [Int])?.contains(shell?["pid"] as? Int ?? -1) ?? false, ttys)

        let out = try sparc.run(["exec", "--name", vm, "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"])
        XCTAssertEqual(out.status, 7)
        XCTAssertEqual(out.stdout, "to-stdout\n")
        XCTAssertEqual(out.stderr, "to-stderr\n")

        let piped = try sparc.run(["exec", "--name", vm, "--", "tr", "a-z", "A-Z"], input: Data("shout\n".utf8))
        XCTAssertEqual(piped.stdout, "SHOUT\n")

        let pid = try sparc.ok(["exec", "--name", vm, "--detach", "--", "sleep", "300"]).trimmed
        XCTAssertNotNil(Int(pid))
        XCTAssertTrue(try sparc.ok(["ps", "--name", vm]).contains("\(pid) "), "detached pid \(pid) listed")
        try guest("kill \(pid)")

        let missing = try sparc.run(["exec", "--name", vm, "--", "/no/such/program"])
        XCTAssertEqual(missing.status, 127)
    }

    func testCheckpointAndRestoreRollBackMemoryAndDisk() throws {
        try guest("rm -f /data/file /data/late /run/count.log")
        // A process that counts in its own memory and appends each count to a log in RAM
        // (tmpfs); the test appends MARK lines to the same log. What a restore brings back is
        // told by the marks, never by how fast the counter ran.
        let counterPid = try detach("i=0; while :; do i=$((i+1)); echo $i >> /run/count.log; sleep 0.1; done")
        func log() throws -> [String] { try guest("cat /run/count.log").split(separator: "\n").map(String.init) }
        func lastCount() throws -> Int { Int(try log().last { Int($0) != nil } ?? "") ?? -1 }
        /// Waits until the counter has counted past `value` (it runs): true when it did.
        func countsPast(_ value: Int) throws -> Bool {
            for _ in 0..<300 {
                if try lastCount() > value { return true }
                usleep(100_000)
            }
            return false
        }
        try guest("echo before > /data/file; sync")
        XCTAssertTrue(try countsPast(3))
        try guest("echo MARK-before >> /run/count.log")
        let bundle = work + "/lifecycle.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        try guest("echo MARK-after >> /run/count.log")
        let afterCheckpoint = try lastCount()
        XCTAssertEqual(try sparc.run(["verify", bundle]).status, 0)

        // The running VM goes on after the checkpoint.
        try guest("echo after > /data/file; echo new > /data/late; sync")
        XCTAssertTrue(try countsPast(afterCheckpoint + 3), "counter must keep running after checkpoint")

        let manifest = try BundleReader(path: bundle).manifest
        // 256 MiB and the 8 KiB every machine of sparc's has, which QEMU logs page by page.
        XCTAssertEqual(manifest.memory.bytes, (256 << 20) + 8192)
        XCTAssertEqual(manifest.machine.extraRAMBytes, 8192)
        XCTAssertLessThan(FileSystem.allocatedBytes(bundle + "/memory.img")!, manifest.memory.bytes / 2, "memory image is sparse")
        XCTAssertNotNil(manifest.file(named: "disk.qcow2"))
        XCTAssertTrue(manifest.qemu.argv.contains("-nodefaults"))

        for round in 1...2 {
            if round == 1 {
                try sparc.ok(["vm", "stop", "--name", vm])
                try sparc.ok(["restore", bundle, "--name", vm])
            } else {
                // Restoring twice from the same bundle works, here over the running VM.
                try sparc.fails(["restore", bundle, "--name", vm], message: "is running")
                try sparc.fails(["restore", bundle, "--name", vm, "--connect", "qemu:///system"], message: "not of a libvirt domain")
                try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
            }
            // Memory is the checkpoint's: the mark made before it is there, the one after is not,
            // and the counter goes on from its own remembered count.
            let lines = try log()
            XCTAssertTrue(lines.contains("MARK-before"), "round \(round): the memory before the checkpoint")
            XCTAssertFalse(lines.contains("MARK-after"), "round \(round): nothing written after the checkpoint is in the restored memory")
            let counts = lines.compactMap { Int($0) }
            XCTAssertEqual(counts, Array(1...(counts.last ?? 0)), "round \(round): one process counting on, no count lost or repeated")
            XCTAssertEqual(try guest("cat /data/file"), "before", "round \(round): disk rolled back")
            XCTAssertEqual(try guest("test -e /data/late && echo present || echo absent"), "absent")
            XCTAssertTrue(try countsPast(counts.last ?? 0), "round \(round): counter process runs on after restore")
            XCTAssertEqual(try guest("kill -0 \(counterPid) && echo same"), "same", "round \(round): the same process")
            try noOops()
            XCTAssertEqual(try sparc.run(["verify", bundle]).status, 0, "restore must not change the bundle")
        }
        try guest("kill \(counterPid); true")
        try assertHealthy()
    }

    func flipByte(_ path: String, at offset: Int64) {
        let fd = open(path, O_RDWR)
        defer { close(fd) }
        var b: UInt8 = 0
        XCTAssertEqual(pread(fd, &b, 1, off_t(offset)), 1)
        b ^= 0x20
        XCTAssertEqual(pwrite(fd, &b, 1, off_t(offset)), 1)
    }

    /// Rewrites a file of a bundle and re-seals the manifest, as an attacker or a buggy tool would.
    func reseal(_ bundle: String, replacing file: String, with data: Data) throws {
        try data.write(to: URL(fileURLWithPath: bundle + "/" + file))
        var manifest = try BundleReader(path: bundle).manifest
        let i = manifest.files.firstIndex { $0.name == file }!
        manifest.files[i].size = Int64(data.count)
        manifest.files[i].sha256 = ChunkedDigest.of(data)
        try manifest.encoded().write(to: URL(fileURLWithPath: bundle + "/manifest.json"))
    }

    func testDamagedBundlesAreRefused() throws {
        let bundle = work + "/tamper.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let manifest = try BundleReader(path: bundle).manifest

        // One flipped byte in guest RAM: in the first data region of the sparse image.
        let fd = open(bundle + "/memory.img", O_RDONLY)
        let dataAt = lseek(fd, 1 << 20, seekData)
        close(fd)
        XCTAssertGreaterThanOrEqual(dataAt, 0)
        flipByte(bundle + "/memory.img", at: Int64(dataAt) + 17)
        let verify = try sparc.run(["verify", bundle])
        XCTAssertEqual(verify.status, 1)
        XCTAssertTrue(verify.stdout.contains("memory.img: content differs"), verify.stdout)
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone"], status: 1, message: "memory.img does not match")
        try assertNoVM("tampered")
        flipByte(bundle + "/memory.img", at: Int64(dataAt) + 17)
        XCTAssertEqual(try sparc.run(["verify", bundle]).status, 0)

        // One flipped byte in the manifest.
        let manifestText = try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8)
        let at = manifestText.utf8.count / 2
        flipByte(bundle + "/manifest.json", at: Int64(at))
        XCTAssertEqual(try sparc.run(["verify", bundle]).status, 1)
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone"], status: 1, message: "manifest.json")
        try assertNoVM("tampered")
        flipByte(bundle + "/manifest.json", at: Int64(at))

        // Truncated device state: the digest catches it.
        let devices = try Data(contentsOf: URL(fileURLWithPath: bundle + "/devices.vmstate"))
        truncate(bundle + "/devices.vmstate", off_t(devices.count / 2))
        XCTAssertEqual(try sparc.run(["verify", bundle]).status, 1)
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone"], status: 1, message: "devices.vmstate")
        try assertNoVM("tampered")

        // Truncated or wrong device state with a re-sealed manifest: QEMU itself rejects it.
        try reseal(bundle, replacing: "devices.vmstate", with: devices.prefix(devices.count / 2))
        XCTAssertEqual(try sparc.run(["verify", bundle]).status, 0)
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone"], message: "not sealed by this host")
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone", "--foreign"], message: "could not load the device state")
        try assertNoVM("tampered")
        try reseal(bundle, replacing: "devices.vmstate", with: Data((0..<devices.count).map { _ in UInt8.random(in: 0...255) }))
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone", "--foreign"], message: "could not load the device state")
        try assertNoVM("tampered")

        // Memory image of the wrong size for the machine.
        try reseal(bundle, replacing: "devices.vmstate", with: devices)
        truncate(bundle + "/memory.img", off_t(manifest.memory.bytes / 2))
        try sparc.fails(["restore", bundle, "--name", "tampered", "--clone"], status: 1, message: "memory.img: size is")
        try assertNoVM("tampered")
        try assertHealthy()
    }

    func testCheckpointRefusesBadOutputsAndLeavesVMRunning() throws {
        let existing = work + "/exists.sparc"
        try FileSystem.makeDirectory(existing)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: existing + "/mine"))
        try sparc.fails(["checkpoint", "--name", vm, "-o", existing], message: "already exists")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing), ["mine"])

        try sparc.fails(["checkpoint", "--name", vm, "-o", work + "/no/such/dir/x.sparc"], message: "does not exist")

        let readOnly = work + "/ro"
        let small = work + "/small"
        try FileSystem.makeDirectory(readOnly)
        try FileSystem.makeDirectory(small)
        let canMount = (try Subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", readOnly])).status == 0
        try XCTSkipUnless(canMount, "mounting a tmpfs is not permitted here: read-only and full-disk cases need it")
        defer { _ = try? Subprocess.run(["umount", readOnly]) }
        try sparc.fails(["checkpoint", "--name", vm, "-o", readOnly + "/x.sparc"], message: "not writable")
        try assertHealthy()

        XCTAssertEqual(try Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small]).status, 0)
        defer { _ = try? Subprocess.run(["umount", small]) }
        try sparc.fails(["checkpoint", "--name", vm, "-o", small + "/full.sparc"], message: "No space left on device")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: small), [], "full disk: nothing left behind")
        try assertHealthy()
    }

    func testAgentThatDoesNotAnswerTimesOutClearly() throws {
        // The agent itself, not its keeper or a terminal relay (same program, with arguments).
        let agentPid = try guest("for p in $(pidof sparc-agent); do [ \"$(tr '\\0' '\\n' < /proc/$p/cmdline | wc -l)\" = 1 ] && echo $p; done; true")
        XCTAssertNotNil(Int(agentPid))
        try sparc.ok(["exec", "--name", vm, "--detach", "--", "sh", "-c", "sleep 0.5; kill -STOP \(agentPid)"])
        // Until the agent is stopped: it stops answering (asked straight, not through a sparc command).
        var answering = true
        for _ in 0..<120 where answering {
            let client = AgentClient(socketPath: runtime + "/\(vm)/agent.sock", timeout: 1)
            answering = (try? client.hello()) != nil
            client.close()
            if answering { usleep(250_000) }
        }
        XCTAssertFalse(answering, "the agent was stopped")
        // The message says it gave up after its --timeout (a wait without end is killed by the runner and fails).
        try sparc.fails(["ps", "--name", vm, "--timeout", "2"], message: "did not answer 'processes' within 2 s")
        try sparc.fails(["checkpoint", "--name", vm, "--timeout", "2", "-o", work + "/stuck.sparc"], message: "did not answer")
        XCTAssertFalse(FileSystem.exists(work + "/stuck.sparc"))
        assertNoLeftovers(in: work)
        let status = try sparc.ok(["vm", "status", "--name", vm])
        XCTAssertTrue(status.contains("not answering"), status)

        // The console shell is independent of the agent: use it to wake the agent up.
        try sparc.ok(["console", "--name", vm, "--send", "kill -CONT \(agentPid)\\n"])
        var answered = false
        for _ in 0..<20 where !answered {
            answered = (try? sparc.run(["ps", "--name", vm, "--timeout", "2"]).status) == 0
            if !answered { usleep(250_000) }
        }
        XCTAssertTrue(answered, "agent answers again after SIGCONT")
        try assertHealthy()
    }

    func testCancelledCheckpointLeavesNothingAndTheVMRunsOn() throws {
        let cancel = Cancellation()
        cancel.cancel()
        let output = work + "/cancelled.sparc"
        XCTAssertThrowsError(try VMManager(root: runtime).checkpoint(name: vm, output: output, cancel: cancel)) {
            XCTAssertTrue("\($0)".contains("cancelled"), "\($0)")
        }
        XCTAssertFalse(FileSystem.exists(output))
        assertNoLeftovers(in: work)
        try assertHealthy()
    }

    /// The last resort: a checkpoint killed while the guest is frozen, its guardian gone too
    /// (off here), and no sparc command comes for the VM; the guest thaws when that checkpoint's lease runs out, even while
    /// something keeps asking the agent (a TUI refreshing every 2 s). Asked straight through
    /// the agent's socket, so that no sparc command's recovery is what thaws it.
    func testKilledCheckpointThawsAfterItsLeaseWhenNoCommandComes() throws {
        let victim = try detach("while :; do sleep 1000; done")
        let killed = try sparc.run(
            ["checkpoint", "--name", vm, "-o", work + "/lease.sparc", "--exclude-pid", String(victim)],
            environment: ["SPARC_FAULT": "checkpoint-after-collect", "SPARC_FREEZE_LEASE": "8", "SPARC_GUARDIAN": "off"])
        XCTAssertEqual(killed.status, 128 + SIGKILL, killed.stderr)
        let client = AgentClient(socketPath: runtime + "/\(vm)/agent.sock", timeout: 10)
        defer { client.close() }
        let first = try client.hello()
        XCTAssertTrue(first.frozen, "the killed checkpoint left the guest frozen")
        let lease = try XCTUnwrap(first.leaseLeft, "a frozen guest says when its lease ends")
        XCTAssertLessThanOrEqual(lease, 8)
        var thawed = false
        var polls = 0
        while !thawed && polls < 300 {
            _ = try client.processes()  // what the TUI asks every 2 s: it does not renew the lease
            let hello = try client.hello()
            thawed = !hello.frozen
            if !thawed {
                // The lease only runs down while nothing renews it.
                XCTAssertLessThanOrEqual(hello.leaseLeft ?? 0, lease)
                usleep(200_000)
                polls += 1
            }
        }
        XCTAssertTrue(thawed, "the lease thawed the guest")
        XCTAssertTrue(freezeMarkers().contains("at-work-by"), "no sparc command ran: the lease, not a recovery, thawed it")
        // The agent's port serves one client at a time: let go of it for the next command.
        client.close()
        _ = try sparc.ok(["vm", "status", "--name", vm])  // and the next command tidies up
        XCTAssertEqual(freezeMarkers(), [])
        try guest("kill \(victim)")
        try assertHealthy()
    }

    /// restore --replace checks what it can before it touches the running VM: a memory image
    /// with a hole punched in it (same size, other content) and a read-only state directory
    /// are refused while the VM runs on untouched.
    func testReplaceChecksEverythingBeforeTouchingTheRunningVM() throws {
        let bundle = work + "/replace-good.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let pid = try XCTUnwrap(Int32(try sparc.ok(["vm", "status", "--name", vm, "--json"]).split(separator: "\"pid\" : ")[1].prefix { $0.isNumber }))
        try guest("echo marker > /run/replace-marker")

        let holed = work + "/replace-holed.sparc"
        XCTAssertEqual(try Subprocess.run(["cp", "-a", "--sparse=always", bundle, holed]).status, 0)
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: holed + "/memory.img")[.size] as? Int)
        // A hole where there was data: the size stays, the content differs.
        let data = try XCTUnwrap(try Subprocess.run(["sh", "-c", "filefrag -e \(holed)/memory.img | awk '/^ *[0-9]+:/ {print $2; exit}'"]).stdoutText.trimmed.split(separator: ".").first.flatMap { Int($0) })
        XCTAssertEqual(try Subprocess.run(["fallocate", "--punch-hole", "--offset", String(data * 4096), "--length", "1048576", holed + "/memory.img"]).status, 0)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: holed + "/memory.img")[.size] as? Int, size)
        try sparc.fails(["restore", holed, "--name", vm, "--replace"], status: 1, message: "the running VM was not touched")

        // A read-only state directory (a read-only bind mount: root ignores permission bits).
        let state = runtime + "-state"
        XCTAssertEqual(try Subprocess.run(["mount", "--bind", state, state]).status, 0)
        defer { _ = try? Subprocess.run(["umount", state]) }
        XCTAssertEqual(try Subprocess.run(["mount", "-o", "remount,bind,ro", state]).status, 0)
        try sparc.fails(["restore", bundle, "--name", vm, "--replace"], message: "the running VM was not touched")
        _ = try Subprocess.run(["umount", state])

        XCTAssertTrue(try sparc.ok(["vm", "status", "--name", vm, "--json"]).contains("\"pid\" : \(pid)"), "the same QEMU runs on")
        XCTAssertEqual(try guest("cat /run/replace-marker"), "marker", "the running guest was not replaced")
        try assertHealthy()
    }

    /// A restore killed once the guest runs again: the restored guest carries its own cleanup
    /// plan, so when the freeze lease runs out its agent ends the excluded process first and
    /// only then thaws; nothing runs on zeroed memory.
    func testRestoreKilledMidwayStillEndsTheExcludedProcesses() throws {
        let victim = try detach("while :; do sleep 1; done")
        let bundle = work + "/midway.sparc"
        let saved = try sparc.run(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(victim)], environment: ["SPARC_FREEZE_LEASE": "8"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertTrue(try livePids().contains(victim), "the live guest's process runs on after the checkpoint")
        let killed = try sparc.run(["restore", bundle, "--name", vm, "--replace"], environment: ["SPARC_FAULT": "restore-after-resume", "SPARC_GUARDIAN": "off"])
        XCTAssertEqual(killed.status, 128 + SIGKILL, killed.stderr)
        let began = Date()
        var thawed = false
        while !thawed && Date().timeIntervalSince(began) < 40 {
            thawed = !(try sparc.ok(["vm", "status", "--name", vm]).contains("(guest frozen)"))
            if !thawed { sleep(1) }
        }
        XCTAssertTrue(thawed, "the lease thawed the restored guest")
        XCTAssertFalse(try livePids().contains(victim), "the excluded process was ended before the thaw")
        try assertNoKernelComplaint()
        try assertHealthy()
    }

    /// The agent gives back what a checkpoint's collection took: its resident memory stays
    /// small after a checkpoint (it kept 9 MiB more of the guest's RAM when per-thread malloc
    /// arenas held what it freed).
    func testTheAgentGivesTheGuestBackWhatACheckpointTook() throws {
        func agentKiB() throws -> Int {
            let rows = try guest("for p in $(pidof sparc-agent); do sed -n 's/^VmRSS:[^0-9]*\\([0-9]*\\).*/\\1/p' /proc/$p/status; done")
            return rows.split(separator: "\n").compactMap { Int($0) }.max() ?? 0
        }
        let before = try agentKiB()
        XCTAssertGreaterThan(before, 0)
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/agent-rss.sparc"])
        let after = try agentKiB()
        print("agent resident memory: \(before) KiB before a checkpoint, \(after) KiB after")
        XCTAssertLessThan(after, 12 << 10, "the agent holds \(after) KiB after a checkpoint (was \(before))")
    }

    /// Real checkpoints through the store: a second checkpoint stores little beside the first
    /// (the guest's memory barely changed), nothing of a secret a guest process holds is in the
    /// store's files though the bundle has it, an export restores and the guest runs on, the
    /// check reads every chunk, and removing a checkpoint frees what only it held at gc.
    func testCheckpointsGoThroughTheStoreDeduplicatedAndEncrypted() throws {
        let home = work + "/store-home"
        let env = ["SPARC_BUNDLES": home]
        let holder = try detach("S=STORE\(Self.generate); mkfifo /run/st.fifo 2>/dev/null; printf %s $S > /run/st.fifo; while :; do sleep 1000; done")
        let secret = try readFifo("/run/st.fifo")
        let first = work + "/st-1.sparc", second = work + "/st-2.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", first])
        try sparc.ok(["checkpoint", "--name", vm, "-o", second])
        XCTAssertEqual(try sparc.run(["search", secret, first]).status, 0, "the bundle holds the secret")
        func stored(_ bundle: String, _ name: String) throws -> [String: Any] {
            let out = try sparc.run(["import", bundle, "--as", name, "--json"], environment: env)
            XCTAssertEqual(out.status, 0, out.stderr)
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any])
        }
        let one = try stored(first, "st-1"), two = try stored(second, "st-2")
        let firstBytes = try XCTUnwrap(one["storedBytes"] as? Int64), secondBytes = try XCTUnwrap(two["storedBytes"] as? Int64)
        let logical = try XCTUnwrap(one["logicalBytes"] as? Int64)
        XCTAssertLessThan(firstBytes, logical / 2, "zero chunks are not stored and the rest compresses")
        XCTAssertLessThan(secondBytes, firstBytes / 2, "the second checkpoint shares most chunks with the first")
        print("store: first checkpoint \(logical >> 20) MiB logical, \(firstBytes >> 10) KiB stored; second \(secondBytes >> 10) KiB stored")

        let found = try Subprocess.run(["grep", "-r", "-a", "-l", "-F", secret, home + "/store"])
        XCTAssertEqual(found.status, 1, "the store's files hold the secret in clear: \(found.stdoutText)")
        let listed = try sparc.run(["bundles", "--json"], environment: env)
        let entries = try XCTUnwrap(JSONOutput.list(listed.stdout, "bundles"), listed.stdout)
        XCTAssertEqual(entries.compactMap { $0["name"] as? String }, ["st-1", "st-2"])
        XCTAssertTrue(entries.allSatisfy { ($0["vm"] as? String) == vm })
        try sparc.ok(["store", "check", "--read-data"], environment: env)

        let exported = work + "/st-exported.sparc"
        try sparc.ok(["export", "st-2", "-o", exported], environment: env)
        try sparc.ok(["verify", exported])
        try guest("kill \(holder)")
        try sparc.ok(["restore", exported, "--name", vm, "--replace"])
        XCTAssertTrue(try livePids().contains(holder), "the restored guest runs the process it was saved with")

        // Killed once stored, before its staging went: stored all the same, and the next checkpoint removes what it left.
        var killing = env
        killing["SPARC_FAULT"] = "checkpoint-after-store"
        XCTAssertNotEqual(try sparc.run(["checkpoint", "--name", vm], environment: killing).status, 0)
        // Staged in memory (the RAM directory, a tmpfs): the memory image never reached a disk in the clear.
        let ramDirectory = ProcessInfo.processInfo.environment["SPARC_RAM_DIR"] ?? "/dev/shm"
        func stagings() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: ramDirectory).filter { $0.hasPrefix("sparc-staging-") } }
        let leftBehind = try stagings()
        XCTAssertFalse(leftBehind.isEmpty, "the killed checkpoint left its staging in memory")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: home).contains { $0.hasPrefix(".staging-") }, "nothing was staged beside the store")
        // Without -o straight into the store, and back by name: verify, search, restore.
        let direct = try sparc.run(["checkpoint", "--name", vm, "--json"], environment: env)
        XCTAssertEqual(direct.status, 0, direct.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(direct.stdout.utf8)) as? [String: Any])
        let name = try XCTUnwrap((report["checkpoint"] as? [String: Any])?["bundle"] as? String)
        XCTAssertTrue(name.hasPrefix(vm + "-") && !name.contains("/"), name)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: home).sorted(), ["store"], "no bundle and no staging left beside the store")
        XCTAssertTrue(Set(try stagings()).isDisjoint(with: leftBehind), "the next checkpoint removed the killed one's staging")
        try sparc.ok(["verify", name], environment: env)
        XCTAssertEqual(try sparc.run(["search", secret, name], environment: env).status, 0, "searched by name")
        try guest("kill \(holder)")
        // Without --name: back to the VM it came from.
        try sparc.ok(["restore", name, "--replace"], environment: env)
        XCTAssertTrue(try livePids().contains(holder), "restored by name")
        try guest("kill \(holder)")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: runtime))?.filter { $0.hasPrefix("stored-") }, [], "what was read out of the store is gone")
        try sparc.ok(["store", "rm", "st-1", "--yes"], environment: env)
        try sparc.fails(["export", "st-1", "-o", work + "/gone.sparc"], message: "no checkpoint named 'st-1'", environment: env)
        XCTAssertFalse(FileSystem.exists(work + "/gone.sparc"))
        // Retention: the newest stays, st-2 goes with the chunks only it held.
        let dry = try sparc.ok(["prune", "--vm", vm, "--keep-last", "1", "--dry-run"], environment: env)
        XCTAssertTrue(dry.contains("would remove st-2"), dry)
        let pruned = try sparc.ok(["prune", "--vm", vm, "--keep-last", "1"], environment: env)
        XCTAssertTrue(pruned.contains("removed 2 checkpoint(s)"), "st-2 and the one stored before its kill: \(pruned)")
        let left = JSONOutput.list(try sparc.ok(["bundles", "--json"], environment: env), "bundles")
        XCTAssertEqual(left?.compactMap { $0["name"] as? String }, [name])
        try sparc.ok(["store", "check", "--read-data"], environment: env)
        // The history keeps what was removed; the rollback check still knows the newest.
        let log = try sparc.ok(["log", "--name", vm])
        XCTAssertTrue(log.contains("pruned") && log.contains("st-1") && log.contains("st-2"), log)
    }

    /// Where the storage went: `vm list --all` shows a stopped VM with its disk and its
    /// checkpoints; `vm rm` refuses a running VM, then removes the stopped one's identity and
    /// (asked to) its checkpoints, keeps the disk file the operator named and the history.
    func testVMListAllAndRemove() throws {
        let name = "rm-\(getpid() % 10000)"
        let env = ["SPARC_BUNDLES": work + "/rm-home"]
        let disk = work + "/rm-disk.qcow2"
        XCTAssertEqual(try Subprocess.run(["cp", "--sparse=always", GuestImage.locate(.busybox).disk, disk]).status, 0)
        defer { _ = try? sparc.run(["vm", "stop", "--name", name, "--force"]) }
        try sparc.ok(["vm", "start", "--name", name, "--disk", disk])
        try sparc.ok(["checkpoint", "--name", name], environment: env)
        try sparc.fails(["vm", "rm", "--name", name, "--yes"], message: "stop it first", environment: env)
        try sparc.ok(["vm", "stop", "--name", name])
        let listed = try sparc.ok(["vm", "list", "--all", "--json"], environment: env)
        let vms = try XCTUnwrap(JSONOutput.list(listed, "vms"), listed)
        let mine = try XCTUnwrap(vms.first { $0["name"] as? String == name }, listed)
        XCTAssertEqual(mine["state"] as? String, "stopped")
        XCTAssertEqual(mine["checkpoints"] as? Int, 1)
        XCTAssertEqual(mine["disk"] as? String, disk)
        XCTAssertEqual(mine["diskOwnedBySparc"] as? Bool, false)
        XCTAssertTrue(try sparc.ok(["vm", "list", "--all"], environment: env).contains("a disk file you named"))

        let removed = try sparc.ok(["vm", "rm", "--name", name, "--checkpoints", "--yes"], environment: env)
        XCTAssertTrue(removed.contains("removed identity") && removed.contains("removed 1 checkpoint(s)") && removed.contains("kept disk"), removed)
        XCTAssertTrue(FileSystem.exists(disk), "the disk file the operator named stays")
        XCTAssertFalse(try sparc.ok(["vm", "list", "--all"], environment: env).contains(name))
        XCTAssertFalse(try sparc.ok(["bundles"], environment: env).contains(name + "-"))
        let log = try sparc.ok(["log", "--name", name])
        XCTAssertTrue(log.contains("removed") && log.contains("pruned"), log)
        try sparc.fails(["vm", "rm", "--name", name, "--yes"], message: "no VM named", environment: env)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runtime).filter { $0.hasPrefix(name) }, [])
    }

    /// One command at a time changes a VM: while a checkpoint works, a second checkpoint, a
    /// restore and a stop each fail at once with one line naming it (exit 2), read-only
    /// commands go on, and --wait waits its turn; a holder killed with SIGKILL leaves no lock.
    func testOneCommandAtATimeChangesAVM() throws {
        final class Outcome: @unchecked Sendable { var result: SparcRunner.Output? }
        let outcome = Outcome(), finished = DispatchSemaphore(value: 0)
        let reached = work + "/lock-reached", release = work + "/lock-release"
        unlink(reached)
        unlink(release)
        defer { FileManager.default.createFile(atPath: release, contents: Data()) }
        let runner = sparc, name = vm, first = work + "/lock-1.sparc"
        let held = ["SPARC_FAULT": "checkpoint-after-collect:stall=600", "SPARC_FAULT_REACHED": reached, "SPARC_FAULT_RELEASE": release]
        Thread.detachNewThread {
            outcome.result = try? runner.run(["checkpoint", "--name", name, "-o", first], environment: held)
            finished.signal()
        }
        for _ in 0..<600 where !FileSystem.exists(reached) { usleep(100_000) }
        XCTAssertTrue(FileSystem.exists(reached), "the first checkpoint holds the VM")
        // Refused while the holder is held (it cannot go on until the test releases it): at once, not after a wait.
        for command in [["checkpoint", "--name", vm, "-o", work + "/lock-2.sparc"], ["restore", first, "--name", vm, "--replace"], ["vm", "stop", "--name", vm]] {
            try sparc.fails(command, message: "is busy")
        }
        XCTAssertTrue(try sparc.ok(["ps", "--name", vm]).contains("PID"), "read-only commands are not blocked")
        // --wait waits its turn: still running while the holder is held, done once it is released.
        let waitedBox = Outcome(), waitedDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            waitedBox.result = try? runner.run(["checkpoint", "--name", name, "-o", first.replacingOccurrences(of: "lock-1", with: "lock-3"), "--wait"])
            waitedDone.signal()
        }
        XCTAssertEqual(waitedDone.wait(timeout: .now() + 3), .timedOut, "--wait waits while the VM is held")
        XCTAssertFalse(FileSystem.exists(work + "/lock-3.sparc"))
        FileManager.default.createFile(atPath: release, contents: Data())
        waitedDone.wait()
        let waited = try XCTUnwrap(waitedBox.result)
        XCTAssertEqual(waited.status, 0, waited.stderr)
        finished.wait()
        XCTAssertEqual(outcome.result?.status, 0, outcome.result?.stderr ?? "no result")
        XCTAssertFalse(FileSystem.exists(work + "/lock-2.sparc"))
        for bundle in [first, work + "/lock-3.sparc"] { try sparc.ok(["verify", bundle]) }

        // A holder that dies holds nothing.
        let killed = try sparc.run(["checkpoint", "--name", vm, "-o", work + "/lock-4.sparc"], environment: ["SPARC_FAULT": "checkpoint-after-collect"])
        XCTAssertEqual(killed.status, 128 + SIGKILL)
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/lock-5.sparc"])
    }

    /// The guest's frozen state as the agent reports it (the agent itself never freezes), read
    /// without a sparc command that would recover anything: straight from the agent's socket.
    func agentSaysFrozen(file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
        let client = AgentClient(socketPath: runtime + "/\(vm)/agent.sock", timeout: 10)
        defer { client.close() }
        return try client.hello().frozen
    }

    /// The markers a checkpoint leaves while it works (at-work-by, paused-by).
    func freezeMarkers() -> [String] {
        ["at-work-by", "paused-by"].filter { FileSystem.exists(runtime + "/\(vm)/" + $0) }
    }

    /// sparc killed (SIGKILL) at every phase of a checkpoint, its guardian gone too (off here),
    /// with a freeze lease far longer than the test (so the lease cannot be what thaws): the next sparc command of any kind
    /// for the VM resumes QEMU and thaws the guest at once, removes the dead checkpoint's
    /// staging directory and logs it; no bundle appears under the final name.
    /// Memory copied while the guest runs is the memory of one instant (QEMU's stop): a process
    /// that writes without a pause through the whole copy (a counter in its own memory, each
    /// value appended to a log in tmpfs, the page cache) is restored with its log contiguous,
    /// and counts on from the last value in it: no value lost or repeated. Pages copied at
    /// different times would disagree (the counter ahead of or behind its log).
    func testMemoryCopiedWhileTheGuestRunsIsOneInstant() throws {
        let writer = try detach("rm -f /tmp/instant.log; i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); echo $i >> /tmp/instant.log; done")
        func lines() throws -> [Int] { try guest("cat /tmp/instant.log").split(separator: "\n").compactMap { Int($0) } }
        var before: [Int] = []
        for _ in 0..<100 where before.count < 500 { before = try lines() }
        XCTAssertGreaterThanOrEqual(before.count, 500, "the writer runs")
        let bundle = work + "/instant.sparc"
        let report = try XCTUnwrap(
            try JSONSerialization.jsonObject(
                with: Data(try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--json"], environment: ["SPARC_LIVE_COPY": "1", "SPARC_LIVE_COPY_CHECK": "1"]).utf8))
                as? [String: Any])
        let checkpoint = try XCTUnwrap(report["checkpoint"] as? [String: Any])
        print("live copy while a process writes: guest paused \(checkpoint["downtime"] ?? "?") s of \(checkpoint["total"] ?? "?") s")
        XCTAssertEqual(checkpoint["liveCopied"] as? Bool, true)
        // Checked against the stopped guest on demand: QEMU's log of this machine's RAM (8 KiB
        // beyond whole MiB, logged page by page) missed no page, so a copy need not be checked.
        XCTAssertEqual(checkpoint["liveCopyRepairedPages"] as? Int, 0, "QEMU's dirty log missed pages the guest wrote")
        XCTAssertTrue(try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8).contains("guestRAMOmitted"), "copied while the guest ran")
        let during = try lines()
        XCTAssertGreaterThan(during.count, before.count, "the writer runs on after the checkpoint")

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let restored = try lines()
        XCTAssertEqual(restored, Array(1...(restored.last ?? 0)), "the log is of one instant: contiguous")
        var later = restored
        for _ in 0..<100 where later.count < restored.count + 200 { later = try lines() }
        XCTAssertEqual(later, Array(1...(later.last ?? 0)), "the restored writer counts on from its log's last value, none repeated or lost")
        XCTAssertGreaterThan(later.count, restored.count, "and it runs")
        try guest("kill \(writer)")
    }

    /// `sparc schedule add` writes a timer and a service (into a unit directory the test made;
    /// systemd is not asked here); the service's own command lines, run as systemd would, checkpoint
    /// the VM into the store and prune by the retention given; a failed run is recorded in the
    /// VM's history; what cannot go into a unit file is refused; `rm` removes both units.
    func testScheduledCheckpointsRunAsTheirUnitsSay() throws {
        let units = work + "/units"
        try FileSystem.makeDirectories(units)
        let home = work + "/scheduled-home"
        let env = ["SPARC_BUNDLES": home]
        let added = try sparc.ok(["schedule", "add", "--name", vm, "--every", "hourly", "--keep-last", "2", "--unit-dir", units, "--no-enable"], environment: env)
        XCTAssertTrue(added.contains("prune --vm \(vm) --keep-last 2"), added)
        try sparc.fails(["schedule", "add", "--name", vm, "--every", "daily", "--unit-dir", units, "--no-enable"], message: "scheduled already", environment: env)
        try sparc.fails(["schedule", "add", "--name", vm, "--every", "hourly\nExecStartPre=/bin/sh", "--unit-dir", units, "--no-enable"], message: "cannot go into a systemd unit", environment: env)
        try sparc.fails(["schedule", "add", "--name", "../x", "--every", "hourly", "--unit-dir", units, "--no-enable"], message: "not a VM name", environment: env)

        let service = try String(contentsOfFile: units + "/sparc-checkpoint-\(vm).service", encoding: .utf8)
        let timer = try String(contentsOfFile: units + "/sparc-checkpoint-\(vm).timer", encoding: .utf8)
        XCTAssertTrue(timer.contains("OnCalendar=hourly") && timer.contains("Persistent=true"), timer)
        if Subprocess.which("systemd-analyze") != nil {
            let verify = try Subprocess.run(["systemd-analyze", "verify", units + "/sparc-checkpoint-\(vm).timer", units + "/sparc-checkpoint-\(vm).service"], timeout: 60)
            let complaints = verify.stderrText.split(separator: "\n").filter { !$0.contains("man sparc.schedule(1)") }
            XCTAssertEqual(complaints, [], "systemd reads the units")
        }
        // The service's lines as systemd runs them: its environment, ExecStart, ExecStartPost.
        func lines(_ key: String) -> [String] { service.split(separator: "\n").compactMap { $0.hasPrefix(key + "=") ? String($0.dropFirst(key.count + 1)) : nil } }
        var environment: [String: String] = [:]
        for e in lines("Environment") {
            let kv = e.split(separator: "=", maxSplits: 1).map(String.init)
            environment[kv[0]] = kv[1]
        }
        XCTAssertEqual(environment["SPARC_BUNDLES"], home, "the runs use the bundle home in force when it was scheduled")
        func runUnitLine(_ line: String, extra: [String: String] = [:]) throws -> SparcRunner.Output {
            var words = line.split(separator: " ").map(String.init)
            for (i, w) in words.enumerated() where w.hasPrefix("${") { words[i] = extra[String(w.dropFirst(2).dropLast())] ?? "" }
            return try sparc.run(Array(words.dropFirst()), environment: environment)
        }
        for _ in 0..<3 {
            let start = try runUnitLine(try XCTUnwrap(lines("ExecStart").first))
            XCTAssertEqual(start.status, 0, start.stderr)
            let post = try runUnitLine(try XCTUnwrap(lines("ExecStartPost").first))
            XCTAssertEqual(post.status, 0, post.stderr)
        }
        let stored = try XCTUnwrap(JSONOutput.list(try sparc.ok(["bundles", "--json"], environment: env), "bundles"))
        XCTAssertEqual(stored.filter { $0["vm"] as? String == vm }.count, 2, "three runs, the newest two kept: \(stored)")
        // The history names each stored checkpoint by its name in the store, not the staging path.
        let history = try sparc.ok(["log", "--name", vm])
        for name in stored.compactMap({ $0["name"] as? String }) { XCTAssertTrue(history.contains(name), "\(name) in:\n\(history)") }
        XCTAssertFalse(history.contains("staging"), history)

        // A run systemd saw fail goes into the history; one that succeeded adds nothing.
        let stopPost = try XCTUnwrap(lines("ExecStopPost").first)
        _ = try runUnitLine(stopPost, extra: ["SERVICE_RESULT": "success", "EXIT_STATUS": "0"])
        XCTAssertFalse(try sparc.ok(["log", "--name", vm]).contains("scheduled checkpoint failed"))
        let failed = try runUnitLine(stopPost, extra: ["SERVICE_RESULT": "exit-code", "EXIT_STATUS": "2"])
        XCTAssertEqual(failed.status, 0, failed.stderr)
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("scheduled checkpoint failed: exit-code (exit status 2)"))

        XCTAssertTrue(try sparc.ok(["schedule", "list", "--unit-dir", units]).contains("hourly"))
        let removed = try sparc.ok(["schedule", "rm", "--name", vm, "--unit-dir", units, "--no-enable"])
        XCTAssertTrue(removed.contains(".timer") && removed.contains(".service"), removed)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: units), [])
        try sparc.fails(["schedule", "rm", "--name", vm, "--unit-dir", units, "--no-enable"], message: "has no scheduled checkpoints")
    }

    /// The config's rules leave processes out of a checkpoint in which nothing was tagged: a
    /// pattern on the command line picks the holder of a key. The baseline (the rules set aside
    /// with --no-config-rules) has the key; the checkpoint under the rules does not, and says
    /// which process the config left out. `config show` says what is in force and from where.
    func testConfigRulesLeaveProcessesOut() throws {
        let holder = try detach("exec sparc-probe assemble aws 5151 > /dev/null")
        let key = LibvirtTests.assembledAWSKey(seed: 5151)
        let config = work + "/config.toml"
        try "scope = \"all\"\n[exclude]\ncommands = [\"sparc-probe assemble aws *\"]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let env = ["SPARC_CONFIG": config]
        let shown = try sparc.ok(["config", "show"], environment: env)
        XCTAssertTrue(shown.contains("pattern 'sparc-probe assemble aws *'") && shown.contains(config), shown)

        let baseline = work + "/config-baseline.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline, "--no-config-rules"], environment: env)
        XCTAssertEqual(try sparc.run(["search", key, baseline]).status, 0, "the baseline holds the key")
        let ruled = work + "/config-ruled.sparc"
        let r = try sparc.run(["checkpoint", "--name", vm, "-o", ruled], environment: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("leaves out: pid \(holder) sparc-probe assemble aws 5151"), r.stderr)
        XCTAssertEqual(try sparc.run(["search", key, ruled]).status, 1, "the config's rule left the holder out")
        // A config that cannot be read stops the checkpoint before anything is touched.
        try "[exclude]\ncommand = [\"typo\"]\n".write(toFile: config, atomically: true, encoding: .utf8)
        try sparc.fails(["checkpoint", "--name", vm, "-o", work + "/config-bad.sparc"], message: "unknown key 'exclude.command'", environment: env)
        XCTAssertFalse(FileSystem.exists(work + "/config-bad.sparc"))
        try guest("kill \(holder)")
    }

    /// Copies of guest RAM that live copies of ended commands left in the RAM directory
    /// (another lane's may be at work: only those whose process is gone count).
    func abandonedLiveCopies() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: "/dev/shm").filter {
            $0.hasPrefix("live-ram-") && kill(Int32($0.dropFirst("live-ram-".count)) ?? 1, 0) != 0
        }
    }

    /// A live copy QEMU's stream cannot serve (here: a RAM block that is not in it) falls back
    /// to pausing the guest for the copy; the bundle is whole and the guest runs on.
    func testALiveCopyThatFailsFallsBackToPausing() throws {
        let bundle = work + "/fallback.sparc"
        let r = try sparc.run(["checkpoint", "--name", vm, "-o", bundle], environment: ["SPARC_LIVE_COPY": "1", "SPARC_LIVE_COPY_BLOCK": "no-such-block"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8).contains("guestRAMOmitted"), "paused for the copy")
        XCTAssertTrue(try sparc.ok(["verify", bundle]).contains("intact"))
        XCTAssertTrue(try sparc.ok(["vm", "status", "--name", vm]).contains("guest:    running"))
        XCTAssertEqual(try abandonedLiveCopies(), [], "no copy left")
    }

    func testCheckpointKilledAtEveryPhaseIsUndoneByTheNextCommand() throws {
        let victim = try detach("while :; do sleep 1000; done")
        // A guest process that ticks: it advances only while the guest runs and is thawed.
        let ticker = try detach("i=0; while :; do i=$((i+1)); echo $i > /run/tick; sleep 0.1; done")
        func ticks() -> Int { Int((try? guest("cat /run/tick")) ?? "") ?? -1 }
        let dir = work + "/faults"
        try FileSystem.makeDirectories(dir)
        // With a process left out the guest is paused for the copy; with nothing left out memory
        // is copied while it runs (QEMU's migration into sparc, stopped at its last round).
        let points =
            [
                "checkpoint-after-collect", "checkpoint-after-pause", "checkpoint-after-devices", "checkpoint-after-memory",
                "checkpoint-after-resume", "checkpoint-before-commit",
            ].map { ($0, true) } + ["checkpoint-live-copy", "checkpoint-after-pause", "checkpoint-after-devices"].map { ($0, false) }
        // Each kind of next command: read-only, changing, and the status check itself.
        let nextCommands: [[String]] = [
            ["vm", "status", "--name", vm], ["ps", "--name", vm], ["ttys", "--name", vm], ["exec", "--name", vm, "--", "true"],
            ["vm", "status", "--name", vm, "--json"], ["rsdm", "--name", vm],
        ]
        for (n, (point, excluding)) in points.enumerated() {
            let out = dir + "/\(point)-\(excluding).sparc"
            let r = try sparc.run(
                ["checkpoint", "--name", vm, "-o", out] + (excluding ? ["--exclude-pid", String(victim)] : []),
                environment: ["SPARC_FAULT": point, "SPARC_FREEZE_LEASE": "3600", "SPARC_GUARDIAN": "off", "SPARC_LIVE_COPY": excluding ? "0" : "1"])
            XCTAssertEqual(r.status, 128 + SIGKILL, "\(point): \(r.stderr)")
            XCTAssertFalse(FileSystem.exists(out), "\(point): no bundle under the final name")
            // The dead checkpoint's own marker says it held the guest (a paused guest cannot answer).
            XCTAssertTrue(freezeMarkers().contains("at-work-by"), "\(point): the killed checkpoint left its marker")
            if point != "checkpoint-after-resume" && point != "checkpoint-before-commit" && !freezeMarkers().contains("paused-by") {
                if excluding {
                    XCTAssertTrue(try agentSaysFrozen(), "\(point): the killed checkpoint left the guest frozen (as the test means it to)")
                } else {
                    // A live copy never freezes the guest's processes: they run through it.
                    XCTAssertFalse(try agentSaysFrozen(), "\(point): a live copy froze the guest's processes")
                }
            }
            let began = Date()
            let next = nextCommands[n % nextCommands.count]
            let result = try sparc.run(next)
            XCTAssertEqual(result.status, 0, "\(point): sparc \(next.joined(separator: " ")): \(result.stderr)")
            // Right after that one command: thawed and running, markers gone, its staging directory too.
            XCTAssertFalse(try agentSaysFrozen(), "\(point): 'sparc \(next.joined(separator: " "))' thawed the guest")
            XCTAssertEqual(freezeMarkers(), [], point)
            XCTAssertEqual(try abandonedLiveCopies(), [], "\(point): the killed checkpoint's copy of guest RAM is gone")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".partial") }, [], "\(point): staging removed")
            print("\(point): guest thawed by 'sparc \(next.joined(separator: " "))' \(String(format: "%.2f", Date().timeIntervalSince(began))) s after the kill")
            let t0 = ticks()
            var t1 = t0
            for _ in 0..<100 where t1 <= t0 { t1 = ticks() }
            XCTAssertGreaterThan(t1, t0, "\(point): the guest's processes run")
            XCTAssertTrue(try sparc.ok(["vm", "status", "--name", vm]).contains("guest:    running"), point)
        }
        let log = try sparc.ok(["log", "--name", vm])
        XCTAssertTrue(log.contains("died with the guest frozen; thawed by the next sparc command"), log)
        try sparc.ok(["checkpoint", "--name", vm, "-o", dir + "/after.sparc"], environment: ["SPARC_LIVE_COPY": "1"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["after.sparc"])
        // Which way each copied memory, as its manifest says (a restore loads the device state by it).
        XCTAssertTrue(try String(contentsOfFile: dir + "/after.sparc/manifest.json", encoding: .utf8).contains("guestRAMOmitted"), "copied while the guest ran")
        try sparc.ok(["checkpoint", "--name", vm, "-o", dir + "/excluding.sparc", "--exclude-pid", String(victim)], environment: ["SPARC_LIVE_COPY": "1"])
        XCTAssertFalse(try String(contentsOfFile: dir + "/excluding.sparc/manifest.json", encoding: .utf8).contains("guestRAMOmitted"), "paused for the copy")
        try guest("kill \(victim) \(ticker)")
    }

    /// sparc killed outright (SIGKILL, as a crash or the OOM killer would) at every phase of a
    /// checkpoint and after a restore's guest ran: no sparc command follows and the lease is
    /// far longer than the test, yet the command's guardian resumes QEMU, thaws the guest (the
    /// restore's excluded process ended first), removes the partial bundle and logs it. The
    /// time from the kill to the guest running again is printed (the guardian's own work).
    func testCommandKilledOutrightIsUndoneByItsGuardian() throws {
        let victim = try detach("while :; do sleep 1000; done")
        let ticker = try detach("i=0; while :; do i=$((i+1)); echo $i > /run/guard-tick; sleep 0.1; done")
        let dir = work + "/guarded"
        try FileSystem.makeDirectories(dir)
        /// Waits for the markers to go without running any sparc command (bounded, not timed).
        func undone(_ what: String) -> Bool {
            let began = Date()
            for _ in 0..<600 where !freezeMarkers().isEmpty { usleep(10_000) }
            print("\(what): undone by the guardian within \(String(format: "%.2f", Date().timeIntervalSince(began))) s of the command's end")
            return freezeMarkers().isEmpty
        }
        let points = ["checkpoint-after-collect", "checkpoint-after-pause", "checkpoint-after-memory", "checkpoint-before-commit"]
        for point in points {
            let out = dir + "/\(point).sparc"
            let r = try sparc.run(
                ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(victim)],
                environment: ["SPARC_FAULT": point, "SPARC_FREEZE_LEASE": "3600"])
            XCTAssertEqual(r.status, 128 + SIGKILL, "\(point): \(r.stderr)")
            XCTAssertTrue(undone(point), "\(point): the guardian removed the markers: \(freezeMarkers())")
            XCTAssertFalse(try agentSaysFrozen(), "\(point): the guardian thawed the guest")
            XCTAssertFalse(FileSystem.exists(out), point)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "\(point): partial bundle removed")
        }
        let log = try sparc.ok(["log", "--name", vm])
        let recovered = log.split(separator: "\n").filter { $0.contains("recovered") && $0.contains("died") && ($0.contains("thawed by its guardian") || $0.contains("found by its guardian")) }
        XCTAssertEqual(recovered.count, points.count, "each killed checkpoint undone by its guardian: \(log)")
        XCTAssertTrue(log.contains("resumed by its guardian"), "a paused guest was resumed by it: \(log)")
        XCTAssertTrue(try advances("/run/guard-tick"), "the guest's processes run")

        let bundle = dir + "/guarded.sparc"
        let excluded = try detach("exec sleep 4001")
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(excluded)])
        let r = try sparc.run(["restore", bundle, "--name", vm, "--replace"], environment: ["SPARC_FAULT": "restore-after-resume", "SPARC_FREEZE_LEASE": "3600"])
        XCTAssertEqual(r.status, 128 + SIGKILL, r.stderr)
        XCTAssertTrue(undone("restore"), "the guardian thawed the restored guest: \(freezeMarkers())")
        XCTAssertFalse(try agentSaysFrozen())
        XCTAssertEqual(try guest("kill -0 \(excluded) 2>/dev/null && echo alive || echo gone"), "gone", "the excluded process never ran on")
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("restore (pid"), "the recovery is logged")
        for line in try sparc.ok(["log", "--name", vm]).split(separator: "\n") where line.contains("its guardian") { print("guardian: \(line)") }
        try guest("kill \(victim) \(ticker)")
        try assertHealthy()
    }

    /// Ctrl-C (SIGINT), SIGTERM and SIGHUP cancel a checkpoint at each phase as Esc does: the
    /// command ends with the signal's status and one line, the guest runs and is thawed by the
    /// command itself (no marker left for a next command to find, nothing recovered in the log),
    /// and no bundle or partial directory is left. The time from the signal to the end is printed.
    func testSignalsCancelACheckpointAtEveryPhase() throws {
        let victim = try detach("while :; do sleep 1000; done")
        let dir = work + "/signals"
        try FileSystem.makeDirectories(dir)
        let reached = work + "/reached"
        let logBefore = try sparc.ok(["log", "--name", vm]).components(separatedBy: "recovered").count
        let points = ["checkpoint-after-collect", "checkpoint-after-pause", "checkpoint-after-devices", "checkpoint-after-memory", "checkpoint-after-resume"]
        for (n, point) in points.enumerated() {
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                unlink(reached)
                let out = dir + "/\(point)-\(sig).sparc"
                let errFile = work + "/stderr-\(sig)"
                let err = open(errFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                var env = ProcessInfo.processInfo.environment
                env["SPARC_RUNTIME_DIR"] = runtime
                env["SPARC_STATE_DIR"] = runtime + "-state"
                env["SPARC_FAULT"] = point + ":stall=60"
                env["SPARC_FAULT_REACHED"] = reached
                env["SPARC_FREEZE_LEASE"] = "3600"
                let pid = try Subprocess.spawn(
                    [sparc.binary, "checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(victim)], stderr: err, environment: env)
                close(err)
                // The stall is reached: the step is where the test wants the signal.
                var arrived = false
                for _ in 0..<600 where !arrived {
                    usleep(100_000)
                    arrived = (try? FileSystem.readFile(reached)).map { String(decoding: $0, as: UTF8.self).contains(point) } ?? false
                }
                XCTAssertTrue(arrived, "\(point): the checkpoint reached the step")
                if n == 0 && sig == SIGINT {
                    // Meanwhile vm status says the guest is frozen, and by whom (and does not thaw it).
                    let status = try sparc.ok(["vm", "status", "--name", vm])
                    XCTAssertTrue(status.contains("guest:    frozen: checkpoint (pid \(pid)) is at work"), status)
                }
                let sent = Date()
                kill(pid, sig)
                let status = Subprocess.wait(pid)
                let took = Date().timeIntervalSince(sent)
                let stderr = String(decoding: (try? FileSystem.readFile(errFile)) ?? Data(), as: UTF8.self)
                XCTAssertEqual(status, 128 + sig, "\(point), signal \(sig): \(stderr)")
                XCTAssertEqual(stderr.split(separator: "\n").filter { !$0.trimmed.isEmpty }.count, 1, stderr)
                XCTAssertTrue(stderr.contains("cancelled by SIG") && stderr.contains("no bundle was written"), stderr)
                // Undone by the command itself: nothing left for the next one to recover.
                XCTAssertEqual(freezeMarkers(), [], "\(point), signal \(sig)")
                XCTAssertFalse(try agentSaysFrozen(), "\(point), signal \(sig): the guest was thawed")
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "\(point), signal \(sig): no bundle, no partial directory")
                print("\(point), signal \(sig): cancelled, guest running and thawed \(String(format: "%.2f", took)) s after the signal")
            }
        }
        XCTAssertTrue(try sparc.ok(["vm", "status", "--name", vm]).contains("guest:    running"))
        XCTAssertEqual(try sparc.ok(["log", "--name", vm]).components(separatedBy: "recovered").count, logBefore, "nothing needed recovering")
        try guest("kill \(victim)")
    }

    /// A restore killed after its guest ran (frozen, as saved) but before the guided cleanup:
    /// the next sparc command thaws the guest the way the agent's lease would, so the excluded
    /// process dies before anything runs; a restore cancelled by a signal before the guest runs
    /// starts nothing and says that the VM it was to replace was stopped.
    func testRestoreKilledOrCancelledNeverLeavesTheGuestFrozenOrTheExcludedAlive() throws {
        let victim = try detach("exec sleep 4000")
        let bundle = work + "/restore-after-resume.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(victim)])
        let r = try sparc.run(["restore", bundle, "--name", vm, "--replace"], environment: ["SPARC_FAULT": "restore-after-resume", "SPARC_FREEZE_LEASE": "3600", "SPARC_GUARDIAN": "off"])
        XCTAssertEqual(r.status, 128 + SIGKILL, r.stderr)
        XCTAssertTrue(freezeMarkers().contains("at-work-by"), "the dead restore left its marker")
        XCTAssertTrue(try agentSaysFrozen(), "the restored guest is still frozen (as the test means it to be)")
        let ps = try sparc.ok(["ps", "--name", vm])
        XCTAssertFalse(try agentSaysFrozen(), "the next command thawed the guest")
        XCTAssertFalse(ps.split(separator: "\n").contains { $0.trimmed.hasPrefix("\(victim) ") && $0.contains("sleep 4000") }, "the excluded process never ran on: \(ps)")
        XCTAssertEqual(try guest("kill -0 \(victim) 2>/dev/null && echo alive || echo gone"), "gone")
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("restore (pid"), "the recovery is logged")

        // Cancelled before its guest ran: nothing started, the replaced VM stopped and said so.
        let reached = work + "/restore-reached"
        unlink(reached)
        var env = ProcessInfo.processInfo.environment
        env["SPARC_RUNTIME_DIR"] = runtime
        env["SPARC_STATE_DIR"] = runtime + "-state"
        env["SPARC_FAULT"] = "restore-after-memory:stall=60"
        env["SPARC_FAULT_REACHED"] = reached
        let errFile = work + "/restore-stderr"
        let err = open(errFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let pid = try Subprocess.spawn([sparc.binary, "restore", bundle, "--name", vm, "--replace"], stderr: err, environment: env)
        close(err)
        var arrived = false
        for _ in 0..<600 where !arrived {
            usleep(100_000)
            arrived = FileSystem.exists(reached)
        }
        XCTAssertTrue(arrived)
        kill(pid, SIGINT)
        XCTAssertEqual(Subprocess.wait(pid), 128 + SIGINT)
        let stderr = String(decoding: try FileSystem.readFile(errFile), as: UTF8.self)
        XCTAssertTrue(stderr.contains("cancelled by SIGINT") && stderr.contains("had been stopped"), stderr)
        try assertNoVM(vm)
        try sparc.ok(["restore", bundle, "--name", vm])
        try assertHealthy()
    }

    /// sparc killed at every phase of a restore before the guest runs: the next command for
    /// the VM finds no half-started VM (no QEMU waiting for its state, no RAM file left), the
    /// history says what happened, and the next restore works.
    func testRestoreKilledAtEveryPhaseLeavesNoHalfStartedVM() throws {
        try guest("echo before > /run/restore-mark")
        let bundle = work + "/restore-faults.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        func qemuPids() throws -> Set<String> {
            Set(try Subprocess.run(["pgrep", "-f", "qemu-system.*\(runtime)/\(vm)/"]).stdoutText.split(separator: "\n").map(String.init))
        }
        func ramFiles() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("sparc-\(vm)-") }
        }
        for point in ["restore-after-memory", "restore-after-launch", "restore-before-resume"] {
            // Other VMs of this name (another test run) may have RAM here too: only new ones count.
            let before = Set(ramFiles())
            let r = try sparc.run(["restore", bundle, "--name", vm, "--replace"], environment: ["SPARC_FAULT": point])
            XCTAssertEqual(r.status, 128 + SIGKILL, "\(point): \(r.stderr)")
            // The next command for the VM.
            let status = try sparc.run(["vm", "status", "--name", vm])
            XCTAssertFalse(status.stdout.contains("running"), "\(point): \(status.stdout)")
            XCTAssertEqual(try qemuPids(), [], "\(point): no QEMU left for the VM")
            XCTAssertTrue(Set(ramFiles()).isSubset(of: before), "\(point): the killed restore's RAM file is gone: \(ramFiles())")
            try sparc.ok(["restore", bundle, "--name", vm])
            XCTAssertEqual(try guest("cat /run/restore-mark"), "before", point)
        }
        XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("half-started VM was removed"))
    }

    /// QEMU killed (as by the OOM killer or an operator) while a checkpoint or a restore waits on
    /// it: a clear one-line error, no bundle, no half-started VM, the runtime state cleaned and
    /// the history told; the VM comes back from a bundle.
    func testQEMUKilledDuringCheckpointOrRestoreIsAClearError() throws {
        try guest("echo kept > /run/qemu-kill-mark")
        let bundle = work + "/before-qemu-kill.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let dir = work + "/qemu-kill"
        try FileSystem.makeDirectories(dir)
        func ramFiles() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("sparc-\(vm)-") })
        }
        func qemuPid() -> pid_t? {
            let r = try? Subprocess.run(["pgrep", "-f", "qemu-system.*\(runtime)/\(vm)/"])
            return r.flatMap { pid_t($0.stdoutText.split(separator: "\n").first ?? "") }
        }
        /// Runs sparc with a stall at `point` and kills the VM's QEMU while it waits there.
        func runKillingQEMU(_ args: [String], at point: String) throws -> SparcRunner.Output {
            let result = SharedBox<SparcRunner.Output?>(nil)
            let done = DispatchSemaphore(value: 0)
            let sparc = self.sparc
            DispatchQueue.global().async {
                result.value = try? sparc.run(args, environment: ["SPARC_FAULT": point + ":stall=6"])
                done.signal()
            }
            // A restore (--replace) stops the running QEMU first: the one to kill is the new one.
            let previous = point.hasPrefix("restore") ? qemuPid() : nil
            var killed: pid_t?
            for _ in 0..<100 where killed == nil {
                usleep(100_000)
                // A checkpoint has paused the guest (the stall follows at once, or after the device state).
                let reached = point.hasPrefix("restore") || FileSystem.exists(runtime + "/\(vm)/paused-by")
                if reached, let pid = qemuPid(), pid != previous {
                    usleep(1_500_000)
                    kill(pid, SIGKILL)
                    killed = pid
                }
            }
            XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
            return try XCTUnwrap(result.value)
        }
        let rams = ramFiles()
        for point in ["checkpoint-after-pause", "checkpoint-after-devices"] {
            let out = dir + "/\(point).sparc"
            let r = try runKillingQEMU(["checkpoint", "--name", vm, "-o", out], at: point)
            XCTAssertEqual(r.status, 2, "\(point): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(point): one line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("exited during the checkpoint") && r.stderr.contains("no bundle was written"), "\(point): \(r.stderr)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "\(point): no bundle, no partial directory")
            XCTAssertFalse(FileSystem.exists(runtime + "/" + vm), "\(point): runtime state cleaned")
            XCTAssertTrue(ramFiles().isSubset(of: rams), "\(point): the RAM file is gone")
            XCTAssertTrue(try sparc.ok(["log", "--name", vm]).contains("QEMU exited during the checkpoint"), point)
            try sparc.ok(["restore", bundle, "--name", vm])
            XCTAssertEqual(try guest("cat /run/qemu-kill-mark"), "kept", point)
        }
        for point in ["restore-after-launch", "restore-after-resume"] {
            let r = try runKillingQEMU(["restore", bundle, "--name", vm, "--replace"], at: point)
            XCTAssertEqual(r.status, 2, "\(point): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(point): one line: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("exited during the restore") && r.stderr.contains("the bundle is intact"), "\(point): \(r.stderr)")
            XCTAssertNil(qemuPid(), "\(point): no QEMU left")
            XCTAssertFalse(FileSystem.exists(runtime + "/" + vm), "\(point): no half-started VM")
            XCTAssertTrue(ramFiles().isSubset(of: rams), "\(point): the RAM file is gone")
            try sparc.ok(["verify", bundle])
            try sparc.ok(["restore", bundle, "--name", vm])
            XCTAssertEqual(try guest("cat /run/qemu-kill-mark"), "kept", point)
        }
        try noOops()
    }

    /// The RAM directory fills up (another tenant of the tmpfs) while a restore loads the
    /// guest's memory: a clear one-line error, the partial RAM file removed, no half-started
    /// VM, the bundle intact; the next restore works.
    func testFullRAMDirectoryDuringRestoreIsAClearError() throws {
        try guest("echo kept > /run/full-ram-mark")
        let bundle = work + "/before-full-ram.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let memory = try BundleReader(path: bundle).manifest.memory.bytes
        let ramDir = try makeTempDir("ram")
        XCTAssertEqual(try Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=\((memory >> 20) + 16)m,mode=0755", "tmpfs", ramDir]).status, 0)
        defer {
            _ = try? Subprocess.run(["umount", ramDir])
            rmdir(ramDir)
        }
        let result = SharedBox<SparcRunner.Output?>(nil)
        let done = DispatchSemaphore(value: 0)
        let sparc = self.sparc
        let runtime = self.runtime, vm = self.vm
        DispatchQueue.global().async {
            result.value = try? sparc.run(
                ["restore", bundle, "--name", vm, "--replace"],
                environment: ["SPARC_RAM_DIR": ramDir, "SPARC_FAULT": "restore-before-memory:stall=4"])
            done.signal()
        }
        // Past the space check (the restore marks its start), the tmpfs fills up but for 4 MiB.
        for _ in 0..<200 where !FileSystem.exists(runtime + "/\(vm)/restoring-by") { usleep(50_000) }
        var fs = statvfs()
        XCTAssertEqual(statvfs(ramDir, &fs), 0)
        let fill = Int64(fs.f_bavail) * Int64(fs.f_frsize) - (4 << 20)
        XCTAssertEqual(try Subprocess.run(["fallocate", "-l", String(fill), ramDir + "/filler"]).status, 0)
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        let r = try XCTUnwrap(result.value)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("ran out of space while the guest's memory was loaded") && r.stderr.contains("the bundle is intact"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ramDir), ["filler"], "the partial RAM file and its directory are gone")
        XCTAssertFalse(FileSystem.exists(runtime + "/" + vm), "no half-started VM")
        try sparc.ok(["verify", bundle])
        try sparc.ok(["restore", bundle, "--name", vm])
        XCTAssertEqual(try guest("cat /run/full-ram-mark"), "kept")
        try noOops()
    }

    func testUnknownNames() throws {
        try sparc.fails(["ps", "--name", "nosuch"], message: "no VM named 'nosuch' is running")
        try sparc.fails(["checkpoint", "--name", "nosuch", "-o", work + "/n.sparc"], message: "no VM named 'nosuch'")
        try sparc.fails(["vm", "start", "--name", vm], message: "already running")
        try sparc.fails(["ps", "--name", "../etc"], message: "invalid VM name")
    }
}

import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// The exclusion engine against the real guest: a fresh secret reaches the guest through
/// each channel; checkpoints without exclusion, with --scope user and with --scope all are
/// searched for it; the restored guest runs on without the excluded processes.
final class ExclusionTests: GuestTestCase {
    override class var vmName: String { "excl" }
    /// Two vCPUs: exclusion must hold while guest threads really run in parallel, and the
    /// helper's session lock is only put to the test there.
    override class var startArguments: [String] { ["--cpus", "2"] }

    func testEffectivenessOfExclusionAcrossChannels() throws {
        var channels: [Channel] = []

        // 1. Typed into an interactive shell on a pty (sparc terminal) and on the serial console.
        let terminal = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal", "--name", vm, "--json"]).utf8)) as! [String: Any]
        let pty = terminal["tty"] as! String
        let typedPty = Self.randomSecret("PTY")
        try sparc.ok(["terminal", "--name", vm, "--send", "export TYPED=\(typedPty)\\n"])
        channels.append(Channel(name: "1. typed in a shell on a pty (sparc terminal)", secret: typedPty))
        let typedSerial = Self.randomSecret("CON")
        try sparc.ok(["console", "--name", vm, "--send", "export TYPED=\(typedSerial)\\n"])
        channels.append(Channel(name: "1. typed in the serial-console shell", secret: typedSerial))

        let (more, pids) = try standardChannels(fileDirectory: "/data")
        channels += more
        // A bystander that must run on after the restore.
        _ = try detach("i=0; while :; do i=$((i+1)); echo $i > /run/bystander; sleep 0.2; done")
        XCTAssertTrue(try advances("/run/bystander"))

        let targets = ["--exclude-tty", pty, "--exclude-tty", "ttyS0"] + pids.flatMap { ["--exclude-pid", String($0)] }
        let (_, bundles) = try effectivenessTable(channels, targets: targets, tag: "busybox")

        let manifest = try BundleReader(path: bundles[2]).manifest
        let excludedPids = Set(manifest.exclusion.processes.map(\.pid))
        for pid in pids.dropLast() + [Int32(terminal["relayPid"] as! Int), Int32(terminal["shellPid"] as! Int)] {
            XCTAssertTrue(excludedPids.contains(pid), "pid \(pid) missing from the manifest's excluded processes")
        }
        XCTAssertEqual(manifest.exclusion.scope, "all")
        XCTAssertGreaterThan(manifest.exclusion.bytesByKind["user"] ?? 0, 0)
        for kind in ["tty", "pipe", "socket", "pagecache", "kstack"] {
            XCTAssertGreaterThan(manifest.exclusion.bytesByKind[kind] ?? 0, 0, "no \(kind) bytes excluded")
        }
        XCTAssertTrue(manifest.exclusion.evictFiles.contains("/data/ch3.txt"), "\(manifest.exclusion.evictFiles)")
        let fileSecret = channels.first { $0.name.hasPrefix("3.") }!.secret

        // Restore: the excluded processes are killed before the guest runs on; the rest goes on.
        let restore = try sparc.run(["restore", bundles[2], "--name", vm, "--replace"])
        XCTAssertEqual(restore.status, 0, restore.stderr)
        XCTAssertTrue(restore.stdout.contains("killed excluded processes"), restore.stdout)
        XCTAssertTrue(try advances("/run/bystander"), "bystander runs on")
        let alive = try livePids()
        for pid in excludedPids { XCTAssertFalse(alive.contains(pid), "excluded pid \(pid) still runs after restore") }
        // init reaps the killed console shell once thawed and starts a new one.
        var respawned = false
        for _ in 0..<50 where !respawned {
            let rows = try sparc.ok(["ps", "--name", vm]).split(separator: "\n")
            respawned = rows.contains { $0.hasSuffix("-/bin/sh") && $0.contains("ttyS0") && !excludedPids.contains(Int32($0.split(separator: " ")[0]) ?? -1) }
            if !respawned { usleep(200_000) }
        }
        XCTAssertTrue(respawned, "init respawned the console shell")
        XCTAssertEqual(try guest("cat /data/ch3.txt"), fileSecret, "a file read by an excluded process reads correctly from disk")
        try assertNoKernelComplaint()
        XCTAssertEqual(try guest("echo ok > /data/after-restore && cat /data/after-restore"), "ok")
    }

    func testSearchAttributesHitsToTheOwningProcess() throws {
        let holder = try detach("mkfifo /run/own; S=\(Self.generate); printf %s \"$S\" > /run/own; while :; do sleep 1000; done")
        let secret = try readFifo("/run/own")
        XCTAssertEqual(secret.count, 32)
        let bundle = work + "/owners.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let out = try sparc.run(["search", secret, bundle, "--json"])
        XCTAssertEqual(out.status, 0, out.stderr)
        let hits = try XCTUnwrap(JSONOutput.list(out.stdout, "hits"), out.stdout)
        let owners = hits.compactMap { $0["owner"] as? [String: Any] }
        XCTAssertTrue(
            owners.contains { ($0["pid"] as? Int).map(Int32.init) == holder && ($0["mapping"] as? String) == "[heap]" },
            "a hit in pid \(holder)'s heap expected: \(hits)")
        XCTAssertTrue(hits.allSatisfy { ($0["file"] as? String)?.hasSuffix("memory.img") == true && $0["address"] != nil })
        let text = try sparc.ok(["search", secret, bundle])
        XCTAssertTrue(text.contains("[pid \(holder) sh [heap]]"), text)
        // One member searched alone (as the TUI's hex view searches the file it shows) is still
        // read as part of its bundle: addresses and owners stay.
        let member = try sparc.ok(["search", secret, bundle + "/memory.img"])
        XCTAssertTrue(member.contains("[pid \(holder) sh [heap]]"), member)

        // Excluded: gone from every file; search says so and exits 1.
        let clean = work + "/owners-clean.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", clean, "--exclude-pid", String(holder)])
        let none = try sparc.run(["search", secret, clean])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stdout.contains("not found in any file of the bundle"), none.stdout)
        try sparc.fails(["search", secret, work + "/no-such.sparc"], message: "no such file or bundle")
        try sparc.fails(["search", "--hex", "zz", clean], message: "not a hex byte pattern")
        try guest("kill \(holder)")
    }

    /// A process that named itself with the secret: the name is in every bundle's owner map
    /// while it is not excluded; excluded, neither manifest.json nor owners.bin holds it
    /// (the manifest keeps a keyed hash), and checkpoint still shows the live name.
    func testExcludedProcessNamesAreNotWrittenInClear() throws {
        // A process name holds 15 characters at most.
        let holder = try detach("S=$(tr -dc A-Za-z0-9 </dev/urandom | head -c 15); mkfifo /run/name; printf %s $S > /run/name; exec sparc-probe named $S")
        let name = try readFifo("/run/name")
        XCTAssertEqual(name.count, 15)
        func inMetadata(_ bundle: String) throws -> [String] {
            ["manifest.json", "owners.bin"].filter { f in
                (try? Data(contentsOf: URL(fileURLWithPath: bundle + "/" + f)))?.range(of: Data(name.utf8)) != nil
            }
        }
        let plain = work + "/named.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", plain])
        XCTAssertEqual(try inMetadata(plain), ["owners.bin"], "baseline: the owner map names every process")
        let hidden = work + "/named-excluded.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", hidden, "--exclude-pid", String(holder)])
        XCTAssertTrue(out.contains("pid \(holder) \(name)"), "the operator sees the live name: \(out)")
        XCTAssertEqual(try inMetadata(hidden), [], "no clear name in the bundle's metadata")
        let record = try XCTUnwrap(try BundleReader(path: hidden).manifest.exclusion.processes.first { $0.pid == holder })
        XCTAssertNil(record.command)
        XCTAssertEqual(record.commandHash?.count, 64)
        try sparc.ok(["restore", hidden, "--name", vm, "--replace"])
        XCTAssertFalse(try livePids().contains(holder))
    }

    /// What every escape test shows: a checkpoint without exclusion holds the secret, one
    /// excluding `pid` holds none of it (its output gives `reason` for the process that
    /// carried it), and the restore of the latter ends `gone`. `tag` names the bundles.
    func assertLeftOutAndEnded(secret: String, excluding pid: Int32, reason: String, gone: [Int32], tag: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let baseline = work + "/\(tag)-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline], file: file, line: line)
        XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds the secret", file: file, line: line)
        let bundle = work + "/\(tag).sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(pid)], file: file, line: line)
        XCTAssertTrue(out.contains("[\(reason)]"), out, file: file, line: line)
        let none = try sparc.run(["search", secret, bundle])
        XCTAssertEqual(none.status, 1, none.stdout, file: file, line: line)
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"], file: file, line: line)
        let alive = try livePids()
        for p in gone { XCTAssertFalse(alive.contains(p), "pid \(p) was ended at restore", file: file, line: line) }
    }

    /// A `(cmd &)` orphan keeps a copy of the secret: reparented to init, it is no child of
    /// the excluded process any more, but it stays in its session, so it is excluded with it.
    func testOrphanInTheSessionIsExcludedToo() throws {
        // The inner shell reports its pid and holds the secret; the subshell that started it exits at once.
        let leader = try detach(
            "mkfifo /run/orphan; S=\(Self.generate); (sh -c \"X=$S; printf '%s %s' \\$\\$ \\\"\\$X\\\" > /run/orphan; while :; do sleep 1000; done\" &); while :; do sleep 1000; done")
        let reported = try readFifo("/run/orphan").split(separator: " ")
        let orphan = try XCTUnwrap(Int32(reported.first ?? ""))
        let secret = String(reported.last ?? "")
        XCTAssertEqual(secret.count, 32)
        XCTAssertNotEqual(orphan, leader)
        XCTAssertEqual(try guest("awk '{print $4}' /proc/\(orphan)/stat"), "1", "the orphan was reparented to init")
        try assertLeftOutAndEnded(secret: secret, excluding: leader, reason: "in the session of \(leader)", gone: [orphan, leader], tag: "orphan")
        try assertNoKernelComplaint()
    }

    /// A reader that is not excluded never reads the zeros left where an excluded writer's
    /// unread pipe data was: at restore the pipe is emptied before anything runs, and once
    /// the writer is killed the reader sees end of data, as if it had died before writing.
    func testBystanderReaderOfAnExcludedWritersPipeSeesNoZeros() throws {
        // The secret exists only in the writer's subshell (scrubbed when it execs sleep) and in the pipe.
        _ = try detach(
            "mkfifo /run/pw-secret; { S=\(Self.generate); printf %s \"$S\" > /run/pw-secret; printf 'line:%s\\n' \"$S\"; exec sleep 100001; } | { while [ ! -e /run/pw-go ]; do sleep 0.2; done; cat > /run/pw-out; echo done > /run/pw-done; }"
        )
        let secret = try readFifo("/run/pw-secret")
        XCTAssertEqual(secret.count, 32)
        var writer: Int32?
        for _ in 0..<50 where writer == nil {
            writer = Int32(try guest("for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 100001 ' ] && basename $p; done; true"))
            if writer == nil { usleep(100_000) }
        }
        let pid = try XCTUnwrap(writer, "the writer execs sleep 100001")
        let baseline = work + "/pipe-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds the unread pipe data")
        let bundle = work + "/pipe.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(pid)])
        let none = try sparc.run(["search", secret, bundle])
        XCTAssertEqual(none.status, 1, none.stdout)
        XCTAssertGreaterThan(try BundleReader(path: bundle).manifest.exclusion.bytesByKind["pipe"] ?? 0, 0)

        let restore = try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertTrue(restore.contains("dropped unread data"), restore)
        XCTAssertFalse(try livePids().contains(pid), "the excluded writer was ended")
        try guest("touch /run/pw-go; i=0; while [ ! -e /run/pw-done ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done")
        XCTAssertEqual(try guest("cat /run/pw-done"), "done", "the reader saw end of data and went on")
        XCTAssertEqual(try guest("wc -c < /run/pw-out"), "0", "the reader read nothing, and no NUL bytes")
        try assertNoKernelComplaint()
    }

    /// Data an excluded process wrote into a queue someone else holds, whether or not the
    /// writer still lives: a FIFO held open by a bystander (the writer closed it), a unix stream
    /// whose sender closed it and one whose sender exited, TCP on loopback acknowledged and
    /// its sender gone, a UDP datagram nobody read, and (our own case) a unix datagram from a
    /// sender that exited. The baseline holds every copy; the exclusion none, naming each
    /// holder; after the restore every reader finds a clean end — no secret, no zeros.
    func testDataTheExcludedWroteIntoOthersQueuesIsLeftOutWhoeverHoldsThem() throws {
        let receivers = [("fifo", "/run/q-fifo"), ("unix", "/run/q-unix"), ("unix", "/run/q-unix-exit"), ("tcp", "7101"), ("udp", "7102"), ("unixdgram", "/run/q-dgram")]
        var readers: [Int32] = []
        try guest("rm -f /run/q-*; mkfifo /run/q-fifo")
        for (i, (kind, place)) in receivers.enumerated() {
            readers.append(try detach("exec sparc-probe recv-late \(kind) \(place) /run/q-out-\(i)"))
        }
        try guest("for i in 0 1 2 3 4 5; do while [ ! -e /run/q-out-$i.ready ]; do sleep 0.1; done; done")
        // The secret is made in the guest; the shell that sent it execs sleep (its memory scrubbed of it).
        let sender = try detach(
            "S=\(Self.generate); printf %s \"$S\" > /run/q-secret; printf %s \"$S\" > /run/q-fifo; "
                + "printf %s \"$S\" | sparc-probe send-close unix /run/q-unix >/dev/null & "
                + "printf %s \"$S\" | sparc-probe send-close unix /run/q-unix-exit exit; printf %s \"$S\" | sparc-probe send-close tcp 7101 exit; "
                + "printf %s \"$S\" | sparc-probe send-close udp 7102 exit; printf %s \"$S\" | sparc-probe send-close unixdgram /run/q-dgram exit; "
                + "echo sent > /run/q-sent; exec sleep 100002")
        try guest("while [ ! -e /run/q-sent ]; do sleep 0.1; done")
        let secret = try guest("cat /run/q-secret; rm /run/q-secret")
        XCTAssertEqual(secret.count, 32)

        let baseline = work + "/queues-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        let baselineHits = try SecretScan.hits(secret, inBundle: baseline)["memory.img"] ?? 0
        XCTAssertGreaterThanOrEqual(baselineHits, receivers.count, "the baseline holds a copy in every queue")
        print("effectiveness: queues others hold (6 channels): baseline \(baselineHits) hit(s)")

        let bundle = work + "/queues.sparc"
        let said = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(sender)])
        XCTAssertEqual(try SecretScan.hits(secret, inBundle: bundle).values.reduce(0, +), 0, "no copy in any file: \(said)")
        for reader in readers { XCTAssertTrue(said.contains("pid \(reader) (sparc-probe)"), "the report names the holder \(reader): \(said)") }
        let exited = try BundleReader(path: bundle).manifest.exclusion.exitedPids ?? []
        XCTAssertGreaterThanOrEqual(exited.count, 4, "the senders that exited are the excluded shell's descendants")

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertFalse(try livePids().contains(sender))
        XCTAssertTrue(Set(readers).isSubset(of: try livePids()), "every reader, a bystander, lives on")
        try guest("for p in \(readers.map(String.init).joined(separator: " ")); do kill -USR1 $p; done; for i in 0 1 2 3 4 5; do n=0; while ! grep -q '^END' /run/q-out-$i 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; done")
        for i in receivers.indices {
            let read = try guest("od -c /run/q-out-\(i)")
            XCTAssertFalse(read.contains("\\0"), "reader \(receivers[i]) read no zeros: \(read)")
            XCTAssertFalse(try guest("cat /run/q-out-\(i)").contains(secret), "reader \(receivers[i]) did not read the secret")
            let end = try guest("tail -n 1 /run/q-out-\(i)")
            XCTAssertTrue(["END eof", "END again", "END reset"].contains(end), "reader \(receivers[i]) found a clean end: \(end)")
        }
        try assertNoKernelComplaint()
    }

    /// Nothing typed on a console between the collection and the pause reaches the guest
    /// (it would land in terminal buffers collected before it came): console input is held
    /// from before the collection until the guest runs again, then delivered, not lost.
    func testConsoleInputDuringACheckpointIsHeldUntilTheGuestRunsAgain() throws {
        let before = Self.randomSecret("BEFORE"), during = Self.randomSecret("DURING")
        try guest("rm -f /run/held-count")
        try sparc.ok(["console", "--name", vm, "--send", ": \(before)\\n"])
        final class Outcome: @unchecked Sendable { var result: SparcRunner.Output? }
        let outcome = Outcome(), finished = DispatchSemaphore(value: 0)
        let runner = sparc
        let bundle = work + "/held.sparc", name = vm
        // The checkpoint dwells between collection and pause (as a guest with many processes
        // can) until the test releases it; the operator types meanwhile.
        let reached = work + "/held-reached", release = work + "/held-release"
        unlink(reached)
        unlink(release)
        defer { FileManager.default.createFile(atPath: release, contents: Data()) }
        // The hold is the paused copy's (SPARC_LIVE_COPY=0): a live copy lets the guest run,
        // typing included, until the instant QEMU stops it, which is the bundle's instant.
        Thread.detachNewThread {
            outcome.result = try? runner.run(
                ["checkpoint", "--name", name, "-o", bundle],
                environment: [
                    "SPARC_FAULT": "checkpoint-after-collect:stall=600", "SPARC_FAULT_REACHED": reached, "SPARC_FAULT_RELEASE": release,
                    "SPARC_LIVE_COPY": "0",
                ])
            finished.signal()
        }
        for _ in 0..<600 where !FileSystem.exists(reached) { usleep(100_000) }
        XCTAssertTrue(FileSystem.exists(reached), "the checkpoint dwells after its collection")
        let typed = Outcome(), typedDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            typed.result = try? runner.run(["console", "--name", name, "--send", ": \(during); echo x >> /run/held-count\\n"])
            typedDone.signal()
        }
        // Typing is held as long as the checkpoint is (it cannot end before the release).
        XCTAssertEqual(typedDone.wait(timeout: .now() + 3), .timedOut, "typing waited for the checkpoint")
        FileManager.default.createFile(atPath: release, contents: Data())
        finished.wait()
        typedDone.wait()
        XCTAssertEqual(typed.result?.status, 0, typed.result?.stderr ?? "no result")
        XCTAssertEqual(outcome.result?.status, 0, outcome.result?.stderr ?? "no result")
        // Nothing is excluded here: what was typed before the checkpoint is in it, what was typed during is not.
        XCTAssertEqual(try sparc.run(["search", before, bundle]).status, 0, "typed before the checkpoint, in the bundle")
        let found = try sparc.run(["search", during, bundle])
        XCTAssertEqual(found.status, 1, "typed during the checkpoint, found in the bundle:\n\(found.stdout)")
        var ran = ""
        for _ in 0..<50 where ran != "1" {
            ran = try guest("cat /run/held-count 2>/dev/null | wc -l")
            if ran != "1" { usleep(100_000) }
        }
        XCTAssertEqual(ran, "1", "the held line ran once the guest was running again")
    }

    /// Copies a process leaves beyond what its page tables map: a pipe past 4096 open files,
    /// a page it vmspliced into a pipe and unmapped, a SysV segment it detached, a datagram
    /// waiting in a bystander's socket. Each is in the baseline and in no file of the
    /// excluded checkpoint; after restore the bystander receives nothing (no zeros) and the
    /// segment is gone with its creator. What cannot be attributed to a process (a key in the
    /// kernel keyring, a POSIX shm file written and closed) is named in a warning.
    func testKernelCopiesBeyondTheProcessesOwnPagesAreLeftOut() throws {
        let receiver = try detach("exec sparc-probe dgram-recv /run/dg.sock /run/dg.out")
        try guest("i=0; while [ ! -S /run/dg.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done")
        let leader = try detach(
            "mkfifo /run/kc; A=\(Self.generate); B=\(Self.generate); C=\(Self.generate); D=\(Self.generate); E=\(Self.generate); F=\(Self.generate); printf '%s %s %s %s %s %s' $A $B $C $D $E $F > /run/kc; "
                + "printf %s $A | sparc-probe many-fds 5000 > /run/kc-fds & printf %s $B | sparc-probe vmsplice & "
                + "printf %s $C | sparc-probe sysv > /run/kc-shmid & printf %s $D | sparc-probe dgram-send /run/dg.sock & "
                + "printf %s $E | sparc-probe key & printf %s $F > /dev/shm/kc-closed; while :; do sleep 1000; done")
        let secrets = try readFifo("/run/kc").split(separator: " ").map(String.init)
        XCTAssertEqual(secrets.count, 6)
        let (fds, vmspliced, sysv, dgram) = (secrets[0], secrets[1], secrets[2], secrets[3])
        try guest("i=0; while { [ ! -s /run/kc-shmid ] || [ ! -s /run/kc-fds ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done")
        let shmid = try guest("cat /run/kc-shmid")
        XCTAssertGreaterThan(Int(try guest("cut -d' ' -f2 /run/kc-fds")) ?? 0, 4096, "the pipe sits past the helper's batch of 4096 files")
        sleep(1)

        let baseline = work + "/kc-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        for secret in [fds, vmspliced, sysv, dgram] {
            XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds \(secret)")
        }
        let bundle = work + "/kc.sparc"
        let out = try sparc.run(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(leader)])
        XCTAssertEqual(out.status, 0, out.stderr)
        for (what, secret) in [("a pipe past 4096 files", fds), ("a vmspliced page", vmspliced), ("a detached SysV segment", sysv), ("a datagram sent to a bystander", dgram)] {
            let found = try sparc.run(["search", secret, bundle])
            XCTAssertEqual(found.status, 1, "\(what) kept the secret:\n\(found.stdout)")
        }
        XCTAssertGreaterThan(try BundleReader(path: bundle).manifest.exclusion.bytesByKind["shm"] ?? 0, 0)
        let said = out.stdout + out.stderr
        XCTAssertTrue(said.contains("kernel keyring: 1 key(s)"), said)
        XCTAssertTrue(said.contains("/dev/shm/kc-closed"), said)

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertFalse(try guest("cat /proc/sysvipc/shm").split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first == Substring(shmid) }, "segment \(shmid) removed")
        XCTAssertTrue(try livePids().contains(receiver), "the bystander runs on")
        try guest("kill -USR1 \(receiver); i=0; while [ ! -e /run/dg.out ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done")
        XCTAssertEqual(try guest("wc -c < /run/dg.out"), "0", "the bystander received nothing, no zeros")
        try guest("rm -f /dev/shm/kc-closed")
        try assertNoKernelComplaint()
    }

    /// A daemon that double-forked and left the session (setsid) keeps no tie to the excluded
    /// process in /proc: reparented to init, its own session and group, init's cgroup. The
    /// kernel's fork events, which the agent follows from boot, still lead to it.
    func testDaemonThatDoubleForkedAndLeftTheSessionIsExcludedToo() throws {
        let leader = try detach(
            "mkfifo /run/daemon; S=\(Self.generate); (setsid sh -c \"X=$S; printf '%s %s' \\$\\$ \\\"\\$X\\\" > /run/daemon; while :; do sleep 1000; done\" &); while :; do sleep 1000; done")
        let reported = try readFifo("/run/daemon").split(separator: " ")
        let daemon = try XCTUnwrap(Int32(reported.first ?? ""))
        let secret = String(reported.last ?? "")
        XCTAssertEqual(secret.count, 32)
        let stat = try guest("cut -d' ' -f4,6 /proc/\(daemon)/stat").split(separator: " ")
        XCTAssertEqual(stat.first, "1", "the daemon was reparented to init")
        XCTAssertEqual(stat.last.map(String.init), String(daemon), "the daemon leads a session of its own")
        try assertLeftOutAndEnded(secret: secret, excluding: leader, reason: "forked by \(leader)", gone: [daemon, leader], tag: "daemon")
        try assertNoKernelComplaint()
    }

    /// A process that moved itself into a cgroup of its own and keeps forking children that
    /// carry the secret is frozen with everything else (every cgroup beside the agent's is),
    /// left out with its children, and none of them runs on after the restore.
    func testProcessThatEscapedIntoItsOwnCgroupIsFrozenAndEnded() throws {
        let leader = try detach(
            "mkdir -p /sys/fs/cgroup/escape && echo $$ > /sys/fs/cgroup/escape/cgroup.procs; mkfifo /run/esc; S=\(Self.generate); printf %s $S > /run/esc; while :; do X=$S sh -c 'sleep 0.3' & sleep 0.05; done")
        let secret = try readFifo("/run/esc")
        XCTAssertEqual(secret.count, 32)
        XCTAssertEqual(try guest("cat /proc/\(leader)/cgroup"), "0::/escape")
        sleep(1)
        try assertLeftOutAndEnded(secret: secret, excluding: leader, reason: "child of \(leader)", gone: [leader], tag: "escape")
        var left = "?"
        for _ in 0..<20 where !left.isEmpty {
            left = try guest("cat /sys/fs/cgroup/escape/cgroup.procs")
            if !left.isEmpty { usleep(100_000) }
        }
        XCTAssertEqual(left, "", "nothing of the escaped process runs on")
        try guest("rmdir /sys/fs/cgroup/escape")
        try assertNoKernelComplaint()
    }

    /// No bystander is excluded for where it lives: three processes others started after the
    /// excluded session, in the same cgroup (as SSH sessions share ssh.service's without logind)
    /// — a restarted listener, a nohup'ed job, a double-forked daemon — are not in the
    /// exclusion, survive the restore and run on; the session itself is left out and ended.
    func testBystandersSharingTheExcludedSessionsCgroupSurvive() throws {
        try guest("mkdir -p /sys/fs/cgroup/shared-svc")
        let session = try detach(
            "echo $$ > /sys/fs/cgroup/shared-svc/cgroup.procs; mkfifo /run/shared-s; S=\(Self.generate); printf %s $S > /run/shared-s; while :; do sleep 1000; done")
        let secret = try readFifo("/run/shared-s")
        XCTAssertEqual(secret.count, 32)
        var bystanders: [Int32] = []
        bystanders.append(try detach("echo $$ > /sys/fs/cgroup/shared-svc/cgroup.procs; exec sleep 100005"))
        bystanders.append(try detach("echo $$ > /sys/fs/cgroup/shared-svc/cgroup.procs; trap '' HUP; exec sleep 100006 </dev/null >/dev/null 2>&1"))
        try guest("sh -c 'echo $$ > /sys/fs/cgroup/shared-svc/cgroup.procs; (setsid sleep 100007 </dev/null >/dev/null 2>&1 &)'")
        var daemon: Int32?
        for _ in 0..<50 where daemon == nil {
            daemon = Int32(try guest("for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 100007 ' ] && basename $p; done; true"))
            if daemon == nil { usleep(100_000) }
        }
        bystanders.append(try XCTUnwrap(daemon, "the daemon runs"))
        let members = Set(try guest("cat /sys/fs/cgroup/shared-svc/cgroup.procs").split(separator: "\n").compactMap { Int32($0) })
        XCTAssertTrue(Set(bystanders + [session]).isSubset(of: members), "all four share the cgroup: \(members) of \(bystanders + [session])")

        let bundle = work + "/shared.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(session)])
        let excluded = Set(try BundleReader(path: bundle).manifest.exclusion.processes.map(\.pid))
        XCTAssertTrue(excluded.contains(session))
        XCTAssertTrue(excluded.isDisjoint(with: bystanders), "no bystander excluded for its cgroup: \(out)")
        XCTAssertEqual(try sparc.run(["search", secret, bundle]).status, 1)
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let alive = try livePids()
        XCTAssertFalse(alive.contains(session), "the session was ended")
        for b in bystanders { XCTAssertTrue(alive.contains(b), "bystander \(b) survived the restore") }
        XCTAssertEqual(try guest("kill \(bystanders.map(String.init).joined(separator: " ")) && echo ran"), "ran", "and they run on")
        try guest("i=0; while [ -s /sys/fs/cgroup/shared-svc/cgroup.procs ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; rmdir /sys/fs/cgroup/shared-svc")
    }

    /// pty numbers are reused: `--exclude-tty pts/N` names the session on pts/N now, and the
    /// report says which one (its leader's pid), so a tag taken for an ended session cannot
    /// silently mean the next one. A session ends and the next takes its pty number: the
    /// second checkpoint names the new session, never the old.
    func testTerminalIsNamedByItsSessionWhenItsNumberIsReused() throws {
        func terminal() throws -> (tty: String, shell: Int32) {
            let t = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal", "--name", vm, "--json"]).utf8)) as! [String: Any]
            return (t["tty"] as! String, Int32(t["shellPid"] as! Int))
        }
        let first = try terminal()
        let out1 = try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/tty1.sparc", "--exclude-tty", first.tty])
        XCTAssertTrue(out1.contains("terminal \(first.tty): the session of pid \(first.shell)"), out1)
        try guest("kill -KILL \(first.shell); i=0; while [ -e /proc/\(first.shell) ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done")
        var second = try terminal()
        for _ in 0..<50 where second.shell == first.shell {
            usleep(100_000)
            second = try terminal()
        }
        XCTAssertNotEqual(second.shell, first.shell, "a new session")
        XCTAssertEqual(second.tty, first.tty, "the kernel gave the new session the same pty number")
        let out2 = try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/tty2.sparc", "--exclude-tty", second.tty])
        XCTAssertTrue(out2.contains("terminal \(second.tty): the session of pid \(second.shell)"), out2)
        XCTAssertFalse(out2.contains("pid \(first.shell) "), "the ended session is named nowhere: \(out2)")
        let excluded = Set(try BundleReader(path: work + "/tty2.sparc").manifest.exclusion.processes.map(\.pid))
        XCTAssertTrue(excluded.contains(second.shell) && !excluded.contains(first.shell), "\(excluded)")
    }

    /// A kernel helper loaded by hand (`insmod` without parameters) does not know where the
    /// guest kernel keeps a terminal's typed input. The agent sets the offsets through the
    /// helper's parameters; where it cannot (masked read-only here), the helper says it is
    /// blind and the checkpoint refuses rather than keep what was typed.
    func testHelperLoadedWithoutTerminalOffsetsFailsClosed() throws {
        let param = "/sys/module/sparc_helper/parameters/n_tty_read_buf_offset"
        let ko = "/lib/modules/sparc/sparc_helper.ko"
        // Left as found: the helper loaded by the agent, with its offsets and its ledger.
        defer {
            _ = try? guest("umount \(param) 2>/dev/null; rmmod sparc_helper 2>/dev/null; true")
            reloadKernelHelperThroughTheAgent()
        }
        let t = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal", "--name", vm, "--json"]).utf8)) as! [String: Any]
        let pty = t["tty"] as! String
        let typed = Self.randomSecret("OFFS")
        try sparc.ok(["terminal", "--name", vm, "--send", ": \(typed)\n"])
        try guest("rmmod sparc_helper; insmod \(ko)")
        XCTAssertEqual(try guest("cat \(param)"), "-1", "loaded without the offsets")
        let baseline = work + "/offs-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        XCTAssertEqual(try sparc.run(["search", typed, baseline]).status, 0, "the baseline holds what was typed")

        // The agent sets the offsets and the typed line is left out.
        let fixed = work + "/offs-set.sparc"
        let run = try sparc.run(["checkpoint", "--name", vm, "-o", fixed, "--exclude-tty", pty])
        XCTAssertEqual(run.status, 0, run.stderr)
        let said = run.stdout + run.stderr
        // The helper began to record writes after the session started: what the session wrote
        // into others' queues before then cannot be found, and the report says so.
        XCTAssertTrue(said.contains("before the kernel helper began to record writes"), said)
        XCTAssertNotEqual(try guest("cat \(param)"), "-1", "the agent set the offsets")
        let found = try sparc.run(["search", typed, fixed])
        XCTAssertEqual(found.status, 1, "what was typed on \(pty) was kept:\n\(found.stdout)")

        // Where the offsets cannot be set, the checkpoint refuses; --best-effort records the gap.
        let next = Self.randomSecret("BLIND")
        let u = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal", "--name", vm, "--json"]).utf8)) as! [String: Any]
        let pty2 = u["tty"] as! String
        try sparc.ok(["terminal", "--name", vm, "--send", ": \(next)\n"])
        try guest("rmmod sparc_helper; insmod \(ko); echo -1 > /run/offs-mask; mount --bind /run/offs-mask \(param); mount -o remount,ro,bind \(param)")
        let refused = work + "/offs-refused.sparc"
        try sparc.fails(["checkpoint", "--name", vm, "-o", refused, "--exclude-tty", pty2], message: "terminal buffers cannot be left out")
        XCTAssertFalse(FileSystem.exists(refused))
        XCTAssertEqual(try guest("echo thawed"), "thawed")
        let gapped = work + "/offs-gap.sparc"
        let saved = try sparc.run(["checkpoint", "--name", vm, "-o", gapped, "--exclude-tty", pty2, "--best-effort"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertEqual(try BundleReader(path: gapped).manifest.exclusion.gaps?.count, 1)
        XCTAssertEqual(try sparc.run(["search", next, gapped]).status, 0, "the gap is real: the typed line stayed")
    }

    /// Exclusion fails closed: with the guest's frame tables unreadable (masked here, as a
    /// hardened guest might) the checkpoint refuses and leaves no bundle; --best-effort saves,
    /// records the gap in the manifest, prints it, and `sparc verify` shows it.
    func testExclusionThatCannotCompleteRefusesUnlessBestEffort() throws {
        let holder = try detach("mkfifo /run/fc; S=\(Self.generate); printf %s $S > /run/fc; while :; do sleep 1000; done")
        let secret = try readFifo("/run/fc")
        try guest("mount --bind /dev/null /proc/kpagecount")
        defer { _ = try? guest("umount /proc/kpagecount; kill \(holder)") }
        let out = work + "/fc.sparc"
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(holder)], message: "frame tables cannot be read")
        XCTAssertFalse(FileSystem.exists(out))
        XCTAssertEqual(try guest("echo thawed"), "thawed")
        let saved = try sparc.run(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(holder), "--best-effort"])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        XCTAssertTrue(saved.stdout.contains("GAP (--best-effort"), saved.stdout)
        XCTAssertEqual(try BundleReader(path: out).manifest.exclusion.gaps?.count, 1)
        let verify = try sparc.ok(["verify", out])
        XCTAssertTrue(verify.contains("exclusion incomplete (--best-effort), 1 gap(s)"), verify)
        // The gap is real: the process's pages stayed.
        XCTAssertEqual(try sparc.run(["search", secret, out]).status, 0)
    }

    /// A process that maps a terabyte of address space and touches one page at its far end is
    /// excluded like any other: its page map is read in bounded chunks, to the end. (Large
    /// mappings with nothing in them, as a JVM's reserved heap, are not read at all.)
    func testProcessReservingATerabyteIsExcluded() throws {
        let holder = try detach("mkfifo /run/tb; S=\(Self.generate); printf %s $S > /run/tb; printf %s $S | exec sparc-probe reserve 1024")
        let secret = try readFifo("/run/tb")
        var reserver = ""
        for _ in 0..<50 where reserver.isEmpty {
            reserver = try guest("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = ready ] && basename $p; done; true")
            if reserver.isEmpty { usleep(100_000) }
        }
        let maps = try guest("awk '{split($1,a,\"-\"); print a[1], a[2]}' /proc/\(reserver)/maps")
        let largest = maps.split(separator: "\n").map { line -> UInt64 in
            let f = line.split(separator: " ").compactMap { UInt64($0, radix: 16) }
            return f.count == 2 ? f[1] - f[0] : 0
        }.max() ?? 0
        XCTAssertGreaterThanOrEqual(largest, 1 << 40, "a mapping of 1 TiB")
        let baseline = work + "/tb-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds the page at the far end")
        let bundle = work + "/tb.sparc"
        let began = Date()
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(holder)])
        let seconds = Date().timeIntervalSince(began)
        XCTAssertEqual(try sparc.run(["search", secret, bundle]).status, 1)
        XCTAssertLessThan(seconds, 60, "checkpoint of a process with 1 TiB reserved")
        print("checkpoint excluding a process with 1 TiB reserved: \(String(format: "%.1f", seconds)) s")
        try guest("kill \(holder)")
    }

    /// The kernel helper walks socket queues under the kernel's locks while softirqs run:
    /// 10 checkpoints with --scope all while the excluded processes' TCP connection and unix
    /// socket pair carry the secret both ways without pause; each leaves 0 copies and the
    /// guest kernel complains of nothing.
    func testCheckpointsWhileExcludedSocketsCarryTrafficLeaveNothing() throws {
        let leader = try detach("mkfifo /run/ch; S=\(Self.generate); printf %s $S > /run/ch; printf %s $S | sparc-probe chatter 4600; while :; do sleep 1000; done")
        let secret = try readFifo("/run/ch")
        /// Write calls of the chatter processes so far (/proc/PID/io).
        func writes() throws -> Int {
            try guest("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = sparc-probe ] && grep syscw $p/io | cut -d' ' -f2; done; true")
                .split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
        }
        let before = try writes()
        let baseline = work + "/chatter-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        XCTAssertEqual(try sparc.run(["search", secret, baseline]).status, 0, "baseline holds the secret in flight")
        FileSystem.removeTree(baseline)
        var leaks: [Int] = []
        for round in 0..<10 {
            let bundle = work + "/chatter-\(round).sparc"
            try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(leader), "--scope", "all"])
            let found = try sparc.run(["search", secret, bundle])
            if found.status != 1 {
                leaks.append(round)
                print("round \(round):\n\(found.stdout)")
            }
            FileSystem.removeTree(bundle)
        }
        XCTAssertEqual(leaks, [], "rounds whose bundle held the secret")
        XCTAssertGreaterThan(try writes() - before, 200, "traffic flowed between the checkpoints")
        try guest("kill \(leader); for p in /proc/[0-9]*; do [ ${p#/proc/} != $$ ] && grep -q chatter $p/cmdline 2>/dev/null && kill ${p#/proc/}; done; true")
        try assertNoKernelComplaint()
    }

    /// --exclude-memory-files leaves out only what the excluded processes alone hold: a tmpfs
    /// file one of them wrote (removed at restore) and a memfd it wrote with write() (left out
    /// even without the flag: it dies with its holder); the busybox binary the excluded `nc`
    /// runs, on the memory-only initramfs, is an executable and is never zeroed or removed.
    func testMemoryFilesAreLeftOutOnlyWhenTheExcludedAloneHoldThem() throws {
        let holder = try detach(
            "mkfifo /run/mf; S=\(Self.generate); printf %s \"$S\" > /run/mf-secret.txt; exec 3</run/mf-secret.txt; printf %s \"$S\" > /run/mf; printf %s \"$S\" | sparc-probe memfd & exec nc -l -p 4455")
        let secret = try readFifo("/run/mf")
        XCTAssertEqual(secret.count, 32)
        for _ in 0..<50 where !(try guest("ls -l /proc/*/fd 2>/dev/null | grep -c memfd:sparc-probe || true") != "0") { usleep(100_000) }
        let baseline = work + "/mf-base.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", baseline])
        let before = try sparc.run(["search", secret, baseline, "--count"])
        XCTAssertEqual(before.status, 0, "baseline holds the tmpfs and memfd copies: \(before.stdout)")

        let bundle = work + "/mf.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(holder), "--exclude-memory-files"])
        XCTAssertTrue(out.contains("/bin/busybox is on a memory-only file system and an executable or library"), out)
        let manifest = try BundleReader(path: bundle).manifest
        XCTAssertEqual(manifest.exclusion.removeFiles, ["/run/mf-secret.txt"], "only the file the excluded process alone held")
        let none = try sparc.run(["search", secret, bundle])
        XCTAssertEqual(none.status, 1, "no copy in any file: \(none.stdout)")

        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertEqual(try guest("ls /run/mf-secret.txt 2>/dev/null || echo gone"), "gone")
        XCTAssertEqual(try guest("busybox nc 2>&1 | head -n 1 | cut -c1-7"), "BusyBox", "busybox's nc still runs")
        XCTAssertEqual(try guest("echo still-starts"), "still-starts")
        XCTAssertFalse(try livePids().contains(holder))
        try assertNoKernelComplaint()
    }

    /// Files on a memory-only file system that the excluded processes wrote and closed are
    /// named, the whole tree (/dev/shm/d/inner as /dev/shm/note), and --strict refuses; a
    /// file there someone else wrote before them is not named.
    func testMemoryFilesTheExcludedWroteAndClosedAreNamedWholeTree() throws {
        try guest("rm -rf /dev/shm/d /dev/shm/note /dev/shm/older; echo other > /dev/shm/older; touch -d '2000-01-01' /dev/shm/older")
        let writer = try detach(
            "mkdir -p /dev/shm/d/e; S=\(Self.generate); printf %s \"$S\" > /dev/shm/note; printf %s \"$S\" > /dev/shm/d/e/inner; echo ok > /run/mf2-ready; while :; do sleep 1000; done")
        try guest("while [ ! -e /run/mf2-ready ]; do sleep 0.1; done")
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/mf2.sparc", "--exclude-pid", String(writer)])
        XCTAssertTrue(out.contains("POSSIBLE COPY: /dev/shm/note"), out)
        XCTAssertTrue(out.contains("POSSIBLE COPY: /dev/shm/d/e/inner"), out)
        XCTAssertFalse(out.contains("/dev/shm/older"), "a file written before them is not theirs: \(out)")
        try sparc.fails(["checkpoint", "--name", vm, "-o", work + "/mf2-strict.sparc", "--exclude-pid", String(writer), "--strict"], message: "/dev/shm/d/e/inner")
        try guest("kill \(writer); rm -rf /dev/shm/d /dev/shm/note /dev/shm/older")
    }

    /// The kernel helper serialises the threads that share one descriptor: 8 threads on two
    /// vCPUs, each asking with pwrite (write() would be serialised by the file position lock)
    /// for 2000 pids at a time, fill the 8 MiB answer to its end and get only whole lines
    /// back. Without the session lock their appends overlap and leave holes of NUL bytes,
    /// and past the buffer's end they would write beyond it.
    func testHelperSessionIsSafeForThreadsSharingADescriptor() throws {
        XCTAssertEqual(try guest("nproc"), "2", "the race needs two vCPUs")
        // The agent loads the helper on first use.
        let victim = try detach("while :; do sleep 1000; done")
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/helper.sparc", "--exclude-pid", String(victim)])
        for _ in 0..<2 {
            let out = try guest("sparc-probe helper-stress 8 8 2000")
            XCTAssertTrue(out.hasPrefix("ok ") && out.hasSuffix(" overflow"), out)
        }
        try guest("kill \(victim)")
        try assertNoKernelComplaint()
    }

    func testBadExclusionTargetsAreRefused() throws {
        let out = work + "/bad.sparc"
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "99999"], message: "no process with pid 99999")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-name", "no-such-program"], message: "no process named 'no-such-program'")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-tty", "pts/77"], message: "no terminal 'pts/77'")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "1"], message: "pid 1 (init) cannot be excluded")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-name", "sparc-agent"], message: "the sparc agent")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "2"], message: "kernel thread")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "5", "--scope", "most"], message: "Please provide one of 'user' and 'all'")
        XCTAssertFalse(FileSystem.exists(out))
        XCTAssertEqual(((try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []).filter { $0.contains("partial") }, [])
        XCTAssertEqual(try guest("echo thawed"), "thawed")
        XCTAssertFalse(try sparc.ok(["vm", "status", "--name", vm]).contains("frozen"))

        // A process that has already exited (a zombie) is excluded without harm.
        let parent = try detach("sleep 0.2 & exec sleep 1000")
        // Its child, once it has exited and become a zombie (state Z).
        let zombie = try guest(
            "i=0; while [ $i -lt 300 ]; do for p in /proc/[0-9]*; do if [ \"$(cut -d' ' -f4 $p/stat 2>/dev/null)\" = \(parent) ] && [ \"$(cut -d' ' -f3 $p/stat)\" = Z ]; then basename $p; exit 0; fi; done; sleep 0.1; i=$((i+1)); done")
        XCTAssertNotNil(Int(zombie), "zombie child of \(parent): '\(zombie)'")
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/zombie.sparc", "--exclude-pid", zombie])
        try guest("kill \(parent)")

        // Without the kernel helper, --scope all refuses rather than saving kernel buffers.
        let ko = "/lib/modules/sparc/sparc_helper.ko"
        try guest("rmmod sparc_helper 2>/dev/null; mv \(ko) \(ko).off")
        defer { _ = try? guest("mv \(ko).off \(ko)") }
        let victim = try detach("while :; do sleep 1000; done")
        try sparc.fails(["checkpoint", "--name", vm, "-o", out, "--exclude-pid", String(victim)], message: "kernel helper")
        XCTAssertFalse(FileSystem.exists(out))
        XCTAssertEqual(try guest("echo thawed"), "thawed")
        try sparc.ok(["checkpoint", "--name", vm, "-o", work + "/useronly.sparc", "--exclude-pid", String(victim), "--scope", "user"])
        try guest("kill \(victim)")
    }
}

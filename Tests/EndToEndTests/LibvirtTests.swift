import Foundation
import SparcSupport
import XCTest

/// sparc against a real libvirt daemon (started here when none runs, and stopped again): a
/// domain defined from plain XML with the default guest's kernel and initrd is listed, prepared
/// (a dry run first), started with virsh, and its agent answers through libvirt's channel.
final class LibvirtTests: XCTestCase {
    var runtime = ""
    var sparc: SparcRunner!
    let uri = "qemu:///system"
    var domain: String { "sparc-e2e-\(getpid())" }
    var images: String { "/var/lib/libvirt/images/\(domain)" }
    /// Daemons these tests started (pid files), stopped when the class ends; a daemon that
    /// already ran is left alone.
    nonisolated(unsafe) static var started: [String] = []
    nonisolated(unsafe) static var daemonError: String?

    func virsh(_ args: [String]) throws -> ProcessResult {
        try Subprocess.run(["virsh", "-c", uri] + args, timeout: 120)
    }

    override class func setUp() {
        super.setUp()
        guard Subprocess.which("libvirtd") != nil, (try? Subprocess.run(["virsh", "-c", "qemu:///system", "uri"], timeout: 30).status) != 0 else { return }
        do {
            try FileSystem.makeDirectories("/var/log/libvirt", mode: 0o755)
            for (daemon, pidFile) in [("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")] {
                let r = try Subprocess.run(["/usr/sbin/" + daemon, "-d"], timeout: 30)
                if r.status != 0 { daemonError = "\(daemon) -d: \(r.stderrText)" }
                started.append(pidFile)
            }
            var up = false
            for _ in 0..<50 where !up {
                up = try Subprocess.run(["virsh", "-c", "qemu:///system", "uri"], timeout: 30).status == 0
                if !up { usleep(200_000) }
            }
            if !up { daemonError = "libvirtd did not come up" }
        } catch {
            daemonError = "\(error)"
        }
    }

    override class func tearDown() {
        // Only the daemons started here, by the pids they wrote.
        for pidFile in started.reversed() {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = pid_t(text.trimmed), pid > 1 { kill(pid, SIGTERM) }
        }
        started = []
        super.tearDown()
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(Subprocess.which("libvirtd") != nil && Subprocess.which("virsh") != nil, "libvirt is not installed ('make deps' installs it)")
        if let error = Self.daemonError { XCTFail("could not start libvirt: \(error)") }
        runtime = try makeTempDir("libvirt-rt")
        sparc = SparcRunner(runtime: runtime)
        try FileSystem.makeDirectories(images, mode: 0o755)
        for f in ["vmlinuz", "initrd.img", "data.qcow2"] {
            let guest = ProcessInfo.processInfo.environment["SPARC_GUEST_DIR"] ?? FileSystem.absolute("build/guest")
            try FileManager.default.copyItem(atPath: guest + "/" + f, toPath: images + "/" + f)
        }
    }

    override func tearDown() {
        _ = try? virsh(["destroy", domain])
        _ = try? virsh(["undefine", domain])
        FileSystem.removeTree(images)
        FileSystem.removeTree(runtime)
        FileSystem.removeTree(runtime + "-state")
        FileSystem.removeTree(runtime + "-bundles")
    }

    func testDomainIsPreparedCheckpointedAndRestoredUnderLibvirt() throws {
        let xml = """
            <domain type='qemu'>
              <name>\(domain)</name>
              <memory unit='MiB'>256</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type><kernel>\(images)/vmlinuz</kernel><initrd>\(images)/initrd.img</initrd>
                <cmdline>console=ttyS0 init_on_free=1 quiet</cmdline></os>
              <devices>
                <serial type='pty'><target port='0'/></serial>
                <video><model type='none'/></video>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='\(images)/data.qcow2'/><target dev='vda' bus='virtio'/></disk>
              </devices>
            </domain>
            """
        let file = runtime + "/domain.xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try virsh(["define", file]).status, 0)

        let before = try sparc.ok(["vm", "list", "--connect", uri])
        let row = try XCTUnwrap(before.split(separator: "\n").first { $0.hasPrefix(domain + " ") }, before)
        XCTAssertTrue(row.contains("shut off") && row.contains("not prepared: 'sparc libvirt prepare \(domain)'"), String(row))

        // Not prepared: the agent cannot be reached, and sparc says what to do.
        XCTAssertEqual(try virsh(["start", domain]).status, 0)
        try sparc.fails(["ps", "--connect", uri, "--name", domain], message: "sparc libvirt prepare \(domain)")
        try sparc.fails(["checkpoint", "--connect", uri, "--name", domain, "-o", runtime + "/unprepared.sparc"], message: "run 'sparc libvirt prepare \(domain)'")
        XCTAssertEqual(try virsh(["destroy", domain]).status, 0)

        let dry = try sparc.ok(["libvirt", "prepare", domain, "--connect", uri, "--dry-run"])
        XCTAssertTrue(dry.contains("+    <source type=\"file\"/>") && dry.contains("org.sparc.agent.0") && dry.contains("+  <genid/>"), dry)
        XCTAssertTrue(dry.contains("dry run: nothing changed"), dry)
        XCTAssertFalse(try virsh(["dumpxml", "--inactive", domain]).stdoutText.contains("org.sparc.agent.0"), "a dry run changes nothing")

        let prepared = try sparc.run(["libvirt", "prepare", domain], environment: ["SPARC_CONNECT": uri])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let done = prepared.stdout
        XCTAssertTrue(done.contains("5 change(s) defined through libvirt"), done)
        let backupLine = try XCTUnwrap(done.split(separator: "\n").first { $0.hasPrefix("the definition before: ") }, done)
        let backup = String(backupLine.dropFirst("the definition before: ".count))
        XCTAssertTrue(try String(contentsOfFile: backup, encoding: .utf8).contains("<name>\(domain)</name>"))
        let defined = try virsh(["dumpxml", "--inactive", domain]).stdoutText
        XCTAssertTrue(defined.contains("<genid>") && defined.contains("org.sparc.rsdm.0") && defined.contains("<access mode='shared'/>"), defined)
        XCTAssertTrue(try sparc.ok(["libvirt", "prepare", domain, "--connect", uri]).contains("already prepared"))

        // Started by libvirt: RAM in a shared file, the agent over libvirt's channel.
        XCTAssertEqual(try virsh(["start", domain]).status, 0)
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running")
        let listed = try sparc.ok(["vm", "list", "--connect", uri])
        XCTAssertTrue(listed.contains(domain) && listed.split(separator: "\n").contains { $0.hasPrefix(domain + " ") && $0.contains("running") && $0.hasSuffix("prepared") }, listed)
        var ps = ""
        for _ in 0..<60 where !ps.contains("sparc-agent") {
            ps = (try? sparc.run(["ps", "--connect", uri, "--name", domain, "--timeout", "5"]))?.stdout ?? ""
            if !ps.contains("sparc-agent") { sleep(1) }
        }
        XCTAssertTrue(ps.contains("sparc-agent"), "the agent answers through libvirt's channel:\n\(ps)")
        XCTAssertTrue(try sparc.ok(["ttys", "--connect", uri, "--name", domain]).contains("ttyS1"), "the terminal port")
        try checkpointAndRestoreUnderLibvirt()
        try storedCheckpointsReadOnlyWhatTheDomainWrote()
        try tuiPicksTheDomain()
    }

    /// `sparc tui --connect` opens on the daemon's domains; Enter opens the picked one's processes.
    func tuiPicksTheDomain() throws {
        let socket = "sparc-libvirt-tui-\(getpid())"
        func tmux(_ args: [String]) throws -> String { try Subprocess.run(["tmux", "-L", socket] + args).stdoutText }
        _ = try tmux(["start-server", ";", "set-option", "-g", "exit-empty", "off"])
        defer {
            _ = try? tmux(["kill-server"])
            // tmux leaves its socket file behind.
            unlink("/tmp/tmux-\(getuid())/\(socket)")
        }
        let env = "SPARC_CONFIG= SPARC_RUNTIME_DIR=\(runtime) SPARC_STATE_DIR=\(runtime)-state SPARC_BUNDLES=\(runtime)-bundles"
        _ = try tmux(["new-session", "-d", "-s", "pick", "-x", "120", "-y", "30", "\(env) \(sparc.binary) tui --connect \(uri)"])
        func waitFor(_ text: String) throws -> String {
            var screen = ""
            for _ in 0..<150 where !screen.contains(text) {
                screen = try tmux(["capture-pane", "-t", "pick", "-p"])
                if !screen.contains(text) { usleep(200_000) }
            }
            XCTAssertTrue(screen.contains(text), "waited for '\(text)':\n\(screen)")
            return screen
        }
        let list = try waitFor("pick a domain")
        let rows = list.split(separator: "\n").dropFirst(2)
        let index = try XCTUnwrap(rows.firstIndex { $0.contains(domain) && $0.contains("running") && $0.contains("prepared") }, list) - rows.startIndex
        for _ in 0..<index { _ = try tmux(["send-keys", "-t", "pick", "Down"]) }
        _ = try tmux(["send-keys", "-t", "pick", "Enter"])
        let processes = try waitFor("sparc-agent")
        XCTAssertTrue(processes.contains("sparc — \(domain)"), processes)
        _ = try tmux(["send-keys", "-t", "pick", "q"])
    }

    /// One checkpoint of the domain into the store, as `checkpoint --json` reports it.
    func storedCheckpoint(_ on: [String]) throws -> [String: Any] {
        let r = try sparc.run(["checkpoint"] + on + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("staged in the clear"), "staged in memory, as for sparc's own VMs: \(r.stderr)")
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return try XCTUnwrap(report["checkpoint"] as? [String: Any])
    }

    /// Into the store, the domain's disk keeps a dirty bitmap in its QEMU from one checkpoint to
    /// the next: the second reads only what the guest wrote since the first, and restores byte
    /// for byte. Once libvirt has started the domain again the bitmap is gone, and the next
    /// checkpoint reads everything and says why (never a stale bitmap).
    func storedCheckpointsReadOnlyWhatTheDomainWrote() throws {
        let on = ["--connect", uri, "--name", domain]
        func guest(_ script: String) throws -> String { try sparc.ok(["exec"] + on + ["--", "sh", "-c", script]).trimmed }
        _ = try guest("head -c 3000000 /dev/urandom > /data/s1; sync")
        let first = try storedCheckpoint(on)
        let firstName = try XCTUnwrap(first["bundle"] as? String)
        let firstRead = try XCTUnwrap(first["diskReadBytes"] as? Int)
        XCTAssertNil(first["diskChangedSince"], "nothing to compare the first with")
        XCTAssertGreaterThan(firstRead, 3_000_000, "all of the disk's data was read")

        _ = try guest("head -c 500000 /dev/urandom > /data/s2; sync")
        let sums = try guest("md5sum /data/s1 /data/s2")
        let second = try storedCheckpoint(on)
        let secondName = try XCTUnwrap(second["bundle"] as? String)
        XCTAssertEqual(second["diskChangedSince"] as? String, firstName, "\(second["diskNote"] ?? "")")
        let secondRead = try XCTUnwrap(second["diskReadBytes"] as? Int)
        XCTAssertGreaterThanOrEqual(secondRead, 500_000, "the new file was read")
        XCTAssertLessThan(secondRead, firstRead / 3, "and little else")
        print("domain disk read into the store: first \(firstRead) bytes, second \(secondRead) (\(second["diskNote"] ?? ""))")
        XCTAssertFalse(try virsh(["domblklist", domain]).stdoutText.contains("sparc-overlay"), "its disk merged back")
        try sparc.ok(["verify", secondName])

        // Restored from the store over the running domain: the bitmap since the second, saved
        // into the image as libvirt stopped the domain, tells what differs; only that is written.
        _ = try guest("echo later > /data/s3; sync")
        let restored = try sparc.ok(["restore", secondName, "--replace"] + on)
        XCTAssertTrue(restored.contains("that differed from the domain's disk since \(secondName)"), restored)
        print("restore into the same domain: \(restored.split(separator: "\n").first { $0.contains("disk:") } ?? "")")
        XCTAssertEqual(try guest("md5sum /data/s1 /data/s2"), sums, "restored byte for byte")
        XCTAssertEqual(try guest("test -e /data/s3 && echo present || echo absent"), "absent")
        XCTAssertFalse(try virsh(["domblklist", domain]).stdoutText.contains("sparc-overlay"), "the differences merged into the image")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: images).contains { $0.contains("sparc-overlay") }, "no overlay left")
        let bitmaps = try Subprocess.run(["qemu-img", "info", "-U", "--output=json", images + "/data.qcow2"]).stdoutText
        XCTAssertFalse(bitmaps.contains("sparc-saved-since"), "no persistent bitmap left in the image: \(bitmaps)")

        // The restored disk counts its writes from the second: the next checkpoint is incremental.
        _ = try guest("echo after-restore > /data/s4; sync")
        let third = try storedCheckpoint(on)
        XCTAssertEqual(third["diskChangedSince"] as? String, secondName, "\(third["diskNote"] ?? "")")
        try sparc.ok(["verify", try XCTUnwrap(third["bundle"] as? String)])

        // libvirt saved and restored the domain (a new QEMU): no bitmap, so everything is read,
        // never a stale bitmap's ranges, and the result verifies.
        let saveFile = runtime + "/stored-virsh.save"
        XCTAssertEqual(try virsh(["save", domain, saveFile]).status, 0)
        let back = try virsh(["restore", saveFile])
        XCTAssertEqual(back.status, 0, back.stderrText)
        _ = try guest("echo after-virsh-restore > /data/s5; sync")
        let fourth = try storedCheckpoint(on)
        XCTAssertNil(fourth["diskChangedSince"])
        XCTAssertTrue((fourth["diskNote"] as? String ?? "").contains("read all"), "\(fourth["diskNote"] ?? "")")
        XCTAssertGreaterThan(try XCTUnwrap(fourth["diskReadBytes"] as? Int), 3_500_000)
        try sparc.ok(["verify", try XCTUnwrap(fourth["bundle"] as? String)])
    }

    /// The AWS key id `sparc-probe assemble aws SEED` builds in its heap (the same generator).
    static func assembledAWSKey(seed: UInt64) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var state = seed &* 2654435761 &+ 12345
        var key = "AKIA"
        for _ in 0..<16 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            key.append(alphabet[Int((state >> 33) % 32)])
        }
        return key
    }

    /// A secret holder left out of a checkpoint of the running domain, `virsh destroy`, restore
    /// through sparc: the domain runs under libvirt again, without the holder, from the checkpoint.
    func checkpointAndRestoreUnderLibvirt() throws {
        let on = ["--connect", uri, "--name", domain]
        func guest(_ script: String) throws -> String { try sparc.ok(["exec"] + on + ["--", "sh", "-c", script]).trimmed }
        // A process that counts in its own memory and appends each count to a log in RAM; the
        // test appends MARK lines: what a restore brings back is told by the marks, never by
        // how fast the counter ran.
        func log() throws -> [String] { try guest("cat /tmp/count.log").split(separator: "\n").map(String.init) }
        func counter() throws -> Int { Int(try log().last { Int($0) != nil } ?? "") ?? -1 }
        func countsPast(_ value: Int) throws -> Bool {
            for _ in 0..<300 {
                if try counter() > value { return true }
                usleep(100_000)
            }
            return false
        }
        let holder = Int32(try sparc.ok(["exec"] + on + ["--detach", "--", "sh", "-c", "exec sparc-probe assemble aws 4242 > /dev/null"]).trimmed) ?? -1
        let key = Self.assembledAWSKey(seed: 4242)
        _ = try sparc.ok(["exec"] + on + ["--detach", "--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /tmp/count.log; sleep 0.2; done"])
        XCTAssertTrue(try countsPast(3))

        // Baseline: the key is in a plain checkpoint, in the holder's memory.
        let plain = runtime + "/plain.sparc"
        let plainReport = try sparc.ok(["checkpoint"] + on + ["-o", plain], environment: ["SPARC_LIVE_COPY": "1"])
        print("domain checkpoint, nothing left out: \(plainReport.split(separator: "\n").first { $0.contains("paused") } ?? "")")
        // Nothing left out: memory copied while the domain ran (QEMU's migration into sparc).
        XCTAssertTrue(try String(contentsOfFile: plain + "/manifest.json", encoding: .utf8).contains("guestRAMOmitted"))
        // Its 256 MiB are whole 256 KiB, whose dirty log QEMU 7.2 keeps a word at a time and can
        // miss writes in: the copy is checked against the stopped domain's RAM.
        XCTAssertTrue(plainReport.contains("checked against the stopped guest") || plainReport.contains("QEMU's dirty log missed"), plainReport)
        let found = try sparc.run(["search", key, plain, "--json"])
        XCTAssertEqual(found.status, 0, "the baseline holds the key: \(found.stderr)")
        XCTAssertTrue(found.stdout.contains("\"pid\" : \(holder)") || found.stdout.contains("\"pid\":\(holder)"), "owned by the holder: \(found.stdout.prefix(600))")

        // Killed outright with the domain paused and its disk on an overlay: no sparc command
        // follows, yet its guardian resumes the domain, merges the disk back and thaws the guest.
        let dead = try sparc.run(
            ["checkpoint"] + on + ["-o", runtime + "/killed.sparc"], environment: ["SPARC_FAULT": "checkpoint-after-pause", "SPARC_FREEZE_LEASE": "3600", "SPARC_LIVE_COPY": "1"])
        XCTAssertEqual(dead.status, 128 + SIGKILL, dead.stderr)
        let marker = runtime + "/\(domain)/at-work-by"
        for _ in 0..<600 where FileSystem.exists(marker) { usleep(50_000) }
        XCTAssertFalse(FileSystem.exists(marker), "the guardian undid the killed checkpoint")
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running", "resumed by the guardian")
        XCTAssertFalse(try virsh(["domblklist", domain]).stdoutText.contains("sparc-overlay"), "its disk merged back")
        XCTAssertFalse(FileSystem.exists(runtime + "/killed.sparc"))
        let recovered = try sparc.ok(["log", "--name", domain])
        // A live copy thawed the guest before its copy: the guardian finds it running and says so.
        XCTAssertTrue(recovered.contains("found by its guardian; resumed; disk vda merged back"), recovered)
        XCTAssertTrue(try countsPast(try counter()), "the guest runs on")

        // sparc terminal reaches a shell through the port libvirt serves; its terminal is left out too.
        let terminal = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["terminal"] + on + ["--json"]).utf8)) as? [String: Any]
        let pty = try XCTUnwrap(terminal?["tty"] as? String)
        try sparc.ok(["terminal"] + on + ["--send", "echo typed-$((6*7)) > /tmp/typed\\n"])
        var typed = ""
        for _ in 0..<50 where typed != "typed-42" {
            typed = (try? guest("cat /tmp/typed 2>/dev/null")) ?? ""
            if typed != "typed-42" { usleep(100_000) }
        }
        XCTAssertEqual(typed, "typed-42", "typed through sparc terminal --connect")
        _ = try guest("echo kept > /data/kept && sync")
        _ = try guest("echo MARK-before >> /tmp/count.log")
        let bundle = runtime + "/excluded.sparc"
        let saved = try sparc.ok(["checkpoint"] + on + ["-o", bundle, "--exclude-pid", String(holder), "--exclude-tty", pty], environment: ["SPARC_LIVE_COPY": "1"])
        XCTAssertTrue(saved.contains("pid \(holder) sparc-probe"), saved)
        XCTAssertFalse(try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8).contains("guestRAMOmitted"), "paused for the copy")
        _ = try guest("echo MARK-after >> /tmp/count.log")
        let after = try counter()
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running", "the domain runs on after a checkpoint")
        let none = try sparc.run(["search", key, bundle])
        XCTAssertEqual(none.status, 1, "excluded: no hit in any file of the bundle: \(none.stdout)")
        XCTAssertTrue(FileSystem.exists(bundle + "/domain.xml"), "the domain's definition is in the bundle")
        let verified = try sparc.run(["verify", bundle])
        XCTAssertEqual(verified.status, 0, "the same verification as any bundle: \(verified.stdout)\(verified.stderr)")
        XCTAssertTrue(FileSystem.exists(bundle + "/disk.qcow2"), "the data disk's state is in the bundle")
        XCTAssertTrue(try virsh(["domblklist", domain]).stdoutText.contains("\(images)/data.qcow2"), "the disk is back on its own image (the overlay merged)")
        let persistent = try virsh(["dumpxml", "--inactive", domain]).stdoutText
        XCTAssertTrue(persistent.contains("\(images)/data.qcow2") && !persistent.contains("sparc-overlay"), "the persistent definition names the image again")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: images).contains { $0.contains("sparc-overlay") }, "no overlay left")
        _ = try guest("echo later > /data/later && sync")
        let genidBefore = try virsh(["dumpxml", domain]).stdoutText.split(separator: "\n").first { $0.contains("<genid>") }
        XCTAssertTrue(try countsPast(after + 3), "the counter ran on")

        XCTAssertEqual(try virsh(["destroy", domain]).status, 0)
        try sparc.fails(["restore", bundle, "--name", domain], message: "restore it with --connect")
        let restored = try sparc.ok(["restore", bundle] + on)
        let killed = restored.split(separator: "\n").first { $0.hasPrefix("killed excluded processes: ") }?.split(separator: " ").dropFirst(3) ?? []
        XCTAssertTrue(killed.contains(Substring(String(holder))) && killed.count >= 2, "the holder and the terminal's shell: \(restored)")
        XCTAssertTrue(restored.contains("domain '\(domain)' restored"), restored)
        let epoch = try XCTUnwrap(restored.components(separatedBy: "restore epoch ").last?.split(separator: " ").first.flatMap { Int($0) }, restored)
        XCTAssertEqual(Int(try guest("sparc-rsdm epoch")), epoch, "sparc serves the RSDM port of the run it started: the guest sees the new epoch")
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running", "running as a libvirt domain")
        XCTAssertTrue(try virsh(["dominfo", domain]).stdoutText.contains("Persistent:     yes"), "still the persistent domain")
        // Memory is the checkpoint's: the mark made before it is there, the one after it is not,
        // and the same process counts on from its remembered count.
        let lines = try log()
        XCTAssertTrue(lines.contains("MARK-before"), "the memory before the checkpoint")
        XCTAssertFalse(lines.contains("MARK-after"), "the counter went back to the checkpoint: nothing after it is in the restored memory")
        let counts = lines.compactMap { Int($0) }
        XCTAssertEqual(counts, Array(1...(counts.last ?? 0)), "one process counting on, no count lost or repeated")
        XCTAssertTrue(try countsPast(counts.last ?? 0), "the counter runs on after the restore")
        XCTAssertFalse(try sparc.ok(["ps"] + on).contains("sparc-probe"), "the excluded holder is gone")
        XCTAssertEqual(try guest("cat /data/kept; ls /data"), "kept\nkept\nlost+found", "the disk is back at the checkpoint: written before it kept, after it gone")
        let genidAfter = try virsh(["dumpxml", domain]).stdoutText.split(separator: "\n").first { $0.contains("<genid>") }
        XCTAssertNotNil(genidAfter)
        XCTAssertNotEqual(genidAfter, genidBefore, "a new generation id: the guest reseeds")
        XCTAssertTrue(try sparc.ok(["log", "--name", domain]).contains("restore"), "the restore is in the domain's history")

        // libvirt manages it as before: pause, resume, its own save and restore (sparc left no
        // migration capability behind that would keep the RAM out of libvirt's save file).
        XCTAssertEqual(try virsh(["suspend", domain]).status, 0)
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "paused")
        XCTAssertEqual(try virsh(["resume", domain]).status, 0)
        let saveFile = runtime + "/virsh.save"
        XCTAssertEqual(try virsh(["save", domain, saveFile]).status, 0)
        let virshRestore = try virsh(["restore", saveFile])
        XCTAssertEqual(virshRestore.status, 0, virshRestore.stderrText)
        XCTAssertTrue(try countsPast(try counter()), "the guest runs on after virsh save and restore")

        // Over the running domain only with --replace.
        try sparc.fails(["restore", bundle] + on, message: "pass --replace")
        XCTAssertTrue(try sparc.ok(["restore", bundle, "--replace"] + on).contains("restored"))
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running")
        // A definition changed inside a sealed bundle is caught before the running domain is touched.
        let tampered = runtime + "/tampered.sparc"
        XCTAssertEqual(try Subprocess.run(["cp", "-a", bundle, tampered]).status, 0)
        let xmlPath = tampered + "/domain.xml"
        let xml = try String(contentsOfFile: xmlPath, encoding: .utf8)
        try xml.replacingOccurrences(of: "<vcpu", with: "<vCpu").write(toFile: xmlPath, atomically: false, encoding: .utf8)
        try sparc.fails(["restore", tampered, "--replace", "--allow-rollback"] + on, status: 1, message: "domain.xml does not match its digest")
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running", "the running domain was not touched")
        XCTAssertEqual(try guest("dmesg | grep -c -i -e oops -e 'call trace' -e 'BUG:' || true"), "0", "the guest kernel logged no oops")
    }

    func testBadConnections() throws {
        try sparc.fails(["vm", "list", "--connect", "qemu+unix:///system?socket=/nonexistent"], message: "is libvirtd running?")
        try sparc.fails(["ps", "--connect", uri, "--name", "no-such-domain-\(getpid())"], message: "has no domain named")
        try sparc.fails(["libvirt", "prepare", "no-such-domain-\(getpid())", "--connect", uri], message: "has no domain named")
        try sparc.fails(["libvirt", "prepare", "x"], message: "--connect URI")
        try sparc.fails(["checkpoint", "--connect", uri, "--name", "no-such-domain-\(getpid())", "-o", runtime + "/x.sparc"], message: "has no domain named")
        try sparc.fails(["checkpoint", "--connect", "qemu+unix:///system?socket=/nonexistent", "--name", "x", "-o", runtime + "/x.sparc"], message: "is libvirtd running?")
        XCTAssertFalse(FileSystem.exists(runtime + "/x.sparc"), "no bundle from a refused checkpoint")
        try sparc.fails(["vm", "start", "--name", "web"], message: "'virsh start web'", environment: ["SPARC_CONNECT": uri])
        try sparc.fails(["console", "--name", "web", "--connect", uri], message: "virsh console web")
    }
}

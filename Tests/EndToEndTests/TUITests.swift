import Foundation
import GuestQuery
import SparcSupport
import XCTest

/// The real `sparc tui` under tmux against the real guest: tag the process that holds a
/// secret, checkpoint from the UI, search the new bundle (found nowhere) and a baseline
/// bundle (found, with its owner), then restore with the wizard (the holder is killed).
final class TUITests: GuestTestCase {
    override class var vmName: String { "tui" }

    var session: String { "sparc-tui-test-\(getpid())" }
    /// A tmux server of these tests' own, kept alive between sessions: a new session asked
    /// for while the default server exits after its last one was killed fails ("server
    /// exited unexpectedly"), which left the screen empty on some runs.
    var socket: String { "sparc-tui-\(getpid())" }

    func tmux(_ args: [String]) throws -> String {
        let r = try Subprocess.run(["tmux", "-L", socket] + args)
        if args.first == "new-session" && r.status != 0 {
            XCTFail("tmux new-session failed: \(r.stderrText)")
        }
        return r.stdoutText
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        if Subprocess.which("tmux") != nil {
            _ = try Subprocess.run(["tmux", "-L", socket, "start-server", ";", "set-option", "-g", "exit-empty", "off"])
        }
    }

    override func tearDown() {
        _ = try? Subprocess.run(["tmux", "-L", socket, "kill-server"])
        unlink("/tmp/tmux-\(getuid())/\(socket)")
        super.tearDown()
    }

    /// Starts `sparc tui` on the test VM in a 120×30 tmux session, listing `bundles`.
    func startUI(bundles: String) throws {
        let env = "SPARC_CONFIG= SPARC_RUNTIME_DIR=\(runtime) SPARC_STATE_DIR=\(runtime)-state SPARC_BUNDLES=\(runtime)-bundles"
        _ = try tmux(["new-session", "-d", "-s", session, "-x", "120", "-y", "30", "\(env) \(sparc.binary) tui --name \(vm) --bundles \(bundles)"])
    }

    func screen() throws -> String { try tmux(["capture-pane", "-t", session, "-p"]) }

    /// Waits until the screen shows `text` (or fails with the screen).
    @discardableResult
    func waitFor(_ text: String, seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            last = try screen()
            if last.contains(text) { return last }
            usleep(200_000)
        }
        XCTFail("screen never showed '\(text)':\n\(last)", file: file, line: line)
        return last
    }

    func keys(_ k: String...) throws { _ = try tmux(["send-keys", "-t", session] + k) }

    /// SIGTERM (and the terminal closing: SIGHUP) while the UI checkpoints: the checkpoint is
    /// cancelled and unwinds before the UI ends (the guest runs and is thawed, no bundle is
    /// left), and the terminal is given back.
    func testSignalToTheUIDuringACheckpointCancelsItFirst() throws {
        try XCTSkipUnless(Subprocess.which("tmux") != nil, "tmux is missing")
        for (signal, name) in [(SIGTERM, "TERM"), (SIGHUP, "HUP")] {
            let bundles = work + "/signal-\(name)"
            try FileSystem.makeDirectory(bundles)
            let reached = work + "/tui-reached-\(name)"
            unlink(reached)
            let env = "SPARC_CONFIG= SPARC_RUNTIME_DIR=\(runtime) SPARC_STATE_DIR=\(runtime)-state SPARC_FAULT=checkpoint-after-collect:stall=600 SPARC_FAULT_REACHED=\(reached)"
            _ = try tmux(["new-session", "-d", "-s", session, "-x", "120", "-y", "30", "\(env) \(sparc.binary) tui --name \(vm) --bundles \(bundles); echo UI-ENDED $?; sleep 600"])
            defer { _ = try? tmux(["kill-session", "-t", session]) }
            try waitFor("COMMAND")
            try keys("F8")
            try waitFor("Yes")
            try keys("y")
            for _ in 0..<600 where !FileSystem.exists(reached) { usleep(100_000) }
            XCTAssertTrue(FileSystem.exists(reached), "the UI's checkpoint froze the guest and dwells")
            let ui = try XCTUnwrap(Int32(try Subprocess.run(["pgrep", "-f", "^\(sparc.binary) tui --name \(vm) --bundles \(bundles)"]).stdoutText.split(separator: "\n").first ?? ""))
            kill(ui, signal)
            let ended = try waitFor("UI-ENDED")
            XCTAssertFalse(ended.contains("Yes"), "the terminal was given back:\n\(ended)")
            XCTAssertTrue(ended.contains("quit during work, cancelled"), "the UI said what became of the checkpoint:\n\(ended)")
            // Undone by the UI itself: no marker left for a next command, the guest thawed, no bundle.
            XCTAssertFalse(FileSystem.exists(runtime + "/\(vm)/at-work-by"), "SIG\(name): the checkpoint unwound before the UI ended")
            let client = AgentClient(socketPath: runtime + "/\(vm)/agent.sock", timeout: 10)
            XCTAssertFalse(try client.hello().frozen, "SIG\(name): the guest was thawed")
            client.close()
            // The store may have been opened (made) before the guest was touched; nothing is in it, nothing staged beside it.
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: bundles).filter { $0 != "store" }, [], "SIG\(name): no bundle, nothing partial")
            XCTAssertEqual(try sparc.ok(["bundles"], environment: ["SPARC_BUNDLES": bundles, "SPARC_STATE_DIR": runtime + "-state"]).contains("no checkpoints"), true, "SIG\(name): nothing stored")
            _ = try? tmux(["kill-session", "-t", session])
        }
        try assertHealthy()
    }

    func testTagCheckpointAndSearchFromTheUI() throws {
        try XCTSkipUnless(Subprocess.which("tmux") != nil, "tmux is missing")
        _ = try detach("i=0; while :; do i=$((i+1)); echo $i > /run/counter; sleep 0.2; done")
        let holder = try detach("mkfifo /run/tui; S=$(tr -dc A-Za-z0-9 </dev/urandom | head -c 32); printf %s \"$S\" > /run/tui; while :; do sleep 1000; done")
        let secret = try readFifo("/run/tui")
        XCTAssertEqual(secret.count, 32)
        let bundles = work + "/bundles"
        try FileSystem.makeDirectory(bundles)
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundles + "/baseline.sparc"])

        try startUI(bundles: bundles)
        defer { _ = try? tmux(["kill-session", "-t", session]) }
        let first = try waitFor("COMMAND")
        XCTAssertTrue(first.contains("VM \(vm): running"), "the header says the VM's state:\n\(first)")

        // Move the cursor to the holder's row (list view is sorted by pid).
        let rows = first.split(separator: "\n").dropFirst(2).map(String.init)
        guard let index = rows.firstIndex(where: { $0.dropFirst(2).trimmed.hasPrefix("\(holder) ") }) else {
            return XCTFail("holder \(holder) not listed:\n\(first)")
        }
        try keys("Home")
        for _ in 0..<index { try keys("Down") }
        try keys("Space")
        let tagged = try waitFor("1 tagged")
        XCTAssertTrue(tagged.split(separator: "\n").contains { $0.hasPrefix("*") && $0.contains(" \(holder) ") }, tagged)

        try keys("F8")
        try waitFor("[ No ]")
        try keys("y")
        // Into the store: the status line names the stored checkpoint; nothing is staged beside it.
        let saved = try waitFor("stored \(vm)-", seconds: 120)
        guard let name = saved.split(whereSeparator: { $0 == " " || $0 == "\n" }).first(where: { $0.hasPrefix("\(vm)-") }).map(String.init) else {
            return XCTFail("no stored name in:\n\(saved)")
        }
        let storeEnv = ["SPARC_BUNDLES": bundles, "SPARC_STATE_DIR": runtime + "-state"]
        XCTAssertTrue(try sparc.ok(["bundles"], environment: storeEnv).contains(name))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: bundles).sorted(), ["baseline.sparc", "store"])
        let raw = try Subprocess.run(["grep", "-r", "-a", "-l", "-F", secret, bundles])
        XCTAssertEqual(raw.stdoutText.split(separator: "\n").map { Path.base(of: String($0)) }, ["memory.img"], "only the baseline bundle holds the secret in clear")

        // Bundles: the stored checkpoint (cursor on it), then the bundle directory baseline.sparc.
        try keys("F6")
        let list = try waitFor("baseline.sparc")
        XCTAssertTrue(list.contains("1 stored") && list.contains("only here") && list.contains("stored, encrypted"), list)
        try keys("Enter")
        try keys("-l", secret)
        try keys("Enter")
        try waitFor("not found in any file of the bundle", seconds: 60)
        // The stored checkpoint is read in place (nothing written out): a string it holds is
        // found, and its hex view reads the member through the store.
        try keys("Enter")
        try keys("-l", "sparc-agent")
        try keys("Enter")
        try waitFor("hit(s)", seconds: 60)
        try keys("Enter")
        let storedHex = try waitFor("hit 1/")
        XCTAssertTrue(storedHex.contains(name + "/"), storedHex)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: runtime))?.filter { $0.hasPrefix("stored-") }, [], "searched in place")
        try keys("Escape")
        try waitFor("search hits")
        try keys("Escape")
        try waitFor("baseline.sparc")

        try keys("Down", "Enter")
        try keys("-l", secret)
        try keys("Enter")
        let found = try waitFor("hit(s)")
        XCTAssertTrue(found.contains("[pid \(holder) sh"), found)

        // The hit list opens the hex view at the hit.
        try keys("Enter")
        let hex = try waitFor("hit 1/")
        XCTAssertTrue(hex.contains(String(secret.prefix(8))) || hex.contains("|"), hex)
        // At 80 columns a memory image's rows hold 8 bytes and all their characters (hexyl's way).
        _ = try tmux(["resize-window", "-t", session, "-x", "80", "-y", "30"])
        func eightByteRows(_ screen: String) -> Bool {
            screen.split(separator: "\n").contains { $0.range(of: #"^[0-9a-f]{8}  [0-9a-f]{9}  ([0-9a-fA-F]{2} ){8} \|.{8}\|"#, options: .regularExpression) != nil }
        }
        var narrow = try screen()
        for _ in 0..<150 where !eightByteRows(narrow) {
            usleep(200_000)
            narrow = try screen()
        }
        XCTAssertTrue(eightByteRows(narrow), narrow)
        XCTAssertFalse(narrow.split(separator: "\n").contains { $0.count > 80 }, narrow)
        _ = try tmux(["resize-window", "-t", session, "-x", "120", "-y", "30"])
        try keys("Escape")
        try waitFor("search hits")
        try keys("Escape")
        try waitFor("baseline.sparc")

        // Restore wizard on the stored checkpoint: it names the steps, defaults to No, then kills the holder.
        try keys("Up", "F7")
        let wizard = try waitFor("[ No ]")
        XCTAssertTrue(wizard.contains("Steps: verify") && wizard.contains(name), wizard)
        try keys("y")
        let restored = try waitFor("restored ", seconds: 90)
        XCTAssertTrue(restored.contains("killed \(holder)") && restored.contains("the rest runs on"), restored)
        let ps = try sparc.ok(["ps", "--name", vm])
        XCTAssertFalse(ps.split(separator: "\n").contains { $0.trimmed.hasPrefix("\(holder) ") && !$0.contains(" Z ") }, ps)
        XCTAssertTrue(ps.contains("sparc-agent"))
        let count = Int(try guest("cat /run/counter")) ?? 0
        sleep(1)
        XCTAssertGreaterThan(Int(try guest("cat /run/counter")) ?? 0, count, "the counter process runs on after the restore")

        // Delete the stored checkpoint: the dialog says what it frees, the history keeps a record.
        try keys("F6", "F9")
        let asked = try waitFor("[ No ]")
        XCTAssertTrue(asked.contains("only it holds") && asked.contains(name), asked)
        try keys("y")
        try waitFor("deleted \(name) from the store")
        XCTAssertFalse(try sparc.ok(["bundles"], environment: storeEnv).contains(name))
        XCTAssertTrue(try sparc.ok(["log", "--name", vm], environment: ["SPARC_STATE_DIR": runtime + "-state"]).contains("pruned  \(name)"))

        try keys("q")
        usleep(500_000)
        XCTAssertFalse((try? screen())?.contains("COMMAND") ?? false, "the UI quit and gave the terminal back")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: runtime))?.filter { $0.hasPrefix("stored-") }, [], "what was read out of the store is gone")
    }

    /// The Scan view: F5 on a bundle finds a credential assembled in a guest process, names
    /// its owner, opens the hex view with the secret hidden until `v`, and `t` tags the owner.
    func testScanViewFindsTheOwnerAndTagsIt() throws {
        try XCTSkipUnless(Subprocess.which("tmux") != nil, "tmux is missing")
        let holder = try detach("exec sparc-probe assemble aws 4242 > /dev/null")
        let bundles = work + "/scan-bundles"
        try FileSystem.makeDirectory(bundles)
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundles + "/with-key.sparc"])

        try startUI(bundles: bundles)
        defer { _ = try? tmux(["kill-session", "-t", session]) }
        try waitFor("COMMAND")
        // A copy with one byte changed: the list verifies both in the background and says which is intact.
        XCTAssertEqual(try Subprocess.run(["cp", "-r", "--sparse=always", bundles + "/with-key.sparc", bundles + "/zz-flipped.sparc"]).status, 0)
        XCTAssertEqual(try Subprocess.run(["sh", "-c", "printf XYZ | dd of=\(bundles)/zz-flipped.sparc/memory.img bs=1 seek=4096 conv=notrunc status=none"]).status, 0)
        try keys("F6")
        let list = try waitFor("F5Scan")
        XCTAssertTrue(list.contains("with-key.sparc"), "the Bundles screen lists the bundle and its bar offers the scan:\n\(list)")
        let verdicts = try waitFor("NOT VERIFIED", seconds: 120)
        XCTAssertTrue(verdicts.split(separator: "\n").contains { $0.contains("zz-flipped.sparc") && $0.contains("NOT VERIFIED") }, verdicts)
        try waitFor("nothing excluded  verified", seconds: 120)
        try keys("F5")
        // The rows, not just the heading: curses may be half way through redrawing the screen.
        let found = try waitFor("pid \(holder) sparc-probe — 1 finding(s)", seconds: 60)
        XCTAssertTrue(found.contains("credentials in with-key.sparc"), found)
        XCTAssertTrue(found.contains("aws_access_key_id (high)") && found.contains("AKIA…[16 hidden]"), found)

        try keys("Enter")
        let hex = try waitFor("** ** ** **")
        XCTAssertTrue(hex.contains("aws_access_key_id [pid \(holder)"), "the hex view at the finding:\n\(hex)")
        XCTAssertFalse(hex.contains("AKIA"), hex)
        try keys("v")
        let revealed = try waitFor("Hide")
        XCTAssertTrue(revealed.contains("AKIA") && !revealed.contains("** ** ** **"), revealed)
        try keys("Escape")
        try waitFor("1 finding(s), 1 owner(s)")
        try keys("t")
        try waitFor("tagged pid \(holder) (sparc-probe) for exclusion")
        try keys("Escape", "F2")
        try waitFor("1 tagged")
        try keys("q")
    }

    func testNoColorIsHonoured() throws {
        try XCTSkipUnless(Subprocess.which("tmux") != nil, "tmux is missing")
        let env = "SPARC_CONFIG= SPARC_RUNTIME_DIR=\(runtime) SPARC_STATE_DIR=\(runtime)-state SPARC_BUNDLES=\(runtime)-bundles"
        func capture(_ prefix: String) throws -> String {
            _ = try tmux(["new-session", "-d", "-s", session, "-x", "100", "-y", "24", "\(prefix) \(env) \(sparc.binary) tui --name \(vm)"])
            defer { _ = try? tmux(["kill-session", "-t", session]) }
            try waitFor("COMMAND")
            return try tmux(["capture-pane", "-e", "-p", "-t", session])
        }
        // The test runner's environment may carry NO_COLOR itself (tmux passes it on).
        let coloured = try capture("env -u NO_COLOR")
        let plain = try capture("env NO_COLOR=1")
        let colourCode = try NSRegularExpression(pattern: "\u{1B}\\[[0-9;]*(3[0-7]|4[0-7]|38;5|48;5)[0-9;]*m")
        func hasColour(_ s: String) -> Bool { colourCode.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil }
        XCTAssertTrue(hasColour(coloured), "colours expected without NO_COLOR: \(coloured.debugDescription.prefix(300))")
        XCTAssertFalse(hasColour(plain), "NO_COLOR=1 must draw without colours:\n\(plain.debugDescription.prefix(400))")
        XCTAssertTrue(plain.contains("COMMAND"))
    }
}

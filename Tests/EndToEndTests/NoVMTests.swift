import Foundation
import SparcSupport
import XCTest

/// Commands run with no VM at all, and broken environments: each gives one clear line and exit 2.
final class NoVMTests: XCTestCase {
    var runtime = ""
    var sparc: SparcRunner!

    override func setUpWithError() throws {
        runtime = try makeTempDir("empty-rt")
        sparc = SparcRunner(runtime: runtime)
    }

    override func tearDown() {
        FileSystem.removeTree(runtime)
        FileSystem.removeTree(runtime + "-state")
    }

    func testNoVMRunning() throws {
        for args in [["vm", "status"], ["ps"], ["ttys"], ["exec", "--", "true"], ["vm", "stop"], ["console", "--send", "x"],
                     ["checkpoint", "-o", runtime + "/x.sparc"]] {
            try sparc.fails(args, message: "no VM named 'default' is running")
        }
        XCTAssertEqual(try sparc.ok(["vm", "list"]).trimmed, "no VMs (start one with 'sparc vm start')")
        XCTAssertFalse(FileSystem.exists(runtime + "/x.sparc"))
        // A name that is no VM leaves no lock file behind (a typo is not a VM).
        try sparc.fails(["vm", "stop", "--name", "tyop"], message: "no VM named 'tyop' is running")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runtime).filter { $0.hasSuffix(".lock") }, [])
    }

    /// Under --json a failure is one JSON object on stderr (message and exit status, with the
    /// schema version), whatever failed: a bundle that is not there, a bad argument.
    func testFailuresAreJSONUnderJSON() throws {
        for (args, status) in [(["restore", runtime + "/none.sparc", "--json"], Int32(2)), (["restore", "--json"], 2), (["undo", "--name", "none", "--json"], 2)] {
            let out = try sparc.run(args)
            XCTAssertEqual(out.status, status, out.stderr)
            XCTAssertEqual(out.stdout, "")
            let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.stderr.utf8)) as? [String: Any], out.stderr)
            XCTAssertEqual(record["schemaVersion"] as? Int, 1)
            let error = try XCTUnwrap(record["error"] as? [String: Any])
            XCTAssertEqual(error["exitStatus"] as? Int, Int(status))
            XCTAssertFalse((error["message"] as? String ?? "").isEmpty)
        }
        // Without --json, the one line as before.
        try sparc.fails(["restore", runtime + "/none.sparc"], message: "no bundle at")
    }

    func testMissingQEMUBinary() throws {
        try sparc.fails(["vm", "start", "--name", "noqemu"], message: "QEMU not found", environment: ["PATH": "/nonexistent"])
        XCTAssertFalse(FileSystem.exists(runtime + "/noqemu"))
        let bundleDir = runtime + "/fake.sparc"
        try FileSystem.makeDirectory(bundleDir)
        try sparc.fails(["restore", bundleDir], status: 2, message: "no manifest.json")
    }

    func testUsageErrors() throws {
        let noCommand = try sparc.run(["exec"])
        XCTAssertEqual(noCommand.status, 2)
        XCTAssertTrue(noCommand.stderr.contains("give the command after --"), noCommand.stderr)
        try sparc.fails(["vm", "start", "--memory", "16"], message: "at least 64 MiB")
        try sparc.fails(["vm", "start", "--accel", "warp"], message: "Please provide one of 'auto', 'tcg' or 'kvm'")
        try sparc.fails(["vm", "start", "--kernel", "/nonexistent/vmlinuz"], message: "does not exist")
        try sparc.fails(["verify", runtime + "/missing.sparc"], message: "no bundle at")
        try sparc.fails(["restore", runtime + "/missing.sparc"], message: "no bundle at")
        try sparc.fails(["frobnicate"], message: "unknown command 'frobnicate'")
        // Negative numbers reach the command's own check instead of "Missing value".
        try sparc.fails(["vm", "start", "--memory", "-5"], message: "at least 64 MiB")
        try sparc.fails(["ps", "--timeout", "0"], message: "--timeout must be more than 0")
        try sparc.fails(["ps", "--timeout", "-1"], message: "--timeout must be more than 0")
        try sparc.fails(["exec", "--limit", "-3", "--", "true"], message: "--limit must be a number of seconds")
        try sparc.fails(["search", "x", runtime, "--context", "-1"], message: "--context must be between")
        // Argument errors take one line and point at the command's help.
        try sparc.fails(["vm", "start", "--memory", "lots"], message: "see 'sparc vm start --help'")
        try sparc.fails(["search"], message: "see 'sparc search --help'")
        try sparc.fails(["vm", "stop", "--bogus"], message: "Unknown option '--bogus'")
        // The UI without a terminal is an error, not a help page with exit 0.
        try sparc.fails(["tui"], message: "needs a terminal")
        try sparc.fails([], message: "needs a terminal")
        try Data("x".utf8).write(to: URL(fileURLWithPath: runtime + "/file"))
        try sparc.fails(["strings", "--encoding", "utf8", runtime + "/file"], message: "utf8 is not one of them")
        let help = try sparc.run(["checkpoint", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("--output"))
    }

    /// A runtime directory another user owns (or anyone may enter) is refused before any
    /// socket in it is used: another local user could have planted a fake agent there.
    func testRuntimeRootThatIsNotPrivateIsRefused() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to make a directory owned by another user")
        let foreign = runtime + "/foreign"
        try FileSystem.makeDirectories(foreign + "/default")
        // A fake agent socket, as the other user would plant it.
        let fake = try UnixSocket.listen(at: foreign + "/default/agent.sock")
        defer { close(fake) }
        XCTAssertEqual(chown(foreign, 65534, 65534), 0)
        let other = SparcRunner(runtime: foreign)
        for args in [["ps"], ["vm", "list"], ["exec", "--", "true"]] {
            try other.fails(args, message: "belongs to uid 65534")
        }
        var pending = pollfd(fd: fake, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pending, 1, 0), 0, "nobody connected to the planted socket")
        XCTAssertEqual(chown(foreign, 0, 0), 0)
        XCTAssertEqual(chmod(foreign, 0o755), 0)
        try other.fails(["ps"], message: "chmod 700")
        XCTAssertEqual(chmod(foreign, 0o700), 0)
        try other.fails(["ps"], message: "no VM named 'default' is running")
    }
}

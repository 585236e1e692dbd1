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

    override func tearDown() { FileSystem.removeTree(runtime) }

    func testNoVMRunning() throws {
        for args in [["vm", "status"], ["ps"], ["ttys"], ["exec", "--", "true"], ["vm", "stop"], ["console", "--send", "x"],
                     ["checkpoint", "-o", runtime + "/x.sparc"]] {
            try sparc.fails(args, message: "no VM named 'default' is running")
        }
        XCTAssertEqual(try sparc.ok(["vm", "list"]).trimmed, "no VMs (start one with 'sparc vm start')")
        XCTAssertFalse(FileSystem.exists(runtime + "/x.sparc"))
    }

    func testMissingQEMUBinary() throws {
        try sparc.fails(["vm", "start", "--name", "noqemu"], message: "QEMU not found", environment: ["PATH": "/nonexistent"])
        XCTAssertFalse(FileSystem.exists(runtime + "/noqemu"))
        let bundleDir = runtime + "/fake.sparc"
        try FileSystem.makeDirectory(bundleDir)
        try sparc.fails(["restore", bundleDir], status: 1, message: "no manifest.json")
    }

    func testUsageErrors() throws {
        let noCommand = try sparc.run(["exec"])
        XCTAssertEqual(noCommand.status, 2)
        XCTAssertTrue(noCommand.stderr.contains("give the command after --"), noCommand.stderr)
        try sparc.fails(["vm", "start", "--memory", "16"], message: "at least 64 MiB")
        try sparc.fails(["vm", "start", "--accel", "warp"], message: "--accel must be auto, tcg or kvm")
        try sparc.fails(["vm", "start", "--kernel", "/nonexistent/vmlinuz"], message: "does not exist")
        try sparc.fails(["verify", runtime + "/missing.sparc"], message: "no bundle at")
        try sparc.fails(["restore", runtime + "/missing.sparc"], message: "no bundle at")
        let unknown = try sparc.run(["frobnicate"])
        XCTAssertEqual(unknown.status, 2)
        let help = try sparc.run(["checkpoint", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("--output"))
    }
}

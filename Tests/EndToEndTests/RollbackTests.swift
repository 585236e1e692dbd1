import Foundation
import SparcSupport
import XCTest

/// Rollback safety against the real guest: fresh randomness after every restore,
/// rollback-sensitive data that no restore rolls back, and the tamper-evident history.
final class RollbackTests: GuestTestCase {
    override class var vmName: String { "rb" }

    func randomBytes() throws -> String { try guest("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'") }

    func testEveryRestoreGivesFreshRandomness() throws {
        let bundle = work + "/random.sparc"
        let before = try randomBytes()
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let first = try randomBytes()
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let second = try randomBytes()
        XCTAssertEqual(Set([before, first, second]).count, 3, "random bytes repeated across restores: \(before) \(first) \(second)")
        XCTAssertTrue(try guest("dmesg").contains("crng reseeded due to virtual machine fork"), "vmgenid reseed")
    }

    func testLoginGuardStaysLockedAcrossRestore() throws {
        try guest("sparc-rsdm del guard.failures")
        XCTAssertEqual(try sparc.run(["exec", "--name", vm, "--", "login-guard", "opensesame"]).stdout.trimmed, "welcome")
        let bundle = work + "/guard.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        for attempt in 1...3 {
            let out = try sparc.run(["exec", "--name", vm, "--", "login-guard", "guess\(attempt)"])
            XCTAssertEqual(out.status, 1, out.stdout + out.stderr)
        }
        let locked = try sparc.run(["exec", "--name", vm, "--", "login-guard", "opensesame"])
        XCTAssertEqual(locked.status, 2)
        XCTAssertTrue(locked.stdout.contains("locked"), locked.stdout)
        let epochBefore = Int(try guest("sparc-rsdm epoch")) ?? -1

        // The checkpoint was taken before the failures: memory and disk go back, the guard does not.
        let restore = try sparc.run(["restore", bundle, "--name", vm, "--replace"])
        XCTAssertEqual(restore.status, 0, restore.stderr)
        let after = try sparc.run(["exec", "--name", vm, "--", "login-guard", "opensesame"])
        XCTAssertEqual(after.status, 2, "guard unlocked by the restore: \(after.stdout)")
        XCTAssertEqual(Int(try guest("sparc-rsdm epoch")), epochBefore + 1, "restore epoch moves on")
        XCTAssertEqual(try sparc.ok(["rsdm", "--name", vm, "get", "guard.failures"]).trimmed, "3")
        try sparc.ok(["rsdm", "--name", vm, "del", "guard.failures"])
        XCTAssertEqual(try sparc.run(["exec", "--name", vm, "--", "login-guard", "opensesame"]).status, 0)
        try sparc.fails(["rsdm", "--name", vm, "set", "big", String(repeating: "x", count: 5000)], message: "value too large")
    }

    func testHistoryRecordsAndDetectsRollbackAndTampering() throws {
        let older = work + "/older.sparc"
        let newer = work + "/newer.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", older])
        try sparc.ok(["checkpoint", "--name", vm, "-o", newer])
        try sparc.fails(["restore", older, "--name", vm, "--replace"], message: "is a rollback")
        let rolled = try sparc.run(["restore", older, "--name", vm, "--replace", "--allow-rollback"])
        XCTAssertEqual(rolled.status, 0, rolled.stderr)
        XCTAssertTrue(rolled.stdout.contains("rollback"), rolled.stdout)

        let log = try sparc.ok(["log", "--name", vm])
        let events = log.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first.map(String.init) ?? "" }
        XCTAssertEqual(events.first, "boot", log)
        XCTAssertTrue(events.contains("checkpoint") && events.contains("stop") && events.last == "rollback", log)
        XCTAssertTrue(log.contains("older.sparc"))
        XCTAssertEqual(try sparc.run(["log", "--name", vm, "--verify"]).status, 0)

        // Edit one entry on disk: --verify names it and exits 1.
        let logFile = runtime + "-state/history/\(vm).log"
        var lines = String(decoding: try FileSystem.readFile(logFile), as: UTF8.self).split(separator: "\n").map(String.init)
        lines[1] = lines[1].replacingOccurrences(of: "\"event\":\"checkpoint\"", with: "\"event\":\"stop\"")
        let original = try FileSystem.readFile(logFile)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: logFile))
        let verify = try sparc.run(["log", "--name", vm, "--verify"])
        XCTAssertEqual(verify.status, 1)
        XCTAssertTrue(verify.stdout.contains("entry 2") && verify.stdout.contains("edited"), verify.stdout)
        try original.write(to: URL(fileURLWithPath: logFile))
        XCTAssertEqual(try sparc.run(["log", "--name", vm, "--verify"]).status, 0)
    }

    /// The RSDM store survives SIGKILL at random points: `sparc rsdm set` commands, each
    /// killed after a random delay until 50 died mid-way, leave a store that reads cleanly
    /// and holds every write that was acknowledged (exit 0 before the kill).
    func testRSDMStoreSurvivesKillsAtRandomPoints() throws {
        var acknowledged: [String] = []
        var killed = 0
        var i = 0
        while killed < 50 && i < 400 {
            i += 1
            let p = Process()
            p.executableURL = URL(fileURLWithPath: sparc.binary)
            p.arguments = ["rsdm", "--name", vm, "set", "crash.k\(i)", "v\(i)"]
            var env = ProcessInfo.processInfo.environment
            env["SPARC_RUNTIME_DIR"] = sparc.runtime
            env["SPARC_STATE_DIR"] = sparc.runtime + "-state"
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t.random(in: 0...40_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .exit && p.terminationStatus == 0 { acknowledged.append("crash.k\(i)") } else { killed += 1 }
        }
        print("rsdm crash loop: \(acknowledged.count) acknowledged, \(killed) killed")
        XCTAssertGreaterThanOrEqual(killed, 50, "at least 50 writes were killed mid-way")
        let listed = try sparc.ok(["rsdm", "--name", vm, "list"])
        for key in acknowledged { XCTAssertTrue(listed.contains(key), "acknowledged \(key) was lost") }
        for key in acknowledged { _ = try? sparc.run(["rsdm", "--name", vm, "del", key]) }
    }
}

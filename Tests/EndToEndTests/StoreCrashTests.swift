import Foundation
import SparcSupport
import TestSupport
import XCTest

/// The real `sparc` killed (SIGKILL) at each step of storing a checkpoint, pruning and
/// collecting: after every kill, every listed checkpoint exports whole (byte for byte what
/// was stored), `store check --read-data` passes, and the next command works. No VM needed.
final class StoreCrashTests: ScratchDirectoryTestCase {
    var sparc: SparcRunner!
    var environment: [String: String] { ["SPARC_BUNDLES": dir + "/home"] }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try FileSystem.makeDirectories(dir + "/rt")
        chmod(dir + "/rt", 0o700)
        sparc = SparcRunner(runtime: dir + "/rt")
    }

    override func tearDown() {
        FileSystem.removeTree(dir + "/rt-state")
        super.tearDown()
    }

    /// `sparc args` with SPARC_FAULT=`fault`: it must die at that point (killed, no exit of its own).
    func killed(_ args: [String], at fault: String, file: StaticString = #filePath, line: UInt = #line) throws {
        var env = environment
        env["SPARC_FAULT"] = fault
        let r = try sparc.run(args, environment: env)
        XCTAssertTrue(r.status == 137 || r.status == -9 || r.status == 128 + 9, "\(args) at \(fault) was not killed: exit \(r.status) \(r.stderr)", file: file, line: line)
    }

    func listed() throws -> [String] {
        let out = try sparc.ok(["bundles", "--json"], environment: environment)
        let entries = try XCTUnwrap(JSONOutput.list(out, "bundles"), out)
        return entries.compactMap { $0["name"] as? String }
    }

    /// The store is whole: the check reads every chunk, and each listed checkpoint exports
    /// with the memory image of the bundle it was stored from.
    func assertWhole(_ originals: [String: String], _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let check = try sparc.run(["store", "check", "--read-data"], environment: environment)
        XCTAssertEqual(check.status, 0, "\(context): \(check.stdout) \(check.stderr)", file: file, line: line)
        for name in try listed() {
            let out = dir + "/export-\(name)-\(UInt32.random(in: 0...UInt32.max)).sparc"
            let r = try sparc.run(["export", name, "-o", out], environment: environment)
            XCTAssertEqual(r.status, 0, "\(context): \(name) does not export: \(r.stderr)", file: file, line: line)
            if let original = originals[name] {
                let same = try Subprocess.run(["cmp", "-s", original + "/memory.img", out + "/memory.img"])
                XCTAssertEqual(same.status, 0, "\(context): \(name) came back different", file: file, line: line)
            }
            FileSystem.removeTree(out)
        }
    }

    func temporaries() -> [String] {
        let found = try? Subprocess.run(["find", dir + "/home/store", "-name", "*.put-*"])
        return found?.stdoutText.split(separator: "\n").map(String.init) ?? []
    }

    func testKilledAtEachStepTheStoreStaysWhole() throws {
        var originals: [String: String] = [:]
        func bundle(_ name: String) throws -> String {
            let b = try TestBundles.make(in: dir, name: name + ".sparc", secret: "S-\(name)", extra: 3 << 20)
            originals[name] = b
            return b
        }
        try sparc.ok(["import", try bundle("base"), "--as", "base"], environment: environment)
        XCTAssertEqual(try listed(), ["base"])

        // Storing: inside a chunk's write, after the first and third chunk, before and inside
        // the manifest's write, after it. Only a checkpoint whose manifest landed is listed.
        let steps = ["object-before-link#1", "store-after-chunk#1", "store-after-chunk#3", "store-before-manifest", "store-after-manifest"]
        var expected = ["base"]
        for (i, step) in steps.enumerated() {
            let name = "ck\(i)"
            try killed(["import", try bundle(name), "--as", name], at: step)
            if step == "store-after-manifest" { expected.append(name) }
            XCTAssertEqual(try listed(), expected.sorted(), "killed at \(step)")
            try assertWhole(originals, "killed at \(step)")
        }
        XCTAssertFalse(temporaries().isEmpty, "a write killed before its link leaves its temporary (gc removes it)")
        // The next import of the same bundle works: what an earlier one left is reused or replaced.
        try sparc.ok(["import", originals["ck2"]!, "--as", "ck2"], environment: environment)

        // Pruning: killed after its first removal; the newest stays, the history says what went.
        try killed(["prune", "--vm", "t", "--keep-last", "1"], at: "prune-after-delete#1")
        let afterPrune = try listed()
        XCTAssertEqual(afterPrune.count, expected.count + 1 - 1, "one checkpoint went before the kill: \(afterPrune)")
        XCTAssertTrue(afterPrune.contains("ck4"), "the newest (by when it was taken) is kept")
        try assertWhole(originals, "killed while pruning")
        XCTAssertTrue(try sparc.ok(["log", "--name", "t"], environment: environment).contains("pruned"))

        // Collecting: killed after its first removed chunk; a second gc finishes the work.
        try killed(["store", "gc"], at: "gc-after-remove#1")
        try assertWhole(originals, "killed while collecting")
        try sparc.ok(["prune", "--vm", "t", "--keep-last", "1"], environment: environment)
        XCTAssertEqual(try listed(), ["ck4"])
        try assertWhole(originals, "after the prune finished")
        XCTAssertEqual(temporaries(), [], "gc removed the abandoned temporaries")
        let du = try sparc.ok(["store", "du"], environment: environment)
        XCTAssertTrue(du.contains("1 checkpoint(s)"), du)
    }

    /// Handing a checkpoint to another host: keygen there, export sealed to its public key
    /// here, import with its private key there (another state directory, another store key).
    func testSealedExportToAnotherHost() throws {
        let bundle = try TestBundles.make(in: dir, name: "hand.sparc", secret: "HANDOVER-SECRET", extra: 1 << 20)
        try sparc.ok(["import", bundle, "--as", "hand"], environment: environment)
        let theirs = ["SPARC_BUNDLES": dir + "/their-home", "SPARC_STATE_DIR": dir + "/their-state"]
        let made = try sparc.ok(["keygen", "-o", dir + "/them.key"], environment: theirs)
        XCTAssertTrue(made.contains("them.key.pub"), made)
        var st = stat()
        XCTAssertEqual(stat(dir + "/them.key", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "the private key is private")
        try sparc.fails(["keygen", "-o", dir + "/them.key"], message: "cannot create", environment: theirs)
        try sparc.ok(["export", "hand", "-o", dir + "/hand.sealed", "--recipient", dir + "/them.key.pub"], environment: environment)
        let grep = try Subprocess.run(["grep", "-c", "-a", "-F", "HANDOVER-SECRET", dir + "/hand.sealed"])
        XCTAssertEqual(grep.status, 1, "the sealed export holds the secret in clear")
        // Without the identity, or with ours, it stays closed.
        try sparc.fails(["import", dir + "/hand.sealed"], message: "is a sealed export: pass --identity", environment: theirs)
        _ = try sparc.ok(["keygen", "-o", dir + "/us.key"], environment: environment)
        try sparc.fails(["import", dir + "/hand.sealed", "--identity", dir + "/us.key"], status: 1, message: "not addressed to the identity", environment: theirs)
        let imported = try sparc.run(["import", dir + "/hand.sealed", "--identity", dir + "/them.key"], environment: theirs)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        XCTAssertTrue(imported.stdout.contains("stored hand"), imported.stdout)
        XCTAssertFalse(imported.stderr.contains("staged in the clear"), "the opened bundle waits in memory, not on the disk: \(imported.stderr)")
        try sparc.ok(["export", "hand", "-o", dir + "/there.sparc"], environment: theirs)
        XCTAssertEqual(try Subprocess.run(["cmp", "-s", bundle + "/memory.img", dir + "/there.sparc/memory.img"]).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/their-home").filter { $0.hasPrefix(".staging-") }, [])
    }

    /// search, strings, hexdump and verify read a stored checkpoint in place: the secret is
    /// found with its place, nothing is written out, and a damaged chunk fails verify.
    func testStoredCheckpointsAreReadInPlace() throws {
        let bundle = try TestBundles.make(in: dir, name: "inplace.sparc", secret: "IN-PLACE-SECRET-42", extra: 1 << 20)
        try sparc.ok(["import", bundle, "--as", "inplace"], environment: environment)
        let found = try sparc.ok(["search", "IN-PLACE-SECRET-42", "inplace"], environment: environment)
        XCTAssertTrue(found.contains("inplace/memory.img:0x500000"), found)
        XCTAssertTrue(found.contains("inplace/devices.vmstate:0xd"), found)
        XCTAssertEqual(try sparc.run(["search", "NOT-THERE-AT-ALL", "inplace"], environment: environment).status, 1)
        XCTAssertTrue(try sparc.ok(["strings", "inplace"], environment: environment).contains("IN-PLACE-SECRET-42"))
        let dump = try sparc.ok(["hexdump", "inplace", "--offset", "0x500000", "--length", "32"], environment: environment)
        XCTAssertTrue(dump.contains("IN-PLACE"), dump)
        let device = try sparc.ok(["hexdump", "inplace/devices.vmstate", "--length", "32"], environment: environment)
        XCTAssertTrue(device.contains("device-state"), device)
        let verified = try sparc.ok(["verify", "inplace"], environment: environment)
        XCTAssertTrue(verified.contains("intact"), verified)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/rt").filter { $0.hasPrefix("stored-") }, [], "nothing was written out")
        // Damage a chunk of the memory image: verify says so (exit 1), the search fails rather than says "not found".
        let chunks = try Subprocess.run(["find", dir + "/home/store/chunks", "-type", "f"]).stdoutText.split(separator: "\n").map(String.init)
        for c in chunks {
            var d = try Data(contentsOf: URL(fileURLWithPath: c))
            d[d.count - 1] ^= 1
            try d.write(to: URL(fileURLWithPath: c))
        }
        XCTAssertEqual(try sparc.run(["verify", "inplace"], environment: environment).status, 1)
        XCTAssertNotEqual(try sparc.run(["search", "NOT-THERE-AT-ALL", "inplace"], environment: environment).status, 1, "a damaged store is no 'not found'")
    }
}

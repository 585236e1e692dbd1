import Foundation
import SparcSupport
import TestSupport
import XCTest

/// Every command that prints a result under `--json` prints one object with its
/// `schemaVersion` (lists under a key), as the README's schemas say; no VM needed.
final class JSONOutputTests: ScratchDirectoryTestCase {
    var sparc: SparcRunner!
    var environment: [String: String] { ["SPARC_BUNDLES": dir + "/home"] }

    override func setUpWithError() throws {
        try super.setUpWithError()
        sparc = SparcRunner(runtime: dir + "/rt")
        try FileSystem.makeDirectories(dir + "/rt")
        chmod(dir + "/rt", 0o700)
    }

    func object(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text, file: file, line: line)
        XCTAssertEqual(object["schemaVersion"] as? Int, 1, text, file: file, line: line)
        return object
    }

    func testEveryResultIsOneVersionedObject() throws {
        let bundle = try TestBundles.make(in: dir, name: "j.sparc", secret: "JSON-SECRET-1")
        let verified = try object(try sparc.ok(["verify", bundle, "--json"]))
        let verdict = try XCTUnwrap(verified["verify"] as? [String: Any])
        XCTAssertEqual(verdict["intact"] as? Bool, true)
        XCTAssertEqual(verdict["problems"] as? [String], [])

        let hits = try XCTUnwrap(JSONOutput.list(try sparc.ok(["search", "JSON-SECRET-1", bundle, "--json"]), "hits"))
        XCTAssertFalse(hits.isEmpty, "the planted secret is found")
        // The scan's exit status says whether it found anything (1); its report is printed either way.
        let scanned = try sparc.run(["scan", bundle, "--json"])
        XCTAssertTrue([0, 1].contains(scanned.status), scanned.stderr)
        XCTAssertNotNil(try object(scanned.stdout)["findings"])

        let imported = try object(try sparc.ok(["import", bundle, "--as", "j1", "--json"], environment: environment))
        XCTAssertEqual(imported["name"] as? String, "j1")
        _ = try sparc.ok(["import", bundle, "--as", "j2", "--json"], environment: environment)
        let listed = try XCTUnwrap(JSONOutput.list(try sparc.ok(["bundles", "--json"], environment: environment), "bundles"))
        XCTAssertEqual(Set(listed.compactMap { $0["name"] as? String }), ["j1", "j2"])
        let decisions = try XCTUnwrap(JSONOutput.list(try sparc.ok(["prune", "--keep-last", "1", "--dry-run", "--json"], environment: environment), "decisions"))
        XCTAssertEqual(decisions.count, 2, "one kept, one to go: \(decisions)")
        XCTAssertEqual(JSONOutput.list(try sparc.ok(["vm", "list", "--json"]), "vms")?.count, 0)
        XCTAssertNotNil(JSONOutput.list(try sparc.ok(["vm", "list", "--all", "--json"], environment: environment), "vms"))
        let configFile = dir + "/config.toml"
        try Data("[retention]\nkeep-last = 3\n[exclude]\nunits = [\"vault.service\"]\n".utf8).write(to: URL(fileURLWithPath: configFile))
        let config = try XCTUnwrap(try object(try sparc.ok(["config", "show", "--json"], environment: ["SPARC_CONFIG": configFile]))["config"] as? [String: Any])
        XCTAssertEqual((config["retention"] as? [String: Int])?["keepLast"], 3, "\(config)")
        XCTAssertEqual((config["exclude"] as? [String: [String]])?["units"], ["vault.service"], "\(config)")

        // A damaged bundle: the verdict on stdout (not intact, the problem named), the failure
        // as JSON on stderr, exit 1.
        let devices = bundle + "/devices.vmstate"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: devices))
        bytes[0] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: devices))
        let damaged = try sparc.run(["verify", bundle, "--json"])
        XCTAssertEqual(damaged.status, 1, damaged.stderr)
        let bad = try XCTUnwrap(try object(damaged.stdout)["verify"] as? [String: Any])
        XCTAssertEqual(bad["intact"] as? Bool, false)
        XCTAssertEqual((bad["problems"] as? [String])?.count, 1, "\(bad)")
        XCTAssertNotNil(try object(damaged.stderr)["error"])
    }
}

import Foundation
import SparcSupport
import XCTest

/// Credential scanning against the real guest: credentials assembled inside guest processes
/// are found with their owners, and the checkpoint gate refuses until they are excluded.
/// (On the exclusion tests' VM: the gate is exclusion's other half, and a boot is saved.)
extension ExclusionTests {

    /// A user's YARA rule for the canary one guest process assembles.
    func canaryRules() throws -> String {
        let path = work + "/canary.yar"
        try """
        rule sparc_canary {
            meta:
                description = "the test's canary"
                severity = "low"
            strings:
                $c = /SPARC-CANARY-[0-9]{8}/ ascii wide
            condition:
                $c
        }
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func findings(_ json: String) throws -> [[String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        return object["findings"] as! [[String: Any]]
    }

    /// The owning pids of findings of each rule.
    func owners(_ findings: [[String: Any]]) -> [String: Set<Int32>] {
        var out: [String: Set<Int32>] = [:]
        for f in findings {
            let rule = (f["rule"] as! [String: Any])["id"] as! String
            let pid = ((f["owner"] as? [String: Any])?["pid"] as? Int).map(Int32.init)
            out[rule, default: []].formUnion(pid.map { [$0] } ?? [])
        }
        return out
    }

    func testCredentialScanNamesOwnersAndTheGateRefusesUntilExcluded() throws {
        let rules = try canaryRules()
        let aws = try assembled("aws", seed: 11)
        let ssh = try assembled("ssh", seed: 22)
        let canary = try assembled("canary", seed: 33)
        // More of each kind in other processes: every secret is one finding, owned by its holder.
        let aws2 = try assembled("aws", seed: 12)
        let ssh2 = try assembled("ssh", seed: 23)
        XCTAssertTrue(try livePids().isSuperset(of: [aws, ssh, canary]))

        // Baseline: a plain checkpoint holds all three, each in its own process's memory.
        let plain = work + "/plain.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", plain])
        let scan = try sparc.run(["scan", plain, "--rules", rules, "--json"])
        XCTAssertEqual(scan.status, 0, scan.stderr)
        let found = try findings(scan.stdout)
        let byRule = owners(found)
        XCTAssertEqual(byRule["aws_access_key_id"], [aws, aws2], "\(byRule)")
        XCTAssertEqual(byRule["openssh_private_key"], [ssh, ssh2], "\(byRule)")
        for (rule, pid) in [("aws_access_key_id", aws), ("aws_access_key_id", aws2), ("openssh_private_key", ssh), ("openssh_private_key", ssh2)] {
            let mine = found.filter { ($0["rule"] as! [String: Any])["id"] as? String == rule && ($0["owner"] as? [String: Any])?["pid"] as? Int == Int(pid) }
            XCTAssertEqual(mine.count, 1, "\(rule) of pid \(pid) reported once: \(mine)")
        }
        XCTAssertEqual(byRule["sparc_canary"], [canary], "\(byRule)")
        let key = try XCTUnwrap(found.first { ($0["rule"] as! [String: Any])["id"] as? String == "openssh_private_key" })
        XCTAssertEqual(key["length"] as? Int, 35 + 6 * 71 + 1 + 33, "the whole key block, BEGIN through END")
        XCTAssertNotNil(key["address"], "a guest-physical address")
        for f in found {
            XCTAssertTrue((f["preview"] as! String).contains("hidden]"), "redacted by default: \(f["preview"]!)")
        }
        // The text form groups by owner and never prints a secret without --show.
        let text = try sparc.run(["scan", plain, "--rules", rules, "--memory-only"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("pid \(aws) sparc-probe"), text.stdout)
        XCTAssertFalse(text.stdout.contains("SPARC-CANARY-0"), "the canary's digits are hidden")

        // The gate: refused, no bundle, each owner named.
        let refused = work + "/refused.sparc"
        let gate = try sparc.run(["checkpoint", "--name", vm, "-o", refused, "--refuse-secrets", "--rules", rules])
        XCTAssertEqual(gate.status, 1, gate.stderr)
        XCTAssertFalse(FileSystem.exists(refused), "a refused bundle is removed")
        XCTAssertEqual(gate.stderr.split(separator: "\n").count, 1, "one line: \(gate.stderr)")
        for pid in [aws, ssh, canary, aws2, ssh2] { XCTAssertTrue(gate.stderr.contains("--exclude-pid \(pid)"), gate.stderr) }
        // The history says the refused checkpoint was discarded: it is not the newest one a restore compares with.
        let log = try sparc.ok(["log", "--name", vm]).split(separator: "\n")
        XCTAssertTrue(log.last?.contains("discarded") == true && log.last?.contains("refused.sparc") == true, log.joined(separator: "\n"))
        try assertHealthy()

        // Excluding two and accepting the third's rule passes the gate.
        let accepted = work + "/accepted.sparc"
        let pass = try sparc.run([
            "checkpoint", "--name", vm, "-o", accepted, "--refuse-secrets", "--rules", rules, "--exclude-pid", String(aws), "--exclude-pid",
            String(ssh), "--exclude-pid", String(aws2), "--exclude-pid", String(ssh2), "--allow", "sparc_canary@sparc-probe",
        ])
        XCTAssertEqual(pass.status, 0, pass.stderr + pass.stdout)
        XCTAssertTrue(pass.stdout.contains("1 allowed"), pass.stdout)
        XCTAssertTrue(FileSystem.exists(accepted + "/manifest.json"))
        // Without the allowance the canary is still there; the excluded two are not.
        let after = try sparc.run(["scan", accepted, "--rules", rules, "--json"])
        XCTAssertEqual(owners(try findings(after.stdout)), ["sparc_canary": [canary]])

        // All three excluded: nothing left to find.
        let clean = work + "/clean.sparc"
        let cleanGate = try sparc.run(
            ["checkpoint", "--name", vm, "-o", clean, "--refuse-secrets", "--rules", rules] + [aws, ssh, canary, aws2, ssh2].flatMap { ["--exclude-pid", String($0)] })
        XCTAssertEqual(cleanGate.status, 0, cleanGate.stderr)
        XCTAssertTrue(cleanGate.stdout.contains("no credentials found"), cleanGate.stdout)
        XCTAssertEqual(try sparc.run(["scan", clean, "--rules", rules]).status, 1, "exit 1: none found")
        try assertHealthy()
        _ = try guest("kill \(aws) \(ssh) \(canary) \(aws2) \(ssh2)")
    }

    func testCredentialScanBadRulesStopTheCheckpointBeforeTheGuestPauses() throws {
        let bad = work + "/bad.yar"
        try "rule broken {\n  condition:\n    true and and\n}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let bundle = work + "/never.sparc"
        let result = try sparc.run(["checkpoint", "--name", vm, "-o", bundle, "--scan", "--rules", bad])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("bad.yar:3:"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertFalse(FileSystem.exists(bundle))
        XCTAssertEqual(try sparc.run(["scan", "--no-builtin", work]).status, 2, "no rules at all is an error")
        try assertHealthy()
    }
}

import HexView
import SecretScan
import SnapshotModel
import SparcSupport
import XCTest

@testable import SparcEngine

final class AllowanceTests: XCTestCase {
    func finding(_ rule: String, pid: Int32?, command: String? = nil, mapping: String = "[heap]", fingerprint: String = "sha256:00112233aabbccdd")
        -> SecretFinding
    {
        SecretFinding(
            rule: SecretRule(id: rule, namespace: "sparc", description: "", severity: "high"), file: "m", offset: 0, length: 1,
            encoding: "ascii", address: 0, owner: PageOwner(pid: pid, command: command.map { GuestText($0) }, mapping: GuestText(mapping)), preview: "", revealed: false,
            fingerprint: fingerprint)
    }

    func testFormsAndWhatTheyCover() throws {
        let sshd = finding("openssh_private_key", pid: 9, command: "/usr/sbin/sshd -D")
        let cached = finding("openssh_private_key", pid: nil, mapping: "page cache", fingerprint: "sha256:ffeeddccbbaa9988")
        let rule = try CredentialScan.Allowance(parsing: "openssh_private_key")
        XCTAssertTrue(rule.covers(sshd) && rule.covers(cached))
        XCTAssertFalse(rule.covers(finding("aws_access_key_id", pid: 9, command: "sshd")))
        let byCommand = try CredentialScan.Allowance(parsing: "openssh_private_key@sshd")
        XCTAssertTrue(byCommand.covers(sshd))
        XCTAssertFalse(byCommand.covers(cached))
        XCTAssertTrue(try CredentialScan.Allowance(parsing: "openssh_private_key@page cache").covers(cached))
        let exact = try CredentialScan.Allowance(parsing: " sha256:FFEEDDCC ")
        XCTAssertTrue(exact.covers(cached))
        XCTAssertFalse(exact.covers(sshd))
        for bad in ["", "@sshd", "sha256:12", "sha256:xyz12345", "open ssh"] {
            XCTAssertThrowsError(try CredentialScan.Allowance(parsing: bad), bad)
        }
    }

    func testAllowListFileNamesTheBadLine() throws {
        let path = NSTemporaryDirectory() + "allow-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "# host keys\nsha256:0011223344556677  # rsa\n\nshadow_hash@sshd\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try CredentialScan.Allowance.load(path).count, 2)
        try "shadow_hash\nnot an allowance\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CredentialScan.Allowance.load(path)) { XCTAssertTrue("\($0)".hasPrefix(path + ":2: "), "\($0)") }
    }
}

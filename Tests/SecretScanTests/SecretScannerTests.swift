import Foundation
import SparcSupport
import XCTest

@testable import SecretScan

/// Fake credentials in the formats the built-in rules know (none of them is a real secret).
enum Planted {
    static let awsKeyID = "AKIAIOSFODNN7EXAMPLE"
    static let awsSecret = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    static let github = "ghp_" + String(repeating: "a1B2c3D4e5", count: 3) + "F6g7H8"
    static let jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    static let password = "password=Tr0ub4dor&3x"
    static let shadow = "$6$saltsalt$" + String(repeating: "qwertyuiopASDFGHJKL./0", count: 4).prefix(86)
    static let opensshKey = """
        -----BEGIN OPENSSH PRIVATE KEY-----
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
        QyNTUxOQAAACDqN1l1Xq5kGJ8dRQ0yT1xQ2bV0o3mYbH1F0l9J6Qm1gAAAAJgS6j2MEuo9
        jAAAAAtzc2gtZWQyNTUxOQAAACDqN1l1Xq5kGJ8dRQ0yT1xQ2bV0o3mYbH1F0l9J6Qm1g
        -----END OPENSSH PRIVATE KEY-----
        """

    /// Look-alikes that must not match: too short, too long, wrong prefix, a public key,
    /// a password prompt with nothing typed.
    static let nearMisses = [
        "AKIAIOSFODNN7EXAMPL ", "AKIAIOSFODNN7EXAMPLE1", "akiaiosfodnn7example", "ghp_" + String(repeating: "a", count: 35) + " ",
        "-----BEGIN PUBLIC KEY-----", "-----BEGIN OPENSSH PUBLIC KEY-----", "Password: \0\0\0\0\0\0\0\0", "password=abc ",
        "eyJhbGciOiJIUzI1NiJ9", "$6$salt$short", "AIzaSyshort",
        // Placeholders and a program's constants: a dummy hash, a masked password, a PEM
        // header with no key after it (sshd's binary holds all three kinds).
        "$2a$10$" + String(repeating: "x", count: 53), "password=xxxxxxxxxxxxxxxx",
        "-----BEGIN OPENSSH PRIVATE KEY-----\0\0\0\0-----END OPENSSH PRIVATE KEY-----",
    ]
}

final class SecretScannerTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "secretscan-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Writes `size` bytes of filler text (so no region is a hole) with texts planted at offsets.
    func file(size: Int, plants: [(Int, [UInt8])], sparse: Bool = false, name: String = "image") throws -> String {
        let path = directory + "/" + name
        let fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        if sparse {
            XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
        } else {
            let filler = [UInt8]("the quick brown fox jumps over the lazy dog; ".utf8)
            var chunk = [UInt8]()
            while chunk.count < 1 << 20 { chunk += filler }
            var written = 0
            while written < size {
                let n = min(chunk.count, size - written)
                XCTAssertEqual(pwrite(fd, chunk, n, off_t(written)), n)
                written += n
            }
        }
        for (offset, bytes) in plants { XCTAssertEqual(pwrite(fd, bytes, bytes.count, off_t(offset)), bytes.count) }
        return path
    }

    static func ascii(_ s: String) -> [UInt8] { [0x20] + Array(s.utf8) + [0x20] }
    static func utf16(_ s: String) -> [UInt8] { [0x20, 0] + s.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] } + [0x20, 0] }

    func scan(_ path: String, rules: SecretRules? = nil, reveal: Bool = false) throws -> SecretScanner.FileResult {
        let scanner = SecretScanner(rules: try rules ?? SecretRules(), reveal: reveal)
        return try scanner.scan(file: OpenedFile(regular: path))
    }

    func testEachBuiltInFormatIsFoundOnceAndNearMissesAreNot() throws {
        let texts: [(String, String)] = [
            ("aws_access_key_id", Planted.awsKeyID), ("aws_secret_access_key", Planted.awsSecret), ("github_token", Planted.github),
            ("json_web_token", Planted.jwt), ("password_assignment", Planted.password), ("shadow_hash", String(Planted.shadow)),
            ("openssh_private_key", Planted.opensshKey),
        ]
        var plants: [(Int, [UInt8])] = []
        for (i, (_, text)) in texts.enumerated() { plants.append((100_000 * (i + 1), Self.ascii(text))) }
        for (i, miss) in Planted.nearMisses.enumerated() { plants.append((2_000_000 + 10_000 * i, Self.ascii(miss))) }
        let result = try scan(try file(size: 4 << 20, plants: plants))
        XCTAssertEqual(result.findings.map(\.rule.id), texts.map(\.0), "each planted credential once, in offset order; no near miss")
        for (finding, (_, text)) in zip(result.findings, texts) {
            XCTAssertEqual(finding.encoding, "ascii")
            XCTAssertFalse(finding.revealed)
            XCTAssertTrue(finding.preview.contains("hidden]"), "\(finding.rule.id): \(finding.preview)")
            let secret = String(text.dropFirst(text.count / 2).prefix(6))
            XCTAssertFalse(finding.preview.contains(secret), "\(finding.rule.id) shows its secret: \(finding.preview)")
        }
        let key = try XCTUnwrap(result.findings.first { $0.rule.id == "openssh_private_key" })
        XCTAssertEqual(key.length, Planted.opensshKey.utf8.count, "the whole block, BEGIN through END")
        XCTAssertTrue(key.preview.hasPrefix("-----BEGIN OPENSSH PRIVATE KEY-----…["), key.preview)
        XCTAssertEqual(key.rule.severity, "critical")
        let password = try XCTUnwrap(result.findings.first { $0.rule.id == "password_assignment" })
        XCTAssertTrue(password.preview.hasPrefix("password=…["), "the name shows, the value does not: \(password.preview)")
    }

    func testRevealShowsTheWholeMatch() throws {
        let result = try scan(try file(size: 1 << 20, plants: [(5000, Self.ascii(Planted.awsKeyID))]), reveal: true)
        XCTAssertEqual(result.findings.map(\.preview), [Planted.awsKeyID])
        XCTAssertTrue(result.findings[0].revealed)
    }

    func testUTF16LEIsFoundAndReadBack() throws {
        let result = try scan(try file(size: 1 << 20, plants: [(7777, Self.utf16(Planted.github)), (300_001, Self.utf16(Planted.awsKeyID))]))
        XCTAssertEqual(result.findings.map(\.rule.id), ["github_token", "aws_access_key_id"])
        XCTAssertEqual(result.findings.map(\.encoding), ["utf16le", "utf16le"])
        XCTAssertEqual(result.findings[1].offset, 300_003)
        XCTAssertEqual(result.findings[1].length, 40)
        let revealed = try scan(directory + "/image", reveal: true)
        XCTAssertEqual(revealed.findings[1].preview, Planted.awsKeyID)
    }

    /// Credentials that straddle the 32 MiB block edge are found once, whole.
    func testBlockEdgesAreSeamless() throws {
        let edge = SecretScanner.blockSize
        let path = try file(
            size: edge + (4 << 20),
            plants: [(edge - 10, Self.ascii(Planted.awsKeyID)), (2 * edge - 100, []), (edge + 5000 - 60, Self.ascii(Planted.jwt))])
        let result = try scan(path)
        XCTAssertEqual(result.findings.map(\.rule.id), ["aws_access_key_id", "json_web_token"])
        XCTAssertEqual(result.findings[0].offset, UInt64(edge - 9))
        XCTAssertEqual(result.findings[1].length, Planted.jwt.utf8.count)
        // The same JWT across the edge itself.
        let across = try file(size: edge + (1 << 20), plants: [(edge - 70, Self.ascii(Planted.jwt))], name: "across")
        let found = try scan(across).findings
        XCTAssertEqual(found.count, 1, "\(found.map { ($0.offset, $0.length) })")
        XCTAssertEqual(found.first?.length, Planted.jwt.utf8.count)
    }

    /// Offsets past 4 GiB (a sparse file: its holes are never read).
    func testPastFourGiB() throws {
        let offset = (4 << 30) + 123_457
        let path = try file(size: 5 << 30, plants: [(offset, Self.ascii(Planted.opensshKey)), (1 << 20, Self.ascii(Planted.awsKeyID))], sparse: true)
        let result = try scan(path)
        XCTAssertEqual(result.findings.map(\.rule.id), ["aws_access_key_id", "openssh_private_key"])
        XCTAssertEqual(result.findings[1].offset, UInt64(offset + 1))
    }

    func testUserRuleFileWithAndWithoutTheBuiltIns() throws {
        let rules = directory + "/mine.yar"
        try """
        rule canary_token {
            meta:
                description = "our canary"
                severity = "low"
            strings:
                $c = "CANARY-7f3a" ascii wide
            condition:
                $c
        }
        """.write(toFile: rules, atomically: true, encoding: .utf8)
        let path = try file(size: 1 << 20, plants: [(1000, Self.ascii("CANARY-7f3a-0001")), (9000, Self.ascii(Planted.awsKeyID))])
        let both = try scan(path, rules: SecretRules(ruleFiles: [rules]))
        XCTAssertEqual(Set(both.findings.map(\.rule.id)), ["canary_token", "aws_access_key_id"])
        let canary = try XCTUnwrap(both.findings.first { $0.rule.id == "canary_token" })
        XCTAssertEqual(canary.rule, SecretRule(id: "canary_token", namespace: "default", description: "our canary", severity: "low"))
        let mineOnly = try scan(path, rules: SecretRules(builtin: false, ruleFiles: [rules]))
        XCTAssertEqual(mineOnly.findings.map(\.rule.id), ["canary_token"])
    }

    func testMalformedRuleFileNamesItsLine() throws {
        let rules = directory + "/bad.yar"
        try "rule fine { condition: true }\n\nrule broken {\n  strings:\n    $a = \"x\"\n  condition:\n    $a and and\n}\n".write(
            toFile: rules, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SecretRules(ruleFiles: [rules])) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix(rules + ":7:"), message)
            XCTAssertFalse(message.contains("\n"), "one line: \(message)")
        }
    }

    func testEmptyRuleSetIsRefused() throws {
        let rules = directory + "/empty.yar"
        try "// nothing here yet\n".write(toFile: rules, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SecretRules(builtin: false, ruleFiles: [rules])) { XCTAssertTrue("\($0)".contains("no rule"), "\($0)") }
        XCTAssertThrowsError(try SecretRules(builtin: false)) { XCTAssertTrue("\($0)".contains("--rules"), "\($0)") }
    }

    /// A rule that matches everywhere is capped: a bounded list, the count, and a note.
    func testRuleMatchingEverywhereIsCapped() throws {
        let rules = directory + "/everywhere.yar"
        try "rule everywhere { strings: $a = \"fox\" condition: $a }\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let path = try file(size: 64 << 20, plants: [])
        let result = try scan(path, rules: SecretRules(builtin: false, ruleFiles: [rules]))
        XCTAssertEqual(result.findings.count, 1000)
        XCTAssertGreaterThan(result.capped["everywhere"] ?? 0, 1000)
    }

    func testRedactionKeepsOnlyTheHarmlessLead() {
        let facts = SecretRules.RuleFacts(rule: SecretRule(id: "x", namespace: "sparc", description: "", severity: "high"), reveal: 4, revealThrough: "$", extendTo: nil)
        XCTAssertEqual(SecretScanner.redact("$6$saltsalt$abcdefghij", facts: facts), "$6$saltsalt$…[10 hidden]")
        var f = facts
        f.revealThrough = nil
        XCTAssertEqual(SecretScanner.redact("AKIAIOSFODNN7EXAMPLE", facts: f), "AKIA…[16 hidden]")
        XCTAssertEqual(SecretScanner.redact("abc", facts: f), "…[3 hidden]", "a short match shows nothing")
    }
}

/// The reviewer's case and its neighbours: many secrets of different rules packed close
/// together in memory, each reported once with its own extent.
final class PackedSecretsTests: XCTestCase {
    var directory = ""
    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "packed-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// An OpenSSH key block as sparc-probe assembles one (6 lines of 70 base64 characters).
    static func sshKey(seed: UInt64) -> String {
        let b64 = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var s = seed &* 2654435761 &+ 12345
        var out = "-----BEGIN OPENSSH PRIVATE KEY-----"
        for _ in 0..<6 {
            out += "\n"
            for _ in 0..<70 {
                s = s &* 6364136223846793005 &+ 1442695040888963407
                out.append(b64[Int((s >> 33) % 64)])
            }
        }
        return out + "\n-----END OPENSSH PRIVATE KEY-----\n"
    }

    static func awsID(seed: UInt64) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var s = seed &* 2654435761 &+ 99
        return "AKIA" + (0..<16).map { _ -> String in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return String(alphabet[Int((s >> 33) % 32)])
        }.joined()
    }

    func testManySecretsPackedTogetherAreEachFoundOnce() throws {
        // A heap-like page: 16-byte chunk headers, then each secret, NUL-padded; three copies
        // of the key (a program's buffers), a key whose END line was overwritten, an AWS key
        // right after a key, a canary for a user rule.
        var page = [UInt8]()
        func chunk(_ text: String) {
            page += [0x11, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] + Array(text.utf8) + [0]
            while page.count % 16 != 0 { page.append(0) }
        }
        var expected: [(rule: String, text: String)] = []
        for i in 0..<3 {
            let key = Self.sshKey(seed: UInt64(7 + i))
            chunk(key)
            expected.append(("openssh_private_key", String(key.dropLast())))
        }
        // A key whose END was overwritten by the next allocation's header: no end within reach.
        let broken = String(Self.sshKey(seed: 99).prefix(200))
        chunk(broken)
        for i in 0..<4 {
            let id = Self.awsID(seed: UInt64(i))
            chunk(id)
            expected.append(("aws_access_key_id", id))
            let key = Self.sshKey(seed: UInt64(100 + i))
            chunk(key)
            expected.append(("openssh_private_key", String(key.dropLast())))
        }
        chunk("SPARC-CANARY-12345678")
        chunk("password=Tr0ub4dor&3x")
        expected.append(("password_assignment", "password=Tr0ub4dor&3x"))
        chunk(Planted.github)
        expected.append(("github_token", Planted.github))
        let path = directory + "/image"
        var image = [UInt8](repeating: 0, count: 4 << 20)
        image.replaceSubrange(1 << 20..<(1 << 20) + page.count, with: page)
        FileManager.default.createFile(atPath: path, contents: Data(image))
        let rules = directory + "/canary.yar"
        try Data(#"rule canary { strings: $c = /SPARC-CANARY-[0-9]{8}/ condition: $c }"#.utf8).write(to: URL(fileURLWithPath: rules))
        let scanner = SecretScanner(rules: try SecretRules(ruleFiles: [rules]), reveal: true)
        let found = try scanner.scan(file: OpenedFile(regular: path)).findings
        for e in expected {
            let hits = found.filter { $0.rule.id == e.rule && $0.preview.replacingOccurrences(of: "⏎", with: "\n") == e.text }
            XCTAssertEqual(hits.count, 1, "\(e.rule) \(e.text.prefix(40)) found \(hits.count) times; all: \(found.map { "\($0.rule.id)@\($0.offset)+\($0.length)" })")
        }
        XCTAssertEqual(found.filter { $0.rule.id == "canary" }.count, 1)
        // The broken key is a finding of its own, never a block that runs into the next copies.
        let keys = found.filter { $0.rule.id == "openssh_private_key" }
        XCTAssertTrue(keys.allSatisfy { $0.length < 1000 }, "\(keys.map(\.length))")
        XCTAssertEqual(keys.count, 8, "seven whole keys and the broken one")
    }
}

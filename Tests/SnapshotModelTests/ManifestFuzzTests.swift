import Foundation
import SparcSupport
import TestSupport
import XCTest

@testable import SnapshotModel

/// A manifest comes from whoever made the bundle: 10,000 mutated ones (fewer in make check), resealed as an
/// attacker would (so they pass the digest and reach every value check) or not, end in a
/// manifest that passed its checks or in a clean error, never in a crash or a hang.
final class ManifestFuzzTests: XCTestCase {
    static func sample() throws -> Data {
        let digest = String(repeating: "ab", count: 32)
        let manifest = Manifest(
            vm: .init(name: "web-1", id: "0b7c2a4e-8f1d-4c3b-9a6e-5d4f3e2a1b0c"),
            machine: .init(
                memoryMiB: 256, cpus: 2, accel: "tcg", kernel: .init(sha256: digest, size: 7_000_000, origin: "/nonexistent/sparc-canary/vmlinuz"),
                initrd: nil, append: "console=ttyS0", disk: false, network: .init(backend: "user", forwards: ["tcp::2222-:22"], tap: nil, mac: "52:54:00:12:34:56")),
            qemu: .init(version: "7.2.0", argv: ["qemu-system-x86_64", "-m", "256"]), guest: .init(kernel: "6.1.0", bootId: "b", agentVersion: "0.2.0"),
            memory: .init(bytes: 256 << 20, dataBytes: 100 << 20, zeroBytes: 150 << 20, excludedBytes: 6 << 20),
            exclusion: .init(
                targets: ["pid 12", "tty pts/0"], scope: "all", bytes: 6 << 20, bytesByKind: ["user": 4 << 20, "pipe": 4096],
                processes: [.init(pid: 12, startTime: 900, commandHash: digest, reason: "pid 12")], ttys: ["pts/0"], ranges: 3,
                keptSharedPages: 1, evictFiles: ["/data/a"], removeFiles: [], collectMilliseconds: 12, warnings: ["w"]),
            files: [
                .init(name: Manifest.memoryFile, size: 256 << 20, sha256: digest), .init(name: Manifest.devicesFile, size: 4096, sha256: digest),
                .init(name: Manifest.ownersFile, size: 100, sha256: digest),
            ])
        return try manifest.encoded()
    }

    /// Reseals a mutated document the way `BundleTests.reseal` does.
    static func reseal(_ data: Data) -> Data? {
        guard var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        object["manifestSHA256"] = Manifest.placeholderDigest
        guard var out = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else { return nil }
        out.append(0x0A)
        let digest = SHA256Hasher.hex(of: out)
        return Data(String(decoding: out, as: UTF8.self).replacingOccurrences(of: Manifest.placeholderDigest, with: digest).utf8)
    }

    func testMutatedManifestsGiveOnlyCleanErrors() throws {
        let base = try Self.sample()
        XCTAssertNoThrow(try Manifest.decode(base), "the sample itself is valid")
        var mutator = Mutator(seed: 0x5EA1)
        var accepted = 0, refused = 0, reachedChecks = 0
        for i in 0..<FuzzBudget.cases {
            let input: Data
            if i % 4 == 3 {
                input = mutator.bytes(base)
            } else if let doc = mutator.jsonDocument(base, rounds: 1 + mutator.below(3)), let sealed = Self.reseal(doc) {
                input = sealed
                reachedChecks += 1
            } else {
                continue
            }
            do {
                let m = try Manifest.decode(input)
                accepted += 1
                // What readers do next with an accepted manifest must hold too.
                _ = PhysicalLayout(ramBytes: UInt64(m.memory.bytes)).fileRanges(physical: UInt64.max - 5, length: 10)
            } catch let error as SparcError {
                refused += 1
                XCTAssertFalse(error.message.isEmpty, "case \(i)")
                XCTAssertFalse(error.message.contains("\n"), "case \(i): one line: \(error.message)")
            } catch {
                XCTFail("case \(i): not a clean error: \(error)")
            }
        }
        print("manifest fuzz: \(accepted) accepted, \(refused) refused, \(reachedChecks) resealed")
        XCTAssertGreaterThan(refused, FuzzBudget.cases / 2)
        XCTAssertGreaterThan(reachedChecks, FuzzBudget.cases / 2)
    }
}

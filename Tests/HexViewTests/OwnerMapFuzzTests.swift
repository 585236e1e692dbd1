import Foundation
import GuestQuery
import TestSupport
import XCTest

@testable import HexView

/// owners.json comes from the bundle: 10,000 mutated owner maps either fail to decode or
/// give an index that answers every frame number, the largest included, without a crash.
final class OwnerMapFuzzTests: XCTestCase {
    func testTenThousandMutatedOwnerMapsAnswerEveryLookup() throws {
        let map = OwnerMap(
            pageSize: 4096,
            processes: [
                .init(pid: 12, command: "bash", mappings: [.init(name: "[heap]", runs: [[100, 4], [200, 1]]), .init(name: "/bin/sh", runs: [[300, 2]])]),
                .init(pid: 13, command: "sshd", mappings: [.init(name: "[anon]", runs: [[101, 1]])]),
            ],
            frameClasses: Data([0, 1, 2, 3, 4, 5, 200]))
        let base = try JSONEncoder().encode(map)
        var mutator = Mutator(seed: 0x0123)
        var decoded = 0
        for i in 0..<10_000 {
            let input = i % 3 == 0 ? mutator.bytes(base) : (mutator.jsonDocument(base, rounds: 1 + mutator.below(3)) ?? mutator.bytes(base))
            guard let mutated = try? JSONDecoder().decode(OwnerMap.self, from: input) else { continue }
            decoded += 1
            let index = OwnerIndex(mutated)
            for pfn: UInt64 in [0, 100, 101, 103, 104, 201, 6, 7, 1 << 40, UInt64.max - 1, UInt64.max] { _ = index.owner(ofFrame: pfn) }
        }
        print("owner map fuzz: \(decoded) decoded")
        XCTAssertGreaterThan(decoded, 300, "enough mutants decode to reach the index")
    }
}

import Foundation
import SparcSupport
import TestSupport
import XCTest

@testable import SnapshotModel

/// The owner map comes from the bundle, so it is hostile: a reader holds every count to its
/// limits before using it, and answers every frame number without a crash.
final class OwnerMapFileTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-owners-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    static let processes = [
        OwnerMapFile.Process(pid: 12, command: "bash", mappings: [("[heap]", [(100, 4), (200, 1)]), ("/bin/sh", [(300, 2)])]),
        OwnerMapFile.Process(pid: 13, command: "sshd", mappings: [("[anon]", [(101, 1)])]),
    ]
    static let kinds = Data([0, 1, 2, 3, 4, 5, 200])

    func written(_ name: String = "owners.bin", processes: [OwnerMapFile.Process] = processes, kinds: Data = kinds) throws -> String {
        let path = dir + "/" + name
        try OwnerMapFile.write(processes: processes, frameKinds: kinds, to: path)
        return path
    }

    func testRoundTripAttributesFramesAndKinds() throws {
        let index = try OwnerIndex(file: OpenedFile(regular: try written()), frames: 1 << 20)
        XCTAssertEqual(index.owner(ofFrame: 101), PageOwner(pid: 12, command: "bash", mapping: "[heap]", alsoMappedBy: [13]))
        XCTAssertEqual(index.owner(ofFrame: 301).description, "pid 12 bash /bin/sh")
        XCTAssertEqual(index.owner(ofFrame: 1).mapping, "free")
        XCTAssertEqual(index.owner(ofFrame: 2).mapping, "kernel/slab")
        XCTAssertEqual(index.owner(ofFrame: 6).mapping, "kernel/unknown", "an unknown kind byte reads as unknown kernel memory")
        XCTAssertEqual(index.owner(ofFrame: 1 << 30).mapping, "kernel/unknown", "past the recorded frames")
    }

    func testLongNamesAreCutAtACharacterBoundary() throws {
        let long = String(repeating: "é", count: 3000)
        let index = try OwnerIndex(
            file: OpenedFile(regular: try written(processes: [.init(pid: 1, command: long, mappings: [(long, [(5, 1)])])])), frames: 100)
        let owner = index.owner(ofFrame: 5)
        XCTAssertEqual(owner.command?.unescaped.utf8.count, 256)
        XCTAssertEqual(owner.mapping.unescaped.utf8.count, 4096)
    }

    /// Counts that would make a reader allocate without end are refused, fast, with one error.
    func testCraftedCountsAreRefused() throws {
        func header(frames: UInt64, processes: UInt32) -> Data {
            var d = Data(OwnerMapFile.magic)
            for v in [OwnerMapFile.version, 4096] { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
            withUnsafeBytes(of: frames.littleEndian) { d.append(contentsOf: $0) }
            withUnsafeBytes(of: processes.littleEndian) { d.append(contentsOf: $0) }
            return d
        }
        func refused(_ data: Data, frames: UInt64 = 1 << 20, file: StaticString = #filePath, line: UInt = #line) {
            let path = dir + "/crafted"
            unlink(path)
            FileManager.default.createFile(atPath: path, contents: data)
            XCTAssertThrowsError(try OwnerIndex(file: OpenedFile(regular: path), frames: frames), file: file, line: line) {
                XCTAssertEqual(($0 as? SparcError)?.kind, .negative, file: file, line: line)
            }
        }
        refused(header(frames: 1 << 40, processes: 0), frames: 1 << 20)  // kinds for more frames than RAM
        refused(header(frames: 0, processes: UInt32.max))  // a billion processes
        var runs = header(frames: 0, processes: 1)
        runs.append(contentsOf: [1, 0, 0, 0, 1, 0, 0x41, 1, 0, 0, 0, 1, 0, 0x6d])
        runs.append(contentsOf: [0xff, 0xff, 0xff, 0x7f])  // 2 billion runs announced
        refused(runs)
        refused(Data("SPARCOWN".utf8))  // cut short
        refused(Data(repeating: 0, count: 64))
        var trailing = try FileSystem.readFile(try written())
        trailing.append(0)
        refused(trailing)
    }

    func testRunsOutsideRAMOrWrappingAreDropped() throws {
        let path = try written(processes: [.init(pid: 9, command: "x", mappings: [("[heap]", [(UInt64.max - 1, 5), (50, 0), (90, 20), (10, 2)])])])
        let index = try OwnerIndex(file: OpenedFile(regular: path), frames: 100)
        XCTAssertEqual(index.entries.count, 1, "only the run inside RAM is kept")
        XCTAssertEqual(index.owner(ofFrame: 11).pid, 9)
        for pfn: UInt64 in [0, 95, 99, 100, 1 << 40, UInt64.max - 1, UInt64.max] { _ = index.owner(ofFrame: pfn) }
    }

    func testLegacyJSONIsReadAndBounded() throws {
        let json = #"{"pageSize":4096,"frameClasses":"AAEC","processes":[{"pid":7,"command":"sh","mappings":[{"name":"[stack]","runs":[[10,2],[1,18446744073709551615],[3]]}]}]}"#
        let path = dir + "/owners.json"
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        let index = try OwnerIndex(legacyJSON: OpenedFile(regular: path), frames: 100)
        XCTAssertEqual(index.owner(ofFrame: 11).description, "pid 7 sh [stack]")
        XCTAssertEqual(index.owner(ofFrame: 1).mapping, "free")
        let big = dir + "/big.json"
        XCTAssertEqual(truncate(big, 0), -1)
        FileManager.default.createFile(atPath: big, contents: Data())
        XCTAssertEqual(truncate(big, off_t(OwnerIndex.maxLegacyJSONBytes + 1)), 0)
        XCTAssertThrowsError(try OwnerIndex(legacyJSON: OpenedFile(regular: big), frames: 100)) { XCTAssertTrue($0 is OwnerIndex.LegacyMapTooLarge) }
    }

    /// 10,000 mutated owner maps (fewer in make check) either fail with a clean error or answer every lookup.
    func testMutatedOwnerMapsAnswerEveryLookup() throws {
        let base = try FileSystem.readFile(try written())
        var mutator = Mutator(seed: 0x0123)
        var read = 0
        let path = dir + "/mutant"
        let cases = FuzzBudget.cases
        for _ in 0..<cases {
            var input = base
            for _ in 0...mutator.below(3) { input = mutator.bytes(input) }
            unlink(path)
            FileManager.default.createFile(atPath: path, contents: input)
            guard let index = try? OwnerIndex(file: OpenedFile(regular: path), frames: 1 << 20) else { continue }
            read += 1
            for pfn: UInt64 in [0, 100, 101, 103, 104, 201, 6, 7, 1 << 40, UInt64.max - 1, UInt64.max] { _ = index.owner(ofFrame: pfn) }
        }
        print("owner map fuzz: \(read) of \(cases) mutants read")
        XCTAssertGreaterThan(read, cases / 50, "enough mutants parse to reach the index")
    }
}

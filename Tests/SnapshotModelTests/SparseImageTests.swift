import Foundation
import XCTest

@testable import SnapshotModel
@testable import SparcSupport

/// Builds scratch files in a per-test directory.
class ScratchTestCase: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    /// Writes `size` bytes of zeros with `patches` (offset, bytes) applied.
    func makeRAM(_ name: String, size: Int, patches: [(Int, [UInt8])]) throws -> String {
        let path = dir + "/" + name
        var data = Data(count: size)
        for (off, bytes) in patches { data.replaceSubrange(off..<off + bytes.count, with: bytes) }
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }
}

final class SparseImageTests: ScratchTestCase {
    func testZeroPagesBecomeHolesAndDigestCoversLogicalContent() throws {
        let size = 64 << 20
        let ram = try makeRAM("ram", size: size, patches: [(4096 * 3 + 5, Array("secret".utf8)), (size - 10, [1, 2, 3])])
        let out = dir + "/memory.img"
        let stats = try SparseImage.save(from: ram, to: out)
        XCTAssertEqual(stats.bytes, Int64(size))
        XCTAssertEqual(stats.dataBytes, 2 * 4096)
        XCTAssertEqual(stats.zeroBytes, Int64(size) - 2 * 4096)
        XCTAssertEqual(FileSystem.size(out), Int64(size))
        XCTAssertLessThan(FileSystem.allocatedBytes(out)!, 1 << 20, "zero pages must be holes")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), try Data(contentsOf: URL(fileURLWithPath: ram)))
        XCTAssertEqual(stats.sha256, try SHA256Hasher.hex(ofFile: ram))
    }

    func testExcludedRangesReadAsZeroAndAreCounted() throws {
        let ram = try makeRAM("ram", size: 1 << 20, patches: [(100, Array("keep".utf8)), (8192 + 10, Array("drop-this".utf8)), (12288, [9])])
        let out = dir + "/memory.img"
        let stats = try SparseImage.save(from: ram, to: out, excluding: [8192 + 10..<8192 + 19])
        let saved = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertNil(saved.range(of: Data("drop-this".utf8)))
        XCTAssertNotNil(saved.range(of: Data("keep".utf8)))
        XCTAssertEqual(saved[12288], 9)
        XCTAssertEqual(stats.excludedBytes, 9)
        XCTAssertEqual(stats.sha256, SHA256Hasher.hex(of: saved))
    }

    func testNormalizeMergesAndClips() {
        XCTAssertEqual(SparseImage.normalize([10..<20, 0..<5, 15..<30, 90..<200], size: 100), [0..<5, 10..<30, 90..<100])
        XCTAssertEqual(SparseImage.normalize([5..<5], size: 10), [])
        XCTAssertEqual(SparseImage.normalize([150..<200, 3..<4, 4..<6], size: 100), [3..<6], "beyond the end is dropped, touching ranges merge")
    }

    func testLoadRoundTripsAndRefusesWrongDigest() throws {
        let ram = try makeRAM("ram", size: 4 << 20, patches: [(1 << 20, Array("hello".utf8))])
        let img = dir + "/memory.img"
        let stats = try SparseImage.save(from: ram, to: img)
        let back = dir + "/back.ram"
        try SparseImage.load(from: img, to: back, expectedSize: stats.bytes, expectedSHA256: stats.sha256)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: back)), try Data(contentsOf: URL(fileURLWithPath: ram)))

        let bad = dir + "/bad.ram"
        XCTAssertThrowsError(
            try SparseImage.load(from: img, to: bad, expectedSize: stats.bytes, expectedSHA256: String(repeating: "a", count: 64))
        ) { XCTAssertTrue("\($0)".contains("does not match")) }
        XCTAssertFalse(FileSystem.exists(bad), "a refused load must leave nothing behind")
        XCTAssertThrowsError(try SparseImage.load(from: img, to: bad, expectedSize: 5, expectedSHA256: stats.sha256))
        XCTAssertFalse(FileSystem.exists(bad))
    }

    func testSaveRefusesExistingDestination() throws {
        let ram = try makeRAM("ram", size: 8192, patches: [])
        let out = try makeRAM("exists", size: 1, patches: [])
        XCTAssertThrowsError(try SparseImage.save(from: ram, to: out))
        XCTAssertEqual(FileSystem.size(out), 1)
    }

    func testSHA256KnownVector() {
        XCTAssertEqual(SHA256Hasher.hex(of: Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let h = SHA256Hasher()
        h.updateZeros(count: 3)
        XCTAssertEqual(h.finalize(), SHA256Hasher.hex(of: Data(count: 3)))
    }
}

import Foundation
import TestSupport
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
        // Sparse: the size is set, only the patches are written.
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
        for (off, bytes) in patches { XCTAssertEqual(pwrite(fd, bytes, bytes.count, off_t(off)), bytes.count) }
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
        XCTAssertEqual(stats.sha256, try ChunkedDigest.of(file: ram))
        XCTAssertEqual(stats.sha256, ChunkedDigest.of(try Data(contentsOf: URL(fileURLWithPath: ram))))
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
        XCTAssertEqual(stats.sha256, ChunkedDigest.of(saved))
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
        try SparseImage.load(from: OpenedFile(regular: img), to: back, expectedSize: stats.bytes, expectedDigest: stats.sha256)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: back)), try Data(contentsOf: URL(fileURLWithPath: ram)))

        let bad = dir + "/bad.ram"
        XCTAssertThrowsError(
            try SparseImage.load(from: OpenedFile(regular: img), to: bad, expectedSize: stats.bytes, expectedDigest: String(repeating: "a", count: 64))
        ) { XCTAssertTrue("\($0)".contains("does not match")) }
        XCTAssertFalse(FileSystem.exists(bad), "a refused load must leave nothing behind")
        XCTAssertThrowsError(try SparseImage.load(from: OpenedFile(regular: img), to: bad, expectedSize: 5, expectedDigest: stats.sha256))
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

    /// Holes and written zeros digest alike; the digest covers size, order and every byte.
    func testChunkedDigestDefinition() throws {
        let sparse = try makeRAM("sparse", size: 5 << 20, patches: [(3 << 20, [7])])
        var dense = Data(count: 5 << 20)
        dense[3 << 20] = 7
        XCTAssertEqual(try ChunkedDigest.of(file: sparse), ChunkedDigest.of(dense))
        var other = dense
        other[3 << 20] = 8
        XCTAssertNotEqual(ChunkedDigest.of(other), ChunkedDigest.of(dense))
        XCTAssertNotEqual(ChunkedDigest.of(Data(count: 10)), ChunkedDigest.of(Data(count: 11)), "size is covered")
        XCTAssertNotEqual(ChunkedDigest.of(Data([1, 2])), ChunkedDigest.of(Data([2, 1])))
        XCTAssertEqual(ChunkedDigest.of(Data()), ChunkedDigest.of(Data()))
    }

    /// A copy hashes exactly what it writes, and leaves zero chunks as holes.
    func testDigestWhileCopying() throws {
        let src = try makeRAM("src", size: 9 << 20, patches: [(1, [1]), (6 << 20, Array("tail".utf8))])
        let file = try OpenedFile(regular: src)
        let out = try NewFile(dir + "/copy", size: file.size)
        let digest = try ChunkedDigest.digest(fd: file.fd, size: file.size, path: src, copyTo: out.fd)
        out.keep()
        XCTAssertEqual(digest, try ChunkedDigest.of(file: src))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/copy")), try Data(contentsOf: URL(fileURLWithPath: src)))
        XCTAssertLessThan(FileSystem.allocatedBytes(dir + "/copy")!, 5 << 20, "zero chunks stay holes")
    }

    /// A terabyte of holes digests without reading them: the kernel's count of bytes read proves it.
    func testHugeSparseFileDigestsQuickly() throws {
        let path = try makeRAM("huge", size: 0, patches: [])
        XCTAssertEqual(truncate(path, off_t(1) << 40), 0)
        let before = bytesReadSoFar()
        let digest = try ChunkedDigest.of(file: path)
        XCTAssertLessThan(bytesReadSoFar() - before, 1 << 20, "verification reads no holes")
        XCTAssertEqual(digest.count, 64)
    }
}

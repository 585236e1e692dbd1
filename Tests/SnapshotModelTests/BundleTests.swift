import Foundation
import Hypervisor
import XCTest

@testable import SnapshotModel
@testable import SparcSupport

final class BundleTests: ScratchTestCase {
    /// Writes a small complete bundle and returns its path.
    func makeBundle(_ name: String = "b.sparc") throws -> String {
        let ram = try makeRAM("ram-\(name)", size: 1 << 20, patches: [(5000, Array("data".utf8))])
        let writer = try BundleWriter(path: dir + "/" + name)
        let stats = try SparseImage.save(from: ram, to: writer.file(Manifest.memoryFile))
        try Data("device-state".utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.devicesFile)))
        let files = try writer.entries(for: [Manifest.memoryFile, Manifest.devicesFile], known: [Manifest.memoryFile: stats.sha256])
        let manifest = Manifest(
            vmName: "t", machine: MachineSpec(memoryMiB: 1), qemu: .init(version: "7.2.0", argv: ["qemu"]), kernel: nil,
            initrd: nil, guest: nil,
            memory: .init(file: Manifest.memoryFile, bytes: stats.bytes, dataBytes: stats.dataBytes, zeroBytes: stats.zeroBytes, excludedBytes: 0),
            files: files)
        try writer.commit(manifest)
        return dir + "/" + name
    }

    func flipByte(_ path: String, at offset: Int) throws {
        let fd = open(path, O_RDWR)
        defer { close(fd) }
        var b: UInt8 = 0
        XCTAssertEqual(pread(fd, &b, 1, off_t(offset)), 1)
        b ^= 0x01
        XCTAssertEqual(pwrite(fd, &b, 1, off_t(offset)), 1)
    }

    func testCommittedBundleVerifiesAndLeavesNoStaging() throws {
        let path = try makeBundle()
        let reader = try BundleReader(path: path)
        XCTAssertEqual(reader.verify(), [])
        XCTAssertEqual(reader.manifest.files.map(\.name), [Manifest.memoryFile, Manifest.devicesFile])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("partial") }, [])
    }

    func testEveryFlippedByteIsDetected() throws {
        let path = try makeBundle()
        // A byte in each file: memory (a data page and a hole), device state, and the manifest itself.
        for (file, offset) in [(Manifest.memoryFile, 5001), (Manifest.memoryFile, 900_000), (Manifest.devicesFile, 3)] {
            try flipByte(path + "/" + file, at: offset)
            let problems = try BundleReader(path: path).verify()
            XCTAssertEqual(problems.map(\.file), [file], "flip in \(file)@\(offset)")
            try flipByte(path + "/" + file, at: offset)
            XCTAssertEqual(try BundleReader(path: path).verify(), [])
        }
        let manifestPath = path + "/" + Manifest.fileName
        let size = Int(FileSystem.size(manifestPath)!)
        for offset in stride(from: 0, to: size, by: max(1, size / 40)) {
            try flipByte(manifestPath, at: offset)
            XCTAssertThrowsError(try BundleReader(path: path), "flip at manifest byte \(offset)") { error in
                XCTAssertEqual((error as? SparcError)?.kind, .negative)
            }
            try flipByte(manifestPath, at: offset)
        }
        XCTAssertNoThrow(try BundleReader(path: path))
    }

    func testMissingExtraAndResizedFilesAreReported() throws {
        let path = try makeBundle()
        try Data("x".utf8).write(to: URL(fileURLWithPath: path + "/stray"))
        truncate(path + "/" + Manifest.devicesFile, 4)
        let problems = try BundleReader(path: path).verify()
        XCTAssertEqual(problems.map(\.file), [Manifest.devicesFile, "stray"])
        XCTAssertTrue(problems[0].reason.contains("size"))
        unlink(path + "/" + Manifest.devicesFile)
        XCTAssertTrue(try BundleReader(path: path).verify().contains { $0.reason == "missing" })
    }

    func testWriterRefusesExistingPathAndMissingParent() throws {
        let path = try makeBundle()
        XCTAssertThrowsError(try BundleWriter(path: path)) { XCTAssertTrue("\($0)".contains("already exists")) }
        XCTAssertThrowsError(try BundleWriter(path: dir + "/no/such/dir/x.sparc")) {
            XCTAssertTrue("\($0)".contains("does not exist"))
        }
    }

    func testAbortRemovesStaging() throws {
        let writer = try BundleWriter(path: dir + "/aborted.sparc")
        try Data("partial".utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.devicesFile)))
        writer.abort()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testReaderErrorsAreClear() throws {
        XCTAssertThrowsError(try BundleReader(path: dir + "/nothing.sparc")) { XCTAssertTrue("\($0)".contains("no bundle")) }
        try FileSystem.makeDirectory(dir + "/empty.sparc")
        XCTAssertThrowsError(try BundleReader(path: dir + "/empty.sparc")) { XCTAssertTrue("\($0)".contains("no manifest.json")) }
    }
}

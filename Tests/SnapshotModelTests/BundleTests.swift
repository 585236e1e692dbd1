import Foundation
import TestSupport
import XCTest

@testable import SnapshotModel
@testable import SparcSupport

final class BundleTests: ScratchTestCase {
    static let ramSize = 64 << 20

    /// Writes a small complete bundle (a 64 MiB machine, mostly holes) and returns its path.
    func makeBundle(_ name: String = "b.sparc", sealKey: Data? = nil) throws -> String {
        let ram = try makeRAM("ram-\(name)", size: Self.ramSize, patches: [(5000, Array("data".utf8))])
        let writer = try BundleWriter(path: dir + "/" + name)
        let stats = try SparseImage.save(from: ram, to: writer.file(Manifest.memoryFile))
        try Data("device-state".utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.devicesFile)))
        let files = try writer.entries(for: [Manifest.memoryFile, Manifest.devicesFile], known: [Manifest.memoryFile: stats.sha256])
        let manifest = Manifest(
            vm: .init(name: "t", id: "0b7c2a4e-8f1d-4c3b-9a6e-5d4f3e2a1b0c"),
            machine: .init(memoryMiB: 64, cpus: 1, accel: "tcg", kernel: nil, initrd: nil, append: nil, disk: false),
            qemu: .init(version: "7.2.0", argv: ["qemu"]), guest: nil,
            memory: .init(bytes: stats.bytes, dataBytes: stats.dataBytes, zeroBytes: stats.zeroBytes, excludedBytes: 0),
            files: files)
        try writer.commit(manifest, sealKey: sealKey)
        return dir + "/" + name
    }

    /// Rewrites the manifest through `edit` and re-seals its digest, as an attacker would.
    func reseal(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
        let file = path + "/" + Manifest.fileName
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as! [String: Any]
        edit(&obj)
        obj["manifestSHA256"] = String(repeating: "0", count: 64)
        var data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        let digest = SHA256Hasher.hex(of: data)
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: String(repeating: "0", count: 64), with: digest)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
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
                guard case .badManifest? = error as? BundleError else { return XCTFail("flip at manifest byte \(offset): \(error)") }
                XCTAssertEqual((error as? UserFacingError)?.exitCode, 1, "a damaged manifest is a no")
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
        for refused in [path, dir + "/no/such/dir/x.sparc", "", "/"] {
            XCTAssertThrowsError(try BundleWriter(path: refused)) {
                guard case .badOutput? = $0 as? BundleError else { return XCTFail("\(refused): \($0)") }
                XCTAssertEqual(($0 as? BundleError)?.exitCode, 2, "a path that cannot take a bundle is a usage error")
            }
        }
    }

    func testAbortRemovesStaging() throws {
        let writer = try BundleWriter(path: dir + "/aborted.sparc")
        try Data("partial".utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.devicesFile)))
        writer.abort()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testReaderErrorsAreClear() throws {
        XCTAssertThrowsError(try BundleReader(path: dir + "/nothing.sparc")) {
            XCTAssertEqual($0 as? BundleError, .notFound(path: dir + "/nothing.sparc"))
        }
        try FileSystem.makeDirectory(dir + "/empty.sparc")
        XCTAssertThrowsError(try BundleReader(path: dir + "/empty.sparc")) {
            guard case .notABundle? = $0 as? BundleError else { return XCTFail("\($0)") }
        }
        // A member the manifest lists and the bundle lacks, and one whose bytes were changed.
        let path = try makeBundle()
        let reader = try BundleReader(path: path)
        unlink(path + "/" + Manifest.devicesFile)
        XCTAssertThrowsError(try reader.open(.devices)) { guard case .damaged(member: Manifest.devicesFile, _)? = $0 as? BundleError else { return XCTFail("\($0)") } }
        XCTAssertEqual(BundleError.tampered(member: "memory.img").exitCode, 1, "a bundle that is not intact is a no")
    }

    /// Every value of a resealed manifest is checked: names, sizes, members, digests.
    func testHostileManifestValuesAreRefused() throws {
        let path = try makeBundle()
        XCTAssertNoThrow(try reseal(path) { _ in })
        XCTAssertNoThrow(try BundleReader(path: path), "a reseal that changes nothing passes")
        let cases: [(String, ([String: Any]) -> [String: Any])] = [
            ("VM name", { var o = $0; var vm = o["vm"] as! [String: Any]; vm["name"] = "../../tmp/x"; o["vm"] = vm; return o }),
            ("VM id", { var o = $0; var vm = o["vm"] as! [String: Any]; vm["id"] = "../x"; o["vm"] = vm; return o }),
            ("memory image of -1", { var o = $0; var m = o["memory"] as! [String: Any]; m["bytes"] = -1; o["memory"] = m; return o }),
            ("memory of", { var o = $0; var m = o["machine"] as! [String: Any]; m["memoryMiB"] = 1 << 30; o["machine"] = m; return o }),
            ("bytes of RAM beyond whole MiB", { var o = $0; var m = o["machine"] as! [String: Any]; m["extraRAMBytes"] = 4096; o["machine"] = m; return o }),
            ("bytes of RAM beyond whole MiB", { var o = $0; var m = o["machine"] as! [String: Any]; m["extraRAMBytes"] = -8192; o["machine"] = m; return o }),
            ("memory image of", { var o = $0; var m = o["machine"] as! [String: Any]; m["extraRAMBytes"] = 8192; o["machine"] = m; return o }),
            ("unknown file", { var o = $0; var f = o["files"] as! [[String: Any]]; f[1]["name"] = "../../sparc-canary/x"; o["files"] = f; return o }),
            ("listed twice", { var o = $0; var f = o["files"] as! [[String: Any]]; f[1]["name"] = "memory.img"; o["files"] = f; return o }),
            ("size of", { var o = $0; var f = o["files"] as! [[String: Any]]; f[1]["size"] = -5; o["files"] = f; return o }),
            ("digest", { var o = $0; var f = o["files"] as! [[String: Any]]; f[1]["sha256"] = "../x"; o["files"] = f; return o }),
            ("disk state", { var o = $0; var m = o["machine"] as! [String: Any]; m["disk"] = true; o["machine"] = m; return o }),
            ("boot file", { var o = $0; var m = o["machine"] as! [String: Any]; m["initrd"] = ["sha256": "x", "size": 1, "origin": "/nonexistent/sparc-canary/initrd"]; o["machine"] = m; return o }),
            ("format version 7", { var o = $0; o["formatVersion"] = 7; return o }),
            ("a libvirt domain's definition without its record", { var o = $0; o["libvirt"] = ["uri": "qemu:///system", "machineType": "pc"]; return o }),
        ]
        let original = try Data(contentsOf: URL(fileURLWithPath: path + "/" + Manifest.fileName))
        for (expected, edit) in cases {
            try reseal(path) { o in o = edit(o) }
            XCTAssertThrowsError(try BundleReader(path: path), expected) {
                let message: String
                switch $0 as? BundleError {
                case .badManifest(let m)?: message = m
                case .unsupported(let m)? where expected.hasPrefix("format version"): message = m
                default: return XCTFail("\(expected): \($0)")
                }
                // The line names what is wrong (the case is what callers tell apart).
                XCTAssertTrue(message.contains(expected), "\(expected): \(message)")
            }
            try original.write(to: URL(fileURLWithPath: path + "/" + Manifest.fileName))
        }
    }

    /// Members are never followed through symlinks, and a FIFO never blocks a reader.
    func testSymlinkedAndSpecialMembersAreRefusedWithoutHanging() throws {
        let path = try makeBundle()
        let outside = dir + "/outside"
        try Data("device-state".utf8).write(to: URL(fileURLWithPath: outside))
        unlink(path + "/" + Manifest.devicesFile)
        XCTAssertEqual(symlink(outside, path + "/" + Manifest.devicesFile), 0)
        let reader = try BundleReader(path: path)
        XCTAssertThrowsError(try reader.open(.devices)) { guard case .damaged(member: Manifest.devicesFile, _)? = $0 as? BundleError else { return XCTFail("\($0)") } }
        XCTAssertTrue(reader.verify().contains { $0.file == Manifest.devicesFile && $0.reason.contains("symbolic link") })

        unlink(path + "/" + Manifest.devicesFile)
        XCTAssertEqual(mkfifo(path + "/" + Manifest.devicesFile, 0o600), 0)
        // No writer will ever come: a blocking open would never return.
        try XCTAssertFinishes("verifying a bundle with a FIFO") {
            XCTAssertTrue(reader.verify().contains { $0.file == Manifest.devicesFile && $0.reason.contains("not a regular file") })
        }
        let manifest = path + "/" + Manifest.fileName
        let saved = try Data(contentsOf: URL(fileURLWithPath: manifest))
        unlink(manifest)
        XCTAssertEqual(mkfifo(manifest, 0o600), 0)
        try XCTAssertFinishes("reading a FIFO manifest") {
            XCTAssertThrowsError(try BundleReader(path: path)) { guard case .badManifest? = $0 as? BundleError else { return XCTFail("\($0)") } }
        }
        unlink(manifest)
        try saved.write(to: URL(fileURLWithPath: manifest))
    }

    /// A resealed 1 TiB machine with a 1 TiB sparse image verifies in seconds, not hours.
    func testTerabyteImageVerifiesQuickly() throws {
        let path = try makeBundle()
        XCTAssertEqual(truncate(path + "/" + Manifest.memoryFile, off_t(1) << 40), 0)
        let digest = try ChunkedDigest.of(file: path + "/" + Manifest.memoryFile)
        try reseal(path) { o in
            var m = o["machine"] as! [String: Any]
            m["memoryMiB"] = 1 << 20
            o["machine"] = m
            var mem = o["memory"] as! [String: Any]
            mem["bytes"] = Int64(1) << 40
            o["memory"] = mem
            var f = o["files"] as! [[String: Any]]
            f[0]["size"] = Int64(1) << 40
            f[0]["sha256"] = digest
            o["files"] = f
        }
        let before = bytesReadSoFar()
        XCTAssertEqual(try BundleReader(path: path).verify(), [])
        XCTAssertLessThan(bytesReadSoFar() - before, 16 << 20, "verification reads only data, never the terabyte of holes")
    }

    /// Only the host key makes a valid seal; an edited and resealed manifest loses it.
    func testSealProvesTheHostWroteTheBundle() throws {
        let key = Data(repeating: 7, count: 32)
        let path = try makeBundle("sealed.sparc", sealKey: key)
        let reader = try BundleReader(path: path)
        XCTAssertEqual(reader.seal(key: key), .sealed)
        XCTAssertEqual(reader.seal(key: Data(repeating: 8, count: 32)), .invalid)
        XCTAssertEqual(reader.verify(), [], "the seal is an allowed member")
        try reseal(path) { o in o["createdAt"] = "2020-01-01T00:00:00.000Z" }
        XCTAssertEqual(try BundleReader(path: path).seal(key: key), .invalid)
        XCTAssertEqual(try BundleReader(path: try makeBundle("unsealed.sparc")).seal(key: key), .missing)
    }

    func testQCOW2HeadersThatReachOutsideAreRefused() throws {
        func header(version: UInt32 = 3, backingOffset: UInt64 = 0, incompatible: UInt64 = 0) -> [UInt8] {
            var h = [UInt8](repeating: 0, count: 104)
            h[0..<4] = [0x51, 0x46, 0x49, 0xFB]
            for i in 0..<4 { h[4 + i] = UInt8(version >> (24 - 8 * UInt32(i)) & 0xff) }
            for i in 0..<8 { h[8 + i] = UInt8(backingOffset >> (56 - 8 * UInt64(i)) & 0xff) }
            for i in 0..<8 { h[72 + i] = UInt8(incompatible >> (56 - 8 * UInt64(i)) & 0xff) }
            h[28] = 0x04  // 64 MiB virtual size
            return h
        }
        XCTAssertEqual(try QCOW2Header.checkStandalone(header: header(), what: "disk"), 64 << 20)
        XCTAssertNoThrow(try QCOW2Header.checkStandalone(header: header(version: 2), what: "disk"))
        XCTAssertThrowsError(try QCOW2Header.checkStandalone(header: header(backingOffset: 0x200), what: "disk")) {
            XCTAssertTrue("\($0)".contains("backing file"))
        }
        XCTAssertThrowsError(try QCOW2Header.checkStandalone(header: header(incompatible: 1 << 2), what: "disk")) {
            XCTAssertTrue("\($0)".contains("external data file"))
        }
        XCTAssertThrowsError(try QCOW2Header.checkStandalone(header: Array("root:x:0:0".utf8), what: "disk")) {
            XCTAssertTrue("\($0)".contains("not a qcow2 image"))
        }
    }
}

import Foundation
import SnapshotModel
import SparcSupport
import TestSupport
import XCTest

@testable import CheckpointStore

#if canImport(Glibc)
    import Glibc
#endif

final class SealedExportTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["state", "other-state"] }

    func store(_ state: String = "state", _ name: String = "store") throws -> CheckpointStore {
        try CheckpointStore(directory: dir + "/" + name, stateDirectory: dir + "/" + state)
    }

    /// A stored checkpoint sealed to a recipient: only that recipient's key opens it, the file
    /// holds nothing of the secret, and the bundle it opens to is byte for byte the one stored.
    func testOnlyTheRecipientOpensItAndItIsTheBundle() throws {
        let secret = "SEALED-\(UInt32.random(in: 0...UInt32.max))"
        let bundle = try TestBundles.make(in: dir, name: "a.sparc", secret: secret, extra: 1 << 20, disk: Data(secret.utf8) + Data(count: 3 << 20))
        let s = try store()
        _ = try s.importBundle(try BundleReader(path: bundle), as: "a")
        let receiver = try RecipientKey.generate(), other = try RecipientKey.generate()
        let sealed = dir + "/a.sealed"
        try SealedExport.write("a", of: s, to: sealed, recipients: [try RecipientKey.publicKey(raw: try receiver.publicRaw())])
        XCTAssertTrue(SealedExport.isSealed(sealed))
        XCTAssertFalse(SealedExport.isSealed(bundle + "/" + Manifest.memoryFile))
        let raw = try Data(contentsOf: URL(fileURLWithPath: sealed))
        XCTAssertNil(raw.range(of: Data(secret.utf8)), "the sealed file holds the secret in clear")
        XCTAssertLessThan(raw.count, 8 << 20, "zero runs are not written out")

        XCTAssertThrowsError(try SealedExport.open(sealed, identity: other, to: dir + "/wrong.sparc")) {
            XCTAssertEqual($0 as? SealedExportError, .notARecipient)
        }
        XCTAssertFalse(FileSystem.exists(dir + "/wrong.sparc"))
        try SealedExport.open(sealed, identity: receiver, to: dir + "/opened.sparc")
        for member in [Manifest.memoryFile, Manifest.devicesFile, Manifest.diskFile, Manifest.fileName, Manifest.sealFile] {
            XCTAssertEqual(
                try Data(contentsOf: URL(fileURLWithPath: dir + "/opened.sparc/" + member)), try Data(contentsOf: URL(fileURLWithPath: bundle + "/" + member)), member)
        }
        // The receiver stores it in a store of its own (another key).
        let theirs = try store("other-state", "their-store")
        _ = try theirs.importBundle(try BundleReader(path: dir + "/opened.sparc"), as: "a")
        XCTAssertEqual(try theirs.names(), ["a"])
    }

    /// A flipped byte anywhere, a cut, a segment dropped or an extra byte: refused, and no
    /// bundle (not even a partial one) is left.
    func testDamageIsRefusedAndLeavesNothing() throws {
        let bundle = try TestBundles.make(in: dir, name: "b.sparc", secret: "B", extra: 3 << 20)
        let s = try store()
        _ = try s.importBundle(try BundleReader(path: bundle), as: "b")
        let key = try RecipientKey.generate()
        let sealed = dir + "/b.sealed"
        try SealedExport.write("b", of: s, to: sealed, recipients: [key])
        let good = try Data(contentsOf: URL(fileURLWithPath: sealed))
        let segment = SealedExport.segmentBytes + SealedExport.tagBytes
        let headerEnd = good.count - (good.count - 30) % segment  // somewhere in the header or first segment
        var cases: [(String, Data)] = []
        for offset in [5, 40, headerEnd + 7, good.count / 2, good.count - 1] {
            var bad = good
            bad[offset] ^= 0x01
            cases.append(("flip at \(offset)", bad))
        }
        cases.append(("cut", good.prefix(good.count - segment / 2)))
        cases.append(("cut at a segment boundary", good.prefix(good.count - (good.count - 200) % segment)))
        cases.append(("extra byte", good + Data([0])))
        for (what, bad) in cases {
            let path = dir + "/bad.sealed"
            unlink(path)
            try bad.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SealedExport.open(path, identity: key, to: dir + "/bad.sparc"), what) { error in
                XCTAssertNotNil(error as? SealedExportError, "\(what): \(error)")
            }
            XCTAssertFalse(FileSystem.exists(dir + "/bad.sparc"), what)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".partial-") }, [], what)
        }
    }

    /// A sender with the recipient's public key cannot smuggle a file outside the bundle, a
    /// file twice, or more bytes than a file declared: the records are checked, not trusted.
    func testHostileRecordsAreRefused() throws {
        let key = try RecipientKey.generate()
        let attempts: [(String, (SealedExport.Emitter) throws -> Void)] = [
            ("a path", { try $0.file("../escape", size: 1); try $0.bytes(Data([1])) }),
            ("an unknown name", { try $0.file("authorized_keys", size: 1); try $0.bytes(Data([1])) }),
            ("a file twice", { e in try e.file(Manifest.devicesFile, size: 1); try e.bytes(Data([1])); try e.file(Manifest.devicesFile, size: 1) }),
            ("more than declared", { try $0.file(Manifest.devicesFile, size: 1); try $0.bytes(Data([1, 2])) }),
            ("less than declared", { try $0.file(Manifest.devicesFile, size: 4); try $0.bytes(Data([1])) }),
            ("data before a file", { try $0.bytes(Data([1])) }),
            ("no manifest", { try $0.file(Manifest.devicesFile, size: 1); try $0.bytes(Data([1])) }),
        ]
        for (i, (what, records)) in attempts.enumerated() {
            let path = dir + "/hostile-\(i).sealed"
            try SealedExport.write(to: path, recipients: [key], records)
            XCTAssertThrowsError(try SealedExport.open(path, identity: key, to: dir + "/h.sparc"), what) { error in
                XCTAssertNotNil(error as? SealedExportError, "\(what): \(error)")
            }
            XCTAssertFalse(FileSystem.exists(dir + "/h.sparc"), what)
            XCTAssertFalse(FileSystem.exists(dir + "/escape"), what)
        }
    }

    /// Keys round-trip through PEM as OpenSSL writes them; a key of another kind is refused.
    func testKeysThroughPEM() throws {
        let key = try RecipientKey.generate()
        try FileSystem.createNew(dir + "/k.pem", contents: try key.pem(private: true), mode: 0o600)
        try FileSystem.createNew(dir + "/k.pub", contents: try key.pem(private: false), mode: 0o644)
        XCTAssertEqual(try RecipientKey.read(pem: dir + "/k.pem", private: true).publicRaw(), try key.publicRaw())
        XCTAssertEqual(try RecipientKey.read(pem: dir + "/k.pub", private: false).publicRaw(), try key.publicRaw())
        XCTAssertThrowsError(try RecipientKey.read(pem: dir + "/k.pub", private: true))
        let rsa = dir + "/rsa.pem"
        if (try? Subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", rsa]))?.status == 0 {
            XCTAssertThrowsError(try RecipientKey.read(pem: rsa, private: true)) { XCTAssertNotNil($0 as? SealedExportError) }
        }
    }
}

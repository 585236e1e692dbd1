import CheckpointStore
import Foundation
import SnapshotModel
import SparcSupport
import TestSupport
import XCTest

@testable import SparcEngine

/// Stored checkpoints as a restore reads them: the small files written out, the memory image
/// (and a disk kept as the guest sees it) read from the store as the restore goes, never as a
/// decrypted copy on disk.
final class StoredCheckpointsTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["run", "state", "home"] }

    func testARestoreReadsTheMemoryFromTheStoreNotFromACopy() throws {
        let manager = try VMManager(root: dir + "/run", stateDirectory: dir + "/state")
        let bundle = try TestBundles.make(in: dir, name: "m.sparc", secret: "NEVER-WRITTEN-OUT")
        let store = try manager.openStore(home: dir + "/home")
        _ = try store.importBundle(try BundleReader(path: bundle), as: "t-1")
        let written = WrittenOutCheckpoints(manager: manager, home: dir + "/home")
        defer { written.remove() }
        let (path, external) = try written.forRestore("t-1")
        XCTAssertEqual(Set(external.keys), [Manifest.memoryFile])
        XCTAssertFalse(FileSystem.exists(path + "/" + Manifest.memoryFile), "the memory image is not written out")
        XCTAssertTrue(FileSystem.exists(path + "/" + Manifest.devicesFile))
        var reader = try BundleReader(path: path)
        reader.external = external
        XCTAssertEqual(reader.verify(), [], "the members read from the store verify against the bundle's digests")
        // The memory image as a restore loads it: a sparse copy checked against its digest.
        let ram = dir + "/run/ram"
        try SparseImage.load(
            from: try reader.source(.memory), to: ram, expectedSize: reader.manifest.memory.bytes, expectedDigest: reader.manifest.file(.memory)!.sha256)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: ram)), try Data(contentsOf: URL(fileURLWithPath: bundle + "/" + Manifest.memoryFile)))
        // Without the external member the written-out bundle is incomplete, and says so.
        XCTAssertFalse(try BundleReader(path: path).verify().isEmpty)
        // A path is a path: nothing is read from the store for it.
        XCTAssertEqual(try written.forRestore(bundle).external.count, 0)
    }
}

import Foundation
import SnapshotModel
import SparcSupport
import TestSupport
import XCTest

@testable import CheckpointStore

#if canImport(Glibc)
    import Glibc
#endif

final class ChunkCodecTests: XCTestCase {
    let keys = try! StoreKeys(master: Data(repeating: 7, count: 32))

    func testSealedChunksOpenOnlyAsWhatTheyAre() throws {
        let text = Data(String(repeating: "guest page with words in it ", count: 4000).utf8)
        let id = ChunkCodec.id(of: text, keys: keys)
        let sealed = try ChunkCodec.seal(text, id: id, keys: keys)
        XCTAssertLessThan(sealed.count, text.count / 4, "text compresses")
        XCTAssertEqual(try ChunkCodec.open(sealed, id: id, keys: keys), text)
        XCTAssertNil(sealed.range(of: Data("guest page".utf8)), "nothing of the plain text is in the sealed chunk")

        let noise = Data(secureRandomBytes(100_000))
        let noiseId = ChunkCodec.id(of: noise, keys: keys)
        let sealedNoise = try ChunkCodec.seal(noise, id: noiseId, keys: keys)
        XCTAssertEqual(sealedNoise.count, noise.count + ChunkCodec.headerBytes + ChunkCodec.tagBytes, "noise is stored without zstd")
        XCTAssertEqual(try ChunkCodec.open(sealedNoise, id: noiseId, keys: keys), noise)

        // A flipped byte anywhere, another name, another key: refused with the damaged case.
        for offset in [0, 5, 10, ChunkCodec.headerBytes + 3, sealed.count - 1] {
            var bad = sealed
            bad[offset] ^= 0x40
            XCTAssertThrowsError(try ChunkCodec.open(bad, id: id, keys: keys), "flip at \(offset)") {
                guard case .damagedObject? = $0 as? StoreError else { return XCTFail("\($0)") }
            }
        }
        XCTAssertThrowsError(try ChunkCodec.open(sealed, id: noiseId, keys: keys))
        let other = try StoreKeys(master: Data(repeating: 8, count: 32))
        XCTAssertThrowsError(try ChunkCodec.open(sealed, id: id, keys: other))
        XCTAssertNotEqual(ChunkCodec.id(of: text, keys: other), id, "equal data in two stores does not correlate")
    }

    /// A large chunk whose start does not compress is not tried whole; text is; small chunks
    /// are always tried.
    func testCompressionIsTriedWhereItMayPay() {
        XCTAssertFalse(ChunkCodec.worthCompressing(Data(secureRandomBytes(1 << 20)), level: 3))
        XCTAssertTrue(ChunkCodec.worthCompressing(Data(String(repeating: "page of words ", count: 80000).utf8), level: 3))
        XCTAssertTrue(ChunkCodec.worthCompressing(Data(secureRandomBytes(100_000)), level: 3))
    }

    func testZeroChunksAreRecognised() {
        XCTAssertTrue(ChunkCodec.isZero(Data(count: 4097)))
        var d = Data(count: 4097)
        d[4096] = 1
        XCTAssertFalse(ChunkCodec.isZero(d))
    }
}

final class CheckpointStoreTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["state"] }

    func makeBundle(_ name: String, secret: String, extra: Int = 0, disk: Data? = nil) throws -> String {
        try TestBundles.make(in: dir, name: name, secret: secret, extra: extra, disk: disk)
    }

    /// A disk state with 64 KiB inserted near its start (a qcow2 image after the guest
    /// allocated a cluster: every later cluster moves) shares all but a few chunks with the
    /// disk before; cut at fixed offsets it would share none. The chunk boundaries are keyed.
    func testADiskWithAnInsertionSharesAllButTheChunksAroundIt() throws {
        var disk = Data(secureRandomBytes(24 << 20))
        let before = try makeBundle("d1.sparc", secret: "D", disk: disk)
        disk.insert(contentsOf: secureRandomBytes(64 << 10), at: (2 << 20) + 12345)
        let after = try makeBundle("d2.sparc", secret: "D", disk: disk)
        let s = try store()
        let first = try s.importBundle(try BundleReader(path: before), as: "d1")
        let second = try s.importBundle(try BundleReader(path: after), as: "d2")
        print("disk with a 64 KiB insertion: first \(first.storedBytes >> 10) KiB stored, second \(second.storedBytes >> 10) KiB (\(second.sharedChunks) of \(second.chunks) chunks shared)")
        XCTAssertGreaterThan(first.storedBytes, 24 << 20, "random data does not compress")
        XCTAssertLessThan(second.storedBytes, 9 << 20, "only the chunks around the insertion are new (at most two of up to 4 MiB)")
        let lengths = try XCTUnwrap(try s.checkpoint("d2").members.first { $0.name == Manifest.diskFile }?.lengths)
        XCTAssertTrue(lengths.dropLast().allSatisfy { $0 >= ContentChunker.minBytes && $0 <= ContentChunker.maxBytes }, "\(lengths)")
        XCTAssertGreaterThan(lengths.count, 4)
        try s.export("d2", to: dir + "/d2-out.sparc")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/d2-out.sparc/" + Manifest.diskFile)), disk)
        // Another key cuts elsewhere: boundaries say nothing about content without it.
        let other = try StoreKeys(master: Data(repeating: 9, count: 32))
        let mine = ContentChunker(keys: try StoreKeys.load(CheckpointStore.keyPath(dir + "/state"), create: false))
        let bytes = [UInt8](disk.prefix(8 << 20))
        XCTAssertNotEqual(mine.cut(bytes, count: bytes.count), ContentChunker(keys: other).cut(bytes, count: bytes.count))
    }

    /// A stored member read in place is the member's bytes at any offset and length, across
    /// chunk edges and zero chunks; its data regions cover every non-zero byte; a stored
    /// checkpoint verifies against its bundle's digests, and a damaged chunk is named.
    func testStoredMembersReadInPlace() throws {
        var disk = Data(secureRandomBytes(6 << 20))
        disk.replaceSubrange((2 << 20)..<(3 << 20), with: Data(count: 1 << 20))
        let bundle = try makeBundle("r.sparc", secret: "READ-IN-PLACE", extra: 2 << 20, disk: disk)
        let s = try store()
        _ = try s.importBundle(try BundleReader(path: bundle), as: "r")
        let stored = try StoredBundle(store: s, name: "r")
        for member in [Manifest.Member.memory, .disk, .devices] {
            let source = try XCTUnwrap(try stored.open(member))
            let original = try Data(contentsOf: URL(fileURLWithPath: bundle + "/" + member.rawValue))
            XCTAssertEqual(source.size, Int64(original.count))
            for (offset, length) in [(0, 17), ((1 << 20) - 5, 10), (5 << 20, 3 << 20), (original.count - 3, 8), (original.count + 4, 4)] {
                var buffer = [UInt8](repeating: 0xAA, count: length)
                let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0, at: Int64(offset)) }
                let want = original.count > offset ? original[offset..<min(original.count, offset + length)] : Data()
                XCTAssertEqual(Data(buffer.prefix(n)), Data(want), "\(member) at \(offset)")
            }
            let regions = source.dataRegions(before: 0, after: 0)
            var covered = IndexSet()
            for r in regions { covered.insert(integersIn: r) }
            let nonZero = original.indices.lazy.filter { original[$0] != 0 }.prefix(1 << 16)
            XCTAssertTrue(nonZero.allSatisfy { covered.contains($0) }, "\(member): every non-zero byte is in a data region")
        }
        XCTAssertEqual(stored.verify(), [])
        // Damage one chunk of the disk: verify names the disk, nothing else.
        let id = try XCTUnwrap(stored.stored.members.first { $0.name == Manifest.diskFile }?.chunks.first { !$0.isEmpty })
        let chunkPath = dir + "/store/chunks/" + id.prefix(2) + "/" + id
        var sealed = try Data(contentsOf: URL(fileURLWithPath: chunkPath))
        sealed[sealed.count / 2] ^= 1
        try sealed.write(to: URL(fileURLWithPath: chunkPath))
        XCTAssertEqual(stored.verify().map(\.file), [Manifest.diskFile])
    }

    /// A stored checkpoint whose chunk lengths do not tile its member is refused as damaged.
    func testChunkLengthsMustTileTheMember() {
        let m = StoredCheckpoint.Member(name: Manifest.diskFile, size: 10, chunkBytes: 8, chunks: ["a", "b"], lengths: [8, 3])
        XCTAssertNil(m.extents())
        XCTAssertEqual(StoredCheckpoint.Member(name: Manifest.diskFile, size: 11, chunkBytes: 8, chunks: ["a", "b"], lengths: [8, 3]).extents()?.map(\.length), [8, 3])
        XCTAssertNil(StoredCheckpoint.Member(name: Manifest.diskFile, size: 11, chunkBytes: 8, chunks: ["a", "b"], lengths: [9, 2]).extents())
        XCTAssertEqual(StoredCheckpoint.Member(name: Manifest.memoryFile, size: 20, chunkBytes: 8, chunks: ["a", "b", ""]).extents()?.map(\.length), [8, 8, 4])
        XCTAssertNil(StoredCheckpoint.Member(name: Manifest.memoryFile, size: 20, chunkBytes: 8, chunks: ["a", "b"]).extents())
    }

    func store() throws -> CheckpointStore { try CheckpointStore(directory: dir + "/store", stateDirectory: dir + "/state") }

    /// Stored and exported, a bundle comes back byte for byte (its digests and seal hold);
    /// stored twice, the second costs only its manifest; zero chunks are never stored.
    func testImportExportDedupAndZeroChunks() throws {
        let bundle = try makeBundle("a.sparc", secret: "SECRET-\(UInt32.random(in: 0...UInt32.max))")
        let s = try store()
        let first = try s.importBundle(try BundleReader(path: bundle), as: "a")
        XCTAssertEqual(first.chunks, 65, "64 chunks of memory, one of device state")
        XCTAssertEqual(first.zeroChunks, 62, "the holes are recorded, not stored")
        XCTAssertLessThan(first.storedBytes, 1 << 20, "the words compress")
        let second = try s.importBundle(try BundleReader(path: bundle), as: "a-again")
        XCTAssertEqual(second.sharedChunks, 3, "every chunk was in the store")
        XCTAssertLessThan(second.storedBytes, 4096, "only the manifest is new")
        XCTAssertThrowsError(try s.importBundle(try BundleReader(path: bundle), as: "a")) { XCTAssertEqual($0 as? StoreError, .exists("a")) }

        try s.export("a", to: dir + "/out.sparc")
        let reader = try BundleReader(path: dir + "/out.sparc")
        XCTAssertEqual(reader.verify(), [])
        XCTAssertEqual(reader.seal(key: Data(repeating: 3, count: 32)), .sealed, "the seal still applies")
        for file in [Manifest.memoryFile, Manifest.devicesFile, Manifest.fileName] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/out.sparc/" + file)), try Data(contentsOf: URL(fileURLWithPath: bundle + "/" + file)), file)
        }
        let listed = try s.list()
        XCTAssertEqual(listed.map(\.name), ["a", "a-again"])
        XCTAssertEqual(listed[0].logicalBytes, (64 << 20) + FileSystem.size(bundle + "/" + Manifest.devicesFile)!)
        XCTAssertEqual(listed[0].uniqueBytes, 0, "both checkpoints share every chunk")
        XCTAssertThrowsError(try s.export("nope", to: dir + "/x.sparc")) { XCTAssertEqual($0 as? StoreError, .noSuchCheckpoint("nope")) }
        XCTAssertThrowsError(try s.importBundle(try BundleReader(path: bundle), as: "../x")) { XCTAssertEqual($0 as? StoreError, .badName("../x")) }
    }

    /// A raw search of the store's files finds nothing of a planted secret (in memory or in
    /// the device state), and nothing of the guest's text either.
    func testTheStoreHoldsNoPlainText() throws {
        let secret = "PLANTED-\(UInt32.random(in: 0...UInt32.max))-SECRET"
        _ = try store().importBundle(try BundleReader(path: try makeBundle("p.sparc", secret: secret)), as: "p")
        let found = try Subprocess.run(["grep", "-r", "-a", "-l", "-e", secret, "-e", "the guest's own words", dir + "/store"])
        XCTAssertEqual(found.status, 1, "grep found: \(found.stdoutText)")
        let baseline = try Subprocess.run(["grep", "-r", "-a", "-l", "-e", secret, dir + "/p.sparc"])
        XCTAssertEqual(baseline.status, 0, "the bundle itself holds it (the search can find it)")
    }

    /// Deleting a checkpoint frees only what no other one uses; gc removes the rest; check
    /// finds a damaged or missing chunk and names the checkpoints it breaks.
    func testDeleteGCAndCheck() throws {
        let s = try store()
        _ = try s.importBundle(try BundleReader(path: try makeBundle("a.sparc", secret: "A")), as: "a")
        _ = try s.importBundle(try BundleReader(path: try makeBundle("b.sparc", secret: "A", extra: 3 << 20)), as: "b")
        let b = try XCTUnwrap(try s.list().first { $0.name == "b" })
        XCTAssertGreaterThan(b.uniqueBytes, 3 << 20, "b's random megabytes are its own")
        XCTAssertEqual(try s.check(readData: true), [])
        try s.delete("b")
        XCTAssertEqual(try s.gc(grace: 3600).chunks, 0, "young chunks stay (a checkpoint being stored may need them)")
        let freed = try s.gc(grace: 0)
        XCTAssertEqual(freed.chunks, 3, "b's own chunks: its three random megabytes")
        XCTAssertEqual(try s.check(readData: true), [], "a is whole")

        let a = try s.checkpoint("a")
        let victim = a.members.flatMap(\.chunks).first { !$0.isEmpty }!
        let path = dir + "/store/chunks/" + victim.prefix(2) + "/" + victim
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[data.count - 3] ^= 1
        try data.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try s.check(readData: false), [], "a quick check sees every chunk there")
        let problems = try s.check(readData: true)
        XCTAssertEqual(problems.map(\.object), ["chunks/" + victim])
        XCTAssertEqual(problems.first?.breaks, ["a"])
        XCTAssertThrowsError(try s.export("a", to: dir + "/broken.sparc")) { guard case .damagedObject? = $0 as? StoreError else { return XCTFail("\($0)") } }
        XCTAssertFalse(FileSystem.exists(dir + "/broken.sparc"), "nothing half-written")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("partial") }, [])
    }

    /// A store killed while storing (chunks written, no manifest) lists nothing new and checks clean.
    func testChunksWithoutTheirManifestAreNotACheckpoint() throws {
        let s = try store()
        let reader = try BundleReader(path: try makeBundle("k.sparc", secret: "K"))
        _ = try s.importBundle(reader, as: "k")
        try s.objects.delete("checkpoints/k")
        XCTAssertEqual(try s.names(), [])
        XCTAssertEqual(try s.check(readData: true), [])
        XCTAssertGreaterThan(try s.usage().chunks, 0)
        XCTAssertEqual(try s.gc(grace: 0).chunks, 3)
        // A manifest moved under another name does not open.
        _ = try s.importBundle(reader, as: "k2")
        let sealed = try s.objects.get("checkpoints/k2", maxBytes: 1 << 20)
        XCTAssertTrue(try s.objects.put("checkpoints/k3", sealed))
        XCTAssertThrowsError(try s.checkpoint("k3")) { guard case .damagedObject? = $0 as? StoreError else { return XCTFail("\($0)") } }
    }
}

final class RetentionTests: XCTestCase {
    func at(_ s: String) -> String { s }

    /// Newest per rule and bucket, per VM; a VM's newest always stays.
    func testRulesKeepTheNewestOfEachBucket() {
        let entries: [(name: String, vm: String, createdAt: String)] = [
            ("a1", "a", "2026-12-07T10:50:00.000Z"), ("a2", "a", "2026-12-07T10:10:00.000Z"), ("a3", "a", "2026-12-07T09:30:00.000Z"),
            ("a4", "a", "2026-12-06T23:00:00.000Z"), ("a5", "a", "2026-12-06T08:00:00.000Z"), ("a6", "a", "2026-11-20T08:00:00.000Z"),
            ("b1", "b", "2026-01-01T00:00:00.000Z"),
        ]
        func kept(_ p: RetentionPolicy) -> [String] { p.decide(entries).filter(\.keep).map(\.name).sorted() }
        XCTAssertEqual(kept(RetentionPolicy(last: 2)), ["a1", "a2", "b1"], "b's only checkpoint is its newest")
        XCTAssertEqual(kept(RetentionPolicy(hourly: 3)), ["a1", "a3", "a4", "b1"], "10h, 9h and 23h of the day before")
        XCTAssertEqual(kept(RetentionPolicy(daily: 2)), ["a1", "a4", "b1"])
        XCTAssertEqual(kept(RetentionPolicy(weekly: 2)), ["a1", "a4", "b1"], "Monday Dec 7 starts an ISO week: Sunday's a4 is the newest of the week before")
        let d = RetentionPolicy(last: 1, daily: 2).decide(entries).first { $0.name == "a1" }
        XCTAssertEqual(d?.reasons, ["newest", "last", "daily"])
    }
}

extension CheckpointStoreTests {
    /// Prune removes what the rules do not keep (a dry run nothing), and the chunks only those
    /// held; gc waits for a checkpoint being stored.
    func testPruneAndTheStoreLock() throws {
        let s = try store()
        for (i, extra) in [1 << 20, 2 << 20, 3 << 20].enumerated() {
            _ = try s.importBundle(try BundleReader(path: try makeBundle("p\(i).sparc", secret: "P", extra: extra)), as: "p\(i)")
        }
        let dry = try s.prune(RetentionPolicy(last: 1), dryRun: true)
        XCTAssertEqual(dry.decisions.filter { !$0.keep }.count, 2)
        XCTAssertEqual(try s.names().count, 3, "a dry run removes nothing")
        let before = try s.usage().chunkBytes
        let done = try s.prune(RetentionPolicy(last: 1), dryRun: false)
        XCTAssertEqual(try s.names().count, 1)
        XCTAssertGreaterThan(done.freed.bytes, 0)
        XCTAssertEqual(try s.usage().chunkBytes, before - done.freed.bytes)
        XCTAssertEqual(try s.check(readData: true), [], "what stays is whole")
        XCTAssertThrowsError(try s.prune(RetentionPolicy(), dryRun: true), "a rule is needed")

        // A checkpoint being stored holds the lock shared: gc waits for it.
        let finished = DispatchSemaphore(value: 0)
        do {
            let held = try XCTUnwrap(try FileLock(dir + "/store/lock", shared: true))
            Thread.detachNewThread {
                _ = try? s.gc()
                finished.signal()
            }
            XCTAssertEqual(finished.wait(timeout: .now() + 1), .timedOut, "gc waits while a checkpoint is being stored")
            withExtendedLifetime(held) {}
        }
        XCTAssertEqual(finished.wait(timeout: .now() + 120), .success, "and goes on once it is stored")
    }
}

final class KeyWrapTests: XCTestCase {
    /// A wrapped key opens with its passphrase only; the store's chunks read the same after
    /// wrapping, changing and removing the passphrase (only the key file changes).
    func testTheStoreKeyWrappedByAPassphrase() throws {
        let dir = NSTemporaryDirectory() + "sparc-keywrap-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
        defer { FileSystem.removeTree(dir) }
        let path = dir + "/store.key"
        let plain = try StoreKeys.load(path, create: true)
        let id = ChunkCodec.id(of: Data("x".utf8), keys: plain)
        try StoreKeys.rewrap(path, current: nil, new: Data("correct horse".utf8))
        XCTAssertNotEqual(FileSystem.size(path), 32, "the key file no longer holds the key")
        XCTAssertThrowsError(try StoreKeys.load(path, create: false), "a wrapped key needs its passphrase")
        XCTAssertThrowsError(try StoreKeys.load(path, create: false, passphrase: Data("wrong".utf8))) {
            XCTAssertEqual(($0 as? UserFacingError)?.exitCode, 1)
        }
        let opened = try StoreKeys.load(path, create: false, passphrase: Data("correct horse".utf8))
        XCTAssertEqual(ChunkCodec.id(of: Data("x".utf8), keys: opened), id, "the same key")
        try StoreKeys.rewrap(path, current: Data("correct horse".utf8), new: Data("battery staple".utf8))
        XCTAssertThrowsError(try StoreKeys.load(path, create: false, passphrase: Data("correct horse".utf8)))
        try StoreKeys.rewrap(path, current: Data("battery staple".utf8), new: nil)
        XCTAssertEqual(FileSystem.size(path), 32)
        XCTAssertEqual(ChunkCodec.id(of: Data("x".utf8), keys: try StoreKeys.load(path, create: false)), id)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }
}

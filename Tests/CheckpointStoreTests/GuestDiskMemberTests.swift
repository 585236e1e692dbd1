import Foundation
import SnapshotModel
import SparcSupport
import TestSupport
import XCTest

@testable import CheckpointStore

/// A disk in memory that counts what is read of it; its data ranges are its non-zero 64 KiB blocks.
final class MemoryDisk: GuestDiskSource {
    var bytes: Data
    var readBytes: Int64 = 0
    init(_ bytes: Data) { self.bytes = bytes }
    var size: Int64 { Int64(bytes.count) }

    func dataRanges(in range: Range<Int64>) throws -> [Range<Int64>] {
        var out: [Range<Int64>] = []
        var at = range.lowerBound
        while at < range.upperBound {
            let end = min(range.upperBound, (at / 65536 + 1) * 65536)
            if bytes[Int(at)..<Int(end)].contains(where: { $0 != 0 }) {
                if let last = out.last, last.upperBound == at { out[out.count - 1] = last.lowerBound..<end } else { out.append(at..<end) }
            }
            at = end
        }
        return out
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws {
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: count) }
        readBytes += Int64(count)
    }
}

final class GuestDiskMemberTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["state"] }

    func store() throws -> CheckpointStore { try CheckpointStore(directory: dir + "/store", stateDirectory: dir + "/state") }

    /// The member's bytes, chunk by chunk from the store.
    func contents(_ member: StoredCheckpoint.Member, in store: CheckpointStore) throws -> Data {
        var out = Data(count: Int(member.size))
        for (id, extent) in zip(member.chunks, try XCTUnwrap(member.extents())) where !id.isEmpty {
            out.replaceSubrange(Int(extent.offset)..<(Int(extent.offset) + extent.length), with: try store.chunk(id))
        }
        return out
    }

    /// 32 MiB with 12 MiB of data: the first store reads only the data; after two small
    /// writes, the second reads only the two chunks they touched, and both are the disk byte
    /// for byte with the digest a bundle of the disk would have.
    func testAChangedDiskIsReadOnlyWhereItChanged() throws {
        var data = Data(secureRandomBytes(12 << 20))
        data.append(Data(count: 20 << 20))
        let disk = MemoryDisk(data)
        let s = try store()
        let first = try s.storeGuestDisk(GuestDiskRequest(source: disk))
        XCTAssertFalse(first.incremental)
        XCTAssertEqual(first.readBytes, 12 << 20, "holes are not read")
        XCTAssertEqual(first.digest, ChunkedDigest.of(data))
        XCTAssertEqual(try contents(first.member, in: s), data)
        XCTAssertEqual(first.report.zeroChunks, 10)

        disk.bytes.replaceSubrange((3 << 20) + 100..<(3 << 20) + 1124, with: secureRandomBytes(1024))
        disk.bytes.replaceSubrange((20 << 20)..<(20 << 20) + 4096, with: secureRandomBytes(4096))
        disk.readBytes = 0
        let changed: [Range<Int64>] = [(3 << 20)..<((3 << 20) + 65536), (20 << 20)..<((20 << 20) + 65536)]
        let second = try s.storeGuestDisk(GuestDiskRequest(source: disk, parent: first.member, changedSinceParent: changed))
        XCTAssertTrue(second.incremental)
        XCTAssertEqual(second.reusedChunks, 14)
        XCTAssertLessThanOrEqual(disk.readBytes, 4 << 20, "only the two touched chunks are read")
        XCTAssertEqual(second.digest, ChunkedDigest.of(disk.bytes))
        XCTAssertEqual(try contents(second.member, in: s), disk.bytes)
        XCTAssertNotEqual(second.digest, first.digest)
    }

    /// Swap slots left out are zeros in what is stored, never in the disk. My own case: a slot
    /// zeroed by the parent and not excluded now, in a chunk nothing wrote since, must come
    /// back with the disk's bytes (reusing the parent's chunk would restore zeros into the
    /// guest's swap); and a slot excluded now in an unchanged chunk must be zeros.
    func testZeroedRangesAreNeverReusedAcrossCheckpoints() throws {
        let data = Data(secureRandomBytes(8 << 20))
        let disk = MemoryDisk(data)
        let s = try store()
        let slot: Range<Int64> = (1 << 20)..<((1 << 20) + 8192)
        let first = try s.storeGuestDisk(GuestDiskRequest(source: disk, zeroed: [slot]))
        let stored = try contents(first.member, in: s)
        XCTAssertEqual(stored[Int(slot.lowerBound)..<Int(slot.upperBound)], Data(count: 8192))
        XCTAssertEqual(stored[0..<Int(slot.lowerBound)], data[0..<Int(slot.lowerBound)], "only the slot is zeroed")
        XCTAssertEqual(disk.bytes, data, "the disk is untouched")

        let other: Range<Int64> = (5 << 20)..<((5 << 20) + 4096)
        let second = try s.storeGuestDisk(GuestDiskRequest(source: disk, parent: first.member, changedSinceParent: [], zeroed: [other]))
        XCTAssertTrue(second.incremental)
        var want = data
        want.replaceSubrange(Int(other.lowerBound)..<Int(other.upperBound), with: Data(count: 4096))
        XCTAssertEqual(try contents(second.member, in: s), want, "the old slot has the disk's bytes again, the new one is zeros")
        XCTAssertEqual(second.digest, ChunkedDigest.of(want))
        XCTAssertEqual(second.reusedChunks, 2, "the chunks of both slots were read")
    }

    /// A parent that is not the same disk as the guest sees it (another size, a qcow2 member,
    /// hashes missing) is not used: everything is read.
    func testAParentThatDoesNotFitIsNotUsed() throws {
        let s = try store()
        let small = try s.storeGuestDisk(GuestDiskRequest(source: MemoryDisk(Data(secureRandomBytes(4 << 20)))))
        let disk = MemoryDisk(Data(secureRandomBytes(6 << 20)))
        let grown = try s.storeGuestDisk(GuestDiskRequest(source: disk, parent: small.member, changedSinceParent: []))
        XCTAssertFalse(grown.incremental)
        XCTAssertEqual(disk.readBytes, 6 << 20)
        XCTAssertEqual(try contents(grown.member, in: s), disk.bytes)
        var noHashes = grown.member
        noHashes.digestHashes = nil
        XCTAssertFalse(CheckpointStore.isReusableParent(noHashes, size: 6 << 20))
        var qcow = grown.member
        qcow.name = Manifest.diskFile
        XCTAssertFalse(CheckpointStore.isReusableParent(qcow, size: 6 << 20))
        XCTAssertTrue(CheckpointStore.isReusableParent(grown.member, size: 6 << 20))
    }
}

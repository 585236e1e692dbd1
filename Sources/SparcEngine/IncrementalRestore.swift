import CheckpointStore
import Foundation
import Hypervisor
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What a restore into a VM's own disk must write: the chunks of the checkpoint's disk that
/// may differ from the disk file now.
///
/// The file is a stored checkpoint P's disk plus what its saved dirty bitmap
/// (`sparc-saved-since-P`, written at the VM's clean stop) marks; the checkpoint R being
/// restored differs from P where their chunk ids differ (ids are keyed digests of the
/// content). So the chunks to write are those the bitmap marks and those whose ids differ;
/// every other chunk of the file already holds R's bytes.
struct IncrementalDiskPlan {
    /// The stored checkpoint the file's bitmap counts writes since.
    var since: String
    /// The bitmap in the file (removed once used: a persistent bitmap would fail the next
    /// checkpoint's device-state save, see `DiskBitmap`).
    var bitmap: String
    /// Indexes of the 2 MiB chunks to write.
    var chunks: [Int]
}

extension VMManager {
    /// The plan for writing checkpoint `restoring` (stored in `store`) into the stopped disk file
    /// `file`, or nil with the reason when the file's state cannot be told without reading it.
    func incrementalDiskPlan(file: String, restoring: StoredCheckpoint.Member, vm: String, store: CheckpointStore) -> (IncrementalDiskPlan?, String) {
        guard CheckpointStore.isReusableParent(restoring, size: restoring.size) else { return (nil, "the checkpoint's disk is not kept as the guest sees it") }
        guard let qemuImg = try? QEMUProcess.locateQemuImg(), let info = try? Subprocess.run([qemuImg, "info", "--output=json", "-U", file]),
            info.status == 0, let obj = try? JSONSerialization.jsonObject(with: info.stdout) as? [String: Any]
        else { return (nil, "the VM's disk could not be read") }
        guard obj["format"] as? String == "qcow2", (obj["virtual-size"] as? NSNumber)?.int64Value == restoring.size else {
            return (nil, "the VM's disk is not a qcow2 of the checkpoint's size")
        }
        let data = ((obj["format-specific"] as? [String: Any])?["data"] as? [String: Any]) ?? [:]
        let bitmaps = (data["bitmaps"] as? [[String: Any]]) ?? []
        let names = (try? store.names()) ?? []
        // Saved at a clean stop, not in use (a QEMU that died leaves "in-use"), naming a stored checkpoint of this VM.
        let usable = bitmaps.compactMap { b -> (String, String)? in
            guard let name = b["name"] as? String, name.hasPrefix(DiskBitmap.savedPrefix) else { return nil }
            let flags = (b["flags"] as? [String]) ?? []
            guard !flags.contains("in-use"), flags.contains("auto") else { return nil }
            let since = String(name.dropFirst(DiskBitmap.savedPrefix.count))
            return names.contains(since) ? (name, since) : nil
        }
        guard let (bitmap, since) = usable.max(by: { $0.1 < $1.1 }) else {
            return (nil, "the VM's disk has no dirty bitmap saved at a clean stop since a stored checkpoint")
        }
        guard let parent = try? store.checkpoint(since), parent.vm == vm,
            let parentDisk = parent.members.first(where: { $0.name == CheckpointStore.guestDiskMember }),
            CheckpointStore.isReusableParent(parentDisk, size: restoring.size)
        else { return (nil, "the checkpoint the disk's bitmap counts from holds no disk of this size") }
        let dirty: [Range<Int64>]
        do {
            let reader = try NBDDisk(serving: file, format: "qcow2", expectedSize: restoring.size, readOnlyWith: bitmap)
            guard reader.bitmap != nil else { return (nil, "qemu-nbd did not export the disk's bitmap") }
            dirty = try reader.flagged(0..<restoring.size, bitmap: bitmap)
        } catch {
            return (nil, "the disk's bitmap could not be read: \(error)")
        }
        let unit = Int64(ChunkedDigest.chunkSize)
        var marked = IndexSet()
        for r in dirty where !r.isEmpty { marked.insert(integersIn: Int(r.lowerBound / unit)...Int((r.upperBound - 1) / unit)) }
        for i in 0..<restoring.chunks.count where restoring.chunks[i] != parentDisk.chunks[i] { marked.insert(i) }
        return (IncrementalDiskPlan(since: since, bitmap: bitmap, chunks: Array(marked)), "")
    }

    /// Writes the planned chunks of `source` (the checkpoint's disk, read from the store) into
    /// a new qcow2 overlay on `file` at `overlay`, each checked against its recorded hash;
    /// returns the bytes written. The file itself is not touched: the VM starts on the overlay,
    /// which is then committed into it (or by the next command, should this one die).
    func writeDiskOverlay(
        _ plan: IncrementalDiskPlan, from source: StoredMember, entry: Manifest.FileEntry, file: String, overlay: String, cancel: Cancellation?
    ) throws -> Int64 {
        guard let hashes = source.member.digestHashes, source.member.recordedDigest == entry.sha256 else { throw BundleError.tampered(member: entry.name) }
        let made = try Subprocess.run([
            try QEMUProcess.locateQemuImg(), "create", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", file, overlay, String(source.size),
        ])
        guard made.status == 0 else { throw SparcError("cannot create a disk overlay at \(overlay): \(made.stderrSummary)") }
        var kept = false
        defer { if !kept { unlink(overlay) } }
        let disk = try NBDDisk(serving: overlay, format: "qcow2", expectedSize: source.size)
        let unit = ChunkedDigest.chunkSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: unit, alignment: 4096)
        defer { buffer.deallocate() }
        var written: Int64 = 0
        for i in plan.chunks {
            if cancel?.isCancelled == true { throw SparcError("cancelled", kind: .operational, posixCode: ECANCELED) }
            let offset = Int64(i) * Int64(unit)
            let length = Int(min(Int64(unit), source.size - offset))
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
            guard try source.read(into: part, at: offset) == length else { throw SparcError("\(source.path) ended while it was read") }
            let hash = ChunkedDigest.chunkHash(part.baseAddress!, count: length, index: i, size: source.size)
            guard hash == CheckpointStore.bytes(hex: hashes[i]) else { throw BundleError.tampered(member: entry.name) }
            // Zeros too: the file under the overlay may hold data there.
            try disk.write(part.baseAddress!, count: length, at: offset)
            written += Int64(length)
        }
        try disk.flush()
        kept = true
        return written
    }
}

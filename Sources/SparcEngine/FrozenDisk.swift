import CheckpointStore
import Foundation
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A checkpoint headed for the store: the store, the name it will have, and what was stored
/// of it while the checkpoint ran (its disk, read through QEMU).
public final class StoreDestination {
    public let store: CheckpointStore
    /// The stored checkpoint's name (`VM-YYYYMMDD-HHMMSS`).
    public let name: String
    /// Where its bundle (without the members already stored) is staged.
    public let bundlePath: String
    /// Members stored while the checkpoint ran, for the import to list as they are.
    public internal(set) var prestored: [StoredCheckpoint.Member] = []
    /// What storing those members cost.
    public internal(set) var prestoredReport: StoreReport?
    /// The store's shared lock from the first chunk stored to the manifest: `gc` waits.
    var lease: FileLock?
    /// It is the running state a restore replaces (history: `undoPoint`, not `checkpoint`).
    public let undoPoint: Bool

    init(store: CheckpointStore, name: String, bundlePath: String, undoPoint: Bool = false) {
        self.store = store
        self.name = name
        self.bundlePath = bundlePath
        self.undoPoint = undoPoint
    }

    /// Lets `gc` run again (once the checkpoint is stored, or abandoned).
    public func release() { lease = nil }
}

/// A frozen disk layer read as the guest sees it, through QEMU's NBD export; with the
/// ranges written since an earlier stored checkpoint when the disk has a trustworthy dirty
/// bitmap for it, else with the reason everything is read.
final class FrozenDisk: GuestDiskSource {
    let nbd: NBDDisk
    /// The stored checkpoint the bitmap counts writes since, and the ranges it marks.
    let parent: String?
    let changed: [Range<Int64>]?
    /// Why everything is read (nil: incremental).
    let fullReadReason: String?

    init(nbd: NBDDisk, parent: String?, changed: [Range<Int64>]?, fullReadReason: String?) {
        self.nbd = nbd
        self.parent = parent
        self.changed = changed
        self.fullReadReason = fullReadReason
    }

    var size: Int64 { nbd.size }
    func dataRanges(in range: Range<Int64>) throws -> [Range<Int64>] { try nbd.flagged(range) }
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int64) throws { try nbd.read(into: buffer, count: count, at: offset) }
}

/// The dirty bitmaps sparc keeps for a VM's own qcow2: one named after the stored checkpoint
/// it counts writes since (`sparc-since-NAME`).
///
/// While the VM runs the bitmap lives only in QEMU: QEMU writes a persistent bitmap into its
/// image whenever it deactivates the disk, which the device-state save does at its end, and
/// the image is then a read-only layer under the checkpoint's overlay, so the save would fail
/// ("Lost persistent bitmaps"). A clean `vm stop` writes it into the image as
/// `sparc-saved-since-NAME`; the next start takes it back into QEMU and removes it from the
/// image. So a VM that died has no bitmap, never a stale one, and its next checkpoint reads
/// the whole disk; tools that write the image while the VM is stopped (QEMU, qemu-img,
/// libguestfs) open it through QEMU's block layer, which keeps the saved bitmap recording.
enum DiskBitmap {
    static let prefix = "sparc-since-"
    static let savedPrefix = "sparc-saved-since-"
    static func name(since checkpoint: String) -> String { prefix + checkpoint }

    /// At a clean stop (the image is the active, writable layer): every live bitmap of sparc's
    /// copied into a persistent one, which QEMU writes into the image as it closes it.
    static func persist(_ qmp: MachineMonitor, node: String) {
        guard let bitmaps = try? list(qmp, node: node) else { return }
        for b in bitmaps where b.name.hasPrefix(prefix) && b.recording && !b.persistent {
            let saved = savedPrefix + b.name.dropFirst(prefix.count)
            if bitmaps.contains(where: { $0.name == saved }) { continue }
            guard (try? qmp.execute("block-dirty-bitmap-add", ["node": node, "name": saved, "persistent": true])) != nil else { continue }
            if (try? qmp.execute("block-dirty-bitmap-merge", ["node": node, "target": saved, "bitmaps": [b.name]])) == nil {
                _ = try? qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": saved])
            }
        }
    }

    /// At start: each bitmap a clean stop saved in the image becomes a live one again and leaves
    /// the image; one QEMU found inconsistent (the VM died with it) is only removed.
    static func adopt(_ qmp: MachineMonitor, node: String) {
        guard let bitmaps = try? list(qmp, node: node) else { return }
        for b in bitmaps where b.name.hasPrefix(savedPrefix) {
            let live = prefix + b.name.dropFirst(savedPrefix.count)
            if b.recording && !b.inconsistent, (try? qmp.execute("block-dirty-bitmap-add", ["node": node, "name": live, "persistent": false])) != nil {
                if (try? qmp.execute("block-dirty-bitmap-merge", ["node": node, "target": live, "bitmaps": [b.name]])) == nil {
                    _ = try? qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": live])
                }
            }
            _ = try? qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": b.name])
        }
    }

    struct Info {
        var name: String
        var recording: Bool
        var inconsistent: Bool
        var persistent: Bool
    }

    /// The bitmaps on one node, as QEMU lists them.
    static func list(_ qmp: MachineMonitor, node: String) throws -> [Info] {
        let nodes = (try qmp.execute("query-named-block-nodes", ["flat": true]) as? [[String: Any]]) ?? []
        guard let entry = nodes.first(where: { $0["node-name"] as? String == node }) else { return [] }
        return ((entry["dirty-bitmaps"] as? [[String: Any]]) ?? []).compactMap { b in
            guard let name = b["name"] as? String else { return nil }
            return Info(
                name: name, recording: b["recording"] as? Bool ?? false, inconsistent: b["inconsistent"] as? Bool ?? false,
                persistent: b["persistent"] as? Bool ?? false)
        }
    }
}

/// A format node of QEMU's block graph: the image a file was opened as.
struct BlockNode: Equatable {
    var name: String
    var virtualSize: Int64

    /// The format node (not the protocol node beneath it) QEMU opened `file` as, if any.
    static func opened(_ file: String, by monitor: MachineMonitor) throws -> BlockNode? {
        let nodes = (try monitor.execute("query-named-block-nodes", ["flat": true]) as? [[String: Any]]) ?? []
        for n in nodes where n["file"] as? String == file {
            guard let name = n["node-name"] as? String, let driver = n["drv"] as? String, ["qcow2", "raw"].contains(driver),
                let size = (n["image"] as? [String: Any])?["virtual-size"] as? Int64 ?? ((n["image"] as? [String: Any])?["virtual-size"] as? Int).map(Int64.init)
            else { continue }
            return BlockNode(name: name, virtualSize: size)
        }
        return nil
    }
}

/// One checkpoint's read of a frozen disk layer through QEMU's NBD export, and the dirty
/// bitmaps on the node the guest's writes reach (its own qcow2's format node): the bitmap this
/// checkpoint adds, and the one it reads (disabled while exported). sparc's own VMs and
/// libvirt domains share it; they differ only in how they find the nodes.
final class DiskExportSession {
    static let exportID = "sparc-frozen-disk"
    let monitor: MachineMonitor
    /// The socket QEMU serves the export on, in sparc's runtime directory for the machine.
    let socketPath: String
    /// The node sparc's bitmaps live on (nil: the disk keeps none).
    private(set) var bitmapNode: String?
    private(set) var addedBitmap: String?
    private(set) var disabledBitmap: String?
    private var exporting = false

    init(monitor: MachineMonitor, directory: String) {
        self.monitor = monitor
        socketPath = directory + "/nbd.sock"
    }

    /// Starts counting writes to `node` from this instant in a live (not persistent) bitmap.
    func track(as bitmap: String, on node: String) throws {
        try monitor.execute("block-dirty-bitmap-add", ["node": node, "name": bitmap, "persistent": false])
        bitmapNode = node
        addedBitmap = bitmap
    }

    /// Exports `frozenNode` read-only on a socket sparc made and hands QEMU, with the newest
    /// trustworthy bitmap since a stored checkpoint among `stored` when `untracked` gives no
    /// reason to read everything.
    func open(frozenNode: String, virtualSize: Int64, stored: Set<String>, untracked: String?) throws -> FrozenDisk {
        close()
        var parent: String?
        var reason = untracked
        if reason == nil, let node = bitmapNode {
            let bitmaps = try DiskBitmap.list(monitor, node: node).filter { $0.name.hasPrefix(DiskBitmap.prefix) && $0.name != addedBitmap }
            let usable = bitmaps.filter { $0.recording && !$0.inconsistent && !$0.persistent && stored.contains(String($0.name.dropFirst(DiskBitmap.prefix.count))) }
            if let newest = usable.map(\.name).max() {
                parent = String(newest.dropFirst(DiskBitmap.prefix.count))
                // A bitmap exported read-only must not record; nothing writes this layer until the commit.
                try monitor.execute("block-dirty-bitmap-disable", ["node": node, "name": newest])
                disabledBitmap = newest
            } else if bitmaps.contains(where: \.inconsistent) {
                reason = "the disk's dirty bitmap is inconsistent (QEMU stopped without closing the disk)"
            } else if bitmaps.isEmpty {
                reason = "the disk has no dirty bitmap since a stored checkpoint (the first into the store, or QEMU was started again)"
            } else {
                reason = "the disk's dirty bitmap names no stored checkpoint of this machine"
            }
        } else if reason == nil {
            reason = "the disk keeps no dirty bitmap"
        }
        // QEMU listens on a socket sparc made (it may run as another user and cannot create one here).
        unlink(socketPath)
        let listening = try UnixSocket.listen(at: socketPath)
        defer { Glibc.close(listening) }
        exporting = true
        try monitor.passDescriptor(listening, as: "sparc-nbd")
        try monitor.execute("nbd-server-start", ["addr": ["type": "fd", "data": ["str": "sparc-nbd"]]])
        var export: [String: Any] = ["type": "nbd", "id": Self.exportID, "node-name": frozenNode, "name": "frozen", "writable": false]
        if let disabledBitmap { export["bitmaps"] = [disabledBitmap] }
        try monitor.execute("block-export-add", export)
        let nbd = try NBDDisk(socket: socketPath, export: "frozen", bitmap: disabledBitmap, expectedSize: virtualSize)
        var changed: [Range<Int64>]?
        if let bitmap = nbd.bitmap {
            changed = try nbd.flagged(0..<nbd.size, bitmap: bitmap)
        } else if parent != nil {
            parent = nil
            reason = "QEMU did not export the disk's dirty bitmap"
        }
        return FrozenDisk(nbd: nbd, parent: parent, changed: changed, fullReadReason: reason)
    }

    /// Ends the export (the reader closed first) and settles the bitmaps: after a stored
    /// checkpoint only the one since it stays; after a failure the new one goes and the one
    /// read from records again.
    func finish(succeeded: Bool) {
        close()
        guard let node = bitmapNode else { return }
        if succeeded, let addedBitmap {
            for b in (try? DiskBitmap.list(monitor, node: node)) ?? [] where b.name.hasPrefix(DiskBitmap.prefix) && b.name != addedBitmap {
                _ = try? monitor.execute("block-dirty-bitmap-remove", ["node": node, "name": b.name])
            }
        } else {
            if let addedBitmap { _ = try? monitor.execute("block-dirty-bitmap-remove", ["node": node, "name": addedBitmap]) }
            if let disabledBitmap { _ = try? monitor.execute("block-dirty-bitmap-enable", ["node": node, "name": disabledBitmap]) }
        }
        addedBitmap = nil
        disabledBitmap = nil
    }

    /// Removes sparc's export and NBD server, as a killed checkpoint may have left them.
    func close() {
        if (try? monitor.execute("block-export-del", ["id": Self.exportID, "mode": "hard"])) != nil {
            for _ in 0..<500 {
                let exports = (try? monitor.execute("query-block-exports") as? [[String: Any]]) ?? []
                if !exports.contains(where: { $0["id"] as? String == Self.exportID }) { break }
                usleep(10_000)
            }
        }
        _ = try? monitor.execute("nbd-server-stop")
        if exporting { unlink(socketPath) }
        exporting = false
    }
}

extension OwnMachine {
    /// Whether the VM's disk keeps sparc's dirty bitmaps: its own qcow2 file.
    var tracksDiskWrites: Bool { state.persistentDisk != nil && state.disk.first?.format == "qcow2" }

    func trackDiskWrites(as bitmap: String) throws {
        guard tracksDiskWrites, let base = state.disk.first else { return }
        // Live only (see DiskBitmap): a clean stop writes it into the image.
        try diskExport.track(as: bitmap, on: base.node)
    }

    func openFrozenDisk(stored: Set<String>, progress: VMManager.Progress?) throws -> FrozenDisk? {
        guard let frozen = frozenLayer else { return nil }
        let untracked =
            !tracksDiskWrites
            ? "the VM's disk is not a qcow2 file of its own (no dirty bitmap)"
            : frozenChainLength != 1 ? "an earlier checkpoint left an overlay on the disk" : nil
        return try diskExport.open(frozenNode: frozen.node, virtualSize: frozen.virtualSize, stored: stored, untracked: untracked)
    }

    func finishFrozenDisk(succeeded: Bool) { diskExport.finish(succeeded: succeeded) }
}

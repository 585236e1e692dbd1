import CheckpointStore
import CSparcSupport
import Foundation
import Libvirt
import HostState
import Hypervisor
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// sparc's checkpoint store and the ways checkpoints get into it and out of it for reading.
///
/// A checkpoint headed for the store is written as a bundle in a private directory beside it
/// (`StoreStaging`), stored, and removed; a stored checkpoint a command reads is written out
/// as a bundle in a private directory of the runtime root (`WrittenOutCheckpoints`) for the
/// command's length. Both are the same bundle format every reader already checks.
extension VMManager {
    /// The store under the bundle home (`home`, default `BundleHome`), its key in the state
    /// directory, unwrapped with `passphrase` when it is wrapped.
    public func openStore(home: String? = nil, passphrase: Data? = nil) throws -> CheckpointStore {
        let home = try home ?? BundleHome.ensure()
        return try CheckpointStore(directory: home + "/store", stateDirectory: stateDirectory, passphrase: passphrase)
    }

    /// The room a checkpoint of a running VM or libvirt domain needs in the RAM directory to
    /// stage its memory image there (nil: not known here): the image, as large as the RAM at
    /// worst, and for a VM of sparc's, whose RAM file is in that directory too, the pages the
    /// guest has not touched yet, which it may touch meanwhile (a tmpfs that fills makes QEMU
    /// fault on the guest's next new page). A domain's RAM is in libvirt's own directory.
    public func memoryStagingBytes(of name: String) -> Int64? {
        if let connect { return try? LibvirtConnection(uri: connect).maximumMemory(of: name) }
        guard let state = try? running(name) else { return nil }
        var st = stat()
        let touched = lstat(state.ramPath, &st) == 0 ? Int64(st.st_blocks) * 512 : 0
        return state.spec.memoryBytes + max(0, state.spec.memoryBytes - touched)
    }

    /// Records in the VM's history that stored checkpoints were removed (pruned or `store rm`).
    ///
    /// They still count as checkpoints for the rollback check (the VM went on from them, so
    /// restoring an older one is still a rollback); the entry says where they went.
    public func recordRemoved(_ removed: [StoredCheckpoint], why: String) {
        for c in removed {
            _ = try? history(c.vm).append(.pruned, bundle: c.name, bundleDigest: (try? Manifest.decode(c.bundleManifest))?.manifestSHA256, detail: why)
        }
    }
}

/// A checkpoint on its way into the store: its bundle (the memory image in the clear) is
/// written in a private directory (mode 0700), stored, and the directory removed.
///
/// It is staged in memory when it can be: in the RAM directory (a tmpfs, where guest RAM
/// lives) when that has room for the guest's RAM, so the memory image never reaches a disk in
/// the clear, not even as blocks a deleted file leaves. Else beside the store, and
/// `clearTextOnDisk` says so, for the operator to hear.
public final class StoreStaging {
    public let directory: String
    /// The memory image is staged on a disk file system (no room in memory).
    public let clearTextOnDisk: Bool
    public static let homePrefix = ".staging-"
    public static let memoryPrefix = "sparc-staging-"

    /// A new staging directory named after this process: in the RAM directory when it is a
    /// tmpfs with room for `memoryBytes` (unknown: not there), else in `home`. Directories of
    /// processes that are gone (killed mid-checkpoint) are removed first, in both.
    public init(home: String, memoryBytes: Int64? = nil) throws {
        let memory = GuestRAM.baseDirectory
        Self.removeAbandoned(in: home, prefix: Self.homePrefix)
        Self.removeAbandoned(in: memory, prefix: Self.memoryPrefix)
        if let memoryBytes, let free = GuestRAM.freeTmpfsBytes(), free > memoryBytes + (256 << 20) {
            directory = try FileSystem.makeUniqueDirectory(in: memory, prefix: Self.memoryPrefix + "\(getpid())-")
            clearTextOnDisk = false
        } else {
            directory = try FileSystem.makeUniqueDirectory(in: home, prefix: Self.homePrefix + "\(getpid())-")
            clearTextOnDisk = true
        }
    }

    /// Removes the staging directories in `directory` whose process no longer runs.
    public static func removeAbandoned(in directory: String, prefix: String = homePrefix) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            let fields = name.dropFirst(prefix.count).split(separator: "-")
            guard fields.count == 2, let pid = Int32(fields[0]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = FileSystem.removeTree(directory + "/" + name) }
        }
    }

    deinit { remove() }

    /// Where the checkpoint of `vm` taken `date` is written before it is stored.
    public func bundlePath(vm: String, at date: Date = Date()) -> String {
        directory + "/" + StoredName.make(vm: vm, at: date) + ".sparc"
    }

    /// Where the checkpoint of `vm` taken `date` goes: its staged bundle and its name in `store`.
    /// An undo point is named `VM-YYYYMMDD-HHMMSS-undo`.
    public func destination(vm: String, store: CheckpointStore, at date: Date = Date(), undoPoint: Bool = false) -> StoreDestination {
        let path = undoPoint ? directory + "/" + StoredName.make(vm: vm, at: date) + "-undo.sparc" : bundlePath(vm: vm, at: date)
        return StoreDestination(store: store, name: StoredName.of(bundle: path), bundlePath: path, undoPoint: undoPoint)
    }

    /// Stores the bundle at `path` under its name (without `.sparc`).
    public func store(_ path: String, into store: CheckpointStore) throws -> StoreReport {
        // The checkpoint wrote it here a moment ago, hashing as it wrote: not read twice.
        let report = try store.importBundle(try BundleReader(path: path), as: StoredName.of(bundle: path), justWritten: true)
        FaultPoint.reached("checkpoint-after-store")
        return report
    }

    /// Stores a checkpoint taken into `destination`: its staged bundle and the members it
    /// stored while it ran (the disk); the disk's chunks count in the report.
    public func store(_ destination: StoreDestination) throws -> StoreReport {
        defer { destination.release() }
        var report = try destination.store.importBundle(
            try BundleReader(path: destination.bundlePath), as: destination.name, justWritten: true, prestored: destination.prestored,
            undoPoint: destination.undoPoint)
        if let disk = destination.prestoredReport {
            report.chunks += disk.chunks
            report.zeroChunks += disk.zeroChunks
            report.sharedChunks += disk.sharedChunks
            report.storedBytes += disk.storedBytes
        }
        FaultPoint.reached("checkpoint-after-store")
        return report
    }

    public func remove() { _ = FileSystem.removeTree(directory) }
}

/// The names of stored checkpoints: `VM-YYYYMMDD-HHMMSS` (UTC), as bundles are named.
public enum StoredName {
    public static func make(vm: String, at date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return "\(vm)-\(f.string(from: date))"
    }

    /// A bundle's name in the store: its directory name without `.sparc`.
    public static func of(bundle path: String) -> String {
        let base = Path.base(of: path)
        return base.hasSuffix(".sparc") ? String(base.dropLast(6)) : base
    }
}

/// Stored checkpoints written out as bundles for reading: each in a private directory of the
/// runtime root (a tmpfs for root: memory, not disk), checked against its own digests as it is
/// written, kept until `remove()` (a TUI keeps them while its hex views point into them).
public final class WrittenOutCheckpoints {
    private let manager: VMManager
    private let home: String?
    private let passphrase: Data?
    private var directory: String?
    private let lock = NSLock()

    public init(manager: VMManager, home: String? = nil, passphrase: Data? = nil) {
        self.manager = manager
        self.home = home
        self.passphrase = passphrase
    }

    deinit { remove() }

    /// The bundle path for `argument`: itself when it is a path or names nothing stored, else
    /// the stored checkpoint of that name, written out (once).
    public func path(_ argument: String, progress: ((String) -> Void)? = nil) throws -> String {
        guard let store = storeHolding(argument) else { return argument }
        lock.lock()
        defer { lock.unlock() }
        if directory == nil { directory = try FileSystem.makeUniqueDirectory(in: manager.root, prefix: "stored-") }
        let target = directory! + "/" + argument + ".sparc"
        if !FileSystem.exists(target) {
            progress?("reading \(argument) from the store")
            // The store opened above: its key is unwrapped once (a passphrase costs scrypt).
            try store.export(argument, to: target)
        }
        return target
    }

    /// For a restore: the bundle path for `argument` and the members it reads from the store as
    /// it goes (the memory image and the disk, never written out decrypted); a path is itself.
    public func forRestore(_ argument: String, progress: ((String) -> Void)? = nil) throws -> (path: String, external: [String: BundleReader.ExternalMember]) {
        guard let store = storeHolding(argument) else { return (argument, [:]) }
        lock.lock()
        defer { lock.unlock() }
        if directory == nil { directory = try FileSystem.makeUniqueDirectory(in: manager.root, prefix: "stored-") }
        // Apart from full write-outs of the same name (a TUI's hex view may hold one).
        try? FileSystem.makeDirectory(directory! + "/restore")
        let target = directory! + "/restore/" + argument + ".sparc"
        let external = try StoredBundle(store: store, name: argument).externalMembers()
        if !FileSystem.exists(target) {
            progress?("reading \(argument) from the store")
            try store.export(argument, to: target, except: Set(external.keys))
        }
        return (target, external)
    }

    /// The store that holds a checkpoint named `argument`; nil for a path, or a name with no
    /// store (or one that cannot be opened) to hold it.
    private func storeHolding(_ argument: String) -> CheckpointStore? {
        guard !argument.contains("/"), !argument.hasSuffix(".sparc"), !FileSystem.exists(argument),
            let h = home ?? (try? BundleHome.ensure()), FileSystem.isDirectory(h + "/store"),
            let store = try? manager.openStore(home: h, passphrase: passphrase), (try? store.names().contains(argument)) == true
        else { return nil }
        return store
    }

    /// Removes what was written out.
    public func remove() {
        lock.lock()
        defer { lock.unlock() }
        if let directory { _ = FileSystem.removeTree(directory) }
        directory = nil
    }
}

import CheckpointStore
import Foundation
import HostState
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A VM sparc knows, running or not: what it holds on this host.
public struct KnownVM: Codable, Equatable, Sendable {
    public var name: String
    /// running, paused, stopped (not running), dead (its QEMU died).
    public var state: String
    public var identity: String?
    /// The file the VM keeps its writes on, and whether sparc made it (state directory).
    public var disk: String?
    public var diskOwnedBySparc = false
    public var diskBytes: Int64?
    /// Checkpoints of it in the store and the bytes only they hold (nil: the store was not read).
    public var checkpoints: Int?
    public var checkpointBytes: Int64?
    /// The time of its newest checkpoint in its history.
    public var lastCheckpoint: String?
}

/// What `vm rm` removed and what it left.
public struct VMRemoval: Codable, Equatable, Sendable {
    public var name: String
    public var removed: [String] = []
    /// Left in place, and why (a disk file the operator named, the history).
    public var kept: [String] = []
    public var checkpointsRemoved = 0
}

extension VMManager {
    /// Every VM sparc knows here: those with an identity (started or restored once) and those
    /// running; with a store, each one's checkpoints in it.
    public func knownVMs(store: CheckpointStore? = nil) -> [KnownVM] {
        var names = Set(list().map(\.name))
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: registry.directory)) ?? []
        for f in ids where f.hasSuffix(".id") { names.insert(String(f.dropLast(3))) }
        let stored = (try? store?.list()) ?? nil
        return names.filter(VMName.isValid).sorted().map { name in
            var vm = KnownVM(name: name, state: "stopped")
            if let s = try? status(name: name) { vm.state = s.state }
            vm.identity = try? registry.identity(of: name)
            if let disk = try? registry.persistentDisk(of: name) {
                vm.disk = disk
                vm.diskOwnedBySparc = disk == registry.ownedDiskPath(for: name, stateDirectory: stateDirectory)
                vm.diskBytes = FileSystem.allocatedBytes(disk)
            }
            if let stored {
                let mine = stored.filter { $0.vm == name }
                vm.checkpoints = mine.count
                vm.checkpointBytes = mine.reduce(0) { $0 + $1.uniqueBytes }
            }
            vm.lastCheckpoint = (try? HistoryLog.keptCheckpoints(history(name).entries()).last?.time) ?? nil
            return vm
        }
    }

    /// Removes a stopped VM's state: the disk sparc made for it, its identity, its
    /// rollback-sensitive data; with `store`, its checkpoints there too (recorded as pruned).
    /// A disk file the operator named (`--disk FILE`) and the history stay; a running VM is
    /// refused.
    public func removeVM(_ name: String, store: CheckpointStore? = nil) throws -> VMRemoval {
        try VMName.check(name)
        return try exclusively(name, doing: "vm rm") {
            if let s = try? status(name: name), s.state != "dead" {
                throw SparcError("VM '\(name)' is \(s.state): stop it first ('sparc vm stop --name \(name)')")
            }
            let identity = try registry.identity(of: name)
            let disk = try registry.persistentDisk(of: name)
            guard identity != nil || disk != nil || FileSystem.exists(layout(name).directory) else {
                throw SparcError("no VM named '\(name)' is known here (see 'sparc vm list --all')")
            }
            var removal = VMRemoval(name: name)
            let owned = registry.ownedDiskPath(for: name, stateDirectory: stateDirectory)
            if let disk {
                if disk == owned {
                    guard unlink(disk) == 0 || errno == ENOENT else { throw SparcError.posix("cannot remove", disk) }
                    removal.removed.append("disk \(disk)")
                } else {
                    removal.kept.append("disk \(disk) (a file you named; remove it yourself if it is no longer needed)")
                }
            }
            if let identity {
                let rsdm = try rsdm(vmId: identity).path
                if FileSystem.exists(rsdm) {
                    unlink(rsdm)
                    removal.removed.append("rollback-sensitive data \(rsdm)")
                }
            }
            if let store {
                let mine = try store.list().filter { $0.vm == name }
                for entry in mine {
                    recordRemoved([try store.checkpoint(entry.name)], why: "removed with the VM by sparc vm rm")
                    try store.delete(entry.name)
                }
                removal.checkpointsRemoved = mine.count
            }
            try registry.forget(name)
            if identity != nil { removal.removed.append("identity \(identity!)") }
            // The runtime directory of a VM whose QEMU died (its state file, sockets).
            if FileSystem.exists(layout(name).directory) {
                _ = FileSystem.removeTree(layout(name).directory)
                removal.removed.append("runtime directory \(layout(name).directory)")
            }
            _ = try? history(name).append(.removed, detail: "removed by sparc vm rm" + (store != nil ? " with its checkpoints" : ""))
            removal.kept.append("history \(stateDirectory)/history/\(name).log ('sparc log --name \(name)')")
            return removal
        }
    }
}

extension VMRegistry {
    /// Forgets a name: its identity and disk record.
    func forget(_ name: String) throws {
        try VMName.check(name)
        for f in [file(name), diskFile(name)] where unlink(f) != 0 && errno != ENOENT {
            throw SparcError.posix("cannot remove", f)
        }
    }
}

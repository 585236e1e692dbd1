import Foundation
import Hypervisor
import SnapshotModel
import SparcSupport

/// What sparc records about a running VM in its runtime directory (`vm.json`).
public struct VMState: Codable, Equatable, Sendable {
    public var name: String
    /// The VM's identity (see `VMRegistry`).
    public var id: String
    public var spec: MachineSpec
    /// The kernel and initrd as bundles record them (by digest); `spec` holds their stored paths.
    public var kernel: Manifest.BootFile?
    public var initrd: Manifest.BootFile?
    public var argv: [String]
    public var pid: Int32
    public var qemuVersion: String
    public var startedAt: String
    /// The guest RAM file, in its private directory under /dev/shm.
    public var ramPath: String
    /// The disk chain QEMU runs on now, base first (node `disk0-lN` is `disk[N]`).
    public var disk: [DiskLayer]
    /// Files sparc made for this VM's disk (overlays, copies): removed when the VM stops.
    public var diskScratch: [String]
    /// The file the VM keeps its writes on (`disk[0]`, written through), or nil when its
    /// writes are discarded at stop (an ephemeral overlay).
    public var persistentDisk: String?
    /// The serial of the next disk layer (QEMU node and fd-set names are never reused).
    public var nextLayer: Int
    /// The user QEMU dropped its privileges to, if any.
    public var sandboxUser: String?
    /// The bundle this VM was restored from, if any.
    public var restoredFrom: String?

    public init(
        name: String, id: String, spec: MachineSpec, kernel: Manifest.BootFile?, initrd: Manifest.BootFile?,
        argv: [String], pid: Int32, qemuVersion: String, ramPath: String, disk: [DiskLayer], diskScratch: [String],
        persistentDisk: String? = nil, sandboxUser: String?, restoredFrom: String? = nil
    ) {
        self.persistentDisk = persistentDisk
        self.nextLayer = disk.count
        self.name = name
        self.id = id
        self.spec = spec
        self.kernel = kernel
        self.initrd = initrd
        self.argv = argv
        self.pid = pid
        self.qemuVersion = qemuVersion
        self.startedAt = ISO8601DateFormatter().string(from: Date())
        self.ramPath = ramPath
        self.disk = disk
        self.diskScratch = diskScratch
        self.sandboxUser = sandboxUser
        self.restoredFrom = restoredFrom
    }

    static func load(_ path: String) throws -> VMState {
        do {
            return try JSONDecoder().decode(VMState.self, from: try OpenedFile(regular: path, maxSize: 16 << 20).readAll())
        } catch let e as SparcError {
            throw e
        } catch {
            throw SparcError("runtime state \(path) is damaged: \(error)")
        }
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileSystem.writeAtomically(try encoder.encode(self), to: path)
    }
}

/// A VM's status as `sparc vm status` reports it.
public struct VMStatus: Codable, Equatable, Sendable {
    public var name: String
    /// running, paused, stopped, or whatever QEMU reports.
    public var state: String
    public var pid: Int32?
    public var memoryMiB: Int?
    public var accel: String?
    public var qemuVersion: String?
    public var startedAt: String?
    public var restoredFrom: String?
    public var agent: String?
    /// The guest's processes: "running", or "frozen: " and why (who holds the freeze, or
    /// when it ends by itself). Nil when the agent did not answer.
    public var guest: String?
    /// What this status check recovered: a checkpoint or restore that died with the guest frozen.
    public var recovered: String?
    /// How QEMU is confined: "seccomp" or "seccomp, runs as USER".
    public var sandbox: String?
    public var runtimeDirectory: String
}

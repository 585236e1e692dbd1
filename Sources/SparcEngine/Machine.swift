import Foundation
import GuestQuery
import Hypervisor
import Libvirt
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What a checkpoint needs of the machine it saves, and nothing else: how to pause and
/// resume it, where its RAM file and agent are, how its disk is diverted while the frozen
/// layer is copied and merged back after, how it is stopped, and what the manifest says of
/// it. sparc's own QEMU (`OwnMachine`) and a libvirt domain (`DomainMachine`) implement it;
/// the steps they share (freeze, collect, copy with exclusion, device state, disk state,
/// manifest, seal, history, undo) are `VMManager.runCheckpoint`, once.
protocol Machine: AnyObject {
    /// "VM" or "domain", in messages ("the VM runs on, no bundle was written").
    var noun: String { get }
    var name: String { get }
    /// The identity recorded in the bundle (sparc's VM id, libvirt's UUID).
    var identity: String { get }
    var monitor: MachineMonitor { get }
    var agentSocket: String { get }
    var ramBytes: UInt64 { get }
    /// Its RAM file, for messages (opened by `openRAM` only).
    var ramPath: String { get }
    /// Its runtime layout in sparc's directory (markers, the input hold).
    var layout: RuntimeLayout { get }
    /// The libvirt URI its guardian reconnects with (nil: sparc's own QEMU).
    var connect: String? { get }

    /// Members of the bundle only this kind of machine has (libvirt: its definition); written
    /// into the staging directory before anything else, returned by name.
    func writeOwnMembers(_ writer: BundleWriter) throws -> [String]
    /// The name of QEMU's RAM block that is the guest's RAM, when its memory can be copied
    /// while it runs (`LiveMemoryCopy`); nil: it is paused for the copy.
    var liveRAMBlock: String? { get }
    /// Records, before QEMU may stop the guest on its own (a live copy's last round), that
    /// this command may leave it stopped: a guardian or the next command resumes it.
    func expectPause() throws
    /// Stops its CPUs (the guest is frozen already).
    func pause() throws
    /// Lets its CPUs run again.
    func resume() throws
    /// Before the pause: makes ready what `divertDisk` switches to, so the pause only switches.
    func prepareDiskDiversion() throws
    /// While paused: the guest goes on writing into an overlay; returns the frozen layer,
    /// whose copy is the disk state (nil: no disk). `marker` records a diversion a guardian
    /// must undo should the command die.
    func divertDisk(marker: (_ diverted: String) throws -> Void) throws -> (path: String, format: String)?
    /// Starts counting the disk's writes from this instant in a dirty bitmap of that name,
    /// where the machine keeps one (called paused, just before `divertDisk`).
    func trackDiskWrites(as bitmap: String) throws
    /// The frozen layer as the guest sees it, for a checkpoint into the store (nil: its disk
    /// state is copied with qemu-img); `stored` names the VM's stored checkpoints.
    func openFrozenDisk(stored: Set<String>, progress: VMManager.Progress?) throws -> FrozenDisk?
    /// Ends what `openFrozenDisk` and `trackDiskWrites` began, kept or undone.
    func finishFrozenDisk(succeeded: Bool)
    /// A read-only descriptor of its RAM file, checked as the path's origin demands.
    func openRAM() throws -> Int32
    /// After the bundle is sealed: the guest's writes since go back into its own disk.
    func mergeDisk(progress: VMManager.Progress?) throws
    /// `--stop`: the machine ends after its checkpoint.
    func stop(progress: VMManager.Progress?) throws
    /// On failure: undoes its own steps (resume when `paused`, a diverted disk merged back);
    /// returns what could not be undone, for the one error line.
    func undo(paused: Bool) -> [String]
    /// Its parts of the manifest.
    func describe(into manifest: inout Manifest)
    /// The descriptive fields of a new manifest: identity, machine and QEMU.
    func manifestHeader() -> (vm: Manifest.VMRecord, machine: Manifest.Machine, qemu: Manifest.QEMUInfo)
}

/// A machine without dirty bitmaps or a disk export (a libvirt domain) copies its disk state
/// with qemu-img.
extension Machine {
    var liveRAMBlock: String? { nil }
    func expectPause() throws {}
    func prepareDiskDiversion() throws {}
    func trackDiskWrites(as bitmap: String) throws {}
    func openFrozenDisk(stored: Set<String>, progress: VMManager.Progress?) throws -> FrozenDisk? { nil }
    func finishFrozenDisk(succeeded: Bool) {}
}

/// A VM sparc started itself: its QMP socket, its RAM file under sparc's runtime directory,
/// its disk chain of overlays handed to QEMU as descriptors.
final class OwnMachine: Machine {
    let noun = "VM"
    let name: String
    let layout: RuntimeLayout
    var state: VMState
    let qmp: QMPClient
    unowned let manager: VMManager

    init(name: String, manager: VMManager) throws {
        self.name = name
        self.manager = manager
        state = try manager.running(name)
        layout = manager.layout(name)
        qmp = try QMPClient(socketPath: layout.qmpSocket)
    }

    deinit { qmp.close() }

    var identity: String { state.id }
    var monitor: MachineMonitor { qmp }
    var agentSocket: String { layout.agentSocket }
    var ramBytes: UInt64 { UInt64(state.spec.memoryBytes) }
    var ramPath: String { state.ramPath }
    var connect: String? { nil }

    func writeOwnMembers(_ writer: BundleWriter) throws -> [String] { [] }

    /// The memory backend QEMU is started with (`QEMUCommand`).
    var liveRAMBlock: String? { "ram0" }

    func expectPause() throws {
        // Should this process die while QEMU is paused, the next command finds who paused it.
        try Data("\(getpid())\n".utf8).write(to: URL(fileURLWithPath: layout.pausedMarker))
    }

    func pause() throws {
        try expectPause()
        try qmp.execute("stop")
    }

    func resume() throws {
        try qmp.execute("cont")
        unlink(layout.pausedMarker)
    }

    /// The layer `divertDisk` froze, and how many layers the chain had then.
    var frozenLayer: DiskLayer?
    var frozenChainLength = 0
    /// The frozen layer's export and the disk's dirty bitmaps.
    lazy var diskExport = DiskExportSession(monitor: qmp, directory: layout.directory)

    /// The overlay `prepareDiskDiversion` made, until `divertDisk` switches to it.
    var preparedOverlay: DiskLayer?

    func prepareDiskDiversion() throws {
        guard state.spec.hasDisk, !state.disk.isEmpty, preparedOverlay == nil else { return }
        preparedOverlay = try manager.prepareOverlay(&state, qmp: qmp, layout: layout)
    }

    func divertDisk(marker: (String) throws -> Void) throws -> (path: String, format: String)? {
        guard state.spec.hasDisk, let top = state.disk.last else { return nil }
        frozenLayer = top
        frozenChainLength = state.disk.count
        // The layer the guest wrote so far becomes read-only and is the disk state of this
        // checkpoint; the VM goes on writing into a new overlay, handed to QEMU as descriptors
        // (made before the pause where it could be).
        if let layer = preparedOverlay {
            try manager.switchToOverlay(layer, &state, qmp: qmp, layout: layout)
            preparedOverlay = nil
        } else {
            try manager.addOverlay(&state, qmp: qmp, layout: layout)
        }
        return (top.path, top.format)
    }

    func openRAM() throws -> Int32 {
        let fd = open(state.ramPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read guest RAM", state.ramPath) }
        return fd
    }

    func mergeDisk(progress: VMManager.Progress?) throws {
        // The VM's own disk file takes back what the guest wrote during the copy.
        try manager.commitOverlays(&state, qmp: qmp, layout: layout, progress: progress)
    }

    func stop(progress: VMManager.Progress?) throws {
        progress?("stopping \(name)")
        _ = try? qmp.execute("quit")
        _ = QEMUProcess.waitForExit(state.pid, timeout: 10)
        manager.cleanUp(layout, ramPath: state.ramPath)
    }

    func undo(paused: Bool) -> [String] {
        var problems: [String] = []
        if paused {
            do { try resume() } catch { problems.append("QEMU could not resume the guest, which stays paused: \(error)") }
        }
        // An overlay made ready but never switched to goes; whatever the disk chain became,
        // the runtime state says so (the overlay is merged at the next checkpoint or at stop).
        if let layer = preparedOverlay {
            manager.discardOverlay(layer, &state, qmp: qmp, layout: layout)
            preparedOverlay = nil
        }
        try? state.save(layout.stateFile)
        return problems
    }

    func describe(into manifest: inout Manifest) {}

    func manifestHeader() -> (vm: Manifest.VMRecord, machine: Manifest.Machine, qemu: Manifest.QEMUInfo) {
        (
            .init(name: name, id: state.id),
            .init(
                memoryMiB: state.spec.memoryMiB, cpus: state.spec.cpus, accel: state.spec.accel.rawValue, kernel: state.kernel,
                initrd: state.initrd, append: state.spec.append, disk: state.spec.hasDisk, persistentDisk: state.persistentDisk != nil,
                network: state.spec.network.map { .init(backend: $0.backend.rawValue, forwards: $0.forwards, tap: $0.tap, mac: $0.mac) },
                extraRAMBytes: state.spec.extraRAMBytes),
            .init(version: state.qemuVersion, argv: state.argv)
        )
    }

    /// Whether its QEMU still runs (a failure with QEMU gone cannot thaw anything).
    var isAlive: Bool { QEMUProcess.isQEMU(state.pid) }
}

/// A running libvirt domain: libvirt pauses and resumes it, passes QMP commands with their
/// descriptors, diverts its disk with an external disk-only snapshot and merges it back with
/// an active block commit; its RAM file is libvirt's, opened only after `DomainRAM`'s checks.
final class DomainMachine: Machine {
    let noun = "domain"
    let name: String
    let uri: String
    let connection: LibvirtConnection
    let live: DomainPreparation
    let disk: DomainPreparation.Disk?
    let definition: String
    let identity: String
    let libvirtMonitor: LibvirtMonitor
    let ram: DomainRAM
    let qemuVersion: String
    let layout: RuntimeLayout
    let agentSocket: String
    private var diverted = false

    init(uri: String, name: String, manager: VMManager) throws {
        self.name = name
        self.uri = uri
        connection = try LibvirtConnection(uri: uri)
        let state = try connection.state(of: name)
        guard state == "running" else {
            throw SparcError("domain '\(name)' is \(state) at \(uri): only a running domain can be checkpointed ('virsh start \(name)')")
        }
        live = try DomainPreparation(xml: connection.liveDefinition(of: name))
        guard live.missing.isEmpty else {
            throw SparcError(
                "domain '\(name)' is not prepared for sparc (it runs without \(live.missing.joined(separator: ", "))): run 'sparc libvirt prepare \(name)', then restart it")
        }
        disk = try VMManager.savedDisk(of: live, domain: name)
        definition = try connection.migratableDefinition(of: name)
        identity = try connection.uuid(of: name)
        libvirtMonitor = try connection.monitor(of: name)
        ram = try DomainRAM.locate(libvirtMonitor, domain: name)
        if ram.bytes >= 0xB000_0000 && !live.machine.contains("q35") {
            throw SparcError(
                "domain '\(name)' has \(ram.bytes >> 20) MiB on machine type \(live.machine): sparc maps guest addresses into the RAM file for q35 at this size; use a q35 machine or less than 2816 MiB")
        }
        qemuVersion = (try? libvirtMonitor.execute("query-version") as? [String: Any]).flatMap { $0?["qemu"] as? [String: Any] }.map {
            "\($0["major"] ?? 0).\($0["minor"] ?? 0).\($0["micro"] ?? 0)"
        } ?? "?"
        layout = manager.layout(name)
        // Terminal input waits in sparc's runtime directory for the domain, as for its own VMs.
        try FileSystem.makeDirectory(layout.directory)
        agentSocket = try connection.channelSocket(of: name, port: VirtioPortName.agent)
    }

    var monitor: MachineMonitor { libvirtMonitor }
    var ramBytes: UInt64 { UInt64(ram.bytes) }
    var ramPath: String { ram.path }
    var connect: String? { uri }

    func writeOwnMembers(_ writer: BundleWriter) throws -> [String] {
        try Data(definition.utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.Member.domain.rawValue)))
        return [Manifest.Member.domain.rawValue]
    }

    /// The memory backend libvirt started QEMU with.
    var liveRAMBlock: String? { ram.block.isEmpty ? nil : ram.block }
    func pause() throws { try connection.suspend(name) }
    func resume() throws { try connection.resume(name) }

    /// The frozen layer's export and the disk's dirty bitmaps (live in QEMU only: a domain
    /// started again has none, and its next checkpoint into the store reads everything).
    lazy var diskExport = DiskExportSession(monitor: libvirtMonitor, directory: layout.directory)
    /// The node of the image `divertDisk` froze, found while the domain was paused.
    private var frozenNode: BlockNode?

    func trackDiskWrites(as bitmap: String) throws {
        guard let file = disk?.file, disk?.format == "qcow2", let node = try BlockNode.opened(file, by: libvirtMonitor) else { return }
        // Bitmaps a restore's stop saved into the image and did not use become live ones: a
        // persistent bitmap would fail the device-state save (DiskBitmap).
        DiskBitmap.adopt(libvirtMonitor, node: node.name)
        try diskExport.track(as: bitmap, on: node.name)
    }

    func openFrozenDisk(stored: Set<String>, progress: VMManager.Progress?) throws -> FrozenDisk? {
        guard diverted, let frozenNode else { return nil }
        let untracked =
            disk?.format != "qcow2"
            ? "the domain's disk is not a qcow2 image (no dirty bitmap)"
            : diskExport.bitmapNode != frozenNode.name ? "QEMU opened the domain's disk image under another node" : nil
        return try diskExport.open(frozenNode: frozenNode.name, virtualSize: frozenNode.virtualSize, stored: stored, untracked: untracked)
    }

    func finishFrozenDisk(succeeded: Bool) { diskExport.finish(succeeded: succeeded) }

    func divertDisk(marker: (String) throws -> Void) throws -> (path: String, format: String)? {
        guard let disk, let file = disk.file, let format = disk.format else { return nil }
        // The image stays open under the same node as the overlay's backing: exported from there.
        frozenNode = try BlockNode.opened(file, by: libvirtMonitor)
        try marker(disk.target)
        let others = live.disks.map(\.target).filter { $0 != disk.target }
        try connection.divertDisk(name, target: disk.target, to: file + ".sparc-overlay-\(getpid())", otherDisks: others)
        diverted = true
        return (file, format)
    }

    func openRAM() throws -> Int32 {
        try DomainRAM.openChecked(ram.path, bytes: ram.bytes, owner: live.qemuUser?.uid, writable: false, domain: name)
    }

    func mergeDisk(progress: VMManager.Progress?) throws {
        guard let disk, diverted else { return }
        progress?("merging disk \(disk.target)'s overlay back")
        do {
            try connection.mergeDiskBack(name, target: disk.target, progress: { progress?("merging disk \(disk.target)'s overlay back \($0)%") })
            diverted = false
        } catch {
            throw SparcError(
                "\(error); the domain keeps running on the overlay ('virsh blockcommit \(name) \(disk.target) --active --pivot --delete' merges it)")
        }
    }

    func stop(progress: VMManager.Progress?) throws {
        // Its disk image goes back into its definition first: libvirt starts it from there.
        try mergeDisk(progress: progress)
        progress?("stopping domain \(name)")
        try connection.destroy(name)
    }

    func undo(paused: Bool) -> [String] {
        var problems: [String] = []
        if paused {
            do { try resume() } catch {
                problems.append("libvirt could not resume domain '\(name)', which stays paused ('virsh resume \(name)'): \(error)")
            }
        }
        if diverted, let disk {
            do { try connection.mergeDiskBack(name, target: disk.target) } catch {
                problems.append("its disk \(disk.target) stays on an overlay ('virsh blockcommit \(name) \(disk.target) --active --pivot --delete'): \(error)")
            }
        }
        return problems
    }

    func describe(into manifest: inout Manifest) {
        manifest.libvirt = .init(uri: uri, machineType: live.machine)
    }

    func manifestHeader() -> (vm: Manifest.VMRecord, machine: Manifest.Machine, qemu: Manifest.QEMUInfo) {
        (
            .init(name: name, id: identity),
            .init(
                memoryMiB: Int(ram.bytes >> 20), cpus: live.vcpus, accel: live.type == "kvm" ? "kvm" : "tcg", kernel: nil, initrd: nil,
                append: nil, disk: disk != nil, persistentDisk: disk != nil),
            .init(version: qemuVersion, argv: [])
        )
    }
}

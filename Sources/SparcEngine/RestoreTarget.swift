import CheckpointStore
import Foundation
import GuestQuery
import Hypervisor
import Libvirt
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What a restore needs of the machine it rebuilds, and nothing else: whether one of that name
/// runs now and how it is ended, where the disk state goes, how a QEMU starts paused with its
/// RAM filled and waits for its device state, how it is resumed, where its agent is, and what
/// is undone when the restore fails before the guest runs. sparc's own QEMU
/// (`OwnRestoreTarget`) and a libvirt domain (`DomainRestoreTarget`) implement it; the steps
/// they share (provenance, verification, the device state, the guarded resume, the guided
/// cleanup, the history) are `VMManager.runRestore`, once.
protocol RestoreTarget: AnyObject {
    /// "VM" or "domain", in messages.
    var noun: String { get }
    var name: String { get }
    /// The bundle being restored (opened; its manifest parsed and bounded).
    var reader: BundleReader { get }
    var layout: RuntimeLayout { get }
    /// The libvirt URI its guardian reconnects with (nil: sparc's own QEMU).
    var connect: String? { get }
    /// Whether a machine of this name runs now; refuses when one does and `replace` is false.
    func runningNow(replace: Bool) throws -> Bool
    /// With the provenance decided and nothing touched yet: what this kind of machine checks
    /// of the bundle (refusals) and warns about.
    func prepare(provenance: Provenance, policy: RestorePolicy, replacing: Bool) throws -> [GuestText]
    /// Ends the running machine this restore replaces.
    func stopRunning(progress: VMManager.Progress?) throws
    /// How a cancelled restore ends once the running machine was stopped.
    var stoppedOutcome: String { get }
    /// Nothing of that name runs: what an earlier run left in its runtime directory goes.
    func clearLeftovers()
    /// Puts the bundle's disk state where the machine will run from.
    func restoreDisk(progress: VMManager.Progress?, cancel: Cancellation?) throws
    /// Starts QEMU paused, its RAM filled from the bundle's memory image, waiting for its
    /// device state (`-incoming defer`); returns its monitor.
    func startPaused(memory: ByteSource, progress: VMManager.Progress?, cancel: Cancellation?) throws -> MachineMonitor
    /// Waits until the device state handed to the monitor is loaded; throws what QEMU said.
    func waitForDeviceState() throws
    /// The device state is loaded: its identity and runtime state go on record.
    func register(provenance: Provenance) throws
    /// Lets its CPUs run.
    func resume() throws
    /// Its agent's socket.
    func agentSocket() throws -> String
    /// Once the guest was thawed: what is served beside it (RSDM); returns warnings.
    func afterThaw(provenance: Provenance, agent: AgentClient) -> [GuestText]
    /// The restore failed before the guest ran: whatever was started ends.
    func abandon()
    /// Its QEMU's pid, for the report (0 when unknown).
    var pid: pid_t { get }
    /// What the operator must hear of a failure beyond the error itself (QEMU exited on its
    /// own, and what was cleaned up after it); nil when nothing.
    func explain(_ error: Error) -> Error?
    /// How the disk went back, for the report (nil: not told).
    var diskNote: String? { get }
    var diskWrittenBytes: Int64? { get }
}

extension RestoreTarget {
    var diskNote: String? { nil }
    var diskWrittenBytes: Int64? { nil }
}

/// A VM of sparc's own: a new QEMU launched with `-incoming defer` on a RAM file sparc filled.
final class OwnRestoreTarget: RestoreTarget {
    let noun = "VM"
    let name: String
    let layout: RuntimeLayout
    let reader: BundleReader
    unowned let manager: VMManager
    private(set) var pid: pid_t = 0
    private var ramPath = ""
    private var spec: MachineSpec?
    private var diskTarget: String?
    private var diskFile: ByteSource?
    private var replacing = false
    private var qmp: QMPClient?
    private var command: QEMUCommand?
    private var disk: [DiskLayer] = []
    private var scratch: [String] = []
    /// How the new QEMU ended when it died on its own before the guest ran.
    private var qemuExit: String?
    private(set) var diskNote: String?
    private(set) var diskWrittenBytes: Int64?

    init(reader: BundleReader, name: String, manager: VMManager) throws {
        try RuntimeLayout.validate(name: name)
        if let libvirt = reader.manifest.libvirt {
            throw SparcError(
                "bundle \(Path.base(of: reader.path).terminalSafe) is of libvirt domain '\(reader.manifest.vm.name)': restore it with --connect \(libvirt.uri) --name \(reader.manifest.vm.name)")
        }
        self.name = name
        self.reader = reader
        self.manager = manager
        layout = manager.layout(name)
    }

    deinit { qmp?.close() }

    var connect: String? { nil }

    func runningNow(replace: Bool) throws -> Bool {
        let isRunning = (try? manager.running(name)) != nil
        if isRunning && !replace {
            throw VMError.replaceNotAsked(name: name)
        }
        return isRunning
    }

    func prepare(provenance: Provenance, policy: RestorePolicy, replacing: Bool) throws -> [GuestText] {
        let manifest = reader.manifest
        var warnings: [GuestText] = []
        let qemuVersion = QEMUProcess.version(binary: try QEMUProcess.locateBinary())
        if qemuVersion != manifest.qemu.version {
            warnings.append("bundle was saved by QEMU \(manifest.qemu.version.terminalSafe), restoring with \(qemuVersion)")
        }
        let spec = try manager.machineSpec(manifest, policy: policy, trustHostSide: provenance.sealed)
        if !provenance.sealed, policy.network == nil, let net = manifest.machine.network, net.backend == "tap" || !net.forwards.isEmpty {
            warnings.append("a foreign bundle does not choose host ports or interfaces: its network card is on user networking without forwards (use --net)")
        }
        // Opened (and size-checked) now, used only after its digest is checked.
        diskFile = spec.hasDisk ? try reader.source(manifest.diskMember ?? .disk) : nil
        try manager.checkMemoryAvailable(spec, replacing: replacing ? try? manager.running(name) : nil)
        diskTarget = try manager.restoreDiskTarget(manifest, name: name, provenance: provenance, policy: policy)
        self.spec = spec
        self.replacing = replacing
        return warnings
    }

    func stopRunning(progress: VMManager.Progress?) throws {
        progress?("stopping the running \(name)")
        // The running guest's state is being replaced: no clean shutdown that writes to a disk about to roll back.
        try manager.stop(name: name, force: true)
    }

    var stoppedOutcome: String { "nothing was started; the VM '\(name)' it was to replace had been stopped (restore again, or start it)" }

    func clearLeftovers() {
        manager.cleanUp(layout, ramPath: (try? VMState.load(layout.stateFile))?.ramPath)
    }

    /// Should this process die before the guest runs, the next command finds what it left.
    private func mark() throws {
        var text = "restore \(getpid())\n"
        if pid > 0 { text += "qemu \(pid)\n" }
        if !ramPath.isEmpty { text += "ram \(ramPath)\n" }
        try Data(text.utf8).write(to: URL(fileURLWithPath: layout.restoringMarker))
    }

    func restoreDisk(progress: VMManager.Progress?, cancel: Cancellation?) throws {
        try mark()
        guard let diskFile else { return }
        let member = reader.manifest.diskMember ?? .disk
        let entry = reader.manifest.file(member)!
        if let target = diskTarget, member == .diskImage, let stored = diskFile as? StoredMember, FileSystem.exists(target) {
            // Read from the store into the VM's own file: only what differs from the file now, when that can be told.
            let (plan, why) = manager.incrementalDiskPlan(file: target, restoring: stored.member, vm: reader.manifest.vm.name, store: stored.store)
            if let plan {
                progress?("writing the disk's \(plan.chunks.count) chunk(s) that differ from \(Path.base(of: target)) (its bitmap since \(plan.since))")
                let overlay = layout.directory + "/disk-1.qcow2"
                unlink(overlay)
                let written = try manager.writeDiskOverlay(plan, from: stored, entry: entry, file: target, overlay: overlay, cancel: cancel)
                scratch = [overlay]
                // The bitmap has served; a persistent one must not be in the image QEMU opens (DiskBitmap).
                let removed = try Subprocess.run([try QEMUProcess.locateQemuImg(), "bitmap", "--remove", target, plan.bitmap])
                guard removed.status == 0 else { throw SparcError("cannot remove the used dirty bitmap from \(target): \(removed.stderrSummary)") }
                disk = [
                    DiskLayer(path: target, format: "qcow2", writable: true, followsOwnBacking: false, virtualSize: stored.size),
                    DiskLayer(path: overlay, format: "qcow2", writable: true, virtualSize: stored.size, serial: 1),
                ]
                diskWrittenBytes = written
                diskNote = "disk: wrote \(formatBytes(written)) (\(plan.chunks.count) of \(stored.member.chunks.count) chunks) that differed from the VM's disk since \(plan.since)"
                return
            }
            diskNote = "disk: wrote all of it (\(why))"
        }
        if let target = diskTarget {
            // The VM's own file goes back to the checkpoint's state (written beside it, renamed over it).
            progress?("rolling the disk back in \(Path.base(of: target))")
            let size = try manager.restoreDisk(diskFile, member: member, entry: entry, to: target, layout: layout, cancel: cancel)
            disk = [DiskLayer(path: target, format: "qcow2", writable: true, followsOwnBacking: false, virtualSize: size)]
        } else {
            // The bundle stays untouched: the VM runs on a private copy of its disk state plus an overlay.
            let base = layout.directory + "/disk-base.qcow2"
            progress?("copying the disk state")
            let size = try manager.copyDiskState(diskFile, member: member, entry: entry, to: base, cancel: cancel)
            let overlay = layout.directory + "/disk-1.qcow2"
            let baseLayer = DiskLayer(path: base, format: "qcow2", writable: false, followsOwnBacking: false, virtualSize: size)
            try manager.createOverlay(overlay, on: baseLayer)
            disk = [baseLayer, DiskLayer(path: overlay, format: "qcow2", writable: true, virtualSize: size, serial: 1)]
            scratch = [base, overlay]
        }
    }

    func startPaused(memory: ByteSource, progress: VMManager.Progress?, cancel: Cancellation?) throws -> MachineMonitor {
        guard let spec else { throw SparcError("restore: the machine was not prepared") }
        let manifest = reader.manifest
        progress?("loading memory")
        FaultPoint.reached("restore-before-memory")
        ramPath = GuestRAM.path(in: try GuestRAM.makeDirectory(vm: name))
        try mark()
        do {
            try SparseImage.load(
                from: memory, to: ramPath, expectedSize: manifest.memory.bytes, expectedDigest: manifest.file(.memory)!.sha256,
                progress: { done, total in progress?("loading memory \(done * 100 / max(total, 1))%") }, cancel: cancel)
        } catch let error as SparcError where error.posixCode == ENOSPC {
            throw SparcError(
                "\(GuestRAM.baseDirectory) ran out of space while the guest's memory was loaded (\(manifest.memory.bytes >> 20) MiB needed, \((GuestRAM.freeBytes() ?? 0) >> 20) MiB free now); nothing was started and the bundle is intact"
                    + (replacing ? "; the VM it was to replace had been stopped first" : "")
            )
        }
        FaultPoint.reached("restore-after-memory")
        if cancel?.isCancelled == true { throw VMManager.cancelled(replacing ? stoppedOutcome : "nothing was changed") }
        let command = QEMUCommand(
            spec: spec, layout: layout, ramPath: ramPath, disk: disk, incoming: true, binary: try QEMUProcess.locateBinary(), sandbox: manager.sandbox)
        progress?("starting QEMU")
        let (pid, qmp) = try manager.launch(command, layout: layout)
        self.pid = pid
        self.qmp = qmp
        self.command = command
        try mark()
        FaultPoint.reached("restore-after-launch")
        return qmp
    }

    func waitForDeviceState() throws {
        guard let qmp else { throw SparcError("restore: QEMU was not started") }
        do {
            try manager.waitForIncoming(qmp, pid: pid, layout: layout)
        } catch let error as SparcError {
            throw SparcError(QEMUProcess.lastError(layout) ?? error.message)
        }
    }

    func register(provenance: Provenance) throws {
        guard let spec, let command, let qmp else { throw SparcError("restore: QEMU was not started") }
        let manifest = reader.manifest
        if provenance.clone {
            let source = try manager.rsdm(vmId: manifest.vm.id)
            try source.copy(to: try manager.rsdm(vmId: provenance.identity))
        }
        try manager.registry.assign(provenance.identity, to: name)
        try manager.registry.setPersistentDisk(diskTarget, for: name)
        var state = VMState(
            name: name, id: provenance.identity, spec: spec, kernel: manifest.machine.kernel, initrd: manifest.machine.initrd,
            argv: command.arguments, pid: pid, qemuVersion: qmp.qemuVersion, ramPath: ramPath, disk: disk, diskScratch: scratch,
            persistentDisk: diskTarget, sandboxUser: manager.sandbox.user, restoredFrom: reader.path)
        state.startedAt = ISO8601DateFormatter().string(from: Date())
        try state.save(layout.stateFile)
        try manager.startRSDMServer(name: name, vmId: provenance.identity, qemuPid: pid)
    }

    func resume() throws {
        guard let qmp else { throw SparcError("restore: QEMU was not started") }
        // The disk is the stored checkpoint's: its writes are counted from here, for the next checkpoint.
        if let storedName = reader.storedName, diskTarget != nil, reader.manifest.diskMember == .diskImage, let base = disk.first, base.format == "qcow2" {
            _ = try? qmp.execute("block-dirty-bitmap-add", ["node": base.node, "name": DiskBitmap.name(since: storedName), "persistent": false])
        }
        try qmp.execute("cont")
        unlink(layout.restoringMarker)
        // From here the guest carries its own cleanup plan: should this restore die, its agent
        // ends the excluded processes when the freeze lease runs out, before it thaws.
        FaultPoint.reached("restore-after-resume")
    }

    func agentSocket() throws -> String { layout.agentSocket }

    func afterThaw(provenance: Provenance, agent: AgentClient) -> [GuestText] {
        // The overlay a restore wrote its differences into goes into the VM's own file.
        guard disk.count > 1, diskTarget != nil, let qmp, var state = try? VMState.load(layout.stateFile) else { return [] }
        do {
            try manager.commitOverlays(&state, qmp: qmp, layout: layout)
        } catch {
            return ["the restored disk stays on an overlay until the next checkpoint or stop: \(error)"]
        }
        return []
    }

    func abandon() {
        if pid > 0 {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid { qemuExit = "pid \(pid), " + Subprocess.describe(raw) }
            kill(pid, SIGKILL)
            _ = QEMUProcess.waitForExit(pid, timeout: 5)
        }
        manager.cleanUp(layout, ramPath: ramPath)
    }

    func explain(_ error: Error) -> Error? {
        if let how = qemuExit {
            return SparcError(
                "QEMU exited during the restore (\(how)) before the guest ran; nothing was started, the bundle is intact and the next restore can go ahead. First error: \(error)"
            )
        }
        return manager.cleanUpAfterQEMUDied(name, during: "the restore", cause: error, outcome: "the bundle is intact")
    }
}

/// A libvirt domain: libvirt starts it from the definition in the bundle (its persistent
/// definition is left as it is), paused, with QEMU waiting for incoming state (as libvirt's
/// own restore does) and a new generation id; sparc fills its RAM file, libvirt resumes it.
final class DomainRestoreTarget: RestoreTarget {
    let noun = "domain"
    let name: String
    let uri: String
    let layout: RuntimeLayout
    let reader: BundleReader
    let connection: LibvirtConnection
    unowned let manager: VMManager
    private(set) var pid: pid_t = 0
    private var definition: DomainPreparation?
    private var disk: DomainPreparation.Disk?
    private var diskFile: ByteSource?
    private var monitor: LibvirtMonitor?
    private var started = false
    /// The overlay the chunks that differ were written into (the domain starts on it, and it is
    /// merged into the image once the guest runs).
    private var overlay: String?
    private(set) var diskNote: String?
    private(set) var diskWrittenBytes: Int64?

    init(reader: BundleReader, uri: String, name: String, policy: RestorePolicy, manager: VMManager) throws {
        let manifest = reader.manifest
        let base = Path.base(of: reader.path).terminalSafe
        guard manifest.libvirt != nil, manifest.file(.domain) != nil else {
            throw SparcError(
                "bundle \(base) is of sparc's own VM '\(manifest.vm.name)', not of a libvirt domain: restore it without --connect (sparc does not turn its VMs into libvirt domains)")
        }
        guard name == manifest.vm.name else {
            throw SparcError("bundle \(base) holds libvirt domain '\(manifest.vm.name)'; it restores only as that domain (--name \(manifest.vm.name))")
        }
        guard !policy.clone, policy.disk == nil, policy.network == nil, policy.kernel == nil, policy.initrd == nil else {
            throw SparcError("--clone, --disk, --net, --kernel and --initrd do not apply to a libvirt domain: its definition in the bundle says what it runs with")
        }
        self.name = name
        self.uri = uri
        self.reader = reader
        self.manager = manager
        connection = try LibvirtConnection(uri: uri)
        layout = manager.layout(name)
    }

    var connect: String? { uri }

    func runningNow(replace: Bool) throws -> Bool {
        guard connection.exists(name) else { return false }
        let uuid = try connection.uuid(of: name)
        guard uuid == reader.manifest.vm.id else {
            throw SparcError(
                "libvirt's domain '\(name)' at \(uri) is another domain (UUID \(uuid)) than the one in bundle \(Path.base(of: reader.path)) (\(reader.manifest.vm.id)); not restoring over it")
        }
        let state = try connection.state(of: name)
        let running = state != "shut off" && state != "crashed"
        if running && !replace {
            throw SparcError("domain '\(name)' is \(state); 'virsh destroy \(name)' first or pass --replace to restore over it")
        }
        return running
    }

    func prepare(provenance: Provenance, policy: RestorePolicy, replacing: Bool) throws -> [GuestText] {
        guard provenance.sealed else {
            throw SparcError(
                "bundle \(Path.base(of: reader.path).terminalSafe) was not sealed by this host: libvirt would start the domain from the definition inside it (devices, files), which sparc takes only from its own bundles")
        }
        let definition = try DomainPreparation(xml: String(decoding: try manager.readVerified(reader, .domain), as: UTF8.self))
        let disk = try VMManager.savedDisk(of: definition, domain: name)
        guard reader.manifest.machine.disk == (disk != nil) else {
            throw SparcError("bundle \(Path.base(of: reader.path).terminalSafe): its disk state and its domain's writable disk do not match", kind: .negative)
        }
        diskFile = disk != nil ? try reader.source(reader.manifest.diskMember ?? .disk) : nil
        self.definition = definition
        self.disk = disk
        return []
    }

    func stopRunning(progress: VMManager.Progress?) throws {
        // Its live dirty bitmaps go into its image (QEMU writes them as it closes it on the
        // SIGTERM libvirt sends first): a restore into this image then writes only what differs.
        if let live = try? DomainPreparation(xml: connection.liveDefinition(of: name)), let file = (try? VMManager.savedDisk(of: live, domain: name))??.file,
            let monitor = try? connection.monitor(of: name), let node = try? BlockNode.opened(file, by: monitor)
        {
            DiskBitmap.persist(monitor, node: node.name)
        }
        progress?("destroying the running domain \(name)")
        try connection.destroy(name)
    }

    var stoppedOutcome: String { "the domain '\(name)' it was to replace had been destroyed and is not running" }

    func clearLeftovers() {}

    func restoreDisk(progress: VMManager.Progress?, cancel: Cancellation?) throws {
        guard let disk, let file = disk.file, let format = disk.format, let diskFile else { return }
        let member = reader.manifest.diskMember ?? .disk
        let entry = reader.manifest.file(member)!
        if member == .diskImage, format == "qcow2", let stored = diskFile as? StoredMember, FileSystem.exists(file) {
            // Read from the store into the domain's image: only what differs from it now, when that can be told.
            let (plan, why) = manager.incrementalDiskPlan(file: file, restoring: stored.member, vm: reader.manifest.vm.name, store: stored.store)
            if let plan {
                progress?("writing the disk's \(plan.chunks.count) chunk(s) that differ from \(Path.base(of: file)) (its bitmap since \(plan.since))")
                // Beside the image, as the checkpoint's overlays are: libvirt gives QEMU access to it.
                let path = file + ".sparc-overlay-\(getpid())"
                unlink(path)
                let written = try manager.writeDiskOverlay(plan, from: stored, entry: entry, file: file, overlay: path, cancel: cancel)
                overlay = path
                // The bitmap has served; a persistent one must not be in the image QEMU opens (DiskBitmap).
                let removed = try Subprocess.run([try QEMUProcess.locateQemuImg(), "bitmap", "--remove", file, plan.bitmap])
                guard removed.status == 0 else { throw SparcError("cannot remove the used dirty bitmap from \(file): \(removed.stderrSummary)") }
                diskWrittenBytes = written
                diskNote =
                    "disk: wrote \(formatBytes(written)) (\(plan.chunks.count) of \(stored.member.chunks.count) chunks) that differed from the domain's disk since \(plan.since)"
                return
            }
            diskNote = "disk: wrote all of it (\(why))"
        }
        progress?("rolling disk \(disk.target) back in \(Path.base(of: file))")
        try manager.rollBackDomainDisk(diskFile, member: member, entry: entry, to: file, format: format, layout: layout)
    }

    func startPaused(memory: ByteSource, progress: VMManager.Progress?, cancel: Cancellation?) throws -> MachineMonitor {
        guard let definition else { throw SparcError("restore: the domain was not prepared") }
        progress?("starting domain \(name) paused, waiting for its state")
        try connection.startPaused(xml: try definition.forIncomingState(diskOverlay: overlay.map { (disk?.target ?? "", $0) }), name: name)
        started = true
        let monitor = try connection.monitor(of: name)
        self.monitor = monitor
        let ram = try DomainRAM.locate(monitor, domain: name)
        guard ram.bytes == reader.manifest.memory.bytes else {
            throw SparcError("domain '\(name)' started with \(ram.bytes >> 20) MiB of RAM, the bundle holds \(reader.manifest.memory.bytes >> 20) MiB")
        }
        progress?("loading memory")
        let qemuUser = try? DomainPreparation(xml: connection.liveDefinition(of: name)).qemuUser
        try manager.fillRAMFile(
            ram.path, bytes: ram.bytes, owner: qemuUser?.uid, domain: name, from: memory, entry: reader.manifest.file(.memory)!, progress: progress)
        return monitor
    }

    func waitForDeviceState() throws {
        guard let monitor else { throw SparcError("restore: the domain was not started") }
        try monitor.waitForMigration(timeout: 120)
    }

    func register(provenance: Provenance) throws {}

    func resume() throws {
        // The image is the stored checkpoint's: its writes are counted from here, for the next
        // checkpoint (the overlay's, too, once merged through the image's node).
        if reader.storedName != nil, reader.manifest.diskMember == .diskImage, disk?.format == "qcow2", let file = disk?.file, let monitor,
            let node = try? BlockNode.opened(file, by: monitor)
        {
            _ = try? monitor.execute("block-dirty-bitmap-add", ["node": node.name, "name": DiskBitmap.name(since: reader.storedName!), "persistent": false])
        }
        try connection.resume(name)
    }

    func agentSocket() throws -> String { try connection.channelSocket(of: name, port: VirtioPortName.agent) }

    func afterThaw(provenance: Provenance, agent: AgentClient) -> [GuestText] {
        var warnings: [GuestText] = []
        if let overlay, let target = disk?.target {
            // The differences go into the image, as a checkpoint's overlay does (an active commit).
            do {
                try connection.mergeDiskBack(name, target: target)
                self.overlay = nil
            } catch {
                warnings.append(
                    "the restored disk stays on the overlay \(overlay) ('virsh blockcommit \(name) \(target) --active --pivot --delete' merges it): \(error)")
            }
        }
        // The domain's QEMU is the process at the other end of the agent's port (the kernel's
        // record of the connection; libvirt's API does not give its pid).
        guard let qemuPid = agent.hostPeer else { return warnings + ["the RSDM port is not served: the domain's QEMU could not be identified"] }
        pid = qemuPid
        guard let rsdmSocket = try? connection.channelSocket(of: name, port: VirtioPortName.rsdm) else { return warnings }
        do {
            try manager.startRSDMServer(
                name: name, vmId: provenance.identity, qemuPid: qemuPid, socket: rsdmSocket, log: manager.stateDirectory + "/rsdm-\(name).log")
        } catch { return warnings + ["the RSDM port is not served: \(error)"] }
        return warnings
    }

    func abandon() {
        // Until the guest runs, a failure leaves the domain as it was found: not running, on its
        // own image (the overlay of the differences goes; the image under it was not written).
        if started { try? connection.destroy(name) }
        if let overlay { unlink(overlay) }
        overlay = nil
    }

    func explain(_ error: Error) -> Error? { nil }
}

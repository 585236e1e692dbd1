import CheckpointStore
import Foundation
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What a restore did, for the operator's summary.
public struct RestoreReport: Codable, Sendable {
    public var name: String
    public var bundle: String
    public var pid: Int32
    public var replaced: Bool
    public var total: Double
    public var warnings: [GuestText]
    /// What the agent did before the guest ran on (nil when nothing was excluded).
    public var cleanup: CleanupResult?
    /// The VM's restore epoch after this restore (RSDM).
    public var epoch: Int
    /// True when the bundle is older than the VM's newest checkpoint.
    public var rollback: Bool
    /// True when the VM was restored as a copy with a new identity (`--clone`).
    public var clone: Bool
    /// True when this host sealed the bundle.
    public var sealed: Bool
    /// Seconds the guest's clock was stepped to the host's time (positive: forward).
    public var clockStep: Double?
    /// How the disk went back: only what differed, or all of it and why (nil: no disk, or a bundle file copied).
    public var diskNote: String?
    /// Bytes written to the VM's disk (nil: not counted).
    public var diskWrittenBytes: Int64?
    /// The stored checkpoint of the running state this restore replaced (`sparc undo`).
    public var undoPoint: String?
}

/// Where a restore over a running machine saves the state it replaces first: the store, and
/// the bundle home its checkpoint is staged beside when memory has no room.
public struct UndoRequest {
    public var store: CheckpointStore
    public var home: String
    public init(store: CheckpointStore, home: String) {
        self.store = store
        self.home = home
    }
}

/// How restore treats a bundle's provenance and place in the VM's history.
public struct RestorePolicy: Sendable {
    /// Restoring a bundle older than the newest checkpoint rolls the VM back.
    public var allowRollback = false
    /// Restoring a bundle this host did not seal.
    public var allowForeign = false
    /// Restoring as a new VM (new identity, a copy of the source's rollback-sensitive data),
    /// needed for a name other than the bundle's or one that belongs to another VM.
    public var clone = false
    /// Boot files to use when this host's store does not hold the bundle's (digests must match).
    public var kernel: String?
    public var initrd: String?
    /// A new file for the restored VM's disk to live in (it keeps its writes there).
    public var disk: String?
    /// What the network card attaches to instead of the bundle's record (`--net` syntax).
    public var network: String?
    public init(
        allowRollback: Bool = false, allowForeign: Bool = false, clone: Bool = false, kernel: String? = nil, initrd: String? = nil,
        disk: String? = nil, network: String? = nil
    ) {
        self.network = network
        self.disk = disk
        self.allowRollback = allowRollback
        self.allowForeign = allowForeign
        self.clone = clone
        self.kernel = kernel
        self.initrd = initrd
    }
}

/// Why a restore was refused in a way the operator may override with a flag.
public enum RestoreRefusal: UserFacingError, Equatable, Sendable {
    /// Older than the newest checkpoint (or unknown to the history): needs `allowRollback`.
    case rollback(String)
    /// Not sealed by this host: needs `allowForeign`.
    case foreign(String)
    /// Another VM's identity or another name: needs `clone`.
    case clone(String)

    public var description: String {
        switch self {
        case .rollback(let m), .foreign(let m), .clone(let m): return m
        }
    }

    /// A refusal the operator can override with a flag: a usage matter (2).
    public var exitCode: Int32 { 2 }
}

/// What the checks before a restore decided.
struct Provenance {
    var sealed: Bool
    var rollback: Bool
    /// The identity the restored VM will have.
    var identity: String
    var clone: Bool
}

extension VMManager {
    /// Rebuilds a VM from a bundle and resumes it.
    ///
    /// Everything that can be checked is checked before a running VM of the same name is
    /// touched: the manifest, the host seal and the history, the boot files, the free
    /// memory. Every file is then copied into sparc's private directories while its digest
    /// is checked, so what was verified is what QEMU gets; a damaged bundle leaves nothing
    /// behind. The guest resumes frozen, as it was saved, and the agent thaws it.
    ///
    /// `cancel` stops it until the guest resumes (nothing is started, a replaced VM stays
    /// stopped and says so); from then on the excluded processes must die before the guest
    /// runs, so the restore finishes.
    public func restore(
        bundle: String, name: String, replace: Bool = false, killExcluded: Bool = true,
        policy: RestorePolicy = RestorePolicy(), progress: Progress? = nil, cancel: Cancellation? = nil,
        external: [String: BundleReader.ExternalMember] = [:], storedName: String? = nil, undo: UndoRequest? = nil
    ) throws -> RestoreReport {
        try exclusively(name, doing: "restore") {
            var reader = try BundleReader(path: bundle)
            reader.external = external
            reader.storedName = storedName
            let target = try driver.restoreTarget(reader: reader, name: name, policy: policy, manager: self)
            return try runRestore(target, replace: replace, killExcluded: killExcluded, policy: policy, progress: progress, cancel: cancel, undo: undo)
        }
    }

    /// Checkpoints the running machine into the store as its undo point (no exclusion: it is
    /// the state the operator may want back), and removes its older undo points (their own
    /// rule: the newest stays). Returns the stored name.
    func saveUndoPoint(_ name: String, undo: UndoRequest, progress: Progress?, cancel: Cancellation?) throws -> String {
        progress?("saving the running state first, so that 'sparc undo' can go back to it")
        let staging = try StoreStaging(home: undo.home, memoryBytes: memoryStagingBytes(of: name))
        defer { staging.remove() }
        var destination = staging.destination(vm: name, store: undo.store, undoPoint: true)
        // Names are by the second: never over an earlier undo point of the same second.
        while (try undo.store.names()).contains(destination.name) {
            usleep(250_000)
            destination = staging.destination(vm: name, store: undo.store, undoPoint: true)
        }
        _ = try runCheckpoint(
            driver.machine(name, manager: self), output: destination.bundlePath, stopAfter: false, exclusion: nil, saveFreeMemory: false, cancel: cancel,
            progress: progress, store: destination)
        _ = try staging.store(destination)
        // Undo points are named …-undo: only those manifests are opened.
        for old in try undo.store.names() where old != destination.name && old.hasSuffix("-undo") {
            guard let c = try? undo.store.checkpoint(old), c.vm == name, c.undoPoint == true else { continue }
            recordRemoved([c], why: "replaced by a newer undo point")
            try undo.store.delete(old)
        }
        return destination.name
    }

    /// The one restore routine, for every kind of `RestoreTarget`: refuse what must be refused
    /// before anything is touched (provenance, the target's own checks), verify and stop a
    /// machine being replaced, put the disk state in place, start QEMU paused with the RAM
    /// filled, load the device state, resume under a guardian, and let the agent end the
    /// excluded processes before it thaws the guest; on any failure before the guest runs,
    /// end what was started and say what the operator is left with.
    func runRestore(
        _ target: RestoreTarget, replace: Bool, killExcluded: Bool, policy: RestorePolicy, progress: Progress?, cancel: Cancellation?,
        undo: UndoRequest? = nil
    ) throws -> RestoreReport {
        do {
            return try runRestoreSteps(
                target, replace: replace, killExcluded: killExcluded, policy: policy, progress: progress, cancel: cancel, undo: undo)
        } catch {
            if let explained = target.explain(error) { throw explained }
            if cancel?.isCancelled == true, (error as? SparcError)?.posixCode != ECANCELED {
                throw Self.cancelled("nothing was started (a \(target.noun) it was to replace may have been stopped: see 'sparc vm status --name \(target.name)')")
            }
            throw error
        }
    }

    private func runRestoreSteps(
        _ target: RestoreTarget, replace: Bool, killExcluded: Bool, policy: RestorePolicy, progress: Progress?, cancel: Cancellation?,
        undo: UndoRequest?
    ) throws -> RestoreReport {
        let began = Date()
        let name = target.name
        let reader = target.reader
        let manifest = reader.manifest
        let layout = target.layout
        var stoppedRunning = false
        var undoPoint: String?
        func checkCancelled() throws {
            guard cancel?.isCancelled == true else { return }
            throw Self.cancelled(stoppedRunning ? target.stoppedOutcome : "nothing was changed")
        }
        let running = try target.runningNow(replace: replace)
        let provenance = try checkProvenance(reader, name: name, policy: policy)
        var warnings = try target.prepare(provenance: provenance, policy: policy, replacing: running)
        // Opened (and size-checked) now, used only after their digests are checked.
        let memoryFile = try reader.source(.memory)
        let devicesFile = try reader.open(.devices)

        if running {
            // Nothing the running machine is given up for may fail afterwards in a way that can be
            // seen now: every file's digest, and that the state directory takes writes.
            try checkBeforeReplacing(reader, progress: progress, cancel: cancel)
            try checkCancelled()
            // What the restore replaces is kept first, unless asked not to.
            if let undo { undoPoint = try saveUndoPoint(name, undo: undo, progress: progress, cancel: cancel) }
            try checkCancelled()
            try target.stopRunning(progress: progress)
            stoppedRunning = true
        } else {
            try checkCancelled()
            target.clearLeftovers()
        }
        try FileSystem.makeDirectory(layout.directory)
        var launched = false
        defer { if !launched { target.abandon() } }

        progress?("verifying \(Path.base(of: reader.path))")
        let devices = layout.directory + "/devices.vmstate"
        defer { unlink(devices) }
        try copyVerified(devicesFile, entry: manifest.file(.devices)!, to: devices, cancel: cancel)
        try checkCancelled()
        try target.restoreDisk(progress: progress, cancel: cancel)
        try checkCancelled()
        let monitor = try target.startPaused(memory: memoryFile, progress: progress, cancel: cancel)
        progress?("loading device state")
        do {
            try startIncomingDeviceState(monitor, from: devices, ignoringSharedRAM: manifest.deviceState != .guestRAMOmitted)
            try target.waitForDeviceState()
            try Self.stopIgnoringSharedMemory(monitor)
        } catch {
            throw SparcError("QEMU could not load the device state of this bundle: \((error as? SparcError)?.message ?? "\(error)")")
        }
        try target.register(provenance: provenance)
        unlink(devices)

        FaultPoint.reached("restore-before-resume")
        try checkCancelled()
        progress?("resuming")
        // Should this process die from here until the guided cleanup thaws the guest, its
        // guardian (else the next command) thaws it within a second, the agent ending the
        // excluded processes first.
        let guardian = Guardian.watch(vm: name, connect: target.connect)
        defer { guardian?.release() }
        try FreezeMarker.mine(.restore).write(layout.atWorkMarker)
        try target.resume()
        launched = true
        // The guest runs: from here the restore finishes, whatever is asked.
        let progress = ProgressEvent.finishing(progress)

        // The guest was frozen when it was saved; the agent (not frozen) thaws it.
        progress?("thawing guest processes")
        let agent = AgentClient(socketPath: try target.agentSocket(), timeout: agentTimeout)
        defer { agent.close() }
        let guided: GuidedCleanup
        do {
            guided = try guidedCleanup(agent: agent, manifest: manifest, killExcluded: killExcluded, progress: progress)
        } catch {
            let which = target.pid > 0 ? " (pid \(target.pid))" : ""
            throw SparcError("\(target.noun) '\(name)' was restored\(which) and runs, but its agent did not answer, so guest processes may still be frozen: \(error)")
        }
        unlink(layout.atWorkMarker)
        warnings += guided.warnings
        warnings += target.afterThaw(provenance: provenance, agent: agent)
        let epoch = try recordRestore(name: name, reader: reader, provenance: provenance, clock: guided.clock)
        return RestoreReport(
            name: name, bundle: reader.path, pid: target.pid, replaced: running, total: Date().timeIntervalSince(began),
            warnings: warnings + (guided.cleanup?.warnings ?? []), cleanup: guided.cleanup, epoch: epoch, rollback: provenance.rollback,
            clone: provenance.clone, sealed: provenance.sealed, clockStep: guided.clock?.stepSeconds, diskNote: target.diskNote,
            diskWrittenBytes: target.diskWrittenBytes, undoPoint: undoPoint)
    }

    /// Counts the restore in the VM's RSDM epoch and its history (restore, rollback or clone); returns the new epoch.
    func recordRestore(name: String, reader: BundleReader, provenance: Provenance, clock: ClockResult?) throws -> Int {
        let manifest = reader.manifest
        let epoch = try rsdm(vmId: provenance.identity).nextEpoch()
        let event: HistoryEntry.Event = provenance.clone ? .clone : provenance.rollback ? .rollback : .restore
        var detail: String?
        if provenance.clone { detail = "copy of '\(manifest.vm.name)' (\(manifest.vm.id)) with a new identity" }
        if provenance.rollback { detail = "older than the newest checkpoint" }
        if !provenance.sealed { detail = (detail.map { $0 + "; " } ?? "") + "foreign bundle (not sealed by this host)" }
        if let clock { detail = (detail.map { $0 + "; " } ?? "") + "guest clock stepped \(Self.describeStep(clock.stepSeconds))" }
        try history(name).append(event, bundle: reader.path, bundleDigest: manifest.manifestSHA256, epoch: epoch, detail: detail)
        return epoch
    }

    /// What restore --replace checks before it stops the running VM: every member against its
    /// digest (the same checks run again while the files are copied) and a writable state directory.
    func checkBeforeReplacing(_ reader: BundleReader, progress: Progress?, cancel: Cancellation? = nil) throws {
        progress?("verifying \(Path.base(of: reader.path)) before replacing the running VM")
        let problems = reader.verify(progress: { file, done, total in progress?("verifying \(file) \(done * 100 / max(total, 1))%") }, cancel: cancel)
        if cancel?.isCancelled == true { throw Self.cancelled("nothing was changed") }
        if let first = problems.first {
            throw SparcError("bundle \(reader.path) is damaged (\(first.description)); the running VM was not touched", kind: .negative)
        }
        let probe = stateDirectory + "/.write-check-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SparcError(
                "state directory \(stateDirectory) does not take writes (\(String(cString: strerror(errno)))), so the restore could not be recorded; the running VM was not touched")
        }
        close(fd)
        unlink(probe)
    }

    /// "forward 17.3 s" / "back 2.0 s": how a clock step reads in the history.
    public static func describeStep(_ seconds: Double) -> String {
        let magnitude = (abs(seconds) * 10).rounded() / 10
        return (seconds >= 0 ? "forward " : "back ") + String(format: "%.1f s", magnitude)
    }

    /// Decides whether a bundle may be restored under `name`, before anything is touched.
    ///
    /// "This host made it" is a cryptographic fact (the host seal), never a file lookup. For
    /// a sealed bundle the history of its VM must be intact: the newest checkpoint restores
    /// freely, an older one (or one the history does not know) is a rollback. A bundle restores
    /// under its own name and identity; anything else makes a new VM and needs `clone`.
    func checkProvenance(_ reader: BundleReader, name: String, policy: RestorePolicy) throws -> Provenance {
        let m = reader.manifest
        let base = Path.base(of: reader.path).terminalSafe
        let seal = reader.seal(key: try HostKey(directory: stateDirectory).sealKey(create: true))
        if seal != .sealed && !policy.allowForeign {
            throw RestoreRefusal.foreign(
                "bundle \(base) was not sealed by this host (made elsewhere, or changed after it was saved); pass --foreign to restore it anyway")
        }
        let registered = try registry.identity(of: name)
        let sameVM = name == m.vm.name && (registered == nil || registered == m.vm.id)
        if !sameVM && !policy.clone {
            let why =
                name != m.vm.name
                ? "bundle \(base) belongs to VM '\(m.vm.name)'; restoring it as '\(name)'"
                : "VM '\(name)' on this host is a different VM than the one in bundle \(base); restoring it over that name"
            throw RestoreRefusal.clone("\(why) makes a copy with its own identity: pass --clone to do that")
        }
        let clone = !sameVM || policy.clone
        var rollback = false
        if seal == .sealed {
            let log = try history(m.vm.name)
            let problems = try log.verify()
            guard problems.isEmpty else {
                throw SparcError(
                    "the history of '\(m.vm.name)' is broken (\(problems.joined(separator: "; "))): not restoring; see 'sparc log --verify --name \(m.vm.name)'")
            }
            let entries = try log.entries()
            let checkpoints = HistoryLog.keptCheckpoints(entries)
            if entries.last(where: { $0.event == .undoPoint })?.bundleDigest == m.manifestSHA256 {
                // The VM's newest undo point: the state its last restore replaced. Going back to it
                // undoes that restore; it is no rollback.
            } else if let index = checkpoints.lastIndex(where: { $0.bundleDigest == m.manifestSHA256 }) {
                if index != checkpoints.count - 1 {
                    guard policy.allowRollback else {
                        let newest = checkpoints.last!
                        throw RestoreRefusal.rollback(
                            "bundle \(base) is older than the newest checkpoint of '\(m.vm.name)' (\(Path.base(of: newest.bundle ?? "?").terminalSafe), \(newest.time)): restoring it is a rollback; pass --allow-rollback if that is intended")
                    }
                    rollback = true
                }
            } else {
                guard policy.allowRollback else {
                    throw RestoreRefusal.rollback(
                        "the history of '\(m.vm.name)' has no record of bundle \(base): it cannot tell whether restoring it is a rollback; pass --allow-rollback to restore it anyway")
                }
                rollback = true
            }
        }
        return Provenance(sealed: seal == .sealed, rollback: rollback, identity: clone ? VMRegistry.newIdentity() : m.vm.id, clone: clone)
    }

    /// The machine a bundle describes, with its boot files taken from sparc's store.
    ///
    /// A bundle this host did not seal does not choose host ports or interfaces (`trustHostSide`
    /// false): its card comes back on user networking without forwards unless `--net` says more.
    public func machineSpec(_ manifest: Manifest, policy: RestorePolicy = RestorePolicy(), trustHostSide: Bool = true) throws
        -> MachineSpec
    {
        var spec = MachineSpec(
            memoryMiB: manifest.machine.memoryMiB, cpus: manifest.machine.cpus,
            accel: Accelerator(rawValue: manifest.machine.accel) ?? .tcg, append: manifest.machine.append,
            hasDisk: manifest.machine.disk)
        spec.extraRAMBytes = manifest.machine.extraRAMBytes
        spec.kernel = try manifest.machine.kernel.map { try bootFile($0, what: "kernel", offered: policy.kernel) }
        spec.initrd = try manifest.machine.initrd.map { try bootFile($0, what: "initrd", offered: policy.initrd) }
        if let net = manifest.machine.network {
            // The card must come back (the device state holds it); what it attaches to is the host's business.
            if let offered = policy.network {
                spec.network = try NetworkSpec.parse(offered, mac: net.mac)
            } else {
                let recorded = NetworkSpec(
                    backend: net.backend == "tap" ? .tap : .user, forwards: net.forwards, tap: net.tap, mac: net.mac)
                spec.network = trustHostSide ? recorded : recorded.withoutHostSide
            }
        } else if policy.network != nil {
            throw SparcError("--net: this bundle's VM had no network card, and a restore cannot add one")
        }
        return spec
    }

    /// The stored copy of a boot file the bundle names, or the operator's offered file when its digest matches.
    func bootFile(_ record: Manifest.BootFile, what: String, offered: String?) throws -> String {
        if let offered {
            let added = try bootFiles.add(FileSystem.absolute(offered))
            guard added.record.sha256 == record.sha256 else {
                throw SparcError("--\(what) \(offered) is not the \(what) this bundle was saved with (sha256 \(record.sha256.prefix(16))…)")
            }
            return added.path
        }
        return try bootFiles.path(for: record, what: what)
    }

    /// Where a bundle's disk state goes: the file named with `--disk`; the VM's own file when
    /// this host's bundle comes back to its VM; a new file of sparc's for a VM that kept its
    /// disk (a clone, a bundle from elsewhere); nil for an overlay discarded at stop. A path
    /// never comes from the bundle.
    func restoreDiskTarget(_ manifest: Manifest, name: String, provenance: Provenance, policy: RestorePolicy) throws -> String? {
        guard manifest.machine.disk else {
            if policy.disk != nil { throw SparcError("--disk: this bundle's machine has no disk") }
            return nil
        }
        if let disk = policy.disk {
            let path = FileSystem.absolute(disk)
            let own = try registry.persistentDisk(of: name)
            if FileSystem.exists(path) && path != own {
                throw SparcError("--disk \(disk) already exists; restore writes a new file (or the VM's own disk): choose a new name")
            }
            return path
        }
        if !provenance.clone, provenance.sealed, let own = try registry.persistentDisk(of: name) { return own }
        if manifest.machine.persistentDisk { return registry.ownedDiskPath(for: name, stateDirectory: stateDirectory) }
        return nil
    }

    /// Writes a bundle's disk state to `target`: copied beside it while its digest is checked,
    /// its header checked, then renamed over it, so the file is the old or the new disk, never a mix.
    func restoreDisk(
        _ source: ByteSource, member: Manifest.Member = .disk, entry: Manifest.FileEntry, to target: String, layout: RuntimeLayout, cancel: Cancellation? = nil
    ) throws -> Int64 {
        try FileSystem.makeDirectories(Path.directory(of: target))
        let staging = try StagingDirectory(beside: target)
        let size = try copyDiskState(source, member: member, entry: entry, to: staging.file, cancel: cancel)
        if let old = try? OpenedFile(regular: target) {
            // Nothing else may be using the file being replaced.
            try DiskLock.lock(old.fd, path: target, writable: true)
        }
        try staging.moveIntoPlace(replace: true)
        return size
    }

    /// Writes a bundle's disk state to the new file `path` as a standalone qcow2, checked
    /// against its digest; returns the disk's size. A qcow2 member is copied as it is hashed;
    /// a disk stored as the guest sees it (`disk.img`) is copied beside `path` as it is
    /// hashed, then converted (never probed: it is read as raw).
    func copyDiskState(_ source: ByteSource, member: Manifest.Member, entry: Manifest.FileEntry, to path: String, cancel: Cancellation? = nil) throws -> Int64 {
        guard member == .diskImage else {
            try copyVerified(source, entry: entry, to: path, cancel: cancel)
            return try QCOW2Header.checkStandalone(path: path, what: "the bundle's disk state")
        }
        try writeDiskImage(source, entry: entry, to: path, cancel: cancel)
        return entry.size
    }

    /// Writes a disk kept as the guest sees it (`disk.img`, a file or a stored member decrypted
    /// as it is read) into the new qcow2 `path` in one pass: qemu-nbd serves the new image and
    /// only the chunks that hold data are written, each hashed as it goes; unless the digest
    /// is the manifest's, the image is removed.
    func writeDiskImage(_ source: ByteSource, entry: Manifest.FileEntry, to path: String, cancel: Cancellation? = nil) throws {
        guard source.size == entry.size else { throw BundleError.damaged(member: entry.name, why: "size is \(source.size) bytes, the manifest says \(entry.size)") }
        let made = try Subprocess.run([try QEMUProcess.locateQemuImg(), "create", "-q", "-f", "qcow2", path, String(entry.size)])
        guard made.status == 0 else { throw SparcError("cannot create \(path): \(made.stderrSummary)") }
        var kept = false
        defer { if !kept { unlink(path) } }
        let disk = try NBDDisk(serving: path, format: "qcow2", expectedSize: entry.size)
        let digest = try ChunkedDigest.digest(source: source, cancel: cancel) { bytes, offset in
            try disk.write(bytes.baseAddress!, count: bytes.count, at: offset)
        }
        if cancel?.isCancelled == true { throw SparcError("cancelled", kind: .operational, posixCode: ECANCELED) }
        guard digest == entry.sha256 else { throw BundleError.tampered(member: entry.name) }
        try disk.flush()
        kept = true
    }

    /// Copies a bundle member into sparc's private runtime directory, checking its digest on
    /// the bytes copied; a mismatch removes the copy and refuses the bundle.
    func copyVerified(_ source: ByteSource, entry: Manifest.FileEntry, to path: String, cancel: Cancellation? = nil) throws {
        let out = try NewFile(path, size: source.size)
        let digest =
            try (source as? OpenedFile).map { try ChunkedDigest.digest(fd: $0.fd, size: $0.size, path: $0.path, copyTo: out.fd, cancel: cancel) }
            ?? ChunkedDigest.digest(source: source, cancel: cancel) { bytes, offset in try FileSystem.writeAll(fd: out.fd, bytes, at: offset, path: path) }
        guard digest == entry.sha256 else {
            throw BundleError.tampered(member: entry.name)
        }
        out.keep()
    }

    /// Hands QEMU the device state through a descriptor and waits until it is loaded.
    func loadDeviceState(qmp: QMPClient, from path: String, pid: pid_t, layout: RuntimeLayout) throws {
        try startIncomingDeviceState(qmp, from: path)
        try waitForIncoming(qmp, pid: pid, layout: layout)
        try Self.stopIgnoringSharedMemory(qmp)
    }

    /// Starts loading the device state into a QEMU waiting with `-incoming defer`; the RAM is
    /// already in its shared file, so the migration stream holds no RAM: QEMU ignores the
    /// shared RAM (`x-ignore-shared`), or the stream (a live copy's) has no page of it.
    func startIncomingDeviceState(_ monitor: MachineMonitor, from path: String, ignoringSharedRAM: Bool = true) throws {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read", path) }
        defer { close(fd) }
        try monitor.execute(
            "migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": ignoringSharedRAM]]])
        try monitor.passDescriptor(fd, as: "sparc-devices")
        try monitor.execute("migrate-incoming", ["uri": "fd:sparc-devices"])
    }

    /// Waits until QEMU has loaded the incoming device state, or explains why it did not.
    func waitForIncoming(_ qmp: QMPClient, pid: pid_t, layout: RuntimeLayout) throws {
        let deadline = Date().addingTimeInterval(120)
        while true {
            guard FileSystem.processAlive(pid), !QEMUProcess.isZombie(pid) else {
                throw SparcError(QEMUProcess.lastError(layout) ?? "QEMU exited")
            }
            let (status, error) = try qmp.migrationState()
            switch status {
            case "completed": return
            case "failed", "cancelled": throw SparcError(error ?? "migration \(status)")
            default:
                if Date() > deadline { throw SparcError("device state still loading after 120 s") }
                usleep(10_000)
            }
        }
    }
}

/// What the agent did as a restored guest woke: ended or drained what was excluded, reseeded, set its clock.
struct GuidedCleanup {
    var cleanup: CleanupResult?
    var clock: ClockResult?
    var warnings: [GuestText] = []
}

extension VMManager {
    /// The guided part of a restore, once the CPUs run: the guest was saved frozen, and before
    /// its agent thaws it the excluded processes end (their memory is gone), zeroed buffers are
    /// dropped, randomness is reseeded and the clock goes to the host's time.
    func guidedCleanup(agent: AgentClient, manifest: Manifest, killExcluded: Bool, progress: Progress?) throws -> GuidedCleanup {
        var warnings: [GuestText] = []
        var cleanup: CleanupResult?
        var clock: ClockResult?
        _ = try agent.waitUntilReady(timeout: max(agentTimeout, 30))
        let excluded = manifest.exclusion
        if !excluded.isEmpty {
            // The excluded processes' memory is gone from this image: end them before anything runs.
            progress?(killExcluded ? "ending excluded processes" : "evicting excluded page cache")
            let kill = excluded.processes.map { ExcludedProcess(pid: $0.pid, command: "", reason: $0.reason.unescaped, startTime: $0.startTime) }
            // Zeroed pipe, socket and terminal buffers are dropped whether or not the processes die: nobody reads the zeros.
            let zeroedBuffers = ["pipe", "socket", "tty", "shm"].contains { (excluded.bytesByKind[$0] ?? 0) > 0 }
            cleanup = try agent.cleanup(
                CleanupRequest(
                    kill: killExcluded ? kill : [], drain: zeroedBuffers ? kill : [], drainExited: zeroedBuffers ? excluded.exitedPids ?? [] : [],
                    evictFiles: excluded.evictFiles, removeFiles: excluded.removeFiles))
            // Under --no-kill the pages still mapped are (some of them) the excluded processes' zeroed ones.
            if !killExcluded, let mapped = cleanup?.stillMapped, !mapped.isEmpty {
                let files = mapped.keys.sorted().map { Path.base(of: $0.description) }.joined(separator: ", ")
                warnings.append(
                    "--no-kill: \(mapped.values.reduce(0, +)) cached page(s) of \(files) stay mapped by the excluded processes; those that were zeroed read as zeros to anyone")
                cleanup?.stillMapped = nil
            }
            if !killExcluded && !excluded.processes.isEmpty {
                warnings.append("--no-kill: \(excluded.processes.count) excluded process(es) run on with their memory zeroed")
            }
        }
        // Fresh randomness: vmgenid made the kernel reseed; host entropy is mixed in as well.
        try agent.reseed(Data(secureRandomBytes(64)))
        // The guest wakes at the checkpoint's time: its clock goes to the host's before anything runs on.
        progress?("setting the guest clock")
        do {
            clock = try agent.setClock()
            if let rtcError = clock?.rtcError { warnings.append("guest clock set, but not its RTC: \(rtcError)") }
        } catch {
            // An agent saved before clock setting existed says so; the guest runs on with its old time.
            warnings.append("the guest clock was not set (it carries on from the checkpoint's time): \(error)")
        }
        _ = try agent.thaw()
        return GuidedCleanup(cleanup: cleanup, clock: clock, warnings: warnings)
    }
}

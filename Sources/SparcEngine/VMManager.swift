import Foundation
// The host key, histories and RSDM stores are part of what the engine offers its users.
@_exported import HostState
import Libvirt
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Options for `vm start`.
public struct StartOptions: Sendable {
    public var name: String = "default"
    public var memoryMiB: Int = 256
    public var cpus: Int = 1
    public var disk: String?
    public var kernel: String?
    public var initrd: String?
    public var append: String?
    public var accel: Accelerator?
    /// The built guest to boot when no kernel is given.
    public var guest: GuestKind = .busybox
    /// Discard the disk's writes at stop (an overlay), even on a disk of the VM's own.
    public var ephemeral = false
    /// How long to wait for the guest agent before giving up.
    public var agentTimeout: TimeInterval = 120
    /// A network card and its host side, in `--net` syntax; nil for none.
    public var network: String?
    /// How the VM boots; nil: `kernel` with --kernel, else the guest's default (Debian: its disk).
    public var boot: BootSource?
    public init() {}
}

/// How `vm stop` ended a VM.
public struct StopReport: Codable, Sendable {
    public enum How: String, Codable, Sendable {
        /// The guest powered off and QEMU exited on its own.
        case shutDown = "shut down"
        /// QEMU was told to quit (forced, or the guest did not power off in time).
        case quit
        /// QEMU was gone before the stop.
        case alreadyExited = "already exited"
    }
    public var how: How
    /// How the shutdown was asked for (the guest's command, or the ACPI power button).
    public var method: String?
    public var seconds: Double = 0
    /// Why a shutdown fell back to quitting.
    public var note: String?
    public init(how: How, method: String? = nil, seconds: Double = 0, note: String? = nil) {
        self.how = how
        self.method = method
        self.seconds = seconds
        self.note = note
    }
}

/// Starts, stops and inspects sparc's QEMU virtual machines.
public final class VMManager {
    /// The runtime root (private to this user): one directory per VM.
    public let root: String
    /// The state directory (private to this user): host key, histories, identities, RSDM, boot files.
    public let stateDirectory: String
    public var agentTimeout: TimeInterval
    /// Whether a command that changes a VM waits for another one working on it, or fails at once.
    public var waitForLock = false
    /// A libvirt URI: VM names are then that daemon's domains (`--connect`, `$SPARC_CONNECT`).
    public var connect: String?
    /// How QEMU is confined (seccomp always; an unprivileged user where possible).
    public var sandbox: QEMUSandbox

    /// Uses the given directories, or the defaults; both are checked to be this user's own.
    public init(root: String? = nil, stateDirectory: String? = nil, agentTimeout: TimeInterval = 10) throws {
        if let root {
            try FileSystem.ensurePrivateDirectory(root, what: "runtime directory")
            self.root = root
        } else {
            self.root = try RuntimeLayout.checkedRoot()
        }
        if let stateDirectory {
            try FileSystem.ensurePrivateDirectory(stateDirectory, what: "state directory")
            self.stateDirectory = stateDirectory
        } else {
            self.stateDirectory = try StateDirectory.checked()
        }
        self.agentTimeout = agentTimeout
        self.sandbox = QEMUSandbox.detect()
    }

    public func layout(_ name: String) -> RuntimeLayout { RuntimeLayout(name: name, root: root) }

    public func history(_ name: String) throws -> HistoryLog { try HistoryLog(directory: stateDirectory, vm: name) }
    public var registry: VMRegistry { VMRegistry(stateDirectory: stateDirectory) }
    public var bootFiles: BootFileStore { BootFileStore(stateDirectory: stateDirectory) }
    public func rsdm(vmId: String) throws -> RSDMStore { try RSDMStore(directory: stateDirectory, vmId: vmId) }

    /// The RSDM store of a VM by name (its registered identity).
    public func rsdm(name: String) throws -> RSDMStore {
        try rsdm(vmId: try driver.identity(of: name, manager: self))
    }

    /// Progress of long work ("booting", "copying memory 40%"), typed (see `ProgressEvent`).
    public typealias Progress = (ProgressEvent) -> Void

    // MARK: - Lifecycle

    /// Boots a VM and returns once its agent answers.
    @discardableResult
    public func start(_ options: StartOptions, progress: Progress? = nil) throws -> VMState {
        try exclusively(options.name, doing: "vm start") { try startLocked(options, progress: progress) }
    }

    func startLocked(_ options: StartOptions, progress: Progress?) throws -> VMState {
        try RuntimeLayout.validate(name: options.name)
        removeHalfStartedVM(options.name, layout: layout(options.name))
        let layout = layout(options.name)
        try ensureNotRunning(options.name)
        let qemu = try QEMUProcess.locateBinary()

        var spec = MachineSpec(
            memoryMiB: options.memoryMiB, cpus: options.cpus, accel: options.accel ?? Accelerator.detect(),
            network: try options.network.map { try NetworkSpec.parse($0) })
        spec.extraRAMBytes = MachineSpec.unalignedTailBytes
        var image: GuestImage?
        if let kernel = options.kernel {
            if options.boot == .disk { throw SparcError("--boot disk boots the disk's own kernel: leave out --kernel") }
            spec.kernel = FileSystem.absolute(kernel)
            spec.initrd = options.initrd.map(FileSystem.absolute)
            spec.append = options.append
        } else {
            if options.initrd != nil || options.append != nil {
                throw SparcError("--initrd and --append need --kernel")
            }
            let guest = try GuestImage.locate(options.guest)
            image = guest
            switch options.boot ?? guest.defaultBoot {
            case .kernel:
                spec.kernel = guest.kernel
                spec.initrd = guest.initrd
                spec.append = guest.append
            case .disk:
                // The firmware boots the disk: the VM (and every bundle of it) needs no kernel file of the host's.
                if options.disk == nil && guest.kind == .busybox {
                    throw SparcError("--boot disk needs a disk with a bootloader: --disk FILE, or --guest debian")
                }
            }
        }
        try spec.validate()
        if spec.accel == .kvm, let problem = Accelerator.kvmProblem() { throw SparcError("--accel kvm: \(problem); use --accel tcg (or auto)") }
        try checkMemoryAvailable(spec)
        let id = try registry.identity(forStarting: options.name)
        // The VM boots from sparc's own copies, kept by digest: bundles name them that way.
        let kernel = try spec.kernel.map { try bootFiles.add($0) }
        let initrd = try spec.initrd.map { try bootFiles.add($0) }
        spec.kernel = kernel?.path
        spec.initrd = initrd?.path

        FileSystem.removeTree(layout.directory)
        try FileSystem.makeDirectory(layout.directory)
        var ramPath = ""
        var launched = false
        defer { if !launched { cleanUp(layout, ramPath: ramPath) } }

        let (disk, scratch, persistent) = try startDisk(options, image: image, name: options.name, layout: layout)
        spec.hasDisk = !disk.isEmpty
        ramPath = try GuestRAM.create(vm: options.name, bytes: spec.memoryBytes)
        let command = QEMUCommand(spec: spec, layout: layout, ramPath: ramPath, disk: disk, binary: qemu, sandbox: sandbox)
        progress?("booting \(options.name) (\(spec.memoryMiB) MiB, \(spec.accel.rawValue))")
        let (pid, qmp) = try launch(command, layout: layout)
        let state = VMState(
            name: options.name, id: id, spec: spec, kernel: kernel?.record, initrd: initrd?.record, argv: command.arguments,
            pid: pid, qemuVersion: qmp.qemuVersion, ramPath: ramPath, disk: disk, diskScratch: scratch, persistentDisk: persistent,
            sandboxUser: sandbox.user)
        if persistent != nil, disk.first?.format == "qcow2" { DiskBitmap.adopt(qmp, node: disk[0].node) }
        qmp.close()
        do {
            try state.save(layout.stateFile)
        } catch {
            kill(pid, SIGKILL)
            _ = QEMUProcess.waitForExit(pid, timeout: 5)
            throw error
        }
        launched = true
        try registry.setPersistentDisk(persistent, for: options.name)
        try startRSDMServer(name: options.name, vmId: id, qemuPid: pid)
        try history(options.name).append(.boot, detail: "pid \(pid), \(spec.memoryMiB) MiB")

        progress?("waiting for the guest agent")
        let agent = AgentClient(socketPath: layout.agentSocket, timeout: agentTimeout)
        defer { agent.close() }
        do {
            _ = try agent.waitUntilReady(timeout: options.agentTimeout)
        } catch {
            // A guest sparc built has its agent: then it is slow or stuck, not missing anything.
            let why =
                image != nil
                ? "the guest has not finished booting (under TCG many CPUs or much memory boot slowly: raise --agent-timeout)"
                : "is the sparc-guest package installed in the guest ('apt install ./sparc-guest_VERSION_amd64.deb', from 'make guest-package')?"
            throw SparcError(
                "VM '\(options.name)' started (pid \(pid)) but its agent did not answer within \(Int(options.agentTimeout)) s: \(why) Look with 'sparc console --name \(options.name)'; end it with 'sparc vm stop --name \(options.name)'"
            )
        }
        return state
    }

    /// Opens the disk chain's files for QEMU and starts it; our copies of the descriptors
    /// are closed once QEMU holds its own.
    public func launch(_ command: QEMUCommand, layout: RuntimeLayout) throws -> (pid: pid_t, qmp: QMPClient) {
        var inherit: [Int32: Int32] = [:]
        defer { inherit.values.forEach { close($0) } }
        for d in command.descriptors {
            let fd = open(d.path, (d.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
            guard fd >= 0 else { throw SparcError.posix("cannot open disk image", d.path) }
            inherit[d.fd] = fd
        }
        inherit[QEMUCommand.ramDescriptor] = try GuestRAM.openChecked(command.ramPath)
        // One description per layer carries the locks (the read-write one where there is one):
        // two of ours would see each other as another user.
        for layer in command.disk {
            let chosen = command.descriptors.last { $0.path == layer.path }!
            try DiskLock.lock(inherit[chosen.fd]!, path: layer.path, writable: chosen.writable)
        }
        return try QEMUProcess.launch(command.arguments, layout: layout, inherit: inherit)
    }

    /// Refuses to start or restore when the RAM directory (/dev/shm) cannot hold the guest's
    /// RAM, counting what a VM being replaced frees.
    func checkMemoryAvailable(_ spec: MachineSpec, replacing: VMState? = nil) throws {
        guard let available = GuestRAM.freeBytes() else { return }
        let free = available + (replacing?.spec.memoryBytes ?? 0)
        if free < spec.memoryBytes {
            throw SparcError("\(GuestRAM.baseDirectory) has \(free >> 20) MiB free, the guest needs \(spec.memoryMiB) MiB")
        }
    }

    /// The format (`qcow2` or `raw`) and virtual size of an operator's disk image.
    func imageInfo(_ path: String) throws -> (format: String, size: Int64) {
        let qemuImg = try QEMUProcess.locateQemuImg()
        let info = try Subprocess.run([qemuImg, "info", "--output=json", "-U", path])
        guard info.status == 0,
            let obj = try? JSONSerialization.jsonObject(with: info.stdout) as? [String: Any],
            let format = obj["format"] as? String, let size = (obj["virtual-size"] as? NSNumber)?.int64Value
        else { throw SparcError("cannot read disk image \(path): \(info.stderrSummary)") }
        guard ["qcow2", "raw"].contains(format) else {
            throw SparcError("disk image \(path) is in \(format) format; sparc runs qcow2 and raw images (convert it with qemu-img convert -O qcow2)")
        }
        return (format, size)
    }

    /// Creates a qcow2 overlay on `base` without opening it (it may be locked by the running VM).
    func createOverlay(_ path: String, on base: DiskLayer) throws {
        let qemuImg = try QEMUProcess.locateQemuImg()
        let r = try Subprocess.run([
            qemuImg, "create", "-q", "-u", "-f", "qcow2", "-F", base.format, "-b", base.path, path, String(base.virtualSize),
        ])
        guard r.status == 0 else { throw SparcError("cannot create disk overlay \(path): \(r.stderrSummary)") }
    }

    /// Stops a VM: flushes the guest's file systems, ends QEMU, removes runtime files.
    /// Stops a VM: the guest shuts down cleanly (its agent starts the shutdown, or the ACPI power
    /// button where the agent does not answer) and QEMU exits on its own; after `timeout` seconds,
    /// or at once with `force`, QEMU quits instead. Returns how the VM went down.
    @discardableResult
    public func stop(name: String, force: Bool = false, timeout: TimeInterval = 90, progress: Progress? = nil) throws -> StopReport {
        try exclusively(name, doing: "vm stop") { try stopLocked(name: name, force: force, timeout: timeout, progress: progress) }
    }

    /// Stops `name` with its lock held; `reason` replaces the history's account of a QEMU that had already exited.
    func stopLocked(name: String, force: Bool, timeout: TimeInterval, progress: Progress?, reason: String? = nil) throws -> StopReport {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile) else { throw notFound(name) }
        var state = try VMState.load(layout.stateFile)
        let wasRunning = QEMUProcess.isQEMU(state.pid)
        if wasRunning { recoverFromDeadFreeze(name, layout: layout) }
        if wasRunning, state.persistentDisk != nil, state.disk.count > 1,
            let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 10)
        {
            // An overlay left by an interrupted checkpoint goes back into the VM's own file first.
            try? commitOverlays(&state, qmp: qmp, layout: layout, progress: progress)
            qmp.close()
        }
        if wasRunning, state.persistentDisk != nil, state.disk.count == 1, state.disk[0].format == "qcow2",
            let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 10)
        {
            // The disk's dirty bitmaps go into its image at this clean close (DiskBitmap).
            DiskBitmap.persist(qmp, node: state.disk[0].node)
            qmp.close()
        }
        var report = StopReport(how: wasRunning ? .quit : .alreadyExited)
        if wasRunning && !force {
            report = shutDownGuest(name: name, pid: state.pid, layout: layout, timeout: timeout, progress: progress)
        }
        if wasRunning && report.how != .shutDown {
            progress?("stopping \(name)")
            if force, let agent = try? agentClient(name, timeout: 5) {
                // Even a forced stop lets the guest write its caches first; a frozen or hung guest is not waited for.
                _ = try? agent.exec(ExecRequest(argv: ["sync"], timeoutMs: 5000), timeout: 6)
                agent.close()
            }
            if let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 5) {
                _ = try? qmp.execute("quit")
                qmp.close()
            }
            if !QEMUProcess.waitForExit(state.pid, timeout: 10) {
                kill(state.pid, SIGTERM)
                if !QEMUProcess.waitForExit(state.pid, timeout: 5) {
                    kill(state.pid, SIGKILL)
                    _ = QEMUProcess.waitForExit(state.pid, timeout: 5)
                }
            }
        }
        if !wasRunning || state.disk.count > 1 { recoverDisk(state) }
        cleanUp(layout, ramPath: state.ramPath)
        let detail: String? =
            switch report.how {
            case .shutDown: "guest shut down (\(report.method ?? "poweroff")) in \(String(format: "%.1f", report.seconds)) s"
            case .quit: force ? "forced: QEMU quit without a guest shutdown" : report.note
            case .alreadyExited: reason ?? "QEMU had exited on its own"
            }
        try history(name).append(wasRunning ? .stop : .shutdown, detail: detail)
        return report
    }

    /// Asks the guest to power off and waits for QEMU to exit; `.quit` when it did not in time.
    func shutDownGuest(name: String, pid: pid_t, layout: RuntimeLayout, timeout: TimeInterval, progress: Progress?) -> StopReport {
        let began = Date()
        var method: String
        // A VM left paused (a checkpoint that was killed) must run to shut down.
        if let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 5) {
            if let status = try? qmp.status(), status == "paused" || status == "postmigrate" {
                progress?("resuming \(name) to shut it down")
                _ = try? qmp.execute("cont")
            }
            qmp.close()
        }
        if let agent = try? agentClient(name, timeout: 5), let started = try? agent.powerOff() {
            method = started.command.joined(separator: " ")
            agent.close()
        } else if let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 5), (try? qmp.execute("system_powerdown")) != nil {
            // No agent: the ACPI power button, which systemd-logind and acpid act on.
            method = "ACPI power button"
            qmp.close()
        } else {
            return StopReport(how: .quit, note: "neither the agent nor QMP answered; QEMU quit")
        }
        progress?("shutting down \(name) (\(method))")
        if QEMUProcess.waitForExit(pid, timeout: timeout) {
            return StopReport(how: .shutDown, method: method, seconds: Date().timeIntervalSince(began))
        }
        return StopReport(
            how: .quit, method: method,
            note: "the guest did not power off within \(Int(timeout)) s (\(method)); QEMU quit")
    }

    /// Removes a VM's runtime directory and RAM file.
    func cleanUp(_ layout: RuntimeLayout, ramPath: String?) {
        GuestRAM.remove(ramPath)
        FileSystem.removeTree(layout.directory)
    }

    func notFound(_ name: String) -> VMError { .notRunning(name: name) }

    func ensureNotRunning(_ name: String) throws {
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile) else {
            FileSystem.removeTree(layout.directory)
            return
        }
        let state = try? VMState.load(layout.stateFile)
        if let state, QEMUProcess.isQEMU(state.pid) {
            throw VMError.alreadyRunning(name: name, pid: state.pid)
        }
        // A VM that died: its own disk gets its overlays back and a check, then its files go.
        if let state { recoverDisk(state) }
        cleanUp(layout, ramPath: state?.ramPath)
    }

    /// The recorded state of a running VM, or a clear error.
    public func running(_ name: String) throws -> VMState {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        removeHalfStartedVM(name, layout: layout)
        guard FileSystem.exists(layout.stateFile) else { throw notFound(name) }
        let state = try VMState.load(layout.stateFile)
        guard QEMUProcess.isQEMU(state.pid) else {
            throw VMError.qemuGone(name: name, pid: state.pid)
        }
        recoverFromDeadFreeze(name, layout: layout)
        return state
    }

    /// A restore killed before its guest ran leaves its marker behind (and perhaps a QEMU
    /// waiting for its device state, a RAM file): the next command for the VM removes them
    /// and logs it. A restore still at work is left alone.
    func removeHalfStartedVM(_ name: String, layout: RuntimeLayout) {
        guard let text = try? String(contentsOfFile: layout.restoringMarker, encoding: .utf8) else { return }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 1)
            if f.count == 2 { fields[String(f[0])] = String(f[1]) }
        }
        guard let restorer = fields["restore"].flatMap({ pid_t($0) }), kill(restorer, 0) != 0 && errno == ESRCH else { return }
        if let qemu = fields["qemu"].flatMap({ pid_t($0) }), QEMUProcess.isQEMU(qemu) {
            kill(qemu, SIGKILL)
            _ = QEMUProcess.waitForExit(qemu, timeout: 5)
        }
        // The marker goes with the runtime directory.
        cleanUp(layout, ramPath: fields["ram"])
        try? history(name).append(.recovered, detail: "restore (pid \(restorer)) died before the guest ran; its half-started VM was removed")
    }

    /// A checkpoint killed while QEMU was paused leaves its marker behind: whichever sparc
    /// command touches the VM next resumes the guest and logs it (the agent's lease thaws
    /// the processes by itself).
    @discardableResult
    func resumeAfterDeadCheckpoint(_ name: String, layout: RuntimeLayout, by who: String = "the next sparc command") -> String? {
        guard let text = try? String(contentsOfFile: layout.pausedMarker, encoding: .utf8), let pid = pid_t(text.trimmed) else { return nil }
        guard !ProcessLiveness.isRunning(pid) else { return nil }  // its checkpoint is still at work
        guard let qmp = try? QMPClient(socketPath: layout.qmpSocket) else { return nil }
        defer { qmp.close() }
        // A live copy's migration (still copying, or stopped at its last round waiting for
        // sparc) is cancelled: QEMU then runs the guest again itself.
        LiveMemoryCopy.removeAbandoned()
        let cancelledCopy = LiveMemoryCopy.cancelLeftOver(qmp) != nil
        // A copy killed after its last round leaves QEMU set to wait at the next one.
        LiveMemoryCopy.resetCapabilities(qmp)
        let status = try? qmp.status()
        unlink(layout.pausedMarker)
        // Paused, or stopped after the device state was saved ("postmigrate"): both resume with cont.
        let resumed = (status == "paused" || status == "postmigrate") && (try? qmp.execute("cont")) != nil
        guard resumed || (cancelledCopy && status == "running") else { return nil }
        let what = "checkpoint (pid \(pid)) died with the guest paused; resumed by \(who)"
        try? history(name).append(.recovered, detail: what)
        return what
    }

    public func status(name: String) throws -> VMStatus {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        removeHalfStartedVM(name, layout: layout)
        guard FileSystem.exists(layout.stateFile), let state = try? VMState.load(layout.stateFile) else {
            throw notFound(name)
        }
        var status = VMStatus(
            name: name, state: "stopped", pid: state.pid, memoryMiB: state.spec.memoryMiB, accel: state.spec.accel.rawValue,
            qemuVersion: state.qemuVersion, startedAt: state.startedAt, restoredFrom: state.restoredFrom,
            agent: nil, sandbox: "seccomp" + (state.sandboxUser.map { ", runs as \($0)" } ?? ""),
            runtimeDirectory: layout.directory)
        guard QEMUProcess.isQEMU(state.pid) else {
            status.state = "dead"
            return status
        }
        status.recovered = recoverFromDeadFreeze(name, layout: layout)
        // A checkpoint or restore at work holds QEMU's monitor and the agent's port (each serves
        // one client): its marker says what it does to the guest.
        if let marker = FreezeMarker.read(layout.atWorkMarker), marker.writerAlive {
            status.state = FileSystem.exists(layout.pausedMarker) ? "paused" : "running"
            status.agent = "busy with the \(marker.operation.rawValue)"
            status.guest = "frozen: " + Self.whyFrozen(marker, leaseLeft: nil, name: name)
                + " (Ctrl-C in its terminal or 'kill \(marker.pid)' cancels it: the guest then runs on)"
            return status
        }
        if let qmp = try? QMPClient(socketPath: layout.qmpSocket, timeout: 3) {
            status.state = (try? qmp.status()) ?? "unknown"
            qmp.close()
        } else {
            status.state = "unresponsive"
        }
        if status.state == "running" {
            let agent = AgentClient(socketPath: layout.agentSocket, timeout: 3)
            if let hello = try? agent.hello() {
                status.agent = "sparc-agent \(hello.agentVersion)"
                status.guest = hello.frozen ? "frozen: " + Self.whyFrozen(FreezeMarker.read(layout.atWorkMarker), leaseLeft: hello.leaseLeft, name: name) : "running"
            } else {
                status.agent = "not answering"
            }
            agent.close()
        }
        return status
    }

    /// Why a guest is frozen, in words for `vm status`.
    static func whyFrozen(_ marker: FreezeMarker?, leaseLeft: Double?, name: String) -> String {
        let lease = leaseLeft.map { "; it thaws by itself in \(Int($0.rounded(.up))) s" } ?? ""
        guard let marker else {
            return "no sparc command holds the freeze (the agent was restarted, or another host's sparc froze it)\(lease)"
        }
        if marker.writerAlive { return "\(marker.operation.rawValue) (pid \(marker.pid)) is at work; it thaws the guest when done" }
        return "\(marker.operation.rawValue) (pid \(marker.pid)) died; the agent did not answer the thaw\(lease)"
    }

    /// Every VM with a runtime directory, running or not.
    public func list() -> [VMStatus] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        return names.compactMap { name in
            guard VMName.isValid(name), FileSystem.exists(layout(name).stateFile) else { return nil }
            return try? status(name: name)
        }
    }

    /// A client for a running VM's agent.
    public func agentClient(_ name: String, timeout: TimeInterval? = nil) throws -> AgentClient {
        try driver.agentClient(name, timeout: timeout ?? agentTimeout, manager: self)
    }
}

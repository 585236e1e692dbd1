import Foundation
import GuestQuery
import Hypervisor
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
    /// How long to wait for the guest agent before giving up.
    public var agentTimeout: TimeInterval = 120
    public init() {}
}

/// Starts, stops and inspects sparc's QEMU virtual machines.
public final class VMManager {
    public let root: String
    public var agentTimeout: TimeInterval

    public init(root: String = RuntimeLayout.defaultRoot(), agentTimeout: TimeInterval = 10) {
        self.root = root
        self.agentTimeout = agentTimeout
    }

    public func layout(_ name: String) -> RuntimeLayout { RuntimeLayout(name: name, root: root) }

    /// Progress messages ("booting", "copying memory 40%") for the operator.
    public typealias Progress = (String) -> Void

    // MARK: - Lifecycle

    /// Boots a VM and returns once its agent answers.
    @discardableResult
    public func start(_ options: StartOptions, progress: Progress? = nil) throws -> VMState {
        try RuntimeLayout.validate(name: options.name)
        let layout = layout(options.name)
        try ensureNotRunning(options.name)
        let qemu = try QEMUProcess.locateBinary()

        var spec = MachineSpec(
            memoryMiB: options.memoryMiB, cpus: options.cpus, accel: options.accel ?? Accelerator.detect())
        var diskBase = options.disk.map(FileSystem.absolute)
        if let kernel = options.kernel {
            spec.kernel = FileSystem.absolute(kernel)
            spec.initrd = options.initrd.map(FileSystem.absolute)
            spec.append = options.append
        } else {
            if options.initrd != nil || options.append != nil {
                throw SparcError("--initrd and --append need --kernel")
            }
            let guest = try GuestImage.locate()
            spec.kernel = guest.kernel
            spec.initrd = guest.initrd
            spec.append = GuestImage.defaultAppend
            if diskBase == nil && FileSystem.exists(guest.dataDisk) { diskBase = guest.dataDisk }
        }
        if let diskBase, !FileSystem.exists(diskBase) { throw SparcError("disk image \(diskBase) does not exist") }
        spec.hasDisk = diskBase != nil
        try spec.validate()
        try checkMemoryAvailable(spec)

        try FileSystem.makeDirectories(root)
        FileSystem.removeTree(layout.directory)
        try FileSystem.makeDirectory(layout.directory)
        unlink(layout.ramPath)
        var launched = false
        defer { if !launched { cleanUp(layout) } }

        var overlays: [String] = []
        if let diskBase {
            let overlay = layout.directory + "/disk-1.qcow2"
            try createOverlay(overlay, backing: diskBase)
            overlays.append(overlay)
        }
        let command = QEMUCommand(spec: spec, layout: layout, diskPath: overlays.last, binary: qemu)
        progress?("booting \(options.name) (\(spec.memoryMiB) MiB, \(spec.accel.rawValue))")
        let (pid, qmp) = try QEMUProcess.launch(command.arguments, layout: layout)
        let state = VMState(
            name: options.name, spec: spec, argv: command.arguments, pid: pid, qemuVersion: qmp.qemuVersion,
            diskBase: diskBase, diskActive: overlays.last, diskOverlays: overlays)
        qmp.close()
        try state.save(layout.stateFile)
        launched = true
        startRSDMServer(options.name)
        try HistoryLog(vm: options.name).append(.boot, detail: "pid \(pid), \(spec.memoryMiB) MiB")

        progress?("waiting for the guest agent")
        let agent = AgentClient(socketPath: layout.agentSocket, timeout: agentTimeout)
        defer { agent.close() }
        do {
            _ = try agent.waitUntilReady(timeout: options.agentTimeout)
        } catch {
            throw SparcError(
                "VM '\(options.name)' started (pid \(pid)) but its agent did not answer within \(Int(options.agentTimeout)) s; inspect it with 'sparc console --name \(options.name)' or end it with 'sparc vm stop --name \(options.name)'"
            )
        }
        return state
    }

    /// Refuses to start when the machine cannot hold the guest RAM in /dev/shm.
    func checkMemoryAvailable(_ spec: MachineSpec) throws {
        var fs = statvfs()
        if statvfs("/dev/shm", &fs) == 0 {
            let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
            if free < spec.memoryBytes {
                throw SparcError("/dev/shm has \(free >> 20) MiB free, the guest needs \(spec.memoryMiB) MiB")
            }
        }
    }

    func createOverlay(_ path: String, backing: String) throws {
        let qemuImg = try QEMUProcess.locateQemuImg()
        let info = try Subprocess.run([qemuImg, "info", "--output=json", "-U", backing])
        guard info.status == 0,
            let obj = try? JSONSerialization.jsonObject(with: info.stdout) as? [String: Any],
            let format = obj["format"] as? String
        else { throw SparcError("cannot read disk image \(backing): \(info.stderrSummary)") }
        let r = try Subprocess.run([qemuImg, "create", "-q", "-f", "qcow2", "-F", format, "-b", backing, path])
        guard r.status == 0 else { throw SparcError("cannot create disk overlay \(path): \(r.stderrSummary)") }
    }

    /// Stops a VM: flushes the guest's file systems, ends QEMU, removes runtime files.
    public func stop(name: String, progress: Progress? = nil) throws {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile) else { throw notFound(name) }
        let state = try VMState.load(layout.stateFile)
        let wasRunning = QEMUProcess.isQEMU(state.pid)
        if wasRunning {
            progress?("stopping \(name)")
            // Let the guest write its caches to the data disk first; a frozen or hung guest is not waited for.
            if let agent = try? agentClient(name, timeout: 5) {
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
        cleanUp(layout)
        try HistoryLog(vm: name).append(wasRunning ? .stop : .shutdown, detail: wasRunning ? nil : "QEMU had exited on its own")
    }

    /// Removes a VM's runtime directory and RAM file.
    func cleanUp(_ layout: RuntimeLayout) {
        unlink(layout.ramPath)
        FileSystem.removeTree(layout.directory)
    }

    func notFound(_ name: String) -> SparcError {
        SparcError("no VM named '\(name)' is running (see 'sparc vm list')")
    }

    func ensureNotRunning(_ name: String) throws {
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile) else { return }
        if let state = try? VMState.load(layout.stateFile), QEMUProcess.isQEMU(state.pid) {
            throw SparcError("VM '\(name)' is already running (pid \(state.pid)); stop it first with 'sparc vm stop --name \(name)'")
        }
        cleanUp(layout)  // stale files from a VM that died
    }

    /// The recorded state of a running VM, or a clear error.
    public func running(_ name: String) throws -> VMState {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile) else { throw notFound(name) }
        let state = try VMState.load(layout.stateFile)
        guard QEMUProcess.isQEMU(state.pid) else {
            throw SparcError("VM '\(name)' is not running (its QEMU process \(state.pid) is gone; 'sparc vm stop --name \(name)' cleans up)")
        }
        return state
    }

    public func status(name: String) throws -> VMStatus {
        try RuntimeLayout.validate(name: name)
        let layout = layout(name)
        guard FileSystem.exists(layout.stateFile), let state = try? VMState.load(layout.stateFile) else {
            throw notFound(name)
        }
        var status = VMStatus(
            name: name, state: "stopped", pid: state.pid, memoryMiB: state.spec.memoryMiB, accel: state.spec.accel.rawValue,
            qemuVersion: state.qemuVersion, startedAt: state.startedAt, restoredFrom: state.restoredFrom,
            agent: nil, runtimeDirectory: layout.directory)
        guard QEMUProcess.isQEMU(state.pid) else {
            status.state = "dead"
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
                status.agent = "sparc-agent \(hello.agentVersion)" + (hello.frozen ? " (guest frozen)" : "")
            } else {
                status.agent = "not answering"
            }
            agent.close()
        }
        return status
    }

    /// Every VM with a runtime directory, running or not.
    public func list() -> [VMStatus] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        return names.compactMap { name in
            guard FileSystem.exists(layout(name).stateFile) else { return nil }
            return try? status(name: name)
        }
    }

    /// A client for a running VM's agent.
    public func agentClient(_ name: String, timeout: TimeInterval? = nil) throws -> AgentClient {
        _ = try running(name)
        return AgentClient(socketPath: layout(name).agentSocket, timeout: timeout ?? agentTimeout)
    }
}

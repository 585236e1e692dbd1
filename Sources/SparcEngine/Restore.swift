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
    public var warnings: [String]
    /// What the agent did before the guest ran on (nil when nothing was excluded).
    public var cleanup: CleanupResult?
    /// The VM's restore epoch after this restore (RSDM).
    public var epoch: Int
    /// True when the bundle is older than the VM's newest checkpoint.
    public var rollback: Bool
}

/// How restore treats a bundle's place in the VM's history.
public struct RestorePolicy: Sendable {
    /// Restoring a bundle older than the newest checkpoint rolls the VM back.
    public var allowRollback = false
    /// Restoring a bundle the history does not know.
    public var allowForeign = false
    public init(allowRollback: Bool = false, allowForeign: Bool = false) {
        self.allowRollback = allowRollback
        self.allowForeign = allowForeign
    }
}

extension VMManager {
    /// Rebuilds a VM from a bundle and resumes it.
    ///
    /// Every file is checked against the manifest before anything is started (the RAM image
    /// while it is copied into a new RAM file); a damaged bundle is refused and leaves nothing
    /// behind. The guest resumes frozen, as it was saved, and the agent thaws it.
    public func restore(
        bundle: String, name: String, replace: Bool = false, killExcluded: Bool = true,
        policy: RestorePolicy = RestorePolicy(), progress: Progress? = nil
    ) throws -> RestoreReport {
        let began = Date()
        try RuntimeLayout.validate(name: name)
        let reader = try BundleReader(path: bundle)
        let manifest = reader.manifest
        var warnings: [String] = []
        let layout = layout(name)

        let isRunning = (try? running(name)) != nil
        if isRunning && !replace {
            throw SparcError("VM '\(name)' is running; stop it first or pass --replace to restore over it")
        }
        let qemu = try QEMUProcess.locateBinary()
        let qemuVersion = QEMUProcess.version(binary: qemu)
        if qemuVersion != manifest.qemu.version {
            warnings.append("bundle was saved by QEMU \(manifest.qemu.version), restoring with \(qemuVersion)")
        }
        let spec = manifest.machine
        try checkBootFile(manifest.kernel, what: "kernel")
        try checkBootFile(manifest.initrd, what: "initrd")
        guard let memoryEntry = manifest.file(named: Manifest.memoryFile),
            memoryEntry.size == spec.memoryBytes, manifest.memory.bytes == spec.memoryBytes
        else {
            throw SparcError(
                "bundle memory image does not match the machine's \(spec.memoryMiB) MiB of RAM: bundle is damaged",
                kind: .negative)
        }
        guard manifest.file(named: Manifest.devicesFile) != nil else {
            throw SparcError("bundle has no device state (devices.vmstate)", kind: .negative)
        }
        if spec.hasDisk && manifest.file(named: Manifest.diskFile) == nil {
            throw SparcError("bundle has no disk state although the machine has a disk", kind: .negative)
        }

        progress?("verifying \(Path.base(of: reader.path))")
        let problems = reader.verify(skipContent: [Manifest.memoryFile])
        if !problems.isEmpty {
            throw SparcError(
                "bundle failed verification, not restoring: " + problems.map(\.description).joined(separator: "; "),
                kind: .negative)
        }
        try checkMemoryAvailable(spec)
        let rollback = try checkHistory(reader, policy: policy, warnings: &warnings)

        if isRunning {
            progress?("stopping the running \(name)")
            try stop(name: name)
        } else {
            cleanUp(layout)
        }
        try FileSystem.makeDirectories(root)
        try FileSystem.makeDirectory(layout.directory)
        var launched = false
        var qemuPid: pid_t = 0
        defer {
            if !launched {
                if qemuPid > 0 {
                    kill(qemuPid, SIGKILL)
                    _ = QEMUProcess.waitForExit(qemuPid, timeout: 5)
                }
                cleanUp(layout)
            }
        }

        var diskBase: String?
        var overlays: [String] = []
        if spec.hasDisk {
            // The bundle stays untouched: the VM runs on a copy of its disk state plus an overlay.
            let base = layout.directory + "/disk-base.qcow2"
            let r = try Subprocess.run(["cp", "--sparse=always", reader.file(Manifest.diskFile), base])
            guard r.status == 0 else { throw SparcError("cannot copy the disk state: \(r.stderrSummary)") }
            let overlay = layout.directory + "/disk-1.qcow2"
            try createOverlay(overlay, backing: base)
            diskBase = base
            overlays.append(overlay)
        }

        progress?("loading memory")
        unlink(layout.ramPath)
        try SparseImage.load(
            from: reader.file(Manifest.memoryFile), to: layout.ramPath, expectedSize: memoryEntry.size,
            expectedSHA256: memoryEntry.sha256,
            progress: { done, total in progress?("loading memory \(done * 100 / max(total, 1))%") })

        let command = QEMUCommand(spec: spec, layout: layout, diskPath: overlays.last, incoming: true, binary: qemu)
        progress?("starting QEMU")
        let (pid, qmp) = try QEMUProcess.launch(command.arguments, layout: layout)
        qemuPid = pid
        defer { qmp.close() }
        progress?("loading device state")
        do {
            try qmp.execute(
                "migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": true]]])
            try qmp.execute(
                "migrate-incoming", ["uri": "exec:cat \(shellQuote(reader.file(Manifest.devicesFile)))"])
            try waitForIncoming(qmp, pid: pid, layout: layout)
        } catch let error as SparcError {
            var reason = error.message
            if let qemuSaid = QEMUProcess.lastError(layout) { reason = qemuSaid }
            throw SparcError("QEMU could not load the device state of this bundle: \(reason)")
        }

        var state = VMState(
            name: name, spec: spec, argv: command.arguments, pid: pid, qemuVersion: qmp.qemuVersion, diskBase: diskBase,
            diskActive: overlays.last, diskOverlays: overlays, restoredFrom: reader.path)
        state.startedAt = ISO8601DateFormatter().string(from: Date())
        try state.save(layout.stateFile)
        startRSDMServer(name)

        progress?("resuming")
        try qmp.execute("cont")
        launched = true

        // The guest was frozen when it was saved; the agent (not frozen) thaws it.
        progress?("thawing guest processes")
        let agent = AgentClient(socketPath: layout.agentSocket, timeout: agentTimeout)
        defer { agent.close() }
        var cleanup: CleanupResult?
        do {
            _ = try agent.waitUntilReady(timeout: max(agentTimeout, 30))
            let excluded = manifest.exclusion
            if !excluded.isEmpty {
                // The excluded processes' memory is gone from this image: end them before anything runs.
                progress?(killExcluded ? "ending excluded processes" : "evicting excluded page cache")
                cleanup = try agent.cleanup(
                    CleanupRequest(kill: killExcluded ? excluded.processes : [], evictFiles: excluded.evictFiles, removeFiles: excluded.removeFiles))
                if !killExcluded && !excluded.processes.isEmpty {
                    warnings.append("--no-kill: \(excluded.processes.count) excluded process(es) run on with their memory zeroed")
                }
            }
            // Fresh randomness: vmgenid made the kernel reseed; host entropy is mixed in as well.
            try agent.reseed(Data(secureRandomBytes(64)))
            _ = try agent.thaw()
        } catch {
            throw SparcError(
                "VM '\(name)' was restored (pid \(pid)) but its agent did not answer, so guest processes may still be frozen: \(error)"
            )
        }
        let epoch = try RSDMStore(vm: name).nextEpoch()
        try HistoryLog(vm: name).append(
            rollback ? .rollback : .restore, bundle: reader.path, bundleDigest: manifest.manifestSHA256, epoch: epoch,
            detail: rollback ? "older than the newest checkpoint" : nil)
        return RestoreReport(
            name: name, bundle: reader.path, pid: pid, replaced: isRunning, total: Date().timeIntervalSince(began),
            warnings: warnings + (cleanup?.warnings ?? []), cleanup: cleanup, epoch: epoch, rollback: rollback)
    }

    /// Places the bundle in its VM's history: the newest checkpoint restores freely, an older
    /// one is a rollback (needs `allowRollback`), an unknown one is foreign (needs `allowForeign`).
    func checkHistory(_ reader: BundleReader, policy: RestorePolicy, warnings: inout [String]) throws -> Bool {
        let source = reader.manifest.vmName
        let log = HistoryLog(vm: source)
        if let problems = try? log.verify(), !problems.isEmpty {
            warnings.append("the history of '\(source)' failed verification: \(problems.joined(separator: "; "))")
        }
        let checkpoints = try log.entries().filter { $0.event == .checkpoint }
        let digest = reader.manifest.manifestSHA256
        guard let index = checkpoints.lastIndex(where: { $0.bundleDigest == digest }) else {
            if policy.allowForeign { return false }
            throw SparcError(
                "bundle \(Path.base(of: reader.path)) is not in the history of VM '\(source)' (not checkpointed here, or its manifest was changed); pass --foreign to restore it anyway")
        }
        guard index == checkpoints.count - 1 else {
            if policy.allowRollback { return true }
            let newest = checkpoints.last!
            throw SparcError(
                "bundle \(Path.base(of: reader.path)) is older than the newest checkpoint of '\(source)' (\(Path.base(of: newest.bundle ?? "?")), \(newest.time)): restoring it is a rollback; pass --allow-rollback if that is intended")
        }
        return false
    }

    func checkBootFile(_ file: Manifest.BootFile?, what: String) throws {
        guard let file else { return }
        guard FileSystem.exists(file.path) else {
            throw SparcError("the \(what) this VM booted from (\(file.path)) is gone; restore needs it")
        }
        guard try SHA256Hasher.hex(ofFile: file.path) == file.sha256 else {
            throw SparcError("the \(what) \(file.path) changed since the checkpoint; restore needs the same \(what)")
        }
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

import CheckpointStore
import Foundation
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What a checkpoint wrote, for the operator's summary.
public struct CheckpointReport: Codable, Sendable {
    public var bundle: String
    public var memoryBytes: Int64
    public var memoryDataBytes: Int64
    public var devicesBytes: Int64
    public var diskBytes: Int64?
    /// Time the guest was paused (stop to cont), in seconds.
    public var downtime: Double
    public var total: Double
    public var stopped: Bool
    /// What was left out, as recorded in the manifest (empty without exclusion).
    public var exclusion: Manifest.Exclusion
    /// The excluded processes' names as the live guest gave them (never written to the bundle).
    public var liveNames: [Int32: GuestText] = [:]
    /// The session each excluded terminal resolved to (pty numbers are reused: say whose it was).
    public var ttySessions: [TTYSession] = []
    /// What was done with free memory and swap (nil from before sparc left them out).
    public var freeMemory: Manifest.FreeMemory?
    /// How the disk state was taken into the store: incrementally since which checkpoint, or
    /// read whole and why (nil: copied into the bundle with qemu-img).
    public var diskNote: String?
    /// Bytes of the disk read for the store (nil: not stored that way).
    public var diskReadBytes: Int64?
    /// The stored checkpoint only the writes since were read (nil: the whole disk was read).
    public var diskChangedSince: String?
    /// Memory was copied while the guest ran (false: the guest was paused for the copy).
    public var liveCopied = false
    /// The pages QEMU's dirty log missed, which the check at the stop copied again (nil: not
    /// checked, because the copy was paused or QEMU's log is exact for this RAM, see
    /// `LiveMemoryCopy.mustCheck`).
    public var liveCopyRepairedPages: Int?
    /// How long QEMU took to set the live copy up, in seconds (nil: not copied live): its
    /// first sync of the dirty log, one step per page written since its last copy, with its
    /// global lock held, so the guest's interrupts and I/O wait meanwhile although it runs.
    public var liveCopySetup: Double?
}

extension VMManager {
    /// Saves a running VM into a new bundle at `output`.
    ///
    /// The guest is frozen by its agent and paused by QEMU while the device state and the
    /// RAM are copied; the RAM goes straight from the shared RAM file into a sparse image
    /// (zero pages become holes) and never through QEMU's migration stream.
    /// Memory the guest holds free (and unused swap slots) is left out unless `saveFreeMemory`.
    public func checkpoint(
        name: String, output: String, stopAfter: Bool = false, exclusion: ExclusionRequest? = nil, saveFreeMemory: Bool = false,
        cancel: Cancellation? = nil, progress: Progress? = nil, store: StoreDestination? = nil
    ) throws -> CheckpointReport {
        let driver = driver
        try driver.validate(name: name)
        return try exclusively(name, doing: "checkpoint") {
            do {
                return try runCheckpoint(
                    driver.machine(name, manager: self), output: output, stopAfter: stopAfter, exclusion: exclusion, saveFreeMemory: saveFreeMemory,
                    cancel: cancel, progress: progress, store: store)
            } catch {
                throw driver.explainCheckpointFailure(name, cause: error, manager: self) ?? error
            }
        }
    }

    /// After a command failed: when the reason is that the VM's QEMU is gone (killed, crashed),
    /// stops what is left as `vm stop` would (the disk's overlays written back into the VM's
    /// own file, the RAM file and runtime directory removed, the history told) and returns the
    /// error that says so; nil while QEMU still runs. The caller holds the VM's lock.
    func cleanUpAfterQEMUDied(_ name: String, during what: String, cause: Error, outcome: String) -> SparcError? {
        let layout = layout(name)
        guard let state = try? VMState.load(layout.stateFile), !QEMUProcess.isQEMU(state.pid) else { return nil }
        var status = ""
        var raw: Int32 = 0
        if waitpid(state.pid, &raw, WNOHANG) == state.pid { status = ", " + Subprocess.describe(raw) }
        let said = QEMUProcess.lastError(layout).map { "; QEMU said: \($0.terminalSafe)" } ?? ""
        _ = try? stopLocked(name: name, force: true, timeout: 5, progress: nil, reason: "QEMU exited during \(what)")
        return SparcError(
            "QEMU of VM '\(name)' (pid \(state.pid)\(status)) exited during \(what)\(said); \(outcome), and the VM's runtime state was cleaned up (its disk keeps what the guest wrote). First error: \(cause)")
    }

    /// The one checkpoint routine, for every kind of `Machine`: freeze and collect, pause,
    /// divert the disk, save the device state and the memory (the exclusion and free memory
    /// left out), resume and thaw, save the disk state, hash, seal, record; on any failure or
    /// cancel, undo every step taken (resume, thaw, the disk merged back, no partial bundle)
    /// and say in one line what could not be undone.
    func runCheckpoint(
        _ machine: Machine, output: String, stopAfter: Bool, exclusion: ExclusionRequest?, saveFreeMemory: Bool, cancel: Cancellation?,
        progress: Progress?, store: StoreDestination? = nil
    ) throws -> CheckpointReport {
        let name = machine.name
        let outcome = "the \(machine.noun) runs on, no bundle was written"
        // Cancelling stops at the next phase boundary; the failure path resumes the guest
        // and removes the partial bundle.
        func checkCancelled() throws {
            if cancel?.isCancelled == true { throw Self.cancelled(outcome) }
        }
        let began = Date()
        let layout = machine.layout
        let writer = try BundleWriter(path: output)
        var ownFiles: [String] = []
        let agent = AgentClient(socketPath: machine.agentSocket, timeout: agentTimeout)
        agent.cancel = cancel
        defer { agent.close() }

        // Console input waits from before the collection until the guest runs again: nothing
        // typed may reach a terminal after its buffers were collected and before the pause.
        var inputHold: FileLock? = try FileLock(layout.inputHold)
        defer { withExtendedLifetime(inputHold) {} }

        var guardian: Guardian?
        defer { guardian?.release() }
        var thawOnFailure = false
        var paused = false
        var committed = false
        var live: LiveMemoryCopy?
        var liveFinished = false
        var liveUsed = false
        var thawedEarly = false
        var liveRepairedPages: Int?
        var liveSetup: Int?
        do {
            ownFiles = try machine.writeOwnMembers(writer)
            progress?("asking the guest agent")
            let hello = try agent.hello()
            let excluding = exclusion.map { !$0.isEmpty } ?? false
            // The disk's next overlay is made now, so the pause only switches to it.
            try machine.prepareDiskDiversion()
            // Should this process die from here until the thaw, its guardian (else the next
            // command) resumes the machine, merges its disk back and thaws the guest within a second.
            guardian = Guardian.watch(vm: name, connect: machine.connect)
            try FreezeMarker.mine(.checkpoint, staging: writer.stagingPath).write(layout.atWorkMarker)
            // From here on a failure thaws (collect freezes the guest itself).
            thawOnFailure = true
            // With nothing left out, memory is copied while the guest runs and QEMU stops it
            // only for the last round (LiveMemoryCopy); else it is paused for the copy.
            let liveBlock = excluding || !LiveMemoryCopy.enabled ? nil : machine.liveRAMBlock
            let liveDirectory =
                liveBlock == nil
                ? nil : LiveMemoryCopy.directory(for: machine.ramBytes, ramAllocated: try Self.allocatedBytes(of: machine), staging: writer.stagingPath)
            let copiesLive = liveBlock != nil && liveDirectory != nil
            // A paused copy's owner map is taken frozen, so it names the owners at the pause.
            // A live copy's processes are not frozen at all: they run on until QEMU's stop,
            // seconds after any map, so freezing them for the map (seconds at 1 GiB under
            // TCG) would buy no exactness; its owners are those of moments before the stop.
            if !excluding && !copiesLive {
                progress?(.init(.freezing, "freezing guest processes"))
                _ = try agent.freeze(lease: Self.freezeLease)
            }
            let collected = try collectForCheckpoint(
                agent: agent, exclusion: excluding ? exclusion : nil, saveFreeMemory: saveFreeMemory, ramBytes: machine.ramBytes,
                checkCancelled: checkCancelled, progress: progress)
            let plan = collected.plan

            FaultPoint.reached("checkpoint-after-collect")
            if copiesLive, let block = liveBlock, let directory = liveDirectory {
                // Nothing is left out, so nothing must stay put while memory is copied: the
                // processes run on through the copy. The bundle is still of one instant, QEMU's stop.
                thawOnFailure = false
                agent.cancel = nil
                thawedEarly = true
                inputHold = nil
                // The agent's port is let go before the copy: memory taken while a host client
                // was connected would restore an agent in the middle of a session with a host
                // that is gone, and it would not answer the restore (as at the pause below).
                agent.close()
                try machine.expectPause()
                progress?(.init(.copyingMemory, "copying memory while the guest runs"))
                do {
                    live = try LiveMemoryCopy.start(
                        monitor: machine.monitor, ramBlock: block, ramBytes: Int64(machine.ramBytes), directory: directory,
                        devices: writer.file(Manifest.devicesFile))
                    try live!.waitForStop(cancel: cancel, progress: { progress?(.init(.copyingMemory, $0)) })
                } catch where cancel?.isCancelled != true && (error as? SparcError)?.posixCode != ECANCELED {
                    // QEMU could not copy live (a capability it refuses, a stream sparc does not
                    // read): the guest is paused for the copy instead, as before.
                    live?.abandon()
                    live = nil
                    unlink(writer.file(Manifest.devicesFile))
                    progress?(.init(.copyingMemory, "copying memory while the guest runs failed (\(error)); pausing it for the copy"))
                    try machine.pause()
                }
            } else {
                try machine.pause()
            }
            paused = true
            let pausedAt = live?.stoppedAt ?? Date()
            // SPARC_TRACE: where the pause went, phase by phase, from the stop.
            var pauseTrace: [(String, Date)] = [("stop noticed", Date())]
            // Into the store: the disk's writes are counted from this instant, for the next checkpoint.
            if let store { try machine.trackDiskWrites(as: DiskBitmap.name(since: store.name)) }
            let frozenLayer = try machine.divertDisk { target in
                try FreezeMarker.mine(.checkpoint, staging: writer.stagingPath, diverted: target).write(layout.atWorkMarker)
            }
            // Paused, the disk on an overlay: what a guardian has most to undo.
            FaultPoint.reached("checkpoint-after-pause")
            pauseTrace.append(("disk diverted", Date()))

            try checkCancelled()
            progress?(.init(.savingDevices, "saving device state"))
            if let live {
                // The last round of memory and the devices, into the copy and the device state.
                _ = try live.finish()
                liveSetup = live.setupMilliseconds
                liveFinished = true
                liveUsed = true
                pauseTrace.append(("last round and devices", Date()))
                // Still stopped: where QEMU's dirty log can miss writes, the copy is checked
                // against the RAM itself.
                if LiveMemoryCopy.mustCheck(ramBytes: machine.ramBytes, accel: machine.manifestHeader().machine.accel) {
                    let ram = try machine.openRAM()
                    defer { close(ram) }
                    let missed = try live.repair(against: ram, bytes: Int64(machine.ramBytes))
                    liveRepairedPages = missed
                    pauseTrace.append(("copy checked", Date()))
                    if missed > 0 { progress?(.init(.savingDevices, "the copy missed \(missed) page(s) the guest wrote; copied again from the stopped guest")) }
                }
            } else {
                try saveDeviceState(qmp: machine.monitor, to: writer.file(Manifest.devicesFile))
                pauseTrace.append(("devices saved", Date()))
            }
            FaultPoint.reached("checkpoint-after-devices")

            // Resumes the guest and thaws its processes (the input held meanwhile goes through).
            var resumedAt: Date?
            func runAgain() throws {
                try machine.resume()
                resumedAt = Date()
                paused = false
                FaultPoint.reached("checkpoint-after-resume")
                guard !thawedEarly else { return }
                progress?(.init(.thawing, "thawing guest processes"))
                thawOnFailure = false
                agent.cancel = nil
                try Self.thawAfterCheckpoint(agent)
                inputHold = nil
            }
            // The copy is the memory at the pause: the guest runs on while it is read.
            if live != nil, !stopAfter { try runAgain() }
            try checkCancelled()
            let ramFD = try live.map { dup($0.ramFile) } ?? machine.openRAM()
            defer { close(ramFD) }
            let saved = try saveMemory(
                ramFD: ramFD, ramPath: live?.path ?? machine.ramPath, ramBytes: machine.ramBytes, collected: collected, writer: writer,
                progress: progress, cancel: cancel)
            let stats = saved.stats
            live = nil
            try checkCancelled()
            FaultPoint.reached("checkpoint-after-memory")
            if paused { pauseTrace.append(("memory copied", Date())) }

            if !stopAfter && paused { try runAgain() }
            let downtime = (resumedAt ?? Date()).timeIntervalSince(pausedAt)
            if let resumedAt, let trace = ProcessInfo.processInfo.environment["SPARC_TRACE"], !trace.isEmpty {
                var last = pausedAt
                let steps = (pauseTrace + [("resumed", resumedAt)]).map { step -> String in
                    defer { last = step.1 }
                    return "\(step.0) +\(Int(step.1.timeIntervalSince(last) * 1000))"
                }
                printError("pause phases (ms, from QEMU's stop): " + steps.joined(separator: ", ") + (liveSetup.map { "; QEMU's setup of the live copy \($0) ms" } ?? ""))
            }

            try checkCancelled()
            var files = [Manifest.memoryFile, Manifest.devicesFile, Manifest.ownersFile] + ownFiles
            var storedDisk: (entry: Manifest.FileEntry, note: String, read: Int64, since: String?)?
            if let store, frozenLayer != nil, let frozen = try machine.openFrozenDisk(stored: try storedNames(of: name, in: store.store), progress: progress) {
                storedDisk = try storeFrozenDisk(frozen, into: store, vm: name, plan: plan, freeSlots: saved.swapRanges, progress: progress, cancel: cancel)
                machine.finishFrozenDisk(succeeded: true)
            } else if try saveDiskState(from: frozenLayer, plan: plan, freeSlots: saved.swapRanges, writer: writer, progress: progress, cancel: cancel) {
                files.append(Manifest.diskFile)
            }

            try checkCancelled()
            progress?(.init(.hashing, "hashing"))
            let entries = try writer.entries(for: files, known: [Manifest.memoryFile: stats.sha256], cancel: cancel) + (storedDisk.map { [$0.entry] } ?? [])
            try checkCancelled()
            let header = machine.manifestHeader()
            var manifest = Manifest(
                vm: header.vm, machine: header.machine, qemu: header.qemu,
                guest: .init(kernel: hello.kernel, bootId: hello.bootId, agentVersion: hello.agentVersion),
                memory: .init(stats),
                exclusion: Self.exclusionRecord(
                    exclusion, plan: plan, excludedBytes: stats.excludedBytes, nameKey: try HostKey(directory: stateDirectory).nameKey(create: true)),
                files: entries)
            machine.describe(into: &manifest)
            if liveUsed { manifest.deviceState = .guestRAMOmitted }
            manifest.freeMemory = saved.free
            progress?(.init(.writingManifest, "writing manifest"))
            FaultPoint.reached("checkpoint-before-commit")
            // The last moment a cancel can still leave nothing behind.
            try checkCancelled()
            let sealed = try writer.commit(
                manifest, sealKey: HostKey(directory: stateDirectory).sealKey(create: true), storedElsewhere: Set(storedDisk.map { [$0.entry.name] } ?? []))
            // From here the bundle stands: a later failure says so and undoes nothing.
            committed = true
            unlink(layout.atWorkMarker)
            try history(name).append(store?.undoPoint == true ? .undoPoint : .checkpoint, bundle: store?.name ?? writer.path, bundleDigest: sealed.manifestSHA256, epoch: try rsdm(vmId: machine.identity).epoch())
            let finishing = ProgressEvent.finishing(progress)
            if !stopAfter {
                do { try machine.mergeDisk(progress: finishing) } catch { throw SparcError("checkpoint saved in \(writer.path), but \(error)") }
            } else {
                try machine.stop(progress: finishing)
            }
            return CheckpointReport(
                bundle: writer.path, memoryBytes: stats.bytes, memoryDataBytes: stats.dataBytes,
                devicesBytes: entries.first { $0.name == Manifest.devicesFile }?.size ?? 0,
                diskBytes: entries.first { $0.name == Manifest.diskFile || $0.name == CheckpointStore.guestDiskMember }?.size, downtime: downtime,
                total: Date().timeIntervalSince(began), stopped: stopAfter, exclusion: manifest.exclusion,
                liveNames: Dictionary(plan?.processes.map { ($0.pid, $0.command) } ?? [], uniquingKeysWith: { a, _ in a }),
                ttySessions: plan?.ttySessions ?? [], freeMemory: saved.free, diskNote: storedDisk?.note,
                diskReadBytes: storedDisk?.read, diskChangedSince: storedDisk?.since, liveCopied: liveUsed, liveCopyRepairedPages: liveRepairedPages,
                liveCopySetup: liveSetup.map { Double($0) / 1000 })
        } catch {
            guard !committed else { throw error }
            // Failure or cancel: leave the machine as it was (running, thawed, on its own
            // disk) and no partial bundle behind. The steps back are not cancelled themselves.
            agent.cancel = nil
            writer.abort()
            // A live copy not finished is cancelled: QEMU runs the guest again if it stopped it.
            if let live, !liveFinished { live.abandon() }
            live = nil
            machine.finishFrozenDisk(succeeded: false)
            store?.release()
            let problems = machine.undo(paused: paused)
            let alive = (machine as? OwnMachine)?.isAlive ?? true
            if !thawOnFailure || (try? agent.thaw()) != nil || !alive { unlink(layout.atWorkMarker) }
            if !problems.isEmpty { throw SparcError("\(error); \(problems.joined(separator: "; "))") }
            // Cancelled at whatever step: one message, saying where the machine is.
            if cancel?.isCancelled == true, (error as? SparcError)?.posixCode != ECANCELED { throw Self.cancelled(outcome) }
            throw error
        }
    }

    /// The bytes of the machine's RAM file that hold pages (the rest are holes the guest has
    /// not touched yet).
    static func allocatedBytes(of machine: Machine) throws -> Int64 {
        let ram = try machine.openRAM()
        defer { close(ram) }
        var st = stat()
        guard fstat(ram, &st) == 0 else { throw SparcError.posix("cannot read the size of guest RAM", machine.ramPath) }
        return Int64(st.st_blocks) * 512
    }

    /// The manifest's account of an exclusion: targets as the operator named them and what they came to.
    /// How long the guest stays frozen if this checkpoint dies: `$SPARC_FREEZE_LEASE` seconds
    /// (tests shorten it), else the agent's default.
    static var freezeLease: Double? {
        ProcessInfo.processInfo.environment["SPARC_FREEZE_LEASE"].flatMap(Double.init)
    }

    /// Why a checkpoint or restore stopped early: the signal, or the operator's cancel.
    static func cancelled(_ outcome: String) -> SparcError {
        let sig = Interruption.signal
        let by = sig == SIGINT ? " by SIGINT" : sig == SIGTERM ? " by SIGTERM" : sig == SIGHUP ? " by SIGHUP" : ""
        return SparcError("cancelled\(by); \(outcome)", kind: .operational, posixCode: ECANCELED)
    }

    static func exclusionRecord(_ request: ExclusionRequest?, plan: ExclusionPlan?, excludedBytes: Int64, nameKey: Data) -> Manifest.Exclusion {
        guard let request, let plan else { return Manifest.Exclusion() }
        let targets: [GuestText] = request.pids.map { "pid \($0)" } + request.names.map { "name \($0)" } + request.ttys.map { "tty \($0)" }
        var record = Manifest.Exclusion(
            targets: targets, scope: request.scope.rawValue, bytes: excludedBytes, bytesByKind: plan.bytes,
            processes: plan.processes.map {
                .init(pid: $0.pid, startTime: $0.startTime, commandHash: HMACSHA256.hex(key: nameKey, message: Data($0.command.unescaped.utf8)), reason: $0.reason)
            },
            ttys: plan.ttys, ranges: plan.ranges.count, keptSharedPages: plan.keptSharedPages,
            evictFiles: plan.evictFiles, removeFiles: plan.removeFiles, collectMilliseconds: plan.milliseconds,
            warnings: plan.warnings)
        if let gaps = plan.gaps, !gaps.isEmpty { record.gaps = gaps }
        if let exited = plan.exitedPids, !exited.isEmpty { record.exitedPids = exited }
        if let copies = plan.possibleCopies, !copies.isEmpty { record.possibleCopies = copies }
        return record
    }
}

extension VMManager {
    /// The part of a checkpoint done while the guest is frozen but still running: with an
    /// exclusion, the agent freezes the guest and says what to leave out (as RAM-file ranges);
    /// then who owns each page, and where the kernel records free memory (read at the pause).
    func collectForCheckpoint(
        agent: AgentClient, exclusion: ExclusionRequest?, saveFreeMemory: Bool, ramBytes: UInt64, checkCancelled: () throws -> Void,
        progress: Progress?
    ) throws -> CollectedGuestState {
        var plan: ExclusionPlan?
        var excludedFileRanges: [Range<Int64>] = []
        if let exclusion {
            progress?(.init(.freezing, "freezing guest processes, collecting what to leave out"))
            let collected = try agent.collect(exclusion, lease: Self.freezeLease)
            if let trace = ProcessInfo.processInfo.environment["SPARC_TRACE"], !trace.isEmpty {
                printError("collect phases (ms): \(collected.phases.sorted { $0.key < $1.key }.map { "\($0.key)=\(Int($0.value))" }.joined(separator: " "))")
            }
            let layout = PhysicalLayout(ramBytes: ramBytes)
            excludedFileRanges = collected.ranges.flatMap { layout.fileRanges(physical: $0.start, length: $0.length) }
            plan = collected
        }

        try checkCancelled()
        // Who owns each page, for attributing search hits later; taken while frozen.
        progress?(.init(.recordingOwners, "recording page owners"))
        let owners = try agent.owners()
        try checkCancelled()
        let (memoryLayout, notes) = Self.askMemoryLayout(agent, saveFreeMemory: saveFreeMemory)
        // The agent's port serves one client at a time: let go of it until the thaw, so that
        // ps, ttys and the TUI answer while the checkpoint copies.
        agent.close()
        return CollectedGuestState(
            plan: plan, excludedFileRanges: excludedFileRanges, owners: owners, memoryLayout: memoryLayout, freeMemoryNotes: notes,
            saveFreeMemory: saveFreeMemory)
    }

    /// The agent's answer as the bundle keeps it (`owners.bin`). Excluded processes stay out of
    /// the owner map: their pages are zeroed, and their names and mapped paths can be the
    /// secret (a page they share is listed under its other owners).
    static func writeOwnerMap(_ owners: OwnerMap, excluding excluded: Set<Int32>, to path: String) throws {
        let processes = owners.processes.filter { !excluded.contains($0.pid) }.map { p in
            OwnerMapFile.Process(pid: p.pid, command: p.command.unescaped, mappings: p.mappings.map { ($0.name.unescaped, $0.frameRuns) })
        }
        try OwnerMapFile.write(processes: processes, frameKinds: owners.frameClasses, pageSize: owners.pageSize, to: path)
    }
}

extension VMManager {
    /// Thaws the guest once it runs again. A guest that was not frozen any more when it was
    /// paused (its agent died and was restarted, or the lease ran out) may hold copies made
    /// after the collection: the bundle is refused.
    static func thawAfterCheckpoint(_ agent: AgentClient) throws {
        if try agent.thaw().wasFrozen == false {
            throw SparcError(
                "the guest's processes were not frozen when the guest was paused (its agent restarted or its freeze lease ran out during the checkpoint); no bundle was written"
            )
        }
    }

    /// Copies a frozen disk image (QEMU keeps it open read-only, below the overlay the guest
    /// writes to now) into the bundle as a standalone qcow2. Swap slots that held excluded pages
    /// and the slots the guest holds free (`freeSlots`) read as zeros in the copy and take no
    /// room in it. Returns whether there was a disk to save; without one, excluded pages the
    /// guest swapped out cannot be left out, and the checkpoint refuses.
    func saveDiskState(
        from image: (path: String, format: String)?, plan: ExclusionPlan?, freeSlots: [DiskByteRange] = [], writer: BundleWriter,
        progress: Progress?, cancel: Cancellation? = nil
    ) throws -> Bool {
        let excludedSlots = plan?.diskRanges ?? []
        guard let image else {
            if !excludedSlots.isEmpty { throw SparcError("the guest swapped excluded pages to a disk this VM has no state of: cannot leave them out") }
            return false
        }
        progress?(.init(.savingDisk, "saving disk state"))
        let ranges = DiskByteRange.merged(excludedSlots + freeSlots)
        var source = image
        var zeroing: String?
        defer { if let zeroing { unlink(zeroing) } }
        if !ranges.isEmpty {
            // The slots are zeroed in an overlay of the frozen image (zero clusters flagged, no
            // data), which the copy then reads through: zeros are never written into the bundle,
            // and nothing of the old bytes is either.
            progress?("zeroing \(ranges.count) swap range(s) in the disk state")
            let overlay = writer.stagingPath + "/.disk-zeroing.qcow2"
            zeroing = overlay
            let made = try Subprocess.run([
                try QEMUProcess.locateQemuImg(), "create", "-q", "-u", "-f", "qcow2", "-F", image.format, "-b", image.path, overlay,
                String(try imageInfo(image.path).size),
            ])
            guard made.status == 0 else { throw SparcError("cannot create a disk overlay to zero swap slots in: \(made.stderrSummary)") }
            try zeroDiskRanges(ranges, inOverlay: overlay, on: image)
            source = (overlay, "qcow2")
        }
        // -U: nobody writes the frozen image; -f: a raw image is never probed for a format.
        let r = try Subprocess.run(
            [try QEMUProcess.locateQemuImg(), "convert", "-U", "-f", source.format, "-O", "qcow2", source.path, writer.file(Manifest.diskFile)],
            cancel: cancel)
        if r.cancelled { throw Self.cancelled("the VM runs on, no bundle was written") }
        guard r.status == 0 else { throw SparcError("cannot save the disk state: \(r.stderrSummary)") }
        return true
    }

    /// The names of `vm`'s stored checkpoints.
    func storedNames(of vm: String, in store: CheckpointStore) throws -> Set<String> {
        Set(try store.names().filter { $0.hasPrefix(vm + "-") })
    }

    /// Stores the frozen disk as the guest sees it into the checkpoint's store, reading only
    /// what changed since the checkpoint its bitmap names (else all of it, and says why);
    /// swap slots left out are zeros in the stored chunks, never in the VM's disk. Returns the
    /// manifest's entry for it and a line for the operator.
    func storeFrozenDisk(
        _ frozen: FrozenDisk, into destination: StoreDestination, vm: String, plan: ExclusionPlan?, freeSlots: [DiskByteRange], progress: Progress?,
        cancel: Cancellation?
    ) throws -> (entry: Manifest.FileEntry, note: String, read: Int64, since: String?) {
        let ranges = DiskByteRange.merged((plan?.diskRanges ?? []) + freeSlots)
        for r in ranges where r.offset.addingReportingOverflow(r.length).overflow || r.offset + r.length > UInt64(frozen.size) {
            throw SparcError("a swap range at byte \(r.offset) lies beyond the disk (\(frozen.size) bytes)")
        }
        let zeroed = ranges.map { Int64($0.offset)..<Int64($0.offset + $0.length) }
        var parentMember: StoredCheckpoint.Member?
        var reason = frozen.fullReadReason
        if let parent = frozen.parent {
            let stored = try destination.store.checkpoint(parent)
            parentMember = stored.members.first { $0.name == CheckpointStore.guestDiskMember }
            if stored.vm != vm || parentMember.map({ CheckpointStore.isReusableParent($0, size: frozen.size) }) != true {
                parentMember = nil
                reason = "the stored checkpoint \(parent) holds no disk of this size read as the guest sees it"
            }
        }
        if destination.lease == nil { destination.lease = try destination.store.lease() }
        let what = parentMember != nil ? "saving disk state: what changed since \(frozen.parent!)" : "saving disk state: reading all of it"
        progress?(.init(.savingDisk, what))
        let result = try destination.store.storeGuestDisk(
            GuestDiskRequest(source: frozen, parent: parentMember, changedSinceParent: parentMember != nil ? frozen.changed : nil, zeroed: zeroed),
            progress: { done, total in progress?(.init(.savingDisk, "\(what) \(done * 100 / max(total, 1))%")) }, cancel: cancel)
        destination.prestored = [result.member]
        destination.prestoredReport = result.report
        let read = formatBytes(result.readBytes)
        let note =
            result.incremental
            ? "disk: read \(read) written since \(frozen.parent!) (dirty bitmap), \(result.reusedChunks) of \(result.report.chunks) chunks unchanged"
            : "disk: read all \(read) of data (\(reason ?? "no earlier state to compare with")), deduplicated in the store"
        return (
            Manifest.FileEntry(name: CheckpointStore.guestDiskMember, size: result.member.size, sha256: result.digest), note, result.readBytes,
            result.incremental ? frozen.parent : nil
        )
    }

    /// Turns `x-ignore-shared` off again once sparc's migration is done: QEMU keeps the
    /// capability, and a later `virsh save` or migration of the domain would leave its RAM out.
    static func stopIgnoringSharedMemory(_ monitor: MachineMonitor) throws {
        try monitor.execute("migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": false]]])
    }

    /// Writes QEMU's device state (no guest RAM: it is shared and ignored) into a new file,
    /// through a descriptor: QEMU's sandbox lets it spawn nothing, so no `exec:` migration.
    func saveDeviceState(qmp: MachineMonitor, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot create", path) }
        defer { close(fd) }
        // Shared RAM ignored; and no stop for sparc at the end (a live copy's setting, should
        // one have been killed before it reset it).
        try qmp.execute(
            "migrate-set-capabilities",
            ["capabilities": [["capability": "x-ignore-shared", "state": true], ["capability": "pause-before-switchover", "state": false]]])
        try qmp.passDescriptor(fd, as: "sparc-devices")
        try qmp.execute("migrate", ["uri": "fd:sparc-devices"])
        try qmp.waitForMigration(timeout: 120)
        try Self.stopIgnoringSharedMemory(qmp)
        guard fsync(fd) == 0 else { throw SparcError.posix("cannot write", path) }
    }
}

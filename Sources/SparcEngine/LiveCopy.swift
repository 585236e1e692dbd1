import CSparcSupport
import Foundation
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The guest's RAM copied while it runs: QEMU's own pre-copy migration, with the RAM in the
/// stream, into sparc, which writes the guest's pages into a copy in memory (the RAM directory's
/// tmpfs) and keeps the rest of the stream as the device state. QEMU stops the guest only for
/// the last round (what it wrote since the round before) and, with `pause-before-switchover`,
/// waits there while sparc diverts the disk, so memory and disk are of the same instant. The
/// copy is then the paused RAM the rest of the checkpoint reads (free memory, the image), after
/// the guest runs again.
///
/// Used when nothing is left out of the checkpoint: the exclusion's ranges are computed while
/// the guest runs and must stay the excluded processes' while the copy is made, which the
/// guest kernel does not promise for seconds (it may migrate a page in compaction); until the
/// kernel helper pins those frames, a checkpoint with an exclusion pauses for its copy.
final class LiveMemoryCopy {
    let monitor: MachineMonitor
    /// The copy of the guest's RAM (a sparse file in the RAM directory) and its descriptor.
    let path: String
    let ramFile: Int32
    let deviceFile: Int32
    private var splitter: MigrationStreamSplitter?
    private let done = DispatchSemaphore(value: 0)
    /// The reader thread's result, set once as it ends (under `outcomeLock`: the waiting
    /// thread looks at it while the reader may be setting it).
    private var outcomeValue: Result<MigrationStreamSplitter.Stats, Error>?
    private let outcomeLock = NSLock()
    private var outcome: Result<MigrationStreamSplitter.Stats, Error>? {
        get { outcomeLock.withLock { outcomeValue } }
        set { outcomeLock.withLock { outcomeValue = newValue } }
    }
    private var finished = false
    /// When QEMU stopped the guest (its STOP event, else when sparc saw it stopped).
    private(set) var stoppedAt: Date?

    /// The most a live copy lets the last round take; QEMU keeps copying until what is left
    /// fits in it at the rate it measures.
    static let downtimeLimitMilliseconds = 50

    private init(monitor: MachineMonitor, path: String, ramFile: Int32, deviceFile: Int32) {
        self.monitor = monitor
        self.path = path
        self.ramFile = ramFile
        self.deviceFile = deviceFile
    }

    deinit {
        close(ramFile)
        close(deviceFile)
        unlink(path)
    }

    /// Whether checkpoints copy memory live: yes unless `SPARC_LIVE_COPY=0`. (Restores from live
    /// copies once went wrong under load: QEMU's dirty log had missed pages, which `repair` now
    /// copies again at the stop.)
    static var enabled: Bool { ProcessInfo.processInfo.environment["SPARC_LIVE_COPY"] != "0" }

    /// The RAM directory, when its tmpfs has room for a copy of the guest's RAM (`ramBytes`, of
    /// which `ramAllocated` hold pages now) beside what it holds and what the checkpoint will
    /// add to it (`staging`: the bundle is staged there too).
    static func directory(for ramBytes: UInt64, ramAllocated: Int64, staging: String) -> String? {
        let memory = GuestRAM.baseDirectory
        guard let free = GuestRAM.freeTmpfsBytes() else { return nil }
        var a = stat(), b = stat()
        let stagingInMemory = stat(memory, &a) == 0 && stat(staging, &b) == 0 && a.st_dev == b.st_dev
        return hasRoom(free: free, ramBytes: Int64(ramBytes), ramAllocated: ramAllocated, stagingInMemory: stagingInMemory) ? memory : nil
    }

    /// Whether `free` bytes of the guest's tmpfs hold a live copy without taking what the guest
    /// itself may still need: a tmpfs that fills kills the guest (QEMU's write to its RAM file
    /// faults). They must hold the copy (as large as the RAM at worst), the pages of the RAM
    /// file the guest has not touched yet (it may touch them during the copy), the memory image
    /// when the bundle is staged in the same tmpfs (written while the copy exists), and 256 MiB.
    static func hasRoom(free: Int64, ramBytes: Int64, ramAllocated: Int64, stagingInMemory: Bool) -> Bool {
        let untouched = max(0, ramBytes - ramAllocated)
        return free > ramBytes + untouched + (stagingInMemory ? ramBytes : 0) + (256 << 20)
    }

    static let prefix = "live-ram-"

    /// Removes the copies of checkpoints that were killed (`live-ram-PID`, the process gone):
    /// guest memory must not outlive the command that copied it.
    static func removeAbandoned(in directory: String = GuestRAM.baseDirectory) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, kill(pid, 0) != 0, errno == ESRCH else { continue }
            _ = FileSystem.removeTree(directory + "/" + name)
        }
    }

    /// Starts the copy: a RAM copy of `ramBytes` in `directory`, the device state into the new
    /// file `devices`; QEMU's block `ramBlock` is the guest's RAM.
    static func start(monitor: MachineMonitor, ramBlock: String, ramBytes: Int64, directory: String, devices: String) throws -> LiveMemoryCopy {
        removeAbandoned(in: directory)
        let path = directory + "/" + prefix + "\(getpid())"
        unlink(path)
        let ram = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard ram >= 0 else { throw SparcError.posix("cannot create the copy of guest RAM", path) }
        guard ftruncate(ram, off_t(ramBytes)) == 0 else {
            close(ram)
            unlink(path)
            throw SparcError.posix("cannot size the copy of guest RAM", path)
        }
        let dev = open(devices, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard dev >= 0 else {
            close(ram)
            unlink(path)
            throw SparcError.posix("cannot create", devices)
        }
        let copy = LiveMemoryCopy(monitor: monitor, path: path, ramFile: ram, deviceFile: dev)
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw SparcError.posix("cannot make a pipe for the migration stream", "") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        // A larger pipe lets QEMU write pages in bigger runs (F_SETPIPE_SZ, Linux's 1031).
        _ = fcntl(ends[1], 1031, Int32(1 << 20))
        // A test names a block that is not there, to see the checkpoint fall back to pausing.
        let block = ProcessInfo.processInfo.environment["SPARC_LIVE_COPY_BLOCK"] ?? ramBlock
        let splitter = MigrationStreamSplitter(
            input: ends[0], ramBlock: block, ramBytes: ramBytes, ramFile: ram, deviceFile: dev, excluded: [])
        copy.splitter = splitter
        let reading = ends[0]
        let thread = Thread { [copy] in
            copy.outcome = Result { try splitter.run() }
            // Closed by the reader as it ends: a reader that refused the stream leaves QEMU's
            // write failing at once (EPIPE) rather than blocked on a full pipe.
            close(reading)
            copy.done.signal()
        }
        thread.start()
        do {
            defer { close(ends[1]) }
            try monitor.execute(
                "migrate-set-capabilities",
                ["capabilities": [["capability": "x-ignore-shared", "state": false], ["capability": "pause-before-switchover", "state": true]]])
            try monitor.execute("migrate-set-parameters", ["max-bandwidth": Int64(1) << 36, "downtime-limit": downtimeLimitMilliseconds])
            try monitor.passDescriptor(ends[1], as: "sparc-live")
            try monitor.execute("migrate", ["uri": "fd:sparc-live"])
        } catch {
            // QEMU may hold the stream's end without having started: it lets go, the reader ends.
            _ = try? monitor.execute("closefd", ["fdname": "sparc-live"])
            copy.abandon()
            throw error
        }
        return copy
    }

    /// Waits until QEMU has stopped the guest for the last round and waits for sparc.
    func waitForStop(cancel: Cancellation?, progress: ((String) -> Void)?) throws {
        // Killed here, QEMU's write fails and the migration with it: the guest runs on.
        FaultPoint.reached("checkpoint-live-copy")
        var delay: useconds_t = 1000
        while true {
            let (status, error) = try monitor.migrationState()
            switch status {
            case "pre-switchover":
                stoppedAt = stopEventTime() ?? Date()
                return
            case "failed", "cancelled", "completed":
                throw SparcError("QEMU's copy of the guest's RAM \(status == "completed" ? "ended without stopping for sparc" : status): \(error ?? "no reason given")")
            default:
                if cancel?.isCancelled == true { throw SparcError("cancelled", kind: .operational, posixCode: ECANCELED) }
                if case .failure(let failure)? = outcome { throw failure }
                if let r = try? monitor.execute("query-migrate") as? [String: Any], let ram = r["ram"] as? [String: Any],
                    let total = (ram["total"] as? NSNumber)?.int64Value, let remaining = (ram["remaining"] as? NSNumber)?.int64Value, total > 0
                {
                    progress?("copying memory while the guest runs \(100 - remaining * 100 / total)%")
                }
                usleep(delay)
                // At most 5 ms: the stop is noticed that much later, and the guest waits for it.
                delay = min(delay * 2, 5_000)
            }
        }
    }

    /// QEMU's own record of the instant it stopped the guest (the STOP event's timestamp).
    private func stopEventTime() -> Date? {
        guard let qmp = monitor as? QMPClient else { return nil }
        _ = try? qmp.execute("query-status")  // reads the events QEMU sent meanwhile
        guard let event = qmp.events.last(where: { $0["event"] as? String == "STOP" }), let stamp = event["timestamp"] as? [String: Any],
            let seconds = (stamp["seconds"] as? NSNumber)?.doubleValue, let micro = (stamp["microseconds"] as? NSNumber)?.doubleValue
        else { return nil }
        return Date(timeIntervalSince1970: seconds + micro / 1_000_000)
    }

    /// How long QEMU took to set the copy up (its `setup-time`: the first sync of the dirty
    /// log, during which it holds its global lock and the vCPUs take no interrupts), once known.
    private(set) var setupMilliseconds: Int?

    /// Lets QEMU send the last round and the devices; returns when the stream is whole.
    func finish() throws -> MigrationStreamSplitter.Stats {
        try monitor.execute("migrate-continue", ["state": "pre-switchover"])
        try monitor.waitForMigration(timeout: 120)
        setupMilliseconds = ((try? monitor.execute("query-migrate")) as? [String: Any])?["setup-time"].flatMap { ($0 as? NSNumber)?.intValue }
        done.wait()
        finished = true
        resetCapabilities()
        switch outcome {
        case .success(let stats)?:
            guard fsync(deviceFile) == 0 else { throw SparcError.posix("cannot write the device state", "") }
            return stats
        case .failure(let error)?: throw error
        case nil: throw SparcError("the migration stream was not read")
        }
    }

    /// Whether a live copy of this RAM must be checked against the stopped guest's RAM
    /// (`repair`): yes unless QEMU's dirty log is known exact for it, or `SPARC_LIVE_COPY_CHECK=1`
    /// asks for the check every time (the tests do, to show it finds nothing to mend).
    ///
    /// QEMU 7.2 syncs the dirty log of a RAM block whose length is a multiple of 64 pages
    /// (256 KiB) a word at a time, and that fast path leaves the vCPUs' TLB entries writable
    /// without logging: under TCG a page written through such an entry after the sync is never
    /// sent again (fixed in QEMU 9.0 by 03bfc2188f). Any other length takes the per-page path,
    /// which resets the TLB entries of every page it finds dirty (`tlb_reset_dirty_range_all`),
    /// so every later write is logged; sparc's own machines have 8 KiB more RAM for this
    /// (`MachineSpec.unalignedTailBytes`). Under KVM the kernel keeps the log, exact in principle,
    /// but this host cannot run KVM to show it, so such copies are still checked.
    static func mustCheck(ramBytes: UInt64, accel: String) -> Bool {
        if ProcessInfo.processInfo.environment["SPARC_LIVE_COPY_CHECK"] == "1" { return true }
        return !(accel == "tcg" && ramBytes % (64 * 4096) != 0)
    }

    /// Makes the copy exactly the stopped guest's RAM (`ram`, a descriptor of QEMU's RAM file of
    /// `bytes`): compares them page by page and copies again each page that differs; returns how
    /// many did. QEMU's dirty log can miss writes: before QEMU 9.0, under TCG, a sync cleared the
    /// log without making the vCPUs' TLBs trap writes again (QEMU commit 03bfc2188f), and this
    /// host's QEMU 7.2 lost up to 33 pages of a 256 MiB guest in one copy. Costs one read of
    /// both at memory speed (4 MiB chunks that are holes in both skipped), on every core, while
    /// the guest is still stopped.
    func repair(against ram: Int32, bytes: Int64) throws -> Int { try Self.repair(copy: ramFile, source: ram, bytes: bytes) }

    /// Makes `copy` read as `source` (`bytes` each, on tmpfs); returns the pages it wrote again
    /// or cleared. Read, never mapped: a shared mapping's read of a hole would give the guest's
    /// RAM file (and the copy) memory for every page the guest never touched.
    static func repair(copy: Int32, source: Int32, bytes: Int64) throws -> Int {
        let repaired = sparc_repair_copy(copy, source, off_t(bytes))
        guard repaired >= 0 else { throw SparcError.posix("cannot check the copy of guest RAM against the guest's RAM", "") }
        return Int(repaired)
    }

    /// Ends a copy that will not be used: QEMU cancels the migration (and runs the guest again
    /// if it had stopped it), the copy goes.
    func abandon() {
        Self.cancelMigration(monitor)
        // The reader ends when QEMU closes its end of the stream (it may have ended first).
        if splitter != nil, !finished { _ = done.wait(timeout: .now() + 10) }
        Self.resetCapabilities(monitor)
    }

    /// Migration states in which a live copy is still under way.
    static let unfinished: Set<String> = ["setup", "active", "pre-switchover", "device", "cancelling"]

    /// Cancels QEMU's migration and waits (bounded) until it has ended; QEMU runs the guest
    /// again if the migration had stopped it.
    static func cancelMigration(_ monitor: MachineMonitor) {
        _ = try? monitor.execute("migrate_cancel")
        for _ in 0..<500 {
            guard let status = try? monitor.migrationState().status, unfinished.contains(status) else { break }
            usleep(10_000)
        }
    }

    /// For the next command after a checkpoint died: cancels the live copy it left (copying,
    /// or stopped at its last round waiting for sparc); returns the state it was in (nil: none).
    static func cancelLeftOver(_ monitor: MachineMonitor) -> String? {
        guard let status = try? monitor.migrationState().status, unfinished.contains(status) else { return nil }
        cancelMigration(monitor)
        resetCapabilities(monitor)
        return status
    }

    private func resetCapabilities() { Self.resetCapabilities(monitor) }

    static func resetCapabilities(_ monitor: MachineMonitor) {
        _ = try? monitor.execute("migrate-set-capabilities", ["capabilities": [["capability": "pause-before-switchover", "state": false]]])
    }
}

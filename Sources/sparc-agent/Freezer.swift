#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Freezes every guest process but the agent with the cgroup v2 freezer, without moving any
/// process out of the cgroup it lives in (systemd keeps managing its units).
///
/// The agent owns one cgroup (under systemd its unit's, with `Delegate=yes`; elsewhere
/// `/sparc-agent`) and splits it into `agent` (itself, never frozen) and `exec` (what it
/// runs for the host, frozen with the guest). To freeze, it walks from the root to its own
/// cgroup and freezes every sibling of that path at each level: `init.scope`, `system.slice`'s
/// other units, `user.slice`, …; thawing undoes it in reverse. A process sitting directly in
/// a cgroup on that path cannot be frozen without freezing the agent: the freeze refuses.
final class Freezer {
    let root = "/sys/fs/cgroup"
    /// A freeze ends by itself when the checkpoint that froze it goes quiet for this long (a
    /// crashed or killed `sparc checkpoint` must not leave the guest frozen). Only the
    /// checkpoint's and restore's own requests renew it, never a `ps` or a TUI refresh.
    static let defaultLease: Double = 120
    private let lock = Lock()
    private var leaseEnd: Double?
    private var leaseLength = Freezer.defaultLease
    /// The cgroups frozen now (relative to the root), in the order they were frozen.
    private var frozenGroups: [String] = []
    /// The agent's own cgroup (relative), split into `agent` and `exec`.
    private(set) var base = "/sparc-agent"

    var agent: String { root + base + "/agent" }
    /// Where commands the host runs live (frozen with the guest).
    var exec: String { root + base + "/exec" }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Sets how long the next freeze lasts without word (bounded: 1 s to 1 h).
    func setLease(_ seconds: Double?) {
        lock.withLock { leaseLength = min(max(seconds ?? Self.defaultLease, 1), 3600) }
    }

    /// Pushes the lease end out; called for the requests of a checkpoint or restore.
    func renewLease() {
        lock.withLock { if leaseEnd != nil { leaseEnd = Self.monotonic() + leaseLength } }
    }

    /// What a restore of the checkpoint being taken must do before the guest runs: set at
    /// collection, so it is in the RAM the checkpoint copies; cleared by the host's `cleanup`
    /// or `thaw`. With the VM-fork mark of that moment.
    private var pendingCleanup: (request: CleanupRequest, forkMark: UInt64)?

    func setPendingCleanup(_ request: CleanupRequest?) {
        let mark = request == nil ? 0 : VMFork.latestSequence()
        lock.withLock { pendingCleanup = request.map { ($0, mark) } }
    }

    /// Seconds until the freeze's lease runs out (nil when not frozen).
    var leaseLeft: Double? { lock.withLock { leaseEnd.map { max(0, $0 - Self.monotonic()) } } }

    /// Thaws the guest when a freeze's lease has run out. A restored guest (the kernel logged
    /// a VM fork since the collection) whose host never came back first ends the excluded
    /// processes it carries the plan for: they never run on their zeroed memory.
    func startWatchdog() {
        startThread { [self] in
            while true {
                sleep(1)
                let expired = lock.withLock { leaseEnd.map { Self.monotonic() > $0 } ?? false }
                if expired {
                    thawAsOwnerless()
                    printError("sparc-agent: no word from the checkpoint for \(Int(lock.withLock { leaseLength })) s: guest thawed")
                }
            }
        }
    }

    /// Thaws a guest whose freeze's owner is gone (its lease ran out, or a sparc command found
    /// the checkpoint or restore that froze it dead): a restored guest first ends the excluded
    /// processes it carries the plan for. Returns the pids ended.
    @discardableResult
    func thawAsOwnerless() -> [Int32] {
        let pending = lock.withLock { () -> (request: CleanupRequest, forkMark: UInt64)? in
            defer { pendingCleanup = nil }
            return pendingCleanup
        }
        var ended: [Int32] = []
        if let pending, VMFork.latestSequence() > pending.forkMark {
            ended = Cleanup.run(pending.request).killed
            printError("sparc-agent: restored without its host: ended excluded pids \(ended.map(String.init).joined(separator: " ")) before thawing")
        }
        _ = try? set(frozen: false)
        return ended
    }

    /// The cgroup of a process, relative to the root ("/system.slice/x.service").
    static func cgroup(of pid: String = "self") -> String? {
        for line in (GuestSystem.readText("/proc/\(pid)/cgroup") ?? "").split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    func procs(_ group: String) -> [Int32] {
        (GuestSystem.readText(root + group + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    func children(_ group: String) -> [String] {
        let dir = root + group
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter {
            FileSystem.isDirectory(dir + "/" + $0) && FileSystem.exists(dir + "/" + $0 + "/cgroup.freeze")
        }.sorted()
    }

    /// Takes a cgroup of its own and moves into its `agent` part.
    func setUp() {
        let me = getpid()
        var own = Self.cgroup() ?? "/"
        if own.hasSuffix("/agent") { own = Path.directory(of: own) }
        if own == "/" || procs(own).contains(where: { $0 != me }) {
            // Not given a cgroup of its own (busybox init, a shell): make one beside the guest's.
            own = "/sparc-agent"
            mkdir(root + own, 0o755)
        }
        base = own
        mkdir(agent, 0o755)
        mkdir(exec, 0o755)
        write("\(me)", to: agent + "/cgroup.procs")
        // An agent that died while the guest was frozen (and was restarted) left it frozen.
        for g in (try? groupsToFreeze(sweep: false)) ?? [] where readFreeze(g) {
            write("0", to: root + g + "/cgroup.freeze")
        }
    }

    /// Starts the keeper: a process of its own (`sparc-agent keeper PID`) that thaws the guest
    /// when the agent dies. The agent's own lease cannot do that once it is dead, and systemd,
    /// which would run `sparc-agent thaw` after it, is frozen with the guest.
    func startKeeper() {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        do {
            _ = try Subprocess.spawn([exe, "keeper", String(getpid())], stderr: 2)
        } catch {
            printError("sparc-agent: no keeper (\(error)): a crash of the agent while the guest is frozen would leave it frozen")
        }
    }

    /// The keeper's life: wait for the agent's death (the kernel's parent-death signal, or
    /// an agent already gone), then thaw what it froze and exit.
    static func keep(watching agent: pid_t) -> Never {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in [SIGUSR1, SIGTERM, SIGHUP, SIGINT] { sigaddset(&set, sig) }
        sigprocmask(SIG_BLOCK, &set, nil)
        _ = sparc_parent_death_signal(SIGUSR1)
        if getppid() == agent {
            var received: Int32 = 0
            sigwait(&set, &received)
        }
        let frozen = Freezer.aroundThisAgent().groupsFrozenNow()
        if !frozen.isEmpty {
            printError("sparc-agent keeper: the agent (pid \(agent)) ended with the guest frozen: thawing \(frozen.count) cgroup(s)")
        }
        Freezer.aroundThisAgent().thaw(frozen)
        exit(0)
    }

    /// A freezer for the cgroups around this process's agent cgroup (its keeper, `exec` and
    /// `agent` children share the parent that the agent froze around).
    static func aroundThisAgent() -> Freezer {
        let f = Freezer()
        f.base = cgroup() ?? "/sparc-agent"
        if f.base.hasSuffix("/agent") || f.base.hasSuffix("/exec") { f.base = Path.directory(of: f.base) }
        return f
    }

    /// The cgroups this freezer would freeze that are frozen now, outermost first.
    func groupsFrozenNow() -> [String] { ((try? groupsToFreeze(sweep: false)) ?? []).filter(readFreeze) }

    /// Thaws `groups`, innermost first.
    func thaw(_ groups: [String]) {
        for g in groups.reversed() { write("0", to: root + g + "/cgroup.freeze") }
    }

    /// Thaws whatever an agent of this cgroup froze (for `sparc-agent thaw`, run when the
    /// agent's unit stops, so a crash never leaves the guest frozen).
    static func thawAfterAgent() {
        let f = aroundThisAgent()
        f.thaw(f.groupsFrozenNow())
    }

    func readFreeze(_ group: String) -> Bool { GuestSystem.readText(root + group + "/cgroup.freeze")?.trimmed == "1" }

    @discardableResult
    func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } >= 0
    }

    var isFrozen: Bool {
        let groups = lock.withLock { frozenGroups }
        return !groups.isEmpty && groups.allSatisfy(isFrozen)
    }

    func isFrozen(_ group: String) -> Bool {
        (GuestSystem.readText(root + group + "/cgroup.events") ?? "").contains("frozen 1")
    }

    static func isKernelThread(_ pid: Int32) -> Bool {
        GuestSystem.stat(of: pid).map { $0.flags & GuestSystem.pfKthread != 0 } ?? true
    }

    /// The cgroups to freeze: every sibling of the path from the root to the agent's cgroup.
    /// User processes left in the root cgroup (which cannot be frozen) are swept into one that can.
    func groupsToFreeze(sweep: Bool = true) throws -> [String] {
        var strays: [Int32] = []
        for pid in procs("/") where pid != getpid() && !Self.isKernelThread(pid) { strays.append(pid) }
        if sweep && !strays.isEmpty {
            mkdir(root + "/sparc-root", 0o755)
            for pid in strays { write("\(pid)", to: root + "/sparc-root/cgroup.procs") }
        }
        var groups: [String] = []
        var current = ""
        let path = (base + "/agent").split(separator: "/").map(String.init)
        for (depth, component) in path.enumerated() {
            if depth > 0 {
                if let pid = procs(current).first {
                    let name = GuestSystem.readText("/proc/\(pid)/comm")?.trimmed ?? "?"
                    throw AgentFailure(
                        .failed,
                        "pid \(pid) (\(name.terminalSafe)) sits in cgroup \(current), which holds the agent's own: it cannot be frozen without freezing the agent")
                }
            }
            for child in children(current.isEmpty ? "/" : current) where child != component {
                groups.append(current + "/" + child)
            }
            current += "/" + component
        }
        return groups
    }

    func processCount() -> Int {
        lock.withLock { frozenGroups }.reduce(0) { total, group in
            total + (GuestSystem.readText(root + group + "/cgroup.procs") ?? "").split(separator: "\n").count
                + children(group).reduce(0) { $0 + procsDeep(group + "/" + $1) }
        }
    }

    func procsDeep(_ group: String) -> Int {
        procs(group).count + children(group).reduce(0) { $0 + procsDeep(group + "/" + $1) }
    }

    func set(frozen: Bool, timeout: TimeInterval = 10) throws -> FreezeResult {
        let start = Date()
        if frozen {
            let groups = try groupsToFreeze()
            lock.withLock { frozenGroups = groups }
            for g in groups where !write("1", to: root + g + "/cgroup.freeze") {
                let reason = String(cString: strerror(errno))
                _ = try? set(frozen: false)
                throw AgentFailure(.failed, "cannot freeze \(g): \(reason)")
            }
        } else {
            // Thaw what this agent froze, or (after a restart) whatever is frozen around it.
            var groups = lock.withLock { frozenGroups }
            if groups.isEmpty { groups = ((try? groupsToFreeze(sweep: false)) ?? []).filter(readFreeze) }
            lock.withLock { frozenGroups = groups }
            for g in groups.reversed() { write("0", to: root + g + "/cgroup.freeze") }
        }
        let groups = lock.withLock { frozenGroups }
        while !groups.allSatisfy({ isFrozen($0) == frozen }) {
            if Date().timeIntervalSince(start) > timeout {
                let stuck = groups.filter { isFrozen($0) != frozen }
                throw AgentFailure(.failed, "\(stuck.joined(separator: ", ")) did not \(frozen ? "freeze" : "thaw") within \(Int(timeout)) s")
            }
            usleep(2000)
        }
        let count = frozen ? processCount() : 0
        lock.withLock {
            leaseEnd = frozen ? Self.monotonic() + leaseLength : nil
            if !frozen { frozenGroups = [] }
        }
        return FreezeResult(processes: count, milliseconds: Date().timeIntervalSince(start) * 1000)
    }
}

/// The kernel's word that this guest was restored or cloned: a new VM generation id makes it
/// log "crng reseeded due to virtual machine fork" (Linux 5.18+, vmgenid).
enum VMFork {
    static let message = "crng reseeded due to virtual machine fork"

    /// The kernel log sequence number of the newest VM-fork message (0: none).
    static func latestSequence() -> UInt64 {
        let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var latest: UInt64 = 0
        var record = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &record, record.count)
            if n < 0 && errno == EPIPE { continue }  // records overwritten while reading
            guard n > 0 else { break }
            // "PRIO,SEQ,TIME,FLAGS;MESSAGE"
            let text = String(decoding: record[0..<n], as: UTF8.self)
            guard text.contains(message), let header = text.split(separator: ";", maxSplits: 1).first else { continue }
            let fields = header.split(separator: ",")
            if fields.count > 1, let seq = UInt64(fields[1]) { latest = max(latest, seq) }
        }
        return latest
    }
}

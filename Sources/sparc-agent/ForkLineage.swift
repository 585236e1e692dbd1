#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Who forked whom, as the kernel reported it (the proc connector), kept across
/// reparenting: a daemon that double-forked and left its session has init as parent, but its
/// lineage still leads to the process that started it.
///
/// When a process exits, its children are handed to its own forker, so a chain through
/// processes long gone still ends at the live ancestor. Forks before the agent started are
/// not known; a socket overflow loses events, and `complete` says so.
final class ForkLineage: @unchecked Sendable {
    static let shared = ForkLineage()

    private let lock = Lock()
    /// pid → the process that forked it (or the nearest live ancestor of that one).
    private var forker: [Int32: Int32] = [:]
    private var forked: [Int32: Set<Int32>] = [:]
    /// pid → when it was forked, in clock ticks since boot (as /proc/PID/stat counts start times).
    private var forkedAt: [Int32: UInt64] = [:]
    /// Processes that have exited, the latest under each pid: who had forked them and when.
    /// Their data may still wait in queues others hold (what they wrote into a pipe, sent on
    /// a socket), so an exclusion needs to know which of them were its processes' descendants.
    private var exited: [Int32: Exited] = [:]
    private var exitOrder: [Int32] = []
    private var lost = false
    private(set) var listening = false

    struct Exited {
        var forker: Int32?
        var forkedAt: UInt64
    }

    /// Exited processes remembered (the oldest are forgotten first).
    static let exitedKept = 65536

    /// Whether every fork since the agent started is known.
    var complete: Bool { lock.withLock { listening && !lost } }

    /// Subscribes to the kernel's process events; a kernel without them leaves it off.
    func start() {
        let fd = sparc_proc_events_open()
        guard fd >= 0 else {
            printError("sparc-agent: no process events from the kernel (\(String(cString: strerror(-fd)))): reparented descendants are found by session, group and cgroup only")
            return
        }
        lock.withLock { listening = true }
        startThread { [self] in
            var events = [sparc_proc_event](repeating: sparc_proc_event(), count: 256)
            while true {
                let n = sparc_proc_events_next(fd, &events, Int32(events.count))
                if n < 0 {
                    if n == -EINTR { continue }
                    lock.withLock { listening = false }
                    return
                }
                lock.withLock {
                    for e in events.prefix(Int(n)) { apply(e) }
                }
            }
        }
    }

    private func apply(_ e: sparc_proc_event) {
        switch Int(e.kind) {
        case Int(SPARC_PROC_FORK):
            forker[e.pid] = e.parent
            forked[e.parent, default: []].insert(e.pid)
            forkedAt[e.pid] = Self.ticksSinceBoot()
        case Int(SPARC_PROC_EXIT):
            let up = forker.removeValue(forKey: e.pid)
            if let at = forkedAt.removeValue(forKey: e.pid) {
                if exited.updateValue(Exited(forker: up, forkedAt: at), forKey: e.pid) == nil { exitOrder.append(e.pid) }
                if exitOrder.count > Self.exitedKept * 2 {
                    // Forget the oldest; a pid that exited again since keeps its latest record.
                    let keep = Set(exitOrder.suffix(Self.exitedKept))
                    for pid in exitOrder.dropLast(Self.exitedKept) where !keep.contains(pid) { exited.removeValue(forKey: pid) }
                    exitOrder = Array(exitOrder.suffix(Self.exitedKept))
                }
            }
            for child in forked.removeValue(forKey: e.pid) ?? [] {
                if let up {
                    forker[child] = up
                    forked[up, default: []].insert(child)
                } else {
                    forker.removeValue(forKey: child)
                }
            }
            if let up { forked[up]?.remove(e.pid) }
        default:
            lost = true
        }
    }

    /// The processes `pid` forked (directly, or through processes that have exited since).
    func descendants(of pid: Int32) -> [Int32] {
        lock.withLock { Array(forked[pid] ?? []) }
    }

    /// Descendants of `roots` (pid → start time in ticks) that have exited: the chain of
    /// forkers from each exited process (through others that exited) leads to a root, and the
    /// process was forked after that root started (a root's pid may have been another's before).
    func exitedDescendants(of roots: [Int32: UInt64]) -> [Int32] {
        lock.withLock {
            var out: [Int32] = []
            for (pid, record) in exited {
                var up = record.forker
                var steps = 0
                while let ancestor = up, roots[ancestor] == nil, let next = exited[ancestor], steps < 64 {
                    up = next.forker
                    steps += 1
                }
                if let root = up, let started = roots[root], record.forkedAt >= started { out.append(pid) }
            }
            return out.sorted()
        }
    }

    /// Clock ticks since boot (CLOCK_BOOTTIME), the unit of start times in /proc/PID/stat.
    static func ticksSinceBoot() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return UInt64(ts.tv_sec) * hz + UInt64(ts.tv_nsec) * hz / 1_000_000_000
    }
}

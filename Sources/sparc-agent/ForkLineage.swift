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
    private var lost = false
    private(set) var listening = false

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
        case Int(SPARC_PROC_EXIT):
            let up = forker.removeValue(forKey: e.pid)
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
}

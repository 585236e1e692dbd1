#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Freezes every guest process but the agent with the cgroup v2 freezer.
///
/// The init script puts guest processes in `/sys/fs/cgroup/guest`; the agent moves
/// itself to `/sys/fs/cgroup/sparc`. Before freezing, anything still in the root
/// cgroup (other than kernel threads, which cannot move) is swept into `guest`.
final class Freezer {
    let root = "/sys/fs/cgroup"
    /// A freeze ends by itself when the host goes quiet for this long (a crashed or killed
    /// `sparc checkpoint` must not leave the guest frozen). Every request renews it.
    static let lease: Double = 120
    private let lock = Lock()
    private var leaseEnd: Double?

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Pushes the lease end out; called for every request the host sends.
    func renewLease() {
        lock.withLock { if leaseEnd != nil { leaseEnd = Self.monotonic() + Self.lease } }
    }

    /// Thaws the guest when a freeze's lease has run out.
    func startWatchdog() {
        startThread { [self] in
            while true {
                sleep(1)
                let expired = lock.withLock { leaseEnd.map { Self.monotonic() > $0 } ?? false }
                if expired {
                    _ = try? set(frozen: false)
                    printError("sparc-agent: no word from the host for \(Int(Self.lease)) s: guest thawed")
                }
            }
        }
    }
    var guest: String { root + "/guest" }
    var agent: String { root + "/sparc" }

    func setUp() {
        mkdir(guest, 0o755)
        mkdir(agent, 0o755)
        write("\(getpid())", to: agent + "/cgroup.procs")
    }

    @discardableResult
    func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } >= 0
    }

    var isFrozen: Bool {
        (GuestSystem.readText(guest + "/cgroup.events") ?? "").contains("frozen 1")
    }

    /// Moves every user process still in the root cgroup into the guest cgroup.
    func sweepRoot() {
        let me = getpid()
        for line in (GuestSystem.readText(root + "/cgroup.procs") ?? "").split(separator: "\n") {
            guard let pid = Int32(line), pid != me else { continue }
            if let st = GuestSystem.readText("/proc/\(pid)/stat").flatMap(GuestSystem.parseStat),
                st.flags & GuestSystem.pfKthread != 0
            {
                continue
            }
            write("\(pid)", to: guest + "/cgroup.procs")
        }
    }

    func processCount() -> Int {
        (GuestSystem.readText(guest + "/cgroup.procs") ?? "").split(separator: "\n").count
    }

    func set(frozen: Bool, timeout: TimeInterval = 10) throws -> FreezeResult {
        let start = Date()
        if frozen { sweepRoot() }
        guard write(frozen ? "1" : "0", to: guest + "/cgroup.freeze") else {
            throw AgentFailure(.failed, "cannot write \(guest)/cgroup.freeze: \(String(cString: strerror(errno)))")
        }
        while isFrozen != frozen {
            if Date().timeIntervalSince(start) > timeout {
                throw AgentFailure(.failed, "processes did not \(frozen ? "freeze" : "thaw") within \(Int(timeout)) s")
            }
            usleep(2000)
        }
        lock.withLock { leaseEnd = frozen ? Self.monotonic() + Self.lease : nil }
        return FreezeResult(processes: processCount(), milliseconds: Date().timeIntervalSince(start) * 1000)
    }
}

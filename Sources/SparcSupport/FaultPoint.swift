#if canImport(Glibc)
    import Glibc
#endif

/// Named points where tests make sparc die hard, to prove that what happens next (the next
/// command, the guest's own lease) recovers: `SPARC_FAULT=NAME` kills the process with
/// SIGKILL when it reaches `NAME`, exactly as an operator's `kill -9` would.
/// `SPARC_FAULT=NAME#N` kills it the Nth time it reaches `NAME` (a point inside a loop: each
/// chunk stored, each object removed). `SPARC_FAULT=NAME:stall=SECONDS` waits there instead, as a slow guest or host would, to
/// widen a window between two steps.
///
/// A stall ends early when the work is cancelled (`interruption`), as any long step does.
/// A stalled point's name is written to `$SPARC_FAULT_REACHED` (a file) when reached, so that
/// a test can act at the very step.
public enum FaultPoint {
    nonisolated(unsafe) public static var interruption: Cancellation?
    /// How often each point was reached (for `NAME#N`); only touched while SPARC_FAULT is set.
    static let counts = SharedBox([String: Int]())

    public static func reached(_ name: String) {
        guard let wanted = getenv("SPARC_FAULT").map({ String(cString: $0) }) else { return }
        if wanted.hasPrefix(name + "#"), let nth = Int(wanted.dropFirst(name.count + 1)) {
            let count = counts.mutate { c -> Int in
                c[name, default: 0] += 1
                return c[name]!
            }
            if count == nth { kill(getpid(), SIGKILL) }
        } else if wanted == name {
            kill(getpid(), SIGKILL)
        } else if wanted.hasPrefix(name + ":stall="), let seconds = Double(wanted.dropFirst(name.count + 7)), seconds > 0 {
            if let report = getenv("SPARC_FAULT_REACHED").map({ String(cString: $0) }) {
                let fd = open(report, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    _ = (name + "\n").withCString { write(fd, $0, strlen($0)) }
                    close(fd)
                }
            }
            // `$SPARC_FAULT_RELEASE` names a file whose appearance ends the stall early: a test
            // holds a step exactly as long as it needs, whatever the machine's speed.
            let release = getenv("SPARC_FAULT_RELEASE").map { String(cString: $0) }
            var left = min(seconds, 600)
            while left > 0 && interruption?.isCancelled != true && !(release.map { access($0, F_OK) == 0 } ?? false) {
                usleep(20_000)
                left -= 0.02
            }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Named points where tests make sparc die hard, to prove that what happens next (the next
/// command, the guest's own lease) recovers: `SPARC_FAULT=NAME` kills the process with
/// SIGKILL when it reaches `NAME`, exactly as an operator's `kill -9` would.
/// `SPARC_FAULT=NAME:stall=SECONDS` waits there instead, as a slow guest or host would, to
/// widen a window between two steps.
public enum FaultPoint {
    public static func reached(_ name: String) {
        guard let wanted = getenv("SPARC_FAULT").map({ String(cString: $0) }) else { return }
        if wanted == name {
            kill(getpid(), SIGKILL)
        } else if wanted.hasPrefix(name + ":stall="), let seconds = Double(wanted.dropFirst(name.count + 7)), seconds > 0 {
            usleep(useconds_t(min(seconds, 60) * 1_000_000))
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Named points where tests make sparc die hard, to prove that what happens next (the next
/// command, the guest's own lease) recovers: `SPARC_FAULT=NAME` kills the process with
/// SIGKILL when it reaches `NAME`, exactly as an operator's `kill -9` would.
public enum FaultPoint {
    public static func reached(_ name: String) {
        guard let wanted = getenv("SPARC_FAULT").map({ String(cString: $0) }), wanted == name else { return }
        kill(getpid(), SIGKILL)
    }
}

import SparcSupport

/// Why a command could not work on a VM now: the cases a caller or a test tells apart (the
/// TUI tells "not running" from "busy"), each with the one line the operator reads (exit 2).
public enum VMError: UserFacingError, Equatable {
    /// No VM of that name runs here.
    case notRunning(name: String)
    /// Its QEMU is gone but its runtime state is left (`vm stop` cleans up).
    case qemuGone(name: String, pid: Int32)
    /// A VM of that name runs already.
    case alreadyRunning(name: String, pid: Int32)
    /// Another sparc command holds the VM's lock (`holder` says which, when it said).
    case busy(name: String, holder: String)
    /// A restore would replace a running VM and `--replace` was not given.
    case replaceNotAsked(name: String)

    public var description: String {
        switch self {
        case .notRunning(let name): return "no VM named '\(name)' is running (see 'sparc vm list')"
        case .qemuGone(let name, let pid):
            return "VM '\(name)' is not running (its QEMU process \(pid) is gone; 'sparc vm stop --name \(name)' cleans up)"
        case .alreadyRunning(let name, let pid):
            return "VM '\(name)' is already running (pid \(pid)); stop it first with 'sparc vm stop --name \(name)'"
        case .busy(let name, let holder):
            return "VM '\(name)' is busy: \(holder.isEmpty ? "another sparc command" : "sparc \(holder.terminalSafe)") is working on it; pass --wait to wait for it"
        case .replaceNotAsked(let name): return "VM '\(name)' is running; stop it first or pass --replace to restore over it"
        }
    }

    public var exitCode: Int32 { 2 }
}

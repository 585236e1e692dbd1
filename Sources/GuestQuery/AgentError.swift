#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import SparcSupport

/// Why the guest agent gave no usable answer: the cases a caller or a test tells apart (no
/// agent at all, one that stays silent, a connection QEMU closed, an answer refused as too
/// large), each with the one line the operator reads (exit 2).
public enum AgentError: UserFacingError, Equatable {
    /// Nothing listens on the agent's socket.
    case unreachable(socket: String)
    /// The agent did not answer `operation` within `seconds`.
    case noAnswer(operation: String, seconds: String)
    /// The agent did not answer at all while it was polled (the guest booting, hung) for `seconds`.
    case notReady(seconds: String, last: String?)
    /// QEMU closed the connection (the VM stopped, or its port was taken).
    case closed
    /// An answer sparc refuses to read (larger than its bounds).
    case oversized(operation: String, why: String)

    public var description: String {
        switch self {
        case .unreachable(let socket): return "guest agent socket \(socket) is not reachable: is the VM running?"
        case .noAnswer(let op, let seconds):
            return "guest agent did not answer '\(op)' within \(seconds) s (the guest may be hung, stopped or still booting, or another client holds the agent's port, which serves one at a time)"
        case .notReady(let seconds, let last): return "guest agent did not answer within \(seconds) s" + (last.map { " (last: \($0))" } ?? "")
        case .closed: return "guest agent connection closed by QEMU"
        case .oversized(let op, let why): return "guest agent sent an answer to '\(op)' \(why): refused"
        }
    }

    public var exitCode: Int32 { 2 }
}

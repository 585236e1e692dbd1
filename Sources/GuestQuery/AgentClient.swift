#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Host-side client for the guest agent, reached through QEMU's chardev socket.
///
/// QEMU serves one connection at a time on that socket, so a client is meant to be
/// short-lived: connect, ask, close. Answers whose id does not match the request
/// (left over from an earlier connection) are dropped.
public final class AgentClient {
    public let socketPath: String
    public var timeout: TimeInterval
    /// Cancels a call waiting for its answer (within 0.1 s): the connection is closed and the
    /// answer, when it comes, is dropped as stale.
    public var cancel: Cancellation?
    private var socket: UnixSocket?
    private var buffer = LineBuffer(maxLine: AgentProtocol.maxFrameBytes)
    private var nextId: UInt64

    public init(socketPath: String, timeout: TimeInterval = 10) {
        self.socketPath = socketPath
        self.timeout = timeout
        self.nextId = UInt64.random(in: 1...(UInt64(1) << 52))
    }

    deinit { close() }

    public func close() {
        socket?.close()
        socket = nil
    }

    /// The process serving the agent's port on the host (a VM's QEMU), from the kernel's
    /// record of the connection; nil before a call connected or when the kernel does not say.
    public var hostPeer: pid_t? { socket?.peerProcess }

    private func connected() throws -> UnixSocket {
        if let socket { return socket }
        let s: UnixSocket
        do {
            s = try UnixSocket.connect(to: socketPath)
        } catch {
            throw AgentError.unreachable(socket: socketPath)
        }
        // A newline first ends any partial frame an earlier client left in the port.
        try s.write(Data([0x0A]), deadline: Date().addingTimeInterval(timeout))
        socket = s
        buffer = LineBuffer(maxLine: AgentProtocol.maxFrameBytes)
        return s
    }

    /// Sends one request and waits for its answer, up to `timeout` (or the client's default).
    public func call(
        _ op: AgentOperation, exec: ExecRequest? = nil, collect: ExclusionRequest? = nil, cleanup: CleanupRequest? = nil,
        entropy: Data? = nil, clock: ClockSetting? = nil, lease: Double? = nil, recovering: Bool = false, timeout: TimeInterval? = nil,
        passFailures: Bool = false
    ) throws
        -> AgentResponse
    {
        let limit = timeout ?? self.timeout
        let deadline = Date().addingTimeInterval(limit)
        let s = try connected()
        nextId &+= 1
        var request = AgentRequest(id: nextId, op: op, exec: exec, collect: collect, cleanup: cleanup, entropy: entropy, clock: clock)
        request.leaseSeconds = lease
        if recovering { request.recovering = true }
        do {
            try s.write(AgentFraming.encode(request), deadline: deadline)
            while true {
                if cancel?.isCancelled == true {
                    close()
                    throw SparcError("cancelled while the guest agent worked on '\(op.rawValue)'")
                }
                let slice = cancel == nil ? deadline : min(deadline, Date().addingTimeInterval(0.1))
                guard let chunk = try s.read(deadline: slice) else {
                    if Date() < deadline { continue }
                    close()
                    throw AgentError.noAnswer(operation: op.rawValue, seconds: Self.format(limit))
                }
                if chunk.isEmpty {
                    close()
                    throw AgentError.closed
                }
                for frame in buffer.append(chunk) {
                    guard case .line(let line) = frame else {
                        close()
                        throw AgentError.oversized(operation: op.rawValue, why: "larger than \(AgentProtocol.maxFrameBytes >> 20) MiB")
                    }
                    // Decoding JSON costs ~30 bytes per value: a frame of tiny values from a
                    // hostile guest would cost the host gigabytes, so the values are counted first.
                    guard AgentFraming.valueCount(line, limit: AgentProtocol.maxFrameValues) <= AgentProtocol.maxFrameValues else {
                        close()
                        throw AgentError.oversized(operation: op.rawValue, why: "of more than \(AgentProtocol.maxFrameValues) JSON values")
                    }
                    guard let response = try? JSONDecoder().decode(AgentResponse.self, from: line), response.id == request.id else { continue }
                    if let failure = response.error {
                        if passFailures { throw failure }
                        throw SparcError("guest agent: \(failure.message)")
                    }
                    return response
                }
            }
        }
    }

    static func format(_ t: TimeInterval) -> String {
        t == t.rounded() ? String(Int(t)) : String(Double(Int(t * 10)) / 10)
    }

    public func hello(timeout: TimeInterval? = nil) throws -> HelloInfo {
        guard let h = try call(.hello, timeout: timeout).hello else { throw SparcError("guest agent sent no hello") }
        return h
    }

    public func processes() throws -> [GuestProcess] {
        try call(.processes).processes ?? []
    }

    public func ttys() throws -> [GuestTTY] {
        try call(.ttys).ttys ?? []
    }

    public func exec(_ request: ExecRequest, timeout: TimeInterval? = nil) throws -> ExecResult {
        guard let r = try call(.exec, exec: request, timeout: timeout).exec else {
            throw SparcError("guest agent sent no exec result")
        }
        return r
    }

    /// Freezes the guest's processes; they thaw by themselves after `lease` seconds without
    /// word from this checkpoint (the agent's default when nil).
    public func freeze(lease: Double? = nil) throws -> FreezeResult {
        guard let r = try call(.freeze, lease: lease).freeze else { throw SparcError("guest agent sent no freeze result") }
        return r
    }

    public func thaw() throws -> FreezeResult {
        guard let r = try call(.thaw).freeze else { throw SparcError("guest agent sent no thaw result") }
        return r
    }

    /// Resolves an exclusion and collects its physical ranges (the guest must be frozen).
    public func collect(_ request: ExclusionRequest, lease: Double? = nil, timeout: TimeInterval? = nil) throws -> ExclusionPlan {
        guard let r = try call(.collect, collect: request, lease: lease, timeout: timeout ?? max(self.timeout, 120)).plan else {
            throw SparcError("guest agent sent no exclusion plan")
        }
        return r
    }

    /// After a restore: kills excluded processes, evicts their page cache (guest still frozen).
    public func cleanup(_ request: CleanupRequest) throws -> CleanupResult {
        guard let r = try call(.cleanup, cleanup: request, timeout: max(timeout, 60)).cleanup else {
            throw SparcError("guest agent sent no cleanup result")
        }
        return r
    }

    /// Who owns each page, for attributing search hits (guest frozen for a consistent map).
    public func owners() throws -> OwnerMap {
        guard let r = try call(.owners, timeout: max(timeout, 60)).owners else { throw SparcError("guest agent sent no owner map") }
        return r
    }

    /// Where the guest kernel records free memory and swap, for reading at the pause. The
    /// agent's refusal is thrown as the `AgentFailure` itself (an older agent does not know the operation).
    public func memoryLayout() throws -> GuestMemoryLayout {
        guard let r = try call(.memoryLayout, timeout: max(timeout, 60), passFailures: true).memoryLayout else {
            throw SparcError("guest agent sent no memory layout")
        }
        return r
    }

    /// Mixes host entropy into the guest's RNG (after a restore, before the guest runs on).
    public func reseed(_ entropy: Data) throws {
        _ = try call(.reseed, entropy: entropy)
    }

    /// Sets the guest's wall clock (and its RTC) to the host's time (after a restore, before the thaw).
    public func setClock(_ now: Date = Date()) throws -> ClockResult {
        guard let r = try call(.setClock, clock: ClockSetting(now)).clock else { throw SparcError("guest agent sent no clock result") }
        return r
    }

    /// Asks the guest to shut down cleanly (thawed first if it was frozen); returns at once.
    public func powerOff() throws -> PowerOffResult {
        guard let r = try call(.poweroff).poweroff else { throw SparcError("guest agent sent no power-off result") }
        return r
    }

    /// Starts (or finds) the terminal relay on the second serial port.
    public func terminal() throws -> TerminalInfo {
        guard let r = try call(.terminal).terminal else { throw SparcError("guest agent sent no terminal info") }
        return r
    }

    /// Polls `hello` until the agent answers or `timeout` passes (used while the guest boots).
    public func waitUntilReady(timeout: TimeInterval, pollInterval: TimeInterval = 0.5) throws -> HelloInfo {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError: Error?
        while Date() < deadline {
            do {
                return try hello(timeout: min(2, max(0.2, deadline.timeIntervalSinceNow)))
            } catch {
                lastError = error
                close()
                usleep(UInt32(pollInterval * 1_000_000))
            }
        }
        throw AgentError.notReady(seconds: Self.format(timeout), last: lastError.map { "\($0)" })
    }
}

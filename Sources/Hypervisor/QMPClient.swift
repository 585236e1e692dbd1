import Foundation
import SparcSupport

/// A QMP (QEMU Machine Protocol) client over a Unix socket.
///
/// QMP sends one JSON object per line: a greeting, then `return`/`error` answers in
/// request order, with asynchronous `event` objects in between, which are set aside.
public final class QMPClient: MachineMonitor {
    public let socketPath: String
    public var timeout: TimeInterval
    private let socket: UnixSocket
    private var buffer = LineBuffer(maxLine: 16 << 20)
    private var queued: [Data] = []
    /// Events received while waiting for answers, oldest first.
    public private(set) var events: [[String: Any]] = []
    public private(set) var qemuVersion = ""

    /// Connects and negotiates capabilities.
    public init(socketPath: String, timeout: TimeInterval = 10) throws {
        self.socketPath = socketPath
        self.timeout = timeout
        do {
            socket = try UnixSocket.connect(to: socketPath)
        } catch {
            throw SparcError("QEMU monitor \(socketPath) is not reachable: is the VM running?")
        }
        let greeting = try readMessage(deadline: Date().addingTimeInterval(timeout))
        guard let qmp = greeting["QMP"] as? [String: Any] else {
            throw SparcError("unexpected QMP greeting from \(socketPath)")
        }
        if let v = (qmp["version"] as? [String: Any])?["qemu"] as? [String: Any] {
            qemuVersion = "\(v["major"] ?? 0).\(v["minor"] ?? 0).\(v["micro"] ?? 0)"
        }
        _ = try execute("qmp_capabilities")
    }

    deinit { socket.close() }

    public func close() { socket.close() }

    /// Parses one QMP line; exposed for tests.
    public static func parse(_ line: Data) throws -> [String: Any] {
        guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else {
            throw SparcError("QEMU sent malformed QMP: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
        return obj
    }

    private func readMessage(deadline: Date) throws -> [String: Any] {
        while queued.isEmpty {
            guard let chunk = try socket.read(deadline: deadline) else {
                throw SparcError("QEMU monitor did not answer within \(Int(timeout)) s")
            }
            if chunk.isEmpty { throw SparcError("QEMU closed the monitor connection (did QEMU exit?)") }
            for frame in buffer.append(chunk) {
                if case .line(let l) = frame { queued.append(l) }
            }
        }
        return try Self.parse(queued.removeFirst())
    }

    /// Runs a QMP command and returns its `return` value; a QMP `error` becomes a SparcError.
    /// `fds` are passed along with the command (for `getfd` and `add-fd`).
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: Any]? = nil, fds: [Int32] = [], timeout: TimeInterval? = nil)
        throws -> Any
    {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        var data = try JSONSerialization.data(withJSONObject: message)
        data.append(0x0A)
        let deadline = Date().addingTimeInterval(timeout ?? self.timeout)
        try socket.write(data, fds: fds, deadline: deadline)
        while true {
            let reply = try readMessage(deadline: deadline)
            if reply["event"] != nil {
                events.append(reply)
                continue
            }
            if let error = reply["error"] as? [String: Any] {
                throw SparcError("QEMU refused \(command): \(error["desc"] as? String ?? "unknown error")")
            }
            return reply["return"] ?? [String: Any]()
        }
    }

    /// Adds descriptors to an fd set, for `/dev/fdset/ID` paths: QEMU picks the one whose
    /// access mode fits each open, so a file that may be reopened read-only gets both.
    public func addToFDSet(_ id: Int, descriptors: [Int32]) throws {
        for fd in descriptors { try execute("add-fd", ["fdset-id": id], fds: [fd]) }
    }
}

/// Something that runs QMP commands on a QEMU: sparc's own monitor socket, or libvirt's
/// monitor of a domain it manages (libvirt holds that socket itself).
public protocol MachineMonitor: AnyObject {
    /// Runs a QMP command and returns its `return` value; a QMP `error` becomes a SparcError.
    /// `fds` are passed along with the command (for `getfd` and `add-fd`).
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any]?, fds: [Int32], timeout: TimeInterval?) throws -> Any
}

extension MachineMonitor {
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: Any]? = nil) throws -> Any {
        try execute(command, arguments, fds: [], timeout: nil)
    }

    /// Hands QEMU a descriptor under `name` (for `fd:NAME` migration URIs).
    public func passDescriptor(_ fd: Int32, as name: String) throws {
        try execute("getfd", ["fdname": name], fds: [fd], timeout: nil)
    }


    /// The VM run state (`running`, `paused`, `postmigrate`, `inmigrate`, ...).
    public func status() throws -> String {
        let r = try execute("query-status") as? [String: Any]
        return r?["status"] as? String ?? "unknown"
    }

    /// The `query-migrate` answer: status and, on failure, QEMU's description.
    public func migrationState() throws -> (status: String, error: String?) {
        let r = try execute("query-migrate") as? [String: Any] ?? [:]
        return (r["status"] as? String ?? "none", r["error-desc"] as? String)
    }

    /// Polls `query-migrate` until the migration completes; throws with QEMU's reason when it fails.
    public func waitForMigration(timeout: TimeInterval, progress: ((String) -> Void)? = nil) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var delay: useconds_t = 2000
        while true {
            let (status, error) = try migrationState()
            progress?(status)
            switch status {
            case "completed": return
            case "failed", "cancelled":
                throw SparcError("QEMU migration \(status): \(error ?? "no reason given")")
            default:
                if Date() > deadline { throw SparcError("QEMU migration still '\(status)' after \(Int(timeout)) s") }
                usleep(delay)
                delay = min(delay * 2, 50_000)
            }
        }
    }
}

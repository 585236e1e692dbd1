#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import SparcSupport

/// The agent wire protocol: JSON objects, one per line, over a virtio-serial port.
///
/// Every request carries a version and an id; every response echoes the id, so a
/// host that reconnects (after a restore) can drop stale answers meant for an earlier
/// connection. Errors travel as values, never as dropped connections.
public enum AgentProtocol {
    public static let version = 1
    /// The virtio-serial port name the agent looks for in /sys/class/virtio-ports.
    public static let portName = VirtioPortName.agent
    /// Frames longer than this are rejected on both sides.
    public static let maxFrameBytes = 64 << 20
    /// The most JSON values (numbers, strings, objects, arrays) the host decodes in one frame:
    /// about 60 MiB of decoder memory. Real answers hold far fewer (bulk data travels packed,
    /// base64 in one string).
    public static let maxFrameValues = 2_000_000
}

public enum AgentOperation: String, Codable, Sendable {
    case hello, processes, ttys, exec, freeze, thaw, collect, cleanup, terminal, owners, reseed, setClock, poweroff, memoryLayout
}

/// Parameters of `exec`: the command runs inside the guest's process cgroup.
public struct ExecRequest: Codable, Equatable, Sendable {
    public var argv: [String]
    /// Start and return the pid at once, with stdio on /dev/null and a new session.
    public var detach: Bool
    /// Bytes for the command's standard input (not for detached commands).
    public var stdin: Data?
    /// Kill the command after this many milliseconds (0 = no limit).
    public var timeoutMs: Int

    public init(argv: [String], detach: Bool = false, stdin: Data? = nil, timeoutMs: Int = 0) {
        self.argv = argv
        self.detach = detach
        self.stdin = stdin
        self.timeoutMs = timeoutMs
    }
}

public struct AgentRequest: Codable, Equatable, Sendable {
    public var v: Int
    public var id: UInt64
    public var op: AgentOperation
    public var exec: ExecRequest?
    public var collect: ExclusionRequest?
    public var cleanup: CleanupRequest?
    /// Host entropy for `reseed`, mixed into the guest's RNG.
    public var entropy: Data?
    /// The host's time for `setClock`.
    public var clock: ClockSetting?
    /// For `freeze` and `collect`: how long the freeze may last without word from the
    /// checkpoint (nil: the agent's default).
    public var leaseSeconds: Double?
    /// For `thaw`: sent by a command that found the freeze's owner dead; the agent thaws as its
    /// lease would at its end (a restored guest first ends the excluded processes it carries
    /// the plan for). Nil: the owner itself thaws.
    public var recovering: Bool?

    public init(
        id: UInt64, op: AgentOperation, exec: ExecRequest? = nil, collect: ExclusionRequest? = nil,
        cleanup: CleanupRequest? = nil, entropy: Data? = nil, clock: ClockSetting? = nil
    ) {
        self.entropy = entropy
        self.clock = clock
        self.v = AgentProtocol.version
        self.id = id
        self.op = op
        self.exec = exec
        self.collect = collect
        self.cleanup = cleanup
    }
}

public struct AgentFailure: Codable, Equatable, Error, Sendable {
    public enum Code: String, Codable, Sendable {
        case badFrame, unsupportedVersion, unknownOperation, invalidArgument, notFound, failed
    }
    public var code: Code
    public var message: GuestText
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = GuestText(message)
    }
}

public struct HelloInfo: Codable, Equatable, Sendable {
    public var agentVersion: GuestText
    public var protocolVersion: Int
    public var kernel: GuestText
    public var pid: Int32
    public var bootId: GuestText
    public var uptimeSeconds: Double
    public var frozen: Bool
    /// While frozen: seconds until the freeze's lease runs out and the agent thaws by itself
    /// (nil from older agents, or when not frozen).
    public var leaseLeft: Double?

    public init(
        agentVersion: String, protocolVersion: Int, kernel: String, pid: Int32, bootId: String,
        uptimeSeconds: Double, frozen: Bool, leaseLeft: Double? = nil
    ) {
        self.leaseLeft = leaseLeft
        self.agentVersion = GuestText(agentVersion)
        self.protocolVersion = protocolVersion
        self.kernel = GuestText(kernel)
        self.pid = pid
        self.bootId = GuestText(bootId)
        self.uptimeSeconds = uptimeSeconds
        self.frozen = frozen
    }
}

/// One guest process as `ps` shows it.
public struct GuestProcess: Codable, Equatable, Sendable {
    public var pid: Int32
    public var ppid: Int32
    public var user: GuestText
    /// The one-letter state from /proc/PID/stat (R, S, D, T, Z, ...).
    public var state: GuestText
    /// Terminal name such as `ttyS0` or `pts/0`, or nil when the process has none.
    public var tty: GuestText?
    public var rssKiB: Int64
    public var command: GuestText
    /// Kernel threads have no user memory; they are listed only on request.
    public var kernelThread: Bool
    /// The systemd unit whose cgroup holds it (`ssh.service`, `session-3.scope`); nil without
    /// systemd, or from an agent older than the field.
    public var unit: GuestText?

    public init(
        pid: Int32, ppid: Int32, user: String, state: String, tty: String?, rssKiB: Int64, command: String,
        kernelThread: Bool, unit: String? = nil
    ) {
        self.unit = unit.map { GuestText($0) }
        self.pid = pid
        self.ppid = ppid
        self.user = GuestText(user)
        self.state = GuestText(state)
        self.tty = tty.map { GuestText($0) }
        self.rssKiB = rssKiB
        self.command = GuestText(command)
        self.kernelThread = kernelThread
    }
}

/// Which login session a terminal belongs to: its session leader, told apart from a later
/// process with the same pid by its start time. pty numbers are reused as sessions come and
/// go; a tag bound to this never names the next session on the same pty.
public struct TTYSession: Codable, Equatable, Hashable, Sendable {
    public var tty: String
    public var leader: Int32
    /// Field 22 of the leader's /proc/PID/stat.
    public var leaderStart: UInt64
    public init(tty: String, leader: Int32, leaderStart: UInt64) {
        self.tty = tty
        self.leader = leader
        self.leaderStart = leaderStart
    }
}

/// One guest terminal and the processes that have it as controlling terminal.
public struct GuestTTY: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case serial, virtualConsole = "virtual-console", pty, console, other }
    public var name: GuestText
    public var kind: Kind
    public var pids: [Int32]
    /// For a pty: the processes holding its master side (sshd's session, a terminal program).
    public var holders: [Int32]
    /// The session it belongs to now (nil: none, or an agent before 0.3).
    public var session: TTYSession?
    public init(name: String, kind: Kind, pids: [Int32], holders: [Int32] = [], session: TTYSession? = nil) {
        self.name = GuestText(name)
        self.kind = kind
        self.pids = pids
        self.holders = holders
        self.session = session
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(GuestText.self, forKey: .name)
        kind = try c.decode(Kind.self, forKey: .kind)
        pids = try c.decode([Int32].self, forKey: .pids)
        holders = try c.decodeIfPresent([Int32].self, forKey: .holders) ?? []
        session = try c.decodeIfPresent(TTYSession.self, forKey: .session)
    }
}

public struct ExecResult: Codable, Equatable, Sendable {
    /// Exit status (128+signal when killed); nil for a detached command.
    public var status: Int32?
    public var pid: Int32
    public var stdout: Data
    public var stderr: Data
    public var timedOut: Bool
    public init(status: Int32?, pid: Int32, stdout: Data = Data(), stderr: Data = Data(), timedOut: Bool = false) {
        self.status = status
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.timedOut = timedOut
    }
}

/// Parameters of `setClock`: the host's wall-clock time.
public struct ClockSetting: Codable, Equatable, Sendable {
    /// Nanoseconds since the Unix epoch (UTC).
    public var unixNanoseconds: Int64
    public init(unixNanoseconds: Int64) { self.unixNanoseconds = unixNanoseconds }
    public init(_ date: Date) { self.unixNanoseconds = Int64((date.timeIntervalSince1970 * 1e9).rounded()) }
}

/// What `setClock` did: how far the guest's clock moved and whether its RTC followed.
public struct ClockResult: Codable, Equatable, Sendable {
    /// Seconds the guest's wall clock was moved (positive: forward).
    public var stepSeconds: Double
    /// Why the RTC was not set, or nil when it was.
    public var rtcError: GuestText?
    public init(stepSeconds: Double, rtcError: String? = nil) {
        self.stepSeconds = stepSeconds
        self.rtcError = rtcError.map { GuestText($0) }
    }
}

/// What `poweroff` started: the command the guest shuts down with.
public struct PowerOffResult: Codable, Equatable, Sendable {
    public var command: [GuestText]
    public init(command: [String]) { self.command = [GuestText](command) }
}

public struct FreezeResult: Codable, Equatable, Sendable {
    /// Processes now frozen (or thawed).
    public var processes: Int
    public var milliseconds: Double
    /// For a thaw: whether the guest was still frozen by this agent when the thaw came (false
    /// after the agent restarted, or the lease ran out, since the freeze). Nil from older agents.
    public var wasFrozen: Bool?
    public init(processes: Int, milliseconds: Double, wasFrozen: Bool? = nil) {
        self.processes = processes
        self.milliseconds = milliseconds
        self.wasFrozen = wasFrozen
    }
}

public struct AgentResponse: Codable, Equatable, Error, Sendable {
    public var id: UInt64?
    public var ok: Bool
    public var error: AgentFailure?
    public var hello: HelloInfo?
    public var processes: [GuestProcess]?
    public var ttys: [GuestTTY]?
    public var exec: ExecResult?
    public var freeze: FreezeResult?
    public var plan: ExclusionPlan?
    public var cleanup: CleanupResult?
    public var terminal: TerminalInfo?
    public var owners: OwnerMap?
    public var clock: ClockResult?
    public var poweroff: PowerOffResult?
    public var memoryLayout: GuestMemoryLayout?

    public init(
        id: UInt64?, error: AgentFailure? = nil, hello: HelloInfo? = nil, processes: [GuestProcess]? = nil,
        ttys: [GuestTTY]? = nil, exec: ExecResult? = nil, freeze: FreezeResult? = nil, plan: ExclusionPlan? = nil,
        cleanup: CleanupResult? = nil, terminal: TerminalInfo? = nil, owners: OwnerMap? = nil, clock: ClockResult? = nil,
        poweroff: PowerOffResult? = nil, memoryLayout: GuestMemoryLayout? = nil
    ) {
        self.memoryLayout = memoryLayout
        self.clock = clock
        self.poweroff = poweroff
        self.owners = owners
        self.plan = plan
        self.cleanup = cleanup
        self.terminal = terminal
        self.id = id
        self.ok = error == nil
        self.error = error
        self.hello = hello
        self.processes = processes
        self.ttys = ttys
        self.exec = exec
        self.freeze = freeze
    }
}

/// Encoding and decoding of frames; shared by agent and host so both agree byte for byte.
public enum AgentFraming {
    public static func encode<T: Encodable>(_ value: T) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        data.append(0x0A)
        return data
    }

    /// Counts the values of a JSON text roughly (separators and openings outside strings), up
    /// to `limit` + 1: cheap, and an upper bound of what a decoder would build.
    public static func valueCount(_ text: Data, limit: Int) -> Int {
        text.withUnsafeBytes { raw -> Int in
            var count = 0
            var inString = false
            var escaped = false
            for b in raw {
                if inString {
                    if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
                    continue
                }
                switch b {
                case 0x22: inString = true
                case 0x2C, 0x3A, 0x5B, 0x7B:  // , : [ {
                    count += 1
                    if count > limit { return count }
                default: break
                }
            }
            return count
        }
    }

    private struct IdOnly: Decodable {
        var id: UInt64?
    }

    /// Decodes a request line, or returns the failure to send back (with the id when it was readable).
    public static func decodeRequest(_ line: Data) -> Result<AgentRequest, AgentResponse> {
        let trimmed = line.drop { $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }
        if trimmed.isEmpty {
            return .failure(AgentResponse(id: nil, error: AgentFailure(.badFrame, "empty frame")))
        }
        let decoder = JSONDecoder()
        let id = (try? decoder.decode(IdOnly.self, from: line))?.id
        struct Header: Decodable {
            var v: Int
            var op: String
        }
        guard let header = try? decoder.decode(Header.self, from: line) else {
            return .failure(AgentResponse(id: id, error: AgentFailure(.badFrame, "frame is not a request object")))
        }
        guard header.v == AgentProtocol.version else {
            return .failure(
                AgentResponse(
                    id: id,
                    error: AgentFailure(
                        .unsupportedVersion,
                        "protocol version \(header.v) not supported (agent speaks \(AgentProtocol.version))")))
        }
        guard AgentOperation(rawValue: header.op) != nil else {
            return .failure(AgentResponse(id: id, error: AgentFailure(.unknownOperation, "unknown operation '\(header.op)'")))
        }
        do {
            return .success(try decoder.decode(AgentRequest.self, from: line))
        } catch {
            return .failure(AgentResponse(id: id, error: AgentFailure(.invalidArgument, "malformed request: \(error)")))
        }
    }
}

// MARK: - Exclusion

/// How much of an excluded process's data is left out.
public enum ExclusionScope: String, Codable, Sendable, CaseIterable {
    /// Only the processes' own pages (what their page tables map).
    case user
    /// Also the kernel memory that carries their data: page cache, pipes, sockets, terminals, kernel stacks.
    case all
}

/// What the operator asked to leave out of a checkpoint.
public struct ExclusionRequest: Codable, Equatable, Sendable {
    public var pids: [Int32]
    public var names: [String]
    public var ttys: [String]
    public var scope: ExclusionScope
    /// Also exclude page cache of files on memory-only file systems (their content is lost at restore).
    public var excludeMemoryFiles: Bool
    /// Save even where a step of the collection could not complete, recording each gap
    /// (`ExclusionPlan.gaps`); without it such a step makes the checkpoint refuse. Nil: false.
    public var bestEffort: Bool?
    /// Terminals named by the session they belonged to when tagged: refused when that
    /// session is gone (the pty may be another's by now). Nil: none.
    public var ttySessions: [TTYSession]?
    /// Refuse when anything may still hold the processes' data that sparc cannot leave out
    /// (`ExclusionPlan.possibleCopies`). Nil: false.
    public var strict: Bool?

    public init(
        pids: [Int32] = [], names: [String] = [], ttys: [String] = [], scope: ExclusionScope = .all, excludeMemoryFiles: Bool = false,
        bestEffort: Bool = false
    ) {
        self.pids = pids
        self.names = names
        self.ttys = ttys
        self.scope = scope
        self.excludeMemoryFiles = excludeMemoryFiles
        self.bestEffort = bestEffort ? true : nil
    }

    public var isEmpty: Bool { pids.isEmpty && names.isEmpty && ttys.isEmpty && (ttySessions ?? []).isEmpty }
}

/// The kinds of memory an exclusion covers; manifests count bytes per kind.
public enum ExcludedKind: String, Codable, Sendable, CaseIterable {
    /// `shm`: detached SysV shared memory segments the processes created.
    case user, pagecache, pipe, socket, tty, kstack, shm
}

/// A process an exclusion resolved to, and why it is in the set.
public struct ExcludedProcess: Codable, Equatable, Sendable {
    public var pid: Int32
    /// The command name (/proc/PID/comm), never the arguments: those live in the excluded
    /// memory and may be the very secret.
    public var command: GuestText
    /// "pid 12", "name bash", "tty pts/0", "child of 12", "holds the master of pts/0".
    public var reason: GuestText
    /// Field 22 of /proc/PID/stat: tells this process from a later one with the same pid.
    public var startTime: UInt64
    public init(pid: Int32, command: String, reason: String, startTime: UInt64) {
        self.pid = pid
        self.command = GuestText(command)
        self.reason = GuestText(reason)
        self.startTime = startTime
    }
}

/// One guest-physical byte range to leave out, and what it holds.
public struct ExcludedRange: Equatable, Sendable {
    public var start: UInt64
    public var length: UInt64
    public var kind: ExcludedKind
    public init(start: UInt64, length: UInt64, kind: ExcludedKind) {
        self.start = start
        self.length = length
        self.kind = kind
    }

    /// Packs ranges as little-endian (start, length, kind) triples: tens of thousands of
    /// ranges travel as one base64 string, cheap to encode in the guest.
    public static func pack(_ ranges: [ExcludedRange]) -> Data {
        var words: [UInt64] = []
        words.reserveCapacity(ranges.count * 3)
        let kinds = ExcludedKind.allCases
        for r in ranges {
            words += [r.start.littleEndian, r.length.littleEndian, UInt64(kinds.firstIndex(of: r.kind)!).littleEndian]
        }
        return words.withUnsafeBytes { Data($0) }
    }

    public static func unpack(_ data: Data) -> [ExcludedRange] {
        let kinds = ExcludedKind.allCases
        var words = [UInt64](repeating: 0, count: data.count / 8)
        _ = words.withUnsafeMutableBytes { data.copyBytes(to: $0) }
        return stride(from: 0, to: words.count - words.count % 3, by: 3).compactMap { i in
            let k = Int(UInt64(littleEndian: words[i + 2]))
            guard k < kinds.count else { return nil }
            return ExcludedRange(start: UInt64(littleEndian: words[i]), length: UInt64(littleEndian: words[i + 1]), kind: kinds[k])
        }
    }
}

/// A byte range on the VM's disk (its virtual size), such as a swap slot.
public struct DiskByteRange: Codable, Equatable, Hashable, Sendable {
    public var offset: UInt64
    public var length: UInt64
    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }

    /// Sorted, with touching and overlapping ranges joined.
    public static func merged(_ ranges: [DiskByteRange]) -> [DiskByteRange] {
        var out: [DiskByteRange] = []
        for r in ranges.sorted(by: { $0.offset < $1.offset }) where r.length > 0 {
            if let last = out.last, r.offset <= last.offset + last.length {
                out[out.count - 1].length = max(last.offset + last.length, r.offset + r.length) - last.offset
            } else {
                out.append(r)
            }
        }
        return out
    }
}

/// Physical byte ranges to leave out, with what they are.
public struct ExclusionPlan: Codable, Equatable, Sendable {
    /// The ranges, packed (see `ExcludedRange.pack`); guest-physical, merged per kind.
    public var packedRanges: Data
    public var ranges: [ExcludedRange] { ExcludedRange.unpack(packedRanges) }
    public var processes: [ExcludedProcess]
    public var ttys: [GuestText]
    /// The session each excluded terminal resolved to (the CLI names it). Nil from older agents.
    public var ttySessions: [TTYSession]? = nil
    /// Bytes per kind before ranges of different kinds were merged.
    public var bytes: [String: UInt64]
    /// Pages the excluded processes map that some other process maps too: kept.
    public var keptSharedPages: Int
    /// Regular files on disk whose page cache was excluded: evicted after restore.
    public var evictFiles: [GuestText]
    /// Files on memory-only file systems whose pages were excluded (opt-in): removed after restore.
    public var removeFiles: [GuestText]
    public var warnings: [GuestText]
    public var milliseconds: Double
    /// Where the collection time went (resolve, user, pagecache, kernel, pack), in ms.
    public var phases: [String: Double] = [:]
    /// Swap slots on the VM's disk that hold excluded pages: zeroed in the bundle's disk state.
    public var diskRanges: [DiskByteRange]? = nil
    /// Steps that could not complete under --best-effort: what may have been saved after all.
    public var gaps: [GuestText]? = nil
    /// Descendants of the excluded processes that had exited: what they wrote into queues
    /// others hold is theirs too (dropped at restore). Nil: none known.
    public var exitedPids: [Int32]? = nil
    /// Where the processes' data may still be that sparc could not leave out, each with what
    /// to do (a server they talked to, a queue whose writer cannot be known); --strict refuses.
    public var possibleCopies: [GuestText]? = nil

    public init(
        ranges: [ExcludedRange] = [], processes: [ExcludedProcess] = [], ttys: [String] = [], bytes: [String: UInt64] = [:],
        keptSharedPages: Int = 0, evictFiles: [String] = [], removeFiles: [String] = [], warnings: [String] = [],
        milliseconds: Double = 0
    ) {
        self.packedRanges = ExcludedRange.pack(ranges)
        self.processes = processes
        self.ttys = [GuestText](ttys)
        self.bytes = bytes
        self.keptSharedPages = keptSharedPages
        self.evictFiles = [GuestText](evictFiles)
        self.removeFiles = [GuestText](removeFiles)
        self.warnings = [GuestText](warnings)
        self.milliseconds = milliseconds
    }
}

/// What the agent does after a restore, while the guest is still frozen.
public struct CleanupRequest: Codable, Equatable, Sendable {
    public var kill: [ExcludedProcess]
    /// Processes whose pipe, socket and terminal buffers were zeroed in the image: their
    /// unread data is dropped before anything runs, so no reader is handed the zeros. Nil
    /// from older hosts (nothing dropped).
    public var drain: [ExcludedProcess]?
    /// Their descendants that had exited at the checkpoint: what they wrote into others'
    /// queues is dropped too. Nil: none.
    public var drainExited: [Int32]?
    public var evictFiles: [GuestText]
    public var removeFiles: [GuestText]
    public init(
        kill: [ExcludedProcess], drain: [ExcludedProcess] = [], drainExited: [Int32] = [], evictFiles: [GuestText], removeFiles: [GuestText]
    ) {
        self.kill = kill
        self.drain = drain.isEmpty ? nil : drain
        self.drainExited = drainExited.isEmpty ? nil : drainExited
        self.evictFiles = evictFiles
        self.removeFiles = removeFiles
    }
}

public struct CleanupResult: Codable, Equatable, Sendable {
    public var killed: [Int32]
    /// Excluded processes that were no longer there (or were another process by now).
    public var missing: [Int32]
    public var evicted: [GuestText]
    public var removed: [GuestText]
    public var warnings: [GuestText]
    /// Files whose pages stayed cached because running processes map them (pages that were
    /// shared at the checkpoint and so saved as they were): pages per file. Nil from older agents.
    public var stillMapped: [GuestText: Int]?
    /// Kernel buffers (pipe buffers, skbs, terminals) whose unread data was dropped. Nil from older agents.
    public var droppedBuffers: Int?
    public init(killed: [Int32] = [], missing: [Int32] = [], evicted: [String] = [], removed: [String] = [], warnings: [String] = []) {
        self.killed = killed
        self.missing = missing
        self.evicted = [GuestText](evicted)
        self.removed = [GuestText](removed)
        self.warnings = [GuestText](warnings)
    }
}

/// The answer to `terminal`: the relay that holds the pty master, and the pty's name.
public struct TerminalInfo: Codable, Equatable, Sendable {
    public var relayPid: Int32
    public var shellPid: Int32
    public var tty: GuestText
    public var started: Bool
    public init(relayPid: Int32, shellPid: Int32, tty: String, started: Bool) {
        self.relayPid = relayPid
        self.shellPid = shellPid
        self.tty = GuestText(tty)
        self.started = started
    }
}

// MARK: - Owner map

/// Who owns each guest page, recorded at checkpoint time for every process so a search hit
/// can be attributed. Holds no page content and only command names (never arguments).
public struct OwnerMap: Codable, Equatable, Sendable {
    public struct Mapping: Codable, Equatable, Sendable {
        /// "[heap]", "[stack]", "[anon]", or the mapped file's path.
        public var name: GuestText
        /// Runs of frames as little-endian (first pfn, count) pairs of UInt64: a frame run costs
        /// 16 bytes (base64 in the frame), where a JSON `[first, count]` array costs a decoder
        /// ~13 times its text. Agents before 0.3 sent `runs` instead.
        public var packed: Data?
        /// Runs of frames: [first pfn, count] (older agents).
        public var runs: [[UInt64]]?

        public init(name: String, runs: [(first: UInt64, count: UInt64)]) {
            self.name = GuestText(name)
            var words: [UInt64] = []
            words.reserveCapacity(runs.count * 2)
            for r in runs { words += [r.first.littleEndian, r.count.littleEndian] }
            self.packed = words.withUnsafeBytes { Data($0) }
        }

        /// Every run, from whichever form the agent sent.
        public var frameRuns: [(first: UInt64, count: UInt64)] {
            if let packed {
                var words = [UInt64](repeating: 0, count: packed.count / 16 * 2)
                _ = words.withUnsafeMutableBytes { packed.copyBytes(to: $0) }
                return stride(from: 0, to: words.count, by: 2).map { (UInt64(littleEndian: words[$0]), UInt64(littleEndian: words[$0 + 1])) }
            }
            return (runs ?? []).compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
        }
    }

    public struct Process: Codable, Equatable, Sendable {
        public var pid: Int32
        public var command: GuestText
        public var mappings: [Mapping]
        public init(pid: Int32, command: String, mappings: [Mapping]) {
            self.pid = pid
            self.command = GuestText(command)
            self.mappings = mappings
        }
    }

    /// What a frame is when no process maps it (the bundle's `FrameKind` has the same values).
    public enum FrameClass: UInt8, Codable, Sendable {
        case kernel = 0, free, slab, pageTable, pageCache, anonymous, zeroPage, reserved, hole

        public var label: String {
            switch self {
            case .kernel: return "kernel/unknown"
            case .free: return "free"
            case .slab: return "kernel/slab"
            case .pageTable: return "kernel/page-table"
            case .pageCache: return "page cache"
            case .anonymous: return "anonymous (unmapped)"
            case .zeroPage: return "zero page"
            case .reserved: return "kernel/reserved"
            case .hole: return "no RAM"
            }
        }
    }

    public var pageSize: Int
    public var processes: [Process]
    /// One FrameClass byte per frame.
    public var frameClasses: Data

    public init(pageSize: Int = 4096, processes: [Process] = [], frameClasses: Data = Data()) {
        self.pageSize = pageSize
        self.processes = processes
        self.frameClasses = frameClasses
    }
}

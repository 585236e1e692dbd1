import Foundation
import GuestQuery
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Who holds a guest frozen: a checkpoint (from before its freeze until its thaw) or a
/// restore (from when its guest runs, still frozen, until the guided cleanup thaws it).
///
/// A command killed outright (SIGKILL, a crash, the OOM killer) leaves the marker behind.
/// Whatever sparc command touches the VM next sees that its writer is gone (pid and start
/// time, so a reused pid is not taken for it), resumes QEMU if it was left paused, thaws the
/// guest (running a restore's pending cleanup first: the excluded processes die before
/// anything runs), removes the dead checkpoint's staging directory and logs it. The agent's
/// lease stays as the last resort when no command comes.
struct FreezeMarker: Equatable {
    enum Operation: String { case checkpoint, restore }
    var operation: Operation
    var pid: pid_t
    var startTime: UInt64
    /// The checkpoint's staging directory (removed if it died).
    var staging: String?

    /// This process, about to freeze a guest.
    static func mine(_ operation: Operation, staging: String? = nil) -> FreezeMarker {
        FreezeMarker(operation: operation, pid: getpid(), startTime: processStartTime(getpid()) ?? 0, staging: staging)
    }

    /// Field 22 of /proc/PID/stat (nil when the process is gone).
    static func processStartTime(_ pid: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else {
            return nil
        }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    var text: String { "\(operation.rawValue) \(pid) \(startTime)\n" + (staging.map { "staging \($0)\n" } ?? "") }

    static func parse(_ text: String) -> FreezeMarker? {
        let lines = text.split(separator: "\n")
        guard let first = lines.first else { return nil }
        let f = first.split(separator: " ")
        guard f.count == 3, let op = Operation(rawValue: String(f[0])), let pid = pid_t(f[1]), pid > 0, let start = UInt64(f[2]) else { return nil }
        let staging = lines.dropFirst().first { $0.hasPrefix("staging ") }.map { String($0.dropFirst(8)) }
        return FreezeMarker(operation: op, pid: pid, startTime: start, staging: staging)
    }

    /// Whether the process that wrote the marker still runs.
    var writerAlive: Bool { FreezeMarker.processStartTime(pid) == startTime }

    func write(_ path: String) throws { try FileSystem.writeAtomically(Data(text.utf8), to: path) }

    static func read(_ path: String) -> FreezeMarker? {
        guard let file = try? OpenedFile(regular: path, maxSize: 64 << 10), let data = try? file.readAll() else { return nil }
        return parse(String(decoding: data, as: UTF8.self))
    }
}

extension VMManager {
    /// After a checkpoint or restore that died with the guest frozen (and perhaps paused):
    /// resumes QEMU, thaws the guest, removes what the dead checkpoint was writing and logs it.
    /// Does nothing while that command still runs. Returns what it did, for a status line.
    @discardableResult
    func recoverFromDeadFreeze(_ name: String, layout: RuntimeLayout, agentSocket: String? = nil) -> String? {
        resumeAfterDeadCheckpoint(name, layout: layout)
        guard let marker = FreezeMarker.read(layout.atWorkMarker), !marker.writerAlive else { return nil }
        let agent = AgentClient(socketPath: agentSocket ?? layout.agentSocket, timeout: 5)
        defer { agent.close() }
        // As the agent's own lease would: a restored guest first ends its excluded processes.
        let answer = try? agent.call(.thaw, recovering: true)
        var removed = false
        if let staging = marker.staging, Path.base(of: staging).contains(".partial-\(marker.pid)-") {
            removed = FileSystem.exists(staging) && FileSystem.removeTree(staging).isEmpty
        }
        guard let answer else { return nil }  // the agent did not answer: try again next time (the lease still runs)
        unlink(layout.atWorkMarker)
        let wasFrozen = answer.freeze?.wasFrozen ?? true
        let what = "\(marker.operation.rawValue) (pid \(marker.pid)) died"
            + (wasFrozen ? " with the guest frozen; thawed by the next sparc command" : " after the guest ran again")
            + (removed ? "; its partial bundle was removed" : "")
        try? history(name).append(.recovered, detail: what)
        return what
    }
}

extension VMManager {
    /// What any command naming a VM does first (read-only ones included): undo a checkpoint or
    /// restore of that VM that died holding its guest. Nothing happens while none did.
    public func recoverAbandoned(_ name: String) {
        guard connect == nil, VMName.isValid(name) else { return }
        let layout = layout(name)
        guard FileSystem.exists(layout.atWorkMarker) || FileSystem.exists(layout.pausedMarker),
            let state = try? VMState.load(layout.stateFile), QEMUProcess.isQEMU(state.pid)
        else { return }
        recoverFromDeadFreeze(name, layout: layout)
    }
}

import Foundation
import GuestQuery
import Hypervisor
import Libvirt
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Who holds a guest frozen: a checkpoint (from before its freeze until its thaw) or a
/// restore (from when its guest runs, still frozen, until the guided cleanup thaws it).
///
/// A command killed outright (SIGKILL, a crash, the OOM killer) leaves the marker behind.
/// Its guardian (`Guardian`), or else whatever sparc command touches the VM next, sees that
/// its writer is gone (pid and start time, so a reused pid is not taken for it), resumes QEMU
/// if it was left paused, thaws the guest (running a restore's pending cleanup first: the
/// excluded processes die before anything runs), removes the dead checkpoint's staging
/// directory and logs it. The agent's lease stays as the last resort when neither comes.
struct FreezeMarker: Equatable {
    enum Operation: String { case checkpoint, restore }
    var operation: Operation
    var pid: pid_t
    var startTime: UInt64
    /// The checkpoint's staging directory (removed if it died).
    var staging: String?
    /// A libvirt domain's disk (its target) that the checkpoint put on an overlay, to merge
    /// back if it died.
    var diverted: String?

    /// This process, about to freeze a guest.
    static func mine(_ operation: Operation, staging: String? = nil, diverted: String? = nil) -> FreezeMarker {
        FreezeMarker(operation: operation, pid: getpid(), startTime: ProcessLiveness.stat(getpid())?.startTime ?? 0, staging: staging, diverted: diverted)
    }

    var text: String {
        "\(operation.rawValue) \(pid) \(startTime)\n" + (staging.map { "staging \($0)\n" } ?? "") + (diverted.map { "diverted \($0)\n" } ?? "")
    }

    static func parse(_ text: String) -> FreezeMarker? {
        let lines = text.split(separator: "\n")
        guard let first = lines.first else { return nil }
        let f = first.split(separator: " ")
        guard f.count == 3, let op = Operation(rawValue: String(f[0])), let pid = pid_t(f[1]), pid > 0, let start = UInt64(f[2]) else { return nil }
        let staging = lines.dropFirst().first { $0.hasPrefix("staging ") }.map { String($0.dropFirst(8)) }
        // A disk target as libvirt names them (vda, sdb, hdc): nothing else is merged back.
        let diverted = lines.dropFirst().first { $0.hasPrefix("diverted ") }.map { String($0.dropFirst(9)) }
            .flatMap { t in !t.isEmpty && t.count <= 32 && t.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } ? t : nil }
        return FreezeMarker(operation: op, pid: pid, startTime: start, staging: staging, diverted: diverted)
    }

    /// Whether the process that wrote the marker still runs.
    var writerAlive: Bool { ProcessLiveness.isRunning(pid, startTime: startTime) }

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
    func recoverFromDeadFreeze(_ name: String, layout: RuntimeLayout, agentSocket: String? = nil, by who: String = "the next sparc command") -> String? {
        let resumed = resumeAfterDeadCheckpoint(name, layout: layout, by: who)
        guard let marker = FreezeMarker.read(layout.atWorkMarker), !marker.writerAlive else { return resumed }
        let agent = AgentClient(socketPath: agentSocket ?? layout.agentSocket, timeout: 5)
        defer { agent.close() }
        // As the agent's own lease would: a restored guest first ends its excluded processes.
        let answer = try? agent.call(.thaw, recovering: true)
        var removed = false
        if let staging = marker.staging, Path.base(of: staging).contains(".partial-\(marker.pid)-") {
            removed = FileSystem.exists(staging) && FileSystem.removeTree(staging).isEmpty
        }
        guard let answer else { return resumed }  // the agent did not answer: try again next time (the lease still runs)
        unlink(layout.atWorkMarker)
        let wasFrozen = answer.freeze?.wasFrozen ?? true
        let what = "\(marker.operation.rawValue) (pid \(marker.pid)) died"
            + (wasFrozen ? " with the guest frozen; thawed by \(who)" : " after the guest ran again; found by \(who)")
            + (removed ? "; its partial bundle was removed" : "")
        try? history(name).append(.recovered, detail: what)
        return what
    }
}

extension VMManager {
    /// What any command naming a VM does first (read-only ones included), and what a dead
    /// command's guardian does: undo a checkpoint or restore of that VM that died holding its
    /// guest. Nothing happens while none did. Returns what was done.
    @discardableResult
    public func recoverAbandoned(_ name: String, by who: String = "the next sparc command") -> String? {
        guard VMName.isValid(name) else { return nil }
        return driver.recoverAbandoned(name, by: who, manager: self)
    }

    /// The same for a libvirt domain: resumes it if the dead checkpoint or restore left it
    /// paused, merges a disk it put on an overlay back, thaws the guest (a restore's excluded
    /// processes ended first) and removes the partial bundle.
    func recoverAbandonedDomain(_ name: String, uri: String, by who: String) -> String? {
        let layout = layout(name)
        guard let marker = FreezeMarker.read(layout.atWorkMarker), !marker.writerAlive,
            let connection = try? LibvirtConnection(uri: uri), connection.exists(name)
        else { return nil }
        var did: [String] = []
        LiveMemoryCopy.removeAbandoned()
        // A live copy's migration (copying, or stopped at its last round waiting for sparc) is
        // cancelled: QEMU then runs the guest again itself.
        if let monitor = try? connection.monitor(of: name) {
            if let status = LiveMemoryCopy.cancelLeftOver(monitor), status == "pre-switchover" || status == "device" { did.append("resumed") }
            LiveMemoryCopy.resetCapabilities(monitor)
        }
        if (try? connection.state(of: name)) == "paused", (try? connection.resume(name)) != nil, !did.contains("resumed") { did.append("resumed") }
        if let target = marker.diverted {
            do {
                try connection.mergeDiskBack(name, target: target)
                did.append("disk \(target) merged back")
                // Should the thaw below not get through, the next try must not merge again.
                var merged = marker
                merged.diverted = nil
                try? merged.write(layout.atWorkMarker)
            } catch { did.append("disk \(target) left on its overlay ('virsh blockcommit \(name) \(target) --active --pivot --delete'): \(error)") }
        }
        var removed = false
        if let staging = marker.staging, Path.base(of: staging).contains(".partial-\(marker.pid)-") {
            removed = FileSystem.exists(staging) && FileSystem.removeTree(staging).isEmpty
        }
        guard let socket = try? connection.channelSocket(of: name, port: VirtioPortName.agent) else { return nil }
        let agent = AgentClient(socketPath: socket, timeout: 5)
        defer { agent.close() }
        guard let answer = try? agent.call(.thaw, recovering: true) else { return nil }  // the lease still runs; the next command tries again
        unlink(layout.atWorkMarker)
        let wasFrozen = answer.freeze?.wasFrozen ?? true
        let what = "\(marker.operation.rawValue) (pid \(marker.pid)) of domain '\(name)' died"
            + (wasFrozen ? " with the guest frozen; thawed by \(who)" : " after the guest ran again; found by \(who)")
            + (did.isEmpty ? "" : "; " + did.joined(separator: "; ")) + (removed ? "; its partial bundle was removed" : "")
        try? history(name).append(.recovered, detail: what)
        return what
    }
}

import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// One event in a VM's history.
public struct HistoryEntry: Codable, Equatable, Sendable {
    /// `discarded`: a checkpoint's bundle was removed right after it was written (`--refuse-secrets`).
    /// `pruned`: a stored checkpoint was removed later (`sparc prune`, `sparc store rm`); it
    /// still counts for the rollback check, since the VM went on from it.
    /// `removed`: the VM's state was removed (`sparc vm rm`).
    public enum Event: String, Codable, Sendable {
        case boot, checkpoint, restore, rollback, clone, stop, shutdown, recovered, discarded, pruned, removed
        /// The running state a restore replaced, saved first (`sparc undo` goes back to it); not
        /// a checkpoint for the rollback check, so it does not make every restore a rollback.
        case undoPoint
        /// A scheduled checkpoint (`sparc schedule`) failed; the journal has its output.
        case scheduleFailed
    }
    public var seq: Int
    public var time: String
    public var vm: String
    public var event: Event
    public var bundle: String?
    /// The bundle's manifest digest (which covers every file's digest).
    public var bundleDigest: String?
    public var epoch: Int?
    public var detail: String?
    /// The previous entry's MAC ("" for the first).
    public var prev: String
    /// HMAC-SHA256 over this entry (without `mac`) keyed by the host secret.
    public var mac: String

    /// The bytes the MAC covers: the entry with an empty MAC, keys sorted.
    func signedBytes() throws -> Data {
        var copy = self
        copy.mac = ""
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(copy)
    }
}

/// An append-only, HMAC-chained log of a VM's boots, checkpoints, restores and stops.
///
/// Each entry's MAC covers its content and the previous MAC, so an edited, removed or
/// reordered entry breaks the chain; a head file with the last sequence number and MAC
/// catches a cut-off tail. The key is created on first use, mode 0600.
public struct HistoryLog {
    public let directory: String
    public let vm: String
    var logPath: String { directory + "/history/\(vm).log" }
    var headPath: String { directory + "/history/\(vm).head" }

    /// A VM's history in the state directory; the name is checked, since it becomes a file name.
    public init(directory: String, vm: String) throws {
        try VMName.check(vm)
        self.directory = directory
        self.vm = vm
    }

    func key(create: Bool) throws -> Data { try HostKey(directory: directory).load(create: create) }

    /// Entries as stored (not verified).
    /// The checkpoints whose bundles may still exist, oldest first: a discarded one does not
    /// count, so restoring the newest kept bundle is not a rollback.
    public static func keptCheckpoints(_ entries: [HistoryEntry]) -> [HistoryEntry] {
        let discarded = Set(entries.filter { $0.event == .discarded }.compactMap(\.bundleDigest))
        return entries.filter { $0.event == .checkpoint && !discarded.contains($0.bundleDigest ?? "") }
    }

    public func entries() throws -> [HistoryEntry] {
        guard FileSystem.exists(logPath) else { return [] }
        let text = String(decoding: try FileSystem.readFile(logPath), as: UTF8.self)
        return try text.split(separator: "\n").enumerated().map { i, line in
            do {
                return try JSONDecoder().decode(HistoryEntry.self, from: Data(line.utf8))
            } catch {
                throw SparcError("history of '\(vm)': line \(i + 1) is not a log entry (edited?)", kind: .negative)
            }
        }
    }

    /// Appends an event, chained to the last entry.
    @discardableResult
    public func append(
        _ event: HistoryEntry.Event, bundle: String? = nil, bundleDigest: String? = nil, epoch: Int? = nil,
        detail: String? = nil
    ) throws -> HistoryEntry {
        let key = try key(create: true)
        try FileSystem.makeDirectories(directory + "/history")
        // Two sparc commands appending at once would both chain to the same entry.
        return try FileLock.withLock(directory + "/history/\(vm).lock") {
            try appendLocked(event, key: key, bundle: bundle, bundleDigest: bundleDigest, epoch: epoch, detail: detail)
        }
    }

    private func appendLocked(
        _ event: HistoryEntry.Event, key: Data, bundle: String?, bundleDigest: String?, epoch: Int?, detail: String?
    ) throws -> HistoryEntry {
        let existing = try entries()
        if let last = existing.last, headIsOneBehind(existing) {
            // A writer died between its entry and the head: the head catches up first, so that
            // another death here leaves it one behind again, never two.
            try writeHead(last)
        }
        var entry = HistoryEntry(
            seq: (existing.last?.seq ?? 0) + 1, time: Manifest.timestamp(Date()), vm: vm, event: event, bundle: bundle,
            bundleDigest: bundleDigest, epoch: epoch, detail: detail, prev: existing.last?.mac ?? "", mac: "")
        entry.mac = HMACSHA256.hex(key: key, message: try entry.signedBytes())
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try e.encode(entry)
        line.append(0x0A)
        let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot write", logPath) }
        defer { close(fd) }
        try FileSystem.writeAll(fd: fd, line, path: logPath)
        guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", logPath) }
        try writeHead(entry)
        return entry
    }

    private func writeHead(_ entry: HistoryEntry) throws {
        try FileSystem.writeAtomically(Data("\(entry.seq) \(entry.mac)\n".utf8), to: headPath)
    }

    /// One entry past the head is a crash between the entry's write and the head's (the entry
    /// is whole and chained; only the key's holder can write one): not a removal.
    private func headIsOneBehind(_ list: [HistoryEntry]) -> Bool {
        guard list.count >= 2, let head = try? String(decoding: FileSystem.readFile(headPath), as: UTF8.self) else { return false }
        let f = head.split(separator: " ")
        return f.count == 2 && Int(f[0]) == list.count - 1 && f[1].trimmed == list[list.count - 2].mac
    }

    /// Checks the chain; returns the problems found (empty when intact).
    public func verify() throws -> [String] {
        let list = try entries()
        if list.isEmpty && !FileSystem.exists(headPath) { return [] }
        let key = try key(create: false)
        var problems: [String] = []
        var prevMac = ""
        for (i, entry) in list.enumerated() {
            let expectedSeq = i + 1
            if HMACSHA256.hex(key: key, message: try entry.signedBytes()) != entry.mac {
                problems.append("entry \(expectedSeq) (seq \(entry.seq), \(entry.event.rawValue)) was edited: its MAC does not match")
            } else if entry.seq != expectedSeq || entry.prev != prevMac {
                problems.append(
                    entry.seq > expectedSeq
                        ? "entries before seq \(entry.seq) were removed (expected seq \(expectedSeq))"
                        : "entry seq \(entry.seq) is out of order (found at position \(expectedSeq))")
            }
            prevMac = entry.mac
        }
        if let head = try? String(decoding: FileSystem.readFile(headPath), as: UTF8.self) {
            let f = head.split(separator: " ")
            let crashedBeforeHead = headIsOneBehind(list)
            if f.count == 2, let seq = Int(f[0]), !crashedBeforeHead, f[1].trimmed != (list.last?.mac ?? "") || seq != list.count {
                problems.append("the log ends at entry \(list.count) but entry \(seq) was written: entries were removed from the end")
            }
        } else if !list.isEmpty {
            problems.append("the head record is missing")
        }
        return problems
    }
}

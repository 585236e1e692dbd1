import Foundation
import SnapshotModel
import SparcSupport

/// Rollback-sensitive data memory: a small key-value store per VM, kept by the host outside
/// every bundle, so a restore never rolls it back. It also holds the VM's restore epoch.
///
/// The store belongs to the VM's identity (a UUID recorded in every bundle), so restoring a
/// checkpoint under another name cannot hand the guest an empty store. Every change is a
/// locked read-modify-write (flock), and writes are atomic (temporary file, fsync, rename):
/// concurrent writers never lose an update, a process killed mid-write leaves the old or
/// the new store. A damaged store is an error, never silently reset.
public struct RSDMStore {
    public static let maxKeys = 256
    public static let maxKeyBytes = 64
    public static let maxValueBytes = 4096
    public static let maxTotalBytes = 256 << 10

    struct Content: Codable, Equatable {
        var version: Int = 1
        var epoch: Int = 0
        var values: [String: String] = [:]
    }

    public let path: String
    var lockPath: String { path + ".lock" }

    /// The store of the VM with identity `vmId` in the state directory.
    public init(directory: String, vmId: String) throws {
        guard Manifest.isIdentity(vmId) else { throw SparcError("invalid VM identity '\(vmId.terminalSafe)'") }
        path = directory + "/rsdm/\(vmId).json"
    }

    /// Runs a read-modify-write of the store under its lock.
    func update<T>(_ body: (inout Content) throws -> T) throws -> T {
        try FileSystem.makeDirectories(Path.directory(of: path))
        return try FileLock.withLock(lockPath) {
            var c = try load()
            let result = try body(&c)
            try save(c)
            return result
        }
    }

    /// Copies this store's values (not its epoch) into a new store, for a cloned VM.
    public func copy(to other: RSDMStore) throws {
        let values = try all()
        try other.update { $0.values = values }
    }

    func load() throws -> Content {
        guard FileSystem.exists(path) else { return Content() }
        let data = try FileSystem.readFile(path)
        guard let c = try? JSONDecoder().decode(Content.self, from: data), c.version == 1 else {
            throw SparcError("rollback-sensitive data store \(path) is damaged; it was not reset (move it aside to start afresh)")
        }
        return c
    }

    func save(_ c: Content) throws {
        try FileSystem.makeDirectories(Path.directory(of: path))
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let data = try e.encode(c)
        guard data.count <= Self.maxTotalBytes + 1024 else { throw SparcError("rollback-sensitive data store would exceed \(Self.maxTotalBytes) bytes") }
        try FileSystem.writeAtomically(data, to: path)
    }

    static func check(key: String) throws {
        // Printable ASCII only: keys are shown on the operator's terminal.
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw SparcError("invalid key '\(key.terminalSafe)': 1 to \(maxKeyBytes) printable ASCII characters")
        }
    }

    public func get(_ key: String) throws -> String? {
        try Self.check(key: key)
        return try load().values[key]
    }

    public func set(_ key: String, _ value: String) throws {
        try Self.check(key: key)
        guard value.utf8.count <= Self.maxValueBytes else { throw SparcError("value too large: \(value.utf8.count) bytes (limit \(Self.maxValueBytes))") }
        try update { c in
            if c.values[key] == nil && c.values.count >= Self.maxKeys { throw SparcError("store full: \(Self.maxKeys) keys") }
            c.values[key] = value
        }
    }

    /// Adds `by` to an integer value (missing counts as 0) and returns the result.
    @discardableResult
    public func increment(_ key: String, by: Int = 1) throws -> Int {
        try Self.check(key: key)
        return try update { c in
            guard let current = Int(c.values[key] ?? "0") else { throw SparcError("value of '\(key)' is not an integer") }
            let (next, overflow) = current.addingReportingOverflow(by)
            if overflow { throw SparcError("'\(key)' would overflow (\(current) + \(by))") }
            if c.values[key] == nil && c.values.count >= Self.maxKeys { throw SparcError("store full: \(Self.maxKeys) keys") }
            c.values[key] = String(next)
            return next
        }
    }

    public func delete(_ key: String) throws {
        try Self.check(key: key)
        try update { $0.values[key] = nil }
    }

    public func all() throws -> [String: String] { try load().values }

    public func epoch() throws -> Int { try load().epoch }

    /// Moves to the next restore epoch (called on every restore).
    @discardableResult
    public func nextEpoch() throws -> Int {
        try update { c in
            c.epoch += 1
            return c.epoch
        }
    }

    /// The answer to a request line longer than the limit: an error under the id its first
    /// bytes name (clients write the id first), or none.
    public static func refusal(head: Data, maxBytes: Int) -> Data {
        let text = String(decoding: head, as: UTF8.self)
        var id: String?
        if let r = text.range(of: #""id"\s*:\s*"[0-9]{1,20}""#, options: .regularExpression) {
            id = text[r].split(separator: "\"").last.map(String.init)
        }
        struct Refusal: Encodable {
            var id: String?
            var ok = false
            var error: String
        }
        var out = (try? JSONEncoder().encode(Refusal(id: id, error: "request larger than \(maxBytes >> 10) KiB: refused"))) ?? Data("{\"ok\":false}".utf8)
        out.append(0x0A)
        return out
    }

    /// Answers one request line from the guest: {"op":"get|set|incr|del|epoch","key":..,"value":..}.
    public func handle(_ line: Data) -> Data {
        struct Request: Decodable {
            var id: String?
            var op: String
            var key: String?
            var value: String?
        }
        struct Response: Encodable {
            var id: String?
            var ok: Bool
            var value: String?
            var error: String?
        }
        var response: Response
        var id: String?
        do {
            let r = try JSONDecoder().decode(Request.self, from: line)
            id = r.id
            switch r.op {
            case "get": response = Response(ok: true, value: try get(r.key ?? ""))
            case "set":
                try set(r.key ?? "", r.value ?? "")
                response = Response(ok: true)
            case "incr":
                guard let by = Int(r.value ?? "1") else { throw SparcError("an increment must be an integer") }
                response = Response(ok: true, value: String(try increment(r.key ?? "", by: by)))
            case "del":
                try delete(r.key ?? "")
                response = Response(ok: true)
            case "epoch": response = Response(ok: true, value: String(try epoch()))
            default: response = Response(ok: false, error: "unknown operation '\(r.op)'")
            }
        } catch let e as SparcError {
            response = Response(ok: false, error: e.message)
        } catch {
            response = Response(ok: false, error: "malformed request")
        }
        response.id = id
        var out = (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8)
        out.append(0x0A)
        return out
    }
}


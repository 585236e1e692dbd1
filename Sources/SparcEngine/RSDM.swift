import Foundation
import SparcSupport

/// Rollback-sensitive data memory: a small key-value store per VM, kept by the host outside
/// every bundle, so a restore never rolls it back. It also holds the VM's restore epoch.
///
/// Writes are atomic (temporary file, fsync, rename): a process killed mid-write leaves the
/// old or the new store, never a mix. A damaged store is an error, never silently reset.
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

    public init(directory: String = StateDirectory.path(), vm: String) {
        path = directory + "/rsdm/\(vm).json"
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
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes, key.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw SparcError("invalid key '\(key)': 1 to \(maxKeyBytes) printable ASCII characters")
        }
    }

    public func get(_ key: String) throws -> String? {
        try Self.check(key: key)
        return try load().values[key]
    }

    public func set(_ key: String, _ value: String) throws {
        try Self.check(key: key)
        guard value.utf8.count <= Self.maxValueBytes else { throw SparcError("value too large: \(value.utf8.count) bytes (limit \(Self.maxValueBytes))") }
        var c = try load()
        if c.values[key] == nil && c.values.count >= Self.maxKeys { throw SparcError("store full: \(Self.maxKeys) keys") }
        c.values[key] = value
        try save(c)
    }

    /// Adds `by` to an integer value (missing counts as 0) and returns the result.
    @discardableResult
    public func increment(_ key: String, by: Int = 1) throws -> Int {
        try Self.check(key: key)
        var c = try load()
        guard let current = Int(c.values[key] ?? "0") else { throw SparcError("value of '\(key)' is not an integer") }
        if c.values[key] == nil && c.values.count >= Self.maxKeys { throw SparcError("store full: \(Self.maxKeys) keys") }
        c.values[key] = String(current + by)
        try save(c)
        return current + by
    }

    public func delete(_ key: String) throws {
        try Self.check(key: key)
        var c = try load()
        c.values[key] = nil
        try save(c)
    }

    public func all() throws -> [String: String] { try load().values }

    public func epoch() throws -> Int { try load().epoch }

    /// Moves to the next restore epoch (called on every restore).
    @discardableResult
    public func nextEpoch() throws -> Int {
        var c = try load()
        c.epoch += 1
        try save(c)
        return c.epoch
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
            case "incr": response = Response(ok: true, value: String(try increment(r.key ?? "", by: Int(r.value ?? "1") ?? 1)))
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

/// Serves a VM's RSDM port (virtio-serial `org.sparc.rsdm.0`) until QEMU closes it.
public enum RSDMServer {
    public static func run(socketPath: String, store: RSDMStore) throws {
        var socket: UnixSocket?
        for _ in 0..<100 {
            socket = try? UnixSocket.connect(to: socketPath)
            if socket != nil { break }
            usleep(100_000)
        }
        guard let socket else { throw SparcError("RSDM port \(socketPath) is not reachable") }
        var lines = LineBuffer(maxLine: 64 << 10)
        while true {
            guard let chunk = try socket.read(deadline: nil), !chunk.isEmpty else { return }
            for frame in lines.append(chunk) {
                guard case .line(let line) = frame, !line.isEmpty else { continue }
                try socket.write(store.handle(line), deadline: Date().addingTimeInterval(10))
            }
        }
    }
}

extension VMManager {
    /// Starts the host side of the VM's RSDM port: a detached `sparc rsdm-serve`.
    func startRSDMServer(_ name: String) {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return }
        _ = try? Subprocess.spawn([exe, "rsdm-serve", "--name", name], newSession: true)
    }
}

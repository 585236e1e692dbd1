import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Why the store cannot do what was asked: the cases callers and tests tell apart.
public enum StoreError: UserFacingError, Equatable {
    /// No checkpoint of that name in the store.
    case noSuchCheckpoint(String)
    /// A checkpoint of that name is there already.
    case exists(String)
    /// An object is missing that a checkpoint needs.
    case missingObject(String)
    /// An object is not what it should be (`why`).
    case damagedObject(String, String)
    /// A name that cannot name a checkpoint.
    case badName(String)

    public var description: String {
        switch self {
        case .noSuchCheckpoint(let name): return "no checkpoint named '\(name.terminalSafe)' in the store (see 'sparc bundles')"
        case .exists(let name): return "the store already holds a checkpoint named '\(name.terminalSafe)'"
        case .missingObject(let id): return "the store lacks object \(id.terminalSafe)"
        case .damagedObject(let id, let why): return "store object \(id.terminalSafe) is damaged: \(why)"
        case .badName(let name): return "'\(name.terminalSafe)' cannot name a checkpoint (letters, digits, '.', '_' and '-', 1 to 128 characters)"
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .missingObject, .damagedObject: return 1
        default: return 2
        }
    }
}

/// Where a store keeps its objects: immutable, named objects (chunks by their keyed digest,
/// checkpoint manifests by name) and nothing else mutable but their presence. A directory is
/// one implementation; an object store (S3, Ceph RADOS) would be another with the same five
/// operations (create-if-absent is S3's `If-None-Match: *` and RADOS's exclusive create).
public protocol ObjectStore {
    /// Stores `data` under `key` unless an object of that key exists (then false: objects are
    /// immutable, and an equal key means equal content for chunks). Durable when it returns.
    func put(_ key: String, _ data: Data) throws -> Bool
    /// As `put`, but the object's name may not be durable until `flush` (its content is when
    /// it can be seen at all): for many chunks, whose names one `flush` makes durable before
    /// the manifest that lists them is put.
    func putDeferringName(_ key: String, _ data: Data) throws -> Bool
    /// Makes every object put so far durable.
    func flush() throws
    /// The object, read whole (at most `maxBytes`).
    func get(_ key: String, maxBytes: Int) throws -> Data
    func exists(_ key: String) -> Bool
    /// The keys under a prefix ("chunks/", "checkpoints/").
    func list(_ prefix: String) throws -> [String]
    /// Its size in bytes, nil when absent.
    func size(_ key: String) -> Int64?
    func delete(_ key: String) throws
    /// Removes what interrupted writes left (temporaries never made objects); called with the
    /// lock held exclusively, when no write can be under way.
    func removeAbandonedTemporaries() throws
    /// Runs `body` holding the store's lock: shared while a checkpoint is stored (it may reuse
    /// chunks that are there), exclusive while unreferenced chunks are collected (so none a
    /// checkpoint being stored counts on can go). An object store would use a generation rule.
    func withLock<T>(exclusive: Bool, _ body: () throws -> T) throws -> T
}

/// Objects as files under one private directory: `chunks/ab/abcd…`, `checkpoints/NAME`. Written
/// beside their place under a unique name, synced, then linked into place without replacing
/// (so a crash leaves either no object or a whole one), the directory synced after.
public struct DirectoryObjectStore: ObjectStore {
    public let root: String

    public init(root: String) throws {
        try FileSystem.ensurePrivateDirectory(root, what: "checkpoint store")
        for sub in ["chunks", "checkpoints"] { try FileSystem.makeDirectories(root + "/" + sub) }
        self.root = root
    }

    /// Keys are built by the store ("chunks/" + hex, "checkpoints/" + a checked name): nothing
    /// else may reach a path.
    func path(_ key: String) throws -> String {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, ["chunks", "checkpoints"].contains(parts[0]), Self.isSafeName(parts[1]) else {
            throw StoreError.badName(key)
        }
        if parts[0] == "chunks" { return root + "/chunks/" + parts[1].prefix(2) + "/" + parts[1] }
        return root + "/" + key
    }

    static func isSafeName<S: StringProtocol>(_ name: S) -> Bool {
        !name.isEmpty && name.count <= 128 && name.first != "." && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    public func put(_ key: String, _ data: Data) throws -> Bool {
        guard try putDeferringName(key, data) else { return false }
        FileSystem.syncDirectory(containing: try path(key))
        return true
    }

    /// The content is synced before the name is linked, so a name that survives a crash
    /// always names a whole object; the name itself is synced by `flush` (or `put`).
    public func putDeferringName(_ key: String, _ data: Data) throws -> Bool {
        let target = try path(key)
        if FileSystem.exists(target) { return false }
        try FileSystem.makeDirectories(Path.directory(of: target))
        let (fd, temp) = try FileSystem.createUniqueFile(beside: target, tag: "put")
        defer { unlink(temp) }
        do {
            try FileSystem.writeAll(fd: fd, data, path: temp)
            guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", temp) }
            close(fd)
            FaultPoint.reached("object-before-link")
        } catch {
            close(fd)
            throw error
        }
        // link(2) refuses an existing name: a concurrent writer of the same chunk wins, equally.
        if link(temp, target) != 0 {
            if errno == EEXIST { return false }
            throw SparcError.posix("cannot store", target)
        }
        return true
    }

    /// One syncfs(2) of the store's file system: every name linked so far is durable.
    public func flush() throws { try FileSystem.syncFileSystem(containing: root) }

    public func get(_ key: String, maxBytes: Int) throws -> Data {
        let p = try path(key)
        guard FileSystem.exists(p) else { throw StoreError.missingObject(key) }
        return try OpenedFile(regular: p, maxSize: Int64(maxBytes)).readAll()
    }

    public func exists(_ key: String) -> Bool { (try? path(key)).map(FileSystem.exists) ?? false }

    public func list(_ prefix: String) throws -> [String] {
        let fm = FileManager.default
        switch prefix {
        case "checkpoints/":
            return ((try? fm.contentsOfDirectory(atPath: root + "/checkpoints")) ?? []).filter { Self.isSafeName($0) }.sorted().map { prefix + $0 }
        case "chunks/":
            var keys: [String] = []
            for dir in ((try? fm.contentsOfDirectory(atPath: root + "/chunks")) ?? []).sorted() where dir.count == 2 {
                keys += ((try? fm.contentsOfDirectory(atPath: root + "/chunks/" + dir)) ?? []).filter { Self.isSafeName($0) && !$0.contains(".") }
                    .map { prefix + $0 }
            }
            return keys.sorted()
        default: throw StoreError.badName(prefix)
        }
    }

    public func size(_ key: String) -> Int64? { (try? path(key)).flatMap(FileSystem.size) }

    public func withLock<T>(exclusive: Bool, _ body: () throws -> T) throws -> T {
        try FileLock.withLock(root + "/lock", shared: !exclusive, body)
    }

    public func delete(_ key: String) throws {
        let p = try path(key)
        guard unlink(p) == 0 || errno == ENOENT else { throw SparcError.posix("cannot remove", p) }
        FileSystem.syncDirectory(containing: p)
    }

    public func removeAbandonedTemporaries() throws {
        let fm = FileManager.default
        var directories = [root + "/checkpoints"]
        directories += ((try? fm.contentsOfDirectory(atPath: root + "/chunks")) ?? []).filter { $0.count == 2 }.map { root + "/chunks/" + $0 }
        for d in directories {
            for name in (try? fm.contentsOfDirectory(atPath: d)) ?? [] where name.contains(".put-") {
                guard unlink(d + "/" + name) == 0 || errno == ENOENT else { throw SparcError.posix("cannot remove", d + "/" + name) }
            }
        }
    }
}

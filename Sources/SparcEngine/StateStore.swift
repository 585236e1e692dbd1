import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Where bundles go when no path is given, and where the TUI lists them.
public enum BundleHome {
    /// `$SPARC_BUNDLES`, the config's `bundles`, `$XDG_DATA_HOME/sparc/bundles`,
    /// `/var/lib/sparc/bundles` for root, else `~/.local/share/sparc/bundles`.
    public static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["SPARC_BUNDLES"], !d.isEmpty { return d }
        // The config's bundle home (the environment's own config when one is given).
        let config = environment == ProcessInfo.processInfo.environment ? try? SparcConfig.shared.get() : try? SparcConfig.load(environment: environment)
        if let b = config?.bundles { return b }
        if let x = environment["XDG_DATA_HOME"], !x.isEmpty { return x + "/sparc/bundles" }
        if geteuid() == 0 { return "/var/lib/sparc/bundles" }
        return (environment["HOME"] ?? "/nonexistent") + "/.local/share/sparc/bundles"
    }

    /// The bundle directory, created (mode 0700) if missing.
    public static func ensure(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let dir = path(environment: environment)
        if !FileSystem.exists(dir) {
            try FileSystem.makeDirectories(dir)
            chmod(dir, 0o700)
        }
        return dir
    }

    /// `NAME-YYYYMMDD-HHMMSS.sparc` in the bundle directory (UTC), for a checkpoint without `-o`.
    public static func newBundle(vm: String, at date: Date = Date(), environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> String
    {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return try ensure(environment: environment) + "/\(vm)-\(f.string(from: date)).sparc"
    }
}

/// The identity of each VM known to this host: a UUID made when a name is first started,
/// recorded in every bundle. Rollback-sensitive data follows the identity, not the name.
public struct VMRegistry {
    public let directory: String

    public init(stateDirectory: String) { directory = stateDirectory + "/vms" }

    func file(_ name: String) -> String { directory + "/\(name).id" }

    public func identity(of name: String) throws -> String? {
        try VMName.check(name)
        guard FileSystem.exists(file(name)) else { return nil }
        let id = String(decoding: try OpenedFile(regular: file(name), maxSize: 128).readAll(), as: UTF8.self).trimmed
        guard id.count == 36 else { throw SparcError("identity file \(file(name)) is damaged") }
        return id
    }

    public func assign(_ id: String, to name: String) throws {
        try VMName.check(name)
        try FileSystem.makeDirectories(directory)
        try FileSystem.writeAtomically(Data((id + "\n").utf8), to: file(name))
    }

    /// The name's identity, made now if the name is new.
    public func identity(forStarting name: String) throws -> String {
        if let id = try identity(of: name) { return id }
        let id = Self.newIdentity()
        try assign(id, to: name)
        return id
    }

    public static func newIdentity() -> String { UUID().uuidString.lowercased() }

    func diskFile(_ name: String) -> String { directory + "/\(name).disk" }

    /// The disk a VM keeps its writes on (its own file), if it has one.
    public func persistentDisk(of name: String) throws -> String? {
        try VMName.check(name)
        guard FileSystem.exists(diskFile(name)) else { return nil }
        let path = String(decoding: try OpenedFile(regular: diskFile(name), maxSize: 4096).readAll(), as: UTF8.self).trimmed
        return path.isEmpty ? nil : path
    }

    public func setPersistentDisk(_ path: String?, for name: String) throws {
        try VMName.check(name)
        try FileSystem.makeDirectories(directory)
        if let path {
            try FileSystem.writeAtomically(Data((path + "\n").utf8), to: diskFile(name))
        } else {
            unlink(diskFile(name))
        }
    }

    /// Where sparc keeps the disk of a VM made from a built guest (`--guest debian`) or a clone.
    public func ownedDiskPath(for name: String, stateDirectory: String) -> String { stateDirectory + "/disks/\(name).qcow2" }
}

/// Kernel and initrd files the VMs boot from, kept by SHA-256 in the state directory: a
/// bundle names its boot files by digest, restore takes them from here (never from a path a
/// bundle chose), and a host kernel upgrade cannot take them away.
public struct BootFileStore {
    public let directory: String

    public init(stateDirectory: String) { directory = stateDirectory + "/boot" }

    func storedPath(_ sha256: String) -> String { directory + "/sha256-" + sha256 }

    /// Adds a file to the store (hashing what it copies) and returns its record and stored path.
    public func add(_ path: String) throws -> (record: Manifest.BootFile, path: String) {
        let source = try OpenedFile(regular: path, followSymlinks: true, maxSize: 1 << 30)
        try FileSystem.makeDirectories(directory)
        let tmp = directory + "/.incoming-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let out = try NewFile(tmp, size: 0)
        let hasher = SHA256Hasher()
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        var total: Int64 = 0
        while true {
            let n = read(source.fd, buf, 1 << 20)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SparcError.posix("cannot read", path) }
            if n == 0 { break }
            hasher.update(buf, count: n)
            try FileSystem.writeAll(fd: out.fd, Data(bytes: buf, count: n), path: tmp)
            total += Int64(n)
        }
        let digest = hasher.finalize()
        let final = storedPath(digest)
        if FileSystem.exists(final) {
            unlink(tmp)
        } else {
            guard fsync(out.fd) == 0, rename(tmp, final) == 0 else { throw SparcError.posix("cannot store boot file", final) }
            out.keep()
        }
        return (Manifest.BootFile(sha256: digest, size: total, origin: path), final)
    }

    /// The stored copy of a boot file, checked against its digest.
    public func path(for record: Manifest.BootFile, what: String) throws -> String {
        let p = storedPath(record.sha256)
        guard FileSystem.exists(p) else {
            throw SparcError(
                "the \(what) this bundle needs (sha256 \(record.sha256.prefix(16))…, originally \(record.origin.terminalSafe)) is not in this host's boot-file store; pass it with --\(what) FILE")
        }
        guard try SHA256Hasher.hex(ofFile: p) == record.sha256 else {
            throw SparcError("the stored \(what) \(p) is damaged (its digest changed)")
        }
        return p
    }
}

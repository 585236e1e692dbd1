import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Where sparc keeps state that must outlive VMs and bundles: the host key, the history
/// logs, the VMs' identities, the rollback-sensitive data stores and the boot files.
public enum StateDirectory {
    /// `$SPARC_STATE_DIR`, `$XDG_STATE_HOME/sparc`, `/var/lib/sparc` for root, else `~/.local/state/sparc`.
    public static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["SPARC_STATE_DIR"], !d.isEmpty { return d }
        if let x = environment["XDG_STATE_HOME"], !x.isEmpty { return x + "/sparc" }
        if geteuid() == 0 { return "/var/lib/sparc" }
        return (environment["HOME"] ?? "/nonexistent") + "/.local/state/sparc"
    }

    /// The state directory, created if needed and checked to be this user's private directory
    /// (it holds the key that makes history entries and bundle seals trustworthy).
    public static func checked(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let dir = path(environment: environment)
        try FileSystem.ensurePrivateDirectory(dir, what: "state directory")
        return dir
    }
}

/// The host's secret (32 random bytes, mode 0600, created on first use). It keys the history
/// chain and, through a derived key, the seals of the bundles this host writes.
public struct HostKey {
    public let directory: String
    var path: String { directory + "/history.key" }

    public init(directory: String) { self.directory = directory }

    public func load(create: Bool) throws -> Data {
        if FileSystem.exists(path) {
            let k = try OpenedFile(regular: path, maxSize: 64).readAll()
            guard k.count == 32 else { throw SparcError("host key \(path) is damaged (expected 32 bytes)") }
            return k
        }
        guard create else { throw SparcError("host key \(path) is missing: the history cannot be verified") }
        try FileSystem.makeDirectories(directory)
        let bytes = Data(secureRandomBytes(32))
        try FileSystem.writeAtomically(bytes, to: path, mode: 0o600)
        return bytes
    }

    /// The key that hides excluded processes' names in bundles: only this host can test a guess.
    public func nameKey(create: Bool) throws -> Data {
        Data(HMACSHA256.hex(key: try load(create: create), message: Data("sparc excluded name key v1".utf8)).utf8)
    }

    /// The key of bundle seals: derived, so a seal never reveals anything about the history key.
    public func sealKey(create: Bool) throws -> Data {
        Data(HMACSHA256.hex(key: try load(create: create), message: Data("sparc bundle seal key v1".utf8)).utf8)
    }
}

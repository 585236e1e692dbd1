import Foundation
import SparcSupport

/// Creates a bundle directory that appears only when complete.
///
/// Files go into a hidden `.NAME.partial-PID-XXXXXX` directory beside the destination (made by
/// mkdtemp); `commit`
/// writes the manifest (and the host's seal), syncs everything and renames it into place;
/// `abort` (or a failure) removes it, so no half-written bundle is ever left under the final name.
public final class BundleWriter {
    public let path: String
    public let stagingPath: String
    private var finished = false

    public init(path: String) throws {
        guard !path.isEmpty else { throw BundleError.badOutput("the bundle path is empty: give a path for the new bundle") }
        let absolute = FileSystem.absolute(path)
        guard absolute != "/" else { throw BundleError.badOutput("refusing to write a bundle at /") }
        self.path = absolute
        if FileSystem.exists(absolute) {
            throw BundleError.badOutput("bundle path \(path) already exists; choose a new name or remove it first")
        }
        let parent = Path.directory(of: absolute)
        guard FileSystem.exists(parent) else { throw BundleError.badOutput("output directory \(parent) does not exist") }
        guard FileSystem.isDirectory(parent) else { throw BundleError.badOutput("\(parent) is not a directory") }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw BundleError.badOutput("output directory \(parent) is not writable")
        }
        Self.removeStaleStaging(in: parent)
        // A name nobody can predict, made by mkdtemp (never one that existed before): in a shared
        // directory another user can neither plant it in advance nor have sparc remove theirs.
        stagingPath = try FileSystem.makeUniqueDirectory(in: parent, prefix: "." + Path.base(of: absolute) + ".partial-\(getpid())-")
    }

    deinit { if !finished { abort() } }

    /// The path of a file inside the bundle being written.
    public func file(_ name: String) -> String { stagingPath + "/" + name }

    /// Removes what checkpoints that died left in `directory`: `.NAME.partial-PID-XXXXXX`
    /// directories of this user whose process is gone. Returns their names.
    @discardableResult
    public static func removeStaleStaging(in directory: String) -> [String] {
        var removed: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where entry.hasPrefix(".") {
            guard let dash = entry.range(of: ".partial-", options: .backwards) else { continue }
            let tail = entry[dash.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            guard tail.count == 2, tail[1].count == 6, let pid = pid_t(tail[0]), pid > 0 else { continue }
            guard kill(pid, 0) != 0 && errno == ESRCH else { continue }  // its writer is still at work
            var st = stat()
            guard lstat(directory + "/" + entry, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else { continue }
            if FileSystem.removeTree(directory + "/" + entry).isEmpty { removed.append(entry) }
        }
        return removed
    }

    /// Digests the named files (in parallel) and returns their manifest entries.
    public func entries(for names: [String], known: [String: String] = [:], cancel: Cancellation? = nil) throws -> [Manifest.FileEntry] {
        let results = SharedBox([Result<Manifest.FileEntry, Error>?](repeating: nil, count: names.count))
        DispatchQueue.concurrentPerform(iterations: names.count) { i in
            let name = names[i]
            let path = file(name)
            let entry = Result {
                guard let size = FileSystem.size(path) else { throw SparcError.posix("cannot stat", path) }
                return Manifest.FileEntry(name: name, size: size, sha256: try known[name] ?? ChunkedDigest.of(file: path, workers: 1, cancel: cancel))
            }
            results.mutate { $0[i] = entry }
        }
        return try results.value.map { try $0!.get() }
    }

    /// Writes the manifest and the seal, syncs every file and moves the bundle to its final
    /// name. Returns the manifest as written (with its digest). `storedElsewhere`: members the
    /// manifest lists that were written straight into the checkpoint store, not here.
    @discardableResult
    public func commit(_ manifest: Manifest, sealKey: Data? = nil, storedElsewhere: Set<String> = []) throws -> Manifest {
        let data = try manifest.encoded()
        try write(data, to: Manifest.fileName)
        let sealed = try Manifest.decode(data)
        if let sealKey { try write(BundleSeal.make(key: sealKey, manifestDigest: sealed.manifestSHA256), to: Manifest.sealFile) }
        for entry in manifest.files.map(\.name).filter({ !storedElsewhere.contains($0) }) + [Manifest.fileName] + (sealKey != nil ? [Manifest.sealFile] : []) {
            let f = open(file(entry), O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { throw SparcError.posix("cannot open", file(entry)) }
            let rc = fsync(f)
            close(f)
            guard rc == 0 else { throw SparcError.posix("cannot sync", file(entry)) }
        }
        FileSystem.syncDirectory(stagingPath)
        try FileSystem.renameNoReplace(stagingPath, to: path)
        FileSystem.syncDirectory(Path.directory(of: path))
        finished = true
        return sealed
    }

    private func write(_ data: Data, to name: String) throws {
        let p = file(name)
        let fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot create", p) }
        defer { close(fd) }
        try FileSystem.writeAll(fd: fd, data, path: p)
    }

    /// Removes the staging directory and everything in it.
    public func abort() {
        finished = true
        FileSystem.removeTree(stagingPath)
    }
}

/// The host's word that it wrote a bundle: an HMAC, keyed by a secret of this host, over the
/// manifest digest (which covers every file and the VM's identity). Anyone can edit a bundle
/// and re-seal its manifest; nobody without the key can make this seal.
/// A bundle directory about to be written at `path`: its absolute target (which must not
/// exist, in a directory that does) and a private staging directory beside it, which becomes
/// the bundle by a rename once whole.
public func stageNewBundle(at path: String) throws -> (target: String, staging: String) {
    let target = FileSystem.absolute(path)
    guard !FileSystem.exists(target) else { throw BundleError.badOutput("bundle path \(path) already exists; choose a new name or remove it first") }
    let parent = Path.directory(of: target)
    guard FileSystem.isDirectory(parent) else { throw BundleError.badOutput("output directory \(parent) does not exist") }
    return (target, try FileSystem.makeUniqueDirectory(in: parent, prefix: "." + Path.base(of: target) + ".partial-\(getpid())-"))
}

public enum BundleSeal {
    static let label = "sparc-bundle-seal-v1\n"

    public static func mac(key: Data, manifestDigest: String) -> String {
        HMACSHA256.hex(key: key, message: Data((label + manifestDigest + "\n").utf8))
    }

    public static func make(key: Data, manifestDigest: String) -> Data {
        Data("{\"version\":1,\"mac\":\"\(mac(key: key, manifestDigest: manifestDigest))\"}\n".utf8)
    }

    /// True when `data` is this host's seal of the manifest digest.
    public static func verify(_ data: Data, key: Data, manifestDigest: String) -> Bool {
        struct Seal: Decodable {
            var version: Int
            var mac: String
        }
        guard let seal = try? JSONDecoder().decode(Seal.self, from: data), seal.version == 1 else { return false }
        return constantTimeEqual(seal.mac, mac(key: key, manifestDigest: manifestDigest))
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Reads and checks an existing bundle. Every bundle is untrusted input: members are opened
/// by their fixed names without following symlinks or blocking on FIFOs, their sizes are
/// checked against the manifest before anything is read, and what is verified is what is used.
public struct BundleReader {
    public let path: String
    public let manifest: Manifest
    /// Members read from elsewhere than the directory (a stored checkpoint's memory and disk,
    /// decrypted as they are read), by name; the directory holds the rest.
    public var external: [String: ExternalMember] = [:]
    /// The stored checkpoint this bundle was written out from, when it was.
    public var storedName: String?

    /// A member read from elsewhere, and what stands for its digest without reading it.
    public struct ExternalMember {
        public var source: ByteSource
        /// The digest as recorded beside its chunks (each chunk's content is checked as it is
        /// read); nil: `verify` reads it whole.
        public var recordedDigest: String?
        public init(source: ByteSource, recordedDigest: String? = nil) {
            self.source = source
            self.recordedDigest = recordedDigest
        }
    }

    public init(path: String) throws {
        let absolute = FileSystem.absolute(path)
        guard FileSystem.exists(absolute) else { throw BundleError.notFound(path: path) }
        guard FileSystem.isDirectory(absolute) else { throw BundleError.notABundle(path: path, why: "is not a bundle directory") }
        let manifestPath = absolute + "/" + Manifest.fileName
        guard FileSystem.exists(manifestPath) else {
            // Not a bundle at all is a usage error (exit 2), not a damaged bundle.
            throw BundleError.notABundle(path: path, why: "has no manifest.json: not a sparc bundle, or an incomplete one")
        }
        let file: OpenedFile
        do {
            file = try OpenedFile(regular: manifestPath, maxSize: Manifest.maxManifestBytes)
        } catch let e as SparcError {
            throw BundleError.badManifest("manifest.json: \(e.message)")
        }
        self.path = absolute
        do {
            self.manifest = try Manifest.decode(try file.readAll())
        } catch let e as SparcError {
            throw e.kind == .negative ? BundleError.badManifest(e.message) : BundleError.unsupported(e.message)
        }
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// A member the manifest lists as bytes to read: from elsewhere when it is external, else
    /// the file; its size checked against the manifest.
    public func source(_ member: Manifest.Member) throws -> ByteSource {
        guard let outside = external[member.rawValue] else { return try open(member) }
        guard let entry = manifest.file(member) else { throw BundleError.missingMember(member.rawValue) }
        guard outside.source.size == entry.size else {
            throw BundleError.damaged(member: member.rawValue, why: "size is \(outside.source.size) bytes, the manifest says \(entry.size)")
        }
        return outside.source
    }

    /// Opens a member the manifest lists, checking its size first.
    public func open(_ member: Manifest.Member) throws -> OpenedFile {
        guard let entry = manifest.file(member) else {
            throw BundleError.missingMember(member.rawValue)
        }
        let f: OpenedFile
        do {
            f = try OpenedFile(regular: file(member.rawValue), maxSize: member.sizeLimit)
        } catch let e as SparcError {
            throw BundleError.damaged(member: member.rawValue, why: e.message)
        }
        guard f.size == entry.size else {
            throw BundleError.damaged(member: member.rawValue, why: "size is \(f.size) bytes, the manifest says \(entry.size)")
        }
        return f
    }

    /// Whether this host sealed the bundle (see `BundleSeal`).
    public enum SealState: Equatable, Sendable { case sealed, missing, invalid }

    public func seal(key: Data) -> SealState {
        guard FileSystem.exists(file(Manifest.sealFile)) else { return .missing }
        guard let f = try? OpenedFile(regular: file(Manifest.sealFile), maxSize: 4096), let data = try? f.readAll() else {
            return .invalid
        }
        return BundleSeal.verify(data, key: key, manifestDigest: manifest.manifestSHA256) ? .sealed : .invalid
    }

    /// One finding of a verification.
    public struct Problem: Equatable, CustomStringConvertible, Sendable {
        public var file: String
        public var reason: String
        public var description: String { "\(file.terminalSafe): \(reason)" }
        public init(file: String, reason: String) {
            self.file = file
            self.reason = reason
        }
    }

    /// Checks that the bundle holds exactly the manifest's files (and at most a seal), with
    /// the recorded sizes and digests; `progress` gets (file, bytes done, bytes total).
    public func verify(
        progress: ((String, Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) -> [Problem] {
        var problems: [Problem] = []
        let expected = Set(manifest.files.map(\.name) + [Manifest.fileName, Manifest.sealFile])
        let present = Set((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
        for extra in present.subtracting(expected).union(present.intersection(external.keys)).sorted() {
            problems.append(Problem(file: extra, reason: "not listed in the manifest"))
        }
        for entry in manifest.files {
            guard let member = Manifest.Member(rawValue: entry.name) else { continue }
            if let outside = external[entry.name] {
                do {
                    let digest =
                        try outside.recordedDigest
                        ?? ChunkedDigest.digest(
                            source: try source(member), progress: { done, total in progress?(entry.name, done, total) }, cancel: cancel)
                    if digest != entry.sha256 { problems.append(Problem(file: entry.name, reason: "content differs from its digest in the manifest")) }
                } catch {
                    problems.append(Problem(file: entry.name, reason: "\(error)"))
                }
                continue
            }
            guard present.contains(entry.name) else {
                problems.append(Problem(file: entry.name, reason: "missing"))
                continue
            }
            do {
                let f = try open(member)
                let digest = try ChunkedDigest.digest(
                    fd: f.fd, size: f.size, path: f.path, progress: { done, total in progress?(entry.name, done, total) },
                    cancel: cancel)
                if digest != entry.sha256 {
                    problems.append(Problem(file: entry.name, reason: "content differs from its digest in the manifest"))
                }
            } catch BundleError.damaged(_, let why) {
                problems.append(Problem(file: entry.name, reason: why))
            } catch {
                problems.append(Problem(file: entry.name, reason: "\(error)"))
            }
        }
        return problems.sorted { $0.file < $1.file }
    }
}

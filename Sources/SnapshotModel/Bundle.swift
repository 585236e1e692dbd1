import Foundation
import SparcSupport

/// Creates a bundle directory that appears only when complete.
///
/// Files go into a hidden `.NAME.partial-PID` directory beside the destination; `commit`
/// writes the manifest, syncs everything and renames it into place; `abort` (or a
/// failure) removes it, so no half-written bundle is ever left under the final name.
public final class BundleWriter {
    public let path: String
    public let stagingPath: String
    private var finished = false

    public init(path: String) throws {
        let absolute = FileSystem.absolute(path)
        guard absolute != "/" else { throw SparcError("refusing to write a bundle at /") }
        self.path = absolute
        if FileSystem.exists(absolute) {
            throw SparcError("bundle path \(path) already exists; choose a new name or remove it first")
        }
        let parent = Path.directory(of: absolute)
        guard FileSystem.isDirectory(parent) else { throw SparcError("output directory \(parent) does not exist") }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw SparcError("output directory \(parent) is not writable")
        }
        stagingPath = parent + "/." + Path.base(of: absolute) + ".partial-\(getpid())"
        FileSystem.removeTree(stagingPath)
        guard mkdir(stagingPath, 0o700) == 0 else {
            throw SparcError.posix("cannot create", stagingPath)
        }
    }

    deinit { if !finished { abort() } }

    /// The path of a file inside the bundle being written.
    public func file(_ name: String) -> String { stagingPath + "/" + name }

    /// Hashes the named files (in parallel) and returns their manifest entries.
    public func entries(for names: [String], known: [String: String] = [:]) throws -> [Manifest.FileEntry] {
        let results = SharedBox([Result<Manifest.FileEntry, Error>?](repeating: nil, count: names.count))
        DispatchQueue.concurrentPerform(iterations: names.count) { i in
            let name = names[i]
            let path = file(name)
            let entry = Result {
                guard let size = FileSystem.size(path) else { throw SparcError.posix("cannot stat", path) }
                return Manifest.FileEntry(name: name, size: size, sha256: try known[name] ?? SHA256Hasher.hex(ofFile: path))
            }
            results.mutate { $0[i] = entry }
        }
        return try results.value.map { try $0!.get() }
    }

    /// Writes the manifest, syncs every file and moves the bundle to its final name.
    public func commit(_ manifest: Manifest) throws {
        let data = try manifest.encoded()
        let manifestPath = file(Manifest.fileName)
        let fd = open(manifestPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SparcError.posix("cannot create", manifestPath) }
        do {
            try FileSystem.writeAll(fd: fd, data, path: manifestPath)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        for entry in manifest.files.map(\.name) + [Manifest.fileName] {
            let f = open(file(entry), O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { throw SparcError.posix("cannot open", file(entry)) }
            let rc = fsync(f)
            close(f)
            guard rc == 0 else { throw SparcError.posix("cannot sync", file(entry)) }
        }
        FileSystem.syncDirectory(stagingPath)
        guard rename(stagingPath, path) == 0 else { throw SparcError.posix("cannot move bundle into place at", path) }
        FileSystem.syncDirectory(Path.directory(of: path))
        finished = true
    }

    /// Removes the staging directory and everything in it.
    public func abort() {
        finished = true
        FileSystem.removeTree(stagingPath)
    }
}

/// Reads and checks an existing bundle.
public struct BundleReader {
    public let path: String
    public let manifest: Manifest

    public init(path: String) throws {
        let absolute = FileSystem.absolute(path)
        guard FileSystem.exists(absolute) else { throw SparcError("no bundle at \(path)") }
        guard FileSystem.isDirectory(absolute) else { throw SparcError("\(path) is not a bundle directory") }
        let manifestPath = absolute + "/" + Manifest.fileName
        guard FileSystem.exists(manifestPath) else {
            throw SparcError("\(path) has no manifest.json: not a sparc bundle, or an incomplete one", kind: .negative)
        }
        self.path = absolute
        self.manifest = try Manifest.decode(try FileSystem.readFile(manifestPath))
    }

    public func file(_ name: String) -> String { path + "/" + name }

    /// One finding of a verification.
    public struct Problem: Equatable, CustomStringConvertible, Sendable {
        public var file: String
        public var reason: String
        public var description: String { "\(file): \(reason)" }
    }

    /// Checks that the bundle holds exactly the manifest's files, with the recorded sizes
    /// and digests. `skipContent` lists files whose content is checked elsewhere (while copying).
    public func verify(skipContent: Set<String> = [], progress: ((String) -> Void)? = nil) -> [Problem] {
        var problems: [Problem] = []
        let expected = Set(manifest.files.map(\.name) + [Manifest.fileName])
        let present = Set((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
        for extra in present.subtracting(expected).sorted() {
            problems.append(Problem(file: extra, reason: "not listed in the manifest"))
        }
        let found = SharedBox<[Problem]>([])
        let entries = manifest.files
        DispatchQueue.concurrentPerform(iterations: entries.count) { i in
            let entry = entries[i]
            let p = file(entry.name)
            var problem: Problem?
            if !present.contains(entry.name) {
                problem = Problem(file: entry.name, reason: "missing")
            } else if let size = FileSystem.size(p), size != entry.size {
                problem = Problem(file: entry.name, reason: "size is \(size) bytes, the manifest says \(entry.size)")
            } else if !skipContent.contains(entry.name) {
                progress?(entry.name)
                do {
                    let digest = try SHA256Hasher.hex(ofFile: p)
                    if digest != entry.sha256 { problem = Problem(file: entry.name, reason: "content differs from its SHA-256 in the manifest") }
                } catch {
                    problem = Problem(file: entry.name, reason: "\(error)")
                }
            }
            if let problem { found.mutate { $0.append(problem) } }
        }
        problems += found.value
        return problems.sorted { $0.file < $1.file }
    }
}

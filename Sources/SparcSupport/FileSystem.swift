#if canImport(FoundationEssentials)
    import CSparcSupport
import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// Small file-system operations with durable semantics and POSIX errors.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Zeroes `length` bytes at `offset` of an open file by making them a hole; its size stays.
    public static func punchHole(_ fd: Int32, offset: Int64, length: Int64, path: String) throws {
        guard sparc_punch_hole(fd, off_t(offset), off_t(length)) == 0 else { throw SparcError.posix("cannot zero part of", path) }
    }

    public static func size(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    /// Bytes actually allocated on disk (what `du` shows), for sparse files.
    public static func allocatedBytes(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_blocks) * 512 : nil
    }

    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw SparcError.posix("cannot create directory", path) }
    }

    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SparcError.posix("cannot create directory", current)
            }
        }
    }

    /// Removes a file or a whole directory tree that sparc made; missing paths are fine.
    ///
    /// Never by path: the tree is walked through directory descriptors (`openat` with
    /// `O_NOFOLLOW`, `unlinkat`), so a directory another user swaps for a symbolic link while
    /// it is walked is unlinked as a link, never followed. Each entry must be on the tree's
    /// device and belong to this user; what does not is left where it is and returned, as are
    /// entries that could not be removed.
    @discardableResult
    public static func removeTree(_ path: String) -> [String] {
        let parent = Path.directory(of: path)
        let name = Path.base(of: path)
        guard !name.isEmpty, name != ".", name != "..", name != "/" else { return [path] }
        let dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { return errno == ENOENT ? [] : [path] }
        defer { close(dirfd) }
        var st = stat()
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return errno == ENOENT ? [] : [path] }
        var left: [String] = []
        TreeRemoval(owner: geteuid(), device: st.st_dev).remove(name, in: dirfd, shownAs: path, expected: st, left: &left)
        return left
    }

    /// Removes the entry `name` of the directory `dirfd` when it is what `removeTree` may remove.
    private struct TreeRemoval {
        let owner: uid_t
        let device: dev_t

        func remove(_ name: String, in dirfd: Int32, shownAs path: String, expected: stat, left: inout [String]) {
            guard expected.st_dev == device, expected.st_uid == owner else {
                left.append(path)
                return
            }
            guard (expected.st_mode & S_IFMT) == S_IFDIR else {
                if unlinkat(dirfd, name, 0) != 0 && errno != ENOENT { left.append(path) }
                return
            }
            let fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                if errno != ENOENT { left.append(path) }
                return
            }
            // The directory opened must be the one examined: a swap in between is not followed.
            var opened = stat()
            guard fstat(fd, &opened) == 0, opened.st_dev == expected.st_dev, opened.st_ino == expected.st_ino else {
                close(fd)
                left.append(path)
                return
            }
            for entry in Self.entries(of: fd) {
                var st = stat()
                guard fstatat(fd, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                remove(entry, in: fd, shownAs: path + "/" + entry, expected: st, left: &left)
            }
            close(fd)
            if unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT { left.append(path) }
        }

        /// The names in an open directory (its descriptor stays open and is not moved).
        static func entries(of fd: Int32) -> [String] {
            let copy = dup(fd)
            guard copy >= 0, let dir = fdopendir(copy) else {
                if copy >= 0 { close(copy) }
                return []
            }
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name != "." && name != ".." { names.append(name) }
            }
            return names
        }
    }

    /// Creates a new directory `PREFIX` + six random characters in `parent`, mode 0700, that
    /// did not exist before (mkdtemp): a name nobody can predict and nobody can have planted.
    public static func makeUniqueDirectory(in parent: String, prefix: String) throws -> String {
        var template = Array("\(parent)/\(prefix)XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SparcError.posix("cannot create a directory in", parent)
        }
        return String(cString: template)
    }

    /// Flushes the whole file system holding `path` (one syncfs(2)): every write and name
    /// made before is durable after.
    public static func syncFileSystem(containing path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot open", path) }
        defer { close(fd) }
        guard sparc_syncfs(fd) == 0 else { throw SparcError.posix("cannot sync the file system of", path) }
    }

    /// Creates `path` with `contents` (mode `mode`), never replacing or following anything
    /// there (`O_EXCL | O_NOFOLLOW`), synced; a failed write removes it.
    public static func createNew(_ path: String, contents: Data, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SparcError.posix("cannot create", path) }
        defer { close(fd) }
        do {
            try writeAll(fd: fd, contents, path: path)
            guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", path) }
        } catch {
            unlink(path)
            throw error
        }
    }

    /// Creates a new file beside `path`, named `PATH.TAG-PID-` and random hex, that did not exist
    /// before (`O_EXCL`, never through a link): a temporary name nobody can plant or predict.
    /// Returns its descriptor (read-write) and its path.
    public static func createUniqueFile(beside path: String, tag: String, mode: mode_t = 0o600) throws -> (fd: Int32, path: String) {
        for _ in 0..<64 {
            let candidate = path + ".\(tag)-\(getpid())-" + secureRandomBytes(6).map { String($0, radix: 16) }.joined()
            let fd = open(candidate, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 { return (fd, candidate) }
            if errno != EEXIST { throw SparcError.posix("cannot create", candidate) }
        }
        throw SparcError("cannot create a temporary file beside \(path): every name tried exists")
    }

    /// Opens `path` (absolute) without following a symbolic link anywhere on the way: each
    /// directory from `/` down is opened with `O_NOFOLLOW` relative to the one before, so no
    /// component can be swapped for a link into another file. Returns the descriptor.
    public static func openNoSymlinks(_ path: String, flags: Int32) throws -> Int32 {
        guard path.hasPrefix("/") else { throw SparcError("\(path) is not an absolute path") }
        let parts = path.split(separator: "/").map(String.init)
        guard let last = parts.last, !parts.contains(".."), !parts.contains(".") else { throw SparcError("\(path) is not a plain path") }
        var dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw SparcError.posix("cannot open", "/") }
        for part in parts.dropLast() {
            let next = openat(dir, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let code = errno
            close(dir)
            guard next >= 0 else {
                if code == ELOOP || code == ENOTDIR { throw SparcError("\(path): \(part) is not a directory (a symbolic link?): refusing to follow it") }
                throw SparcError.posix("cannot open", path, errno: code)
            }
            dir = next
        }
        let fd = openat(dir, last, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        let code = errno
        close(dir)
        guard fd >= 0 else {
            if code == ELOOP { throw SparcError("\(path) is a symbolic link: refusing to follow it") }
            throw SparcError.posix("cannot open", path, errno: code)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    /// Renames `from` to `to` unless `to` exists (renameat2 RENAME_NOREPLACE): nothing another
    /// user placed at `to` in the meantime is replaced.
    public static func renameNoReplace(_ from: String, to: String) throws {
        guard sparc_rename_noreplace(from, to) == 0 else {
            if errno == EEXIST { throw SparcError("\(to) appeared while it was being written: nothing was replaced", posixCode: EEXIST) }
            throw SparcError.posix("cannot move into place at", to)
        }
    }

    /// Writes `data` to `path` through a temporary file, fsync and rename, so readers
    /// see the old or the new content, never a mix.
    public static func writeAtomically(_ data: Data, to path: String, mode: mode_t = 0o600) throws {
        let (fd, tmp) = try createUniqueFile(beside: path, tag: "tmp", mode: mode)
        do {
            try writeAll(fd: fd, data, path: tmp)
            guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", tmp) }
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let code = errno
            unlink(tmp)
            throw SparcError.posix("cannot rename to", path, errno: code)
        }
        syncDirectory(containing: path)
    }

    public static func writeAll(fd: Int32, _ data: Data, path: String) throws {
        guard data.withUnsafeBytes({ writeAll(fd: fd, $0) }) else { throw SparcError.posix("cannot write", path) }
    }

    /// Writes every byte at `offset` (pwrite, retrying interrupted and short writes).
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SparcError.posix("cannot write", path) }
            done += n
        }
    }

    /// Writes every byte, retrying interrupted and would-block writes (a non-blocking port
    /// that is full: after a short wait); false with errno set when a write fails.
    /// The one write loop of sparc, host and agent.
    @discardableResult
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    usleep(10_000)
                    continue
                }
                return false
            }
            if n == 0 { return false }
            offset += n
        }
        return true
    }

    public static func syncDirectory(containing path: String) {
        syncDirectory(Path.directory(of: path))
    }

    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    public static func readFile(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read", path) }
        defer { close(fd) }
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("cannot read", path)
            }
            if n == 0 { return data }
            data.append(buf, count: n)
        }
    }

    /// An absolute, normalised form of `path` relative to the current directory.
    public static func absolute(_ path: String) -> String {
        let p = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return Path.normalize(p)
    }

    /// True when a process with this pid exists (signal 0 probe).
    public static func processAlive(_ pid: pid_t) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }
}

/// A private directory for writing a file that will be renamed to `target`: made by mkdtemp
/// beside it (`.NAME.partial-PID-XXXXXX`, mode 0700), so tools that create their output by path
/// (qemu-img) write where no other user can reach, and removed with whatever is left in it.
public final class StagingDirectory {
    public let path: String
    private let target: String

    public init(beside target: String) throws {
        self.target = target
        path = try FileSystem.makeUniqueDirectory(in: Path.directory(of: target), prefix: "." + Path.base(of: target) + ".partial-\(getpid())-")
    }

    deinit { FileSystem.removeTree(path) }

    /// Where to write the file before it moves to the target.
    public var file: String { path + "/" + Path.base(of: target) }

    /// Syncs the written file and renames it to the target: over what is there when `replace`,
    /// else only where nothing is (see `renameNoReplace`).
    public func moveIntoPlace(replace: Bool) throws {
        let fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot open", file) }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced else { throw SparcError.posix("cannot sync", file) }
        if replace {
            guard rename(file, target) == 0 else { throw SparcError.posix("cannot replace", target) }
        } else {
            try FileSystem.renameNoReplace(file, to: target)
        }
        FileSystem.syncDirectory(containing: target)
    }
}

/// A regular file opened for reading: the last path component is not followed if it is a
/// symlink, a FIFO or device is refused without blocking, and the size is fixed at opening.
/// Readers of untrusted files (bundles) check and use the file through this one descriptor.
public final class OpenedFile {
    public let fd: Int32
    public let path: String
    public let size: Int64

    /// Opens `path`; refuses what is not a regular file or is larger than `maxSize`.
    public init(regular path: String, followSymlinks: Bool = false, maxSize: Int64? = nil) throws {
        let flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followSymlinks ? 0 : O_NOFOLLOW)
        let fd = open(path, flags)
        guard fd >= 0 else {
            if errno == ELOOP { throw SparcError("\(path) is a symbolic link: refusing to follow it") }
            throw SparcError.posix("cannot read", path)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw SparcError("\(path) is not a regular file")
        }
        if let maxSize, Int64(st.st_size) > maxSize {
            close(fd)
            throw SparcError("\(path) is \(st.st_size) bytes, more than the \(maxSize) a file of its kind may have")
        }
        // Reads from a regular file never block; the flag only kept open() from waiting on a FIFO.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.fd = fd
        self.path = path
        self.size = Int64(st.st_size)
    }

    deinit { close(fd) }

    /// The whole content (for small files: the caller bounded the size when opening).
    public func readAll() throws -> Data {
        var data = Data(count: Int(size))
        var done = 0
        try data.withUnsafeMutableBytes { raw in
            while done < raw.count {
                let n = pread(fd, raw.baseAddress! + done, raw.count - done, off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SparcError.posix("cannot read", path)
                }
                if n == 0 { throw SparcError("\(path) shrank while it was read") }
                done += n
            }
        }
        return data
    }

    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    public func read(at offset: Int64, count: Int) throws -> Data {
        var data = Data(count: Int(max(0, min(Int64(count), size - offset))))
        let done = try data.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return data.prefix(done)
    }
}

extension FileSystem {
    /// Makes sure `path` is a directory that belongs to this user and that nobody else can
    /// enter (mode 0700), creating it (and missing parents) if needed. A directory owned by
    /// someone else, a symlink or a directory others can use is refused: another local user
    /// could otherwise plant sockets or files where sparc looks for its own.
    public static func ensurePrivateDirectory(_ path: String, what: String) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw SparcError.posix("cannot use \(what)", path) }
            let parent = Path.directory(of: path)
            if parent != path && !exists(parent) { try makeDirectories(parent) }
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SparcError.posix("cannot create \(what)", path) }
            guard lstat(path, &st) == 0 else { throw SparcError.posix("cannot use \(what)", path) }
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SparcError("\(what) \(path) is not a directory (a symbolic link or a file): refusing to use it")
        }
        guard st.st_uid == geteuid() else {
            throw SparcError("\(what) \(path) belongs to uid \(st.st_uid), not to you (uid \(geteuid())): refusing to use it")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw SparcError(
                "\(what) \(path) can be used by other users (mode \(String(st.st_mode & 0o777, radix: 8))): make it private with 'chmod 700 \(path)'")
        }
    }
}

/// Path string helpers that do not need Foundation's NSString.
public enum Path {
    /// The directory part of `path` ("." when there is none).
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// The last component of `path`.
    public static func base(of path: String) -> String {
        let trimmed = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// Resolves "." and ".." and repeated slashes lexically.
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }
}

/// A pthread mutex, usable without Foundation.
public final class Lock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}

/// Starts a detached thread running `body` (Foundation's Thread is not in FoundationEssentials).
public func startThread(_ body: @escaping () -> Void) {
    final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    pthread_create(&thread, &attr, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    pthread_attr_destroy(&attr)
}

/// Writes a line to standard error.
public func printError(_ text: String) {
    let line = text.hasSuffix("\n") ? text : text + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// lseek whence values Swift does not see without _GNU_SOURCE.
public let seekData: Int32 = 3
public let seekHole: Int32 = 4

/// A value handed between threads under a lock (results of background work).
public final class SharedBox<T>: @unchecked Sendable {
    private let lock = Lock()
    private var stored: T
    public init(_ value: T) { stored = value }
    /// Reads or replaces the whole value. A read-modify-write (`box.value[i] = x`,
    /// `box.value += 1`) is two steps and races: use `mutate` for those.
    public var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }

    /// Changes the value in place under the lock.
    @discardableResult
    public func mutate<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&stored) } }
}

/// A flag another thread raises to stop long work at its next safe point.
public final class Cancellation: @unchecked Sendable {
    private let lock = Lock()
    private var flag = false
    private let followsSignals: Bool
    /// `followsSignals`: also cancelled once SIGINT, SIGTERM or SIGHUP arrived (after
    /// `Interruption.install`).
    public init(followsSignals: Bool = false) { self.followsSignals = followsSignals }
    public func cancel() { lock.withLock { flag = true } }
    public var isCancelled: Bool { lock.withLock { flag } || (followsSignals && Interruption.signal != 0) }
}

/// SIGINT, SIGTERM and SIGHUP as a request to cancel: a checkpoint or restore that is told
/// to stop unwinds as Esc makes it (the guest runs and is thawed, nothing partial is left)
/// instead of dying half way. The handler only records the signal; the work polls it.
public enum Interruption {
    nonisolated(unsafe) private static var raised: sig_atomic_t = 0

    /// The signal that arrived (0: none).
    public static var signal: Int32 { raised }

    /// A cancellation that the signals raise (see `install`).
    public static let cancellation = Cancellation(followsSignals: true)

    /// Takes SIGINT, SIGTERM and SIGHUP over for the rest of the process: each is recorded, a
    /// second one is recorded again (never kills); long work checks `cancellation`.
    public static func install() {
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            Glibc.signal(sig) { s in Interruption.raised = s }
        }
        FaultPoint.interruption = cancellation
    }

    /// The shell's exit status for the signal that cancelled the work (128 + its number).
    public static var exitStatus: Int32 { 128 + raised }
}

/// Sorts ranges and merges those that overlap or touch.
public func mergedRanges<T: Comparable>(_ ranges: [Range<T>]) -> [Range<T>] {
    var out: [Range<T>] = []
    for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
        if let last = out.last, r.lowerBound <= last.upperBound {
            out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
        } else {
            out.append(r)
        }
    }
    return out
}

/// An advisory lock on a file (flock): serialises read-modify-write of a shared file
/// between sparc processes. The kernel drops it when the holder dies, so a killed process
/// never leaves it held.
public final class FileLock {
    let fd: Int32

    /// Takes the lock on `path` (created if missing), waiting for it unless `wait` is false,
    /// in which case a held lock is a nil result. Shared locks exclude only an exclusive one.
    ///
    /// A holder may remove the lock file (`removeFile`) before it lets go: a waiter that then
    /// gets the lock on the removed file sees that the path no longer names it and starts over
    /// on the path's new file, so two processes never hold "the" lock at once.
    public init?(_ path: String, wait: Bool = true, shared: Bool = false) throws {
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw SparcError.posix("cannot open lock", path) }
            while flock(fd, (shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB)) != 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                if code == EWOULDBLOCK { return nil }
                throw SparcError.posix("cannot lock", path, errno: code)
            }
            var held = stat(), named = stat()
            if fstat(fd, &held) == 0, lstat(path, &named) == 0, held.st_ino == named.st_ino, held.st_dev == named.st_dev {
                self.fd = fd
                self.path = path
                return
            }
            close(fd)
        }
    }

    let path: String

    /// Removes the lock file while the lock is held (a lock nobody needs any more leaves
    /// nothing behind); see `init` for why waiters stay safe.
    public func removeFile() { unlink(path) }

    deinit { close(fd) }

    /// Replaces the lock file's text (what the holder is doing, for whoever finds it held).
    public func describe(_ text: String) {
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    /// Runs `body` holding the lock on `path`.
    public static func withLock<T>(_ path: String, shared: Bool = false, _ body: () throws -> T) throws -> T {
        let lock = try FileLock(path, shared: shared)
        defer { withExtendedLifetime(lock) {} }
        return try body()
    }
}

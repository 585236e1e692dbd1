import Foundation
import CSparcSupport
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The files that hold guest RAM, shared between QEMU (which maps them) and sparc (which
/// copies them): each VM's RAM lives in its own directory under /dev/shm with a random name
/// (mkdtemp, mode 0700), and the file is created there by sparc (O_EXCL, O_NOFOLLOW, 0600)
/// before QEMU opens it. Nobody else can place, replace or open a RAM file.
public enum GuestRAM {
    public static let fileName = "ram"

    /// Where RAM files are made: `$SPARC_RAM_DIR` (a tmpfs or hugetlbfs mount of the
    /// operator's choosing), else /dev/shm.
    public static var baseDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["SPARC_RAM_DIR"], !dir.isEmpty { return dir }
        return "/dev/shm"
    }

    /// Free bytes where RAM files are made when that is a tmpfs, where guest memory may also be
    /// staged or copied without reaching a disk (nil: not a tmpfs, or it cannot be told).
    public static func freeTmpfsBytes() -> Int64? {
        guard (try? checkInMemory(baseDirectory)) != nil, sparc_filesystem_type(baseDirectory) == 0x0102_1994 else { return nil }
        return freeBytes()
    }

    /// Free bytes where RAM files are made (nil when that cannot be told).
    public static func freeBytes() -> Int64? {
        var fs = statvfs()
        guard statvfs(baseDirectory, &fs) == 0 else { return nil }
        return Int64(fs.f_bavail) * Int64(fs.f_frsize)
    }

    /// Checks that `base` keeps what it holds in memory (tmpfs or hugetlbfs): guest RAM on a
    /// disk file system would write the guest's memory, secrets and all, to disk.
    public static func checkInMemory(_ base: String) throws {
        let type = sparc_filesystem_type(base)
        guard type >= 0 else { throw SparcError.posix("cannot use the RAM directory", base) }
        let tmpfs = 0x0102_1994, hugetlbfs = 0x9584_58f6
        guard type == tmpfs || type == hugetlbfs else {
            throw SparcError("the RAM directory \(base) is not on tmpfs or hugetlbfs (file system type 0x\(String(type, radix: 16))): guest memory would be written to disk; set $SPARC_RAM_DIR to a tmpfs or hugetlbfs mount")
        }
    }

    /// Makes the private directory for one VM's RAM file.
    public static func makeDirectory(vm: String, base: String = GuestRAM.baseDirectory) throws -> String {
        try checkInMemory(base)
        var template = Array("\(base)/sparc-\(vm)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SparcError.posix("cannot create a directory for guest RAM in", base)
        }
        let dir = String(cString: template)
        try FileSystem.ensurePrivateDirectory(dir, what: "guest RAM directory")
        return dir
    }

    /// The RAM file's path in a directory made by `makeDirectory`.
    public static func path(in directory: String) -> String { directory + "/" + fileName }

    /// Creates an empty RAM file of `bytes` in a new private directory and returns its path.
    public static func create(vm: String, bytes: Int64, base: String = GuestRAM.baseDirectory) throws -> String {
        let dir = try makeDirectory(vm: vm, base: base)
        let file = path(in: dir)
        let fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let error = SparcError.posix("cannot create guest RAM file", file)
            rmdir(dir)
            throw error
        }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            let error = SparcError.posix("cannot size guest RAM file", file)
            unlink(file)
            rmdir(dir)
            throw error
        }
        return file
    }

    /// Opens a RAM file for QEMU to inherit, after checking it is what sparc made: a regular
    /// file (not a link), owned by this user, private (no group or other bits), with one name.
    public static func openChecked(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot open guest RAM file", path) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(), st.st_mode & 0o077 == 0,
            st.st_nlink == 1
        else {
            close(fd)
            throw SparcError("guest RAM file \(path) is not the private file sparc created: refusing to use it")
        }
        return fd
    }

    /// Removes a RAM file and its directory (missing ones are fine).
    public static func remove(_ path: String?) {
        guard let path, !path.isEmpty else { return }
        let dir = Path.directory(of: path)
        // Only a directory of sparc's making (sparc-NAME-XXXXXX), through descriptors.
        if Path.base(of: path) == fileName, Path.base(of: dir).hasPrefix("sparc-") {
            FileSystem.removeTree(dir)
        } else {
            unlink(path)
        }
    }
}

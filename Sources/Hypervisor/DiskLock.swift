import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// QEMU's image locks, held by sparc on the descriptors it hands QEMU.
///
/// QEMU locks an image with open-file-description locks on bytes 100+n (permission n held)
/// and 200+n (permission n not shared). sparc gives QEMU its disks as descriptors in fd sets
/// and turns QEMU's own locking off (`locking=off`): QEMU reopens a layer through another
/// descriptor of the same set when the layer becomes read-only, and its locks on the first
/// description would then outlive the fd it closed (the set still holds it) and block it.
/// sparc takes the same locks itself, on the descriptions in the sets, which live exactly as
/// long as QEMU: another QEMU or qemu-img sees the image as in use, and an image some other
/// process already uses is refused before the VM starts.
public enum DiskLock {
    static let consistentRead = 0
    static let write = 1
    static let resize = 3
    static let permissionBase: Int64 = 100
    static let sharedBase: Int64 = 200
    static let getLock: Int32 = 36  // F_OFD_GETLK
    static let setLock: Int32 = 37  // F_OFD_SETLK

    /// True when another open file description holds a lock on `byte` (QEMU's test: could a
    /// write lock be placed?).
    static func taken(_ fd: Int32, _ byte: Int64) -> Bool {
        var fl = flock()
        fl.l_type = Int16(F_WRLCK)
        fl.l_whence = Int16(SEEK_SET)
        fl.l_start = off_t(byte)
        fl.l_len = 1
        return fcntl(fd, getLock, &fl) == 0 && fl.l_type != Int16(F_UNLCK)
    }

    /// Locks `fd` as QEMU would for a reader (`writable` false) or the one writer of an image,
    /// after checking, as QEMU does, that nobody else holds what would conflict.
    public static func lock(_ fd: Int32, path: String, writable: Bool) throws {
        let held = writable ? [consistentRead, write] : [consistentRead]
        // Nobody else may write or resize an image that a VM reads or writes.
        let unshared = [write, resize]
        let inUse =
            held.contains { taken(fd, sharedBase + Int64($0)) } || unshared.contains { taken(fd, permissionBase + Int64($0)) }
        if inUse {
            throw SparcError("disk image \(path) is in use by another process (another VM, or a qemu-img writing it)")
        }
        for byte in held.map({ permissionBase + Int64($0) }) + unshared.map({ sharedBase + Int64($0) }) {
            var fl = flock()
            fl.l_type = Int16(F_RDLCK)
            fl.l_whence = Int16(SEEK_SET)
            fl.l_start = off_t(byte)
            fl.l_len = 1
            if fcntl(fd, setLock, &fl) != 0 {
                if errno == EAGAIN || errno == EACCES {
                    throw SparcError("disk image \(path) is in use by another process (another VM, or a qemu-img writing it)")
                }
                throw SparcError.posix("cannot lock disk image", path)
            }
        }
    }
}

import Foundation
import GuestQuery
import Hypervisor
import Libvirt
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Where a libvirt domain's guest RAM lives: the shared file of its memory backend.
///
/// The path comes from the domain's QEMU, which its guest may have compromised: sparc, as
/// root, opens it only as a regular file under libvirt's RAM directory, reached without a
/// symbolic link anywhere on the way, owned by the user the domain's QEMU runs as, of the
/// domain's RAM size, with one name.
struct DomainRAM {
    var path: String
    var bytes: Int64
    /// QEMU's name of the RAM block (the backend's id): what a live copy takes out of the stream.
    var block: String = ""

    /// libvirt's directory for file-backed guest RAM (`memory_backing_dir` in qemu.conf):
    /// `$SPARC_LIBVIRT_RAM_DIR`, else libvirt's default.
    static var directory: String {
        ProcessInfo.processInfo.environment["SPARC_LIBVIRT_RAM_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/var/lib/libvirt/qemu/ram"
    }

    /// Opens the RAM file after the checks above; `owner` is the domain's QEMU user (nil:
    /// libvirt gave no DAC label, and the file must then belong to root).
    static func openChecked(
        _ path: String, bytes: Int64, owner: uid_t?, writable: Bool, domain: String, under base: String = DomainRAM.directory
    ) throws -> Int32 {
        let root = Path.normalize(base)
        guard Path.normalize(path) == path, path.hasPrefix(root + "/") else {
            throw SparcError("domain '\(domain)': its QEMU names \(path.terminalSafe) as its RAM file, which is not under libvirt's RAM directory \(root): refusing to open it")
        }
        let fd = try FileSystem.openNoSymlinks(path, flags: writable ? O_RDWR : O_RDONLY)
        var st = stat()
        let why: String?
        if fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG {
            why = "is not a regular file"
        } else if st.st_uid != (owner ?? 0) {
            why = "belongs to uid \(st.st_uid), not to the domain's QEMU user (uid \(owner ?? 0))"
        } else if Int64(st.st_size) != bytes {
            why = "is \(st.st_size) bytes, not the domain's \(bytes >> 20) MiB of RAM"
        } else if st.st_nlink != 1 {
            why = "has \(st.st_nlink) names"
        } else {
            why = nil
        }
        if let why {
            close(fd)
            throw SparcError("domain '\(domain)': its RAM file \(path.terminalSafe) \(why): refusing to use it")
        }
        return fd
    }

    /// Asks the domain's QEMU which backend holds its RAM and where that file is.
    static func locate(_ monitor: MachineMonitor, domain: String) throws -> DomainRAM {
        // The machine names its backend by id, or (QEMU 7+) by QOM path.
        let backend = (try? monitor.execute("qom-get", ["path": "/machine", "property": "memory-backend"]) as? String) ?? "pc.ram"
        let object = backend.hasPrefix("/") ? backend : "/objects/" + backend
        guard let path = try? monitor.execute("qom-get", ["path": object, "property": "mem-path"]) as? String, path.hasPrefix("/") else {
            throw SparcError(
                "domain '\(domain)' does not keep its RAM in a file (its QEMU has no mem-path on \(object)): run 'sparc libvirt prepare \(domain)', then restart it")
        }
        let size = try monitor.execute("qom-get", ["path": object, "property": "size"])
        guard let bytes = (size as? NSNumber)?.int64Value, bytes > 0 else { throw SparcError("domain '\(domain)': QEMU gave no size for its RAM") }
        return DomainRAM(path: path, bytes: bytes, block: Path.base(of: object))
    }
}

extension VMManager {
    /// The one writable disk whose state a domain's checkpoint saves (nil: none); refuses what
    /// sparc cannot roll back: several writable disks, block devices, network disks.
    static func savedDisk(of live: DomainPreparation, domain: String) throws -> DomainPreparation.Disk? {
        let writable = live.disks.filter(\.writable)
        guard writable.count <= 1 else {
            throw SparcError(
                "domain '\(domain)' has \(writable.count) writable disks (\(writable.map(\.target).joined(separator: ", "))): a sparc bundle holds one disk's state; make the others read-only or detach them")
        }
        guard let disk = writable.first else { return nil }
        guard let file = disk.file, file.hasPrefix("/") else {
            throw SparcError("domain '\(domain)''s disk \(disk.target) is not an image file (a block device or network disk): sparc cannot save and roll back its state")
        }
        guard let format = disk.format, ["qcow2", "raw"].contains(format) else {
            throw SparcError("domain '\(domain)''s disk \(disk.target) is in format \(disk.format ?? "unknown"): sparc saves qcow2 and raw images")
        }
        return disk
    }
}

extension VMManager {
    /// Puts a bundle's disk state into a domain's image file (not in use: the domain is not
    /// running), in the image's own format, keeping its owner and mode; the file is the old or
    /// the new disk, never a mix.
    func rollBackDomainDisk(
        _ source: ByteSource, member: Manifest.Member = .disk, entry: Manifest.FileEntry, to target: String, format: String, layout: RuntimeLayout
    ) throws {
        var old = stat()
        let hadOld = lstat(target, &old) == 0
        if format == "qcow2" {
            _ = try restoreDisk(source, member: member, entry: entry, to: target, layout: layout)
        } else {
            let copy = layout.directory + "/disk.qcow2"
            defer { unlink(copy) }
            _ = try copyDiskState(source, member: member, entry: entry, to: copy)
            let staging = try StagingDirectory(beside: target)
            let r = try Subprocess.run([try QEMUProcess.locateQemuImg(), "convert", "-f", "qcow2", "-O", format, copy, staging.file])
            guard r.status == 0 else { throw SparcError("cannot write the disk state into \(target): \(r.stderrSummary)") }
            try staging.moveIntoPlace(replace: true)
        }
        if hadOld {
            _ = chown(target, old.st_uid, old.st_gid)
            _ = chmod(target, old.st_mode & 0o7777)
        }
    }

    /// A small bundle member, read whole and checked against its digest.
    func readVerified(_ reader: BundleReader, _ member: Manifest.Member) throws -> Data {
        let file = try reader.open(member)
        let digest = try ChunkedDigest.digest(fd: file.fd, size: file.size, path: file.path)
        guard digest == reader.manifest.file(member)?.sha256, let data = FileManager.default.contents(atPath: file.path), Int64(data.count) == file.size else {
            throw BundleError.tampered(member: member.rawValue)
        }
        return data
    }

    /// Writes a memory image into the RAM file a waiting QEMU already maps: zeroed first (the
    /// image's holes are zero pages), then every data block copied while its digest is checked.
    func fillRAMFile(
        _ path: String, bytes: Int64, owner: uid_t?, domain: String, from source: ByteSource, entry: Manifest.FileEntry, progress: Progress?
    ) throws {
        let fd = try DomainRAM.openChecked(path, bytes: bytes, owner: owner, writable: true, domain: domain)
        defer { close(fd) }
        try FileSystem.punchHole(fd, offset: 0, length: entry.size, path: path)
        let shown: (Int64, Int64) -> Void = { done, total in progress?("loading memory \(done * 100 / max(total, 1))%") }
        let digest =
            try (source as? OpenedFile).map { try ChunkedDigest.digest(fd: $0.fd, size: $0.size, path: $0.path, copyTo: fd, progress: shown) }
            ?? ChunkedDigest.digest(source: source, progress: shown) { bytes, offset in try FileSystem.writeAll(fd: fd, bytes, at: offset, path: path) }
        guard digest == entry.sha256 else {
            throw BundleError.tampered(member: "memory.img")
        }
    }
}

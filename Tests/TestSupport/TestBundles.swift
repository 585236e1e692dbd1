import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Small real bundles made without a VM, for the store's tests.
public enum TestBundles {
    /// A 64 MiB machine's bundle in `dir`, mostly holes, with guest-like text, `secret` in its
    /// memory and device state, and `extra` random bytes (new chunks each time) at 9 MiB.
    /// `disk`: bytes stored as the bundle's disk state member (the store does not parse it).
    public static func make(in dir: String, name: String, secret: String, extra: Int = 0, vm: String = "t", disk: Data? = nil) throws -> String {
        let ram = dir + "/ram-" + name
        let fd = open(ram, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0, ftruncate(fd, 64 << 20) == 0 else { throw SparcError.posix("cannot make", ram) }
        let text = Array(String(repeating: "the guest's own words ", count: 20000).utf8)
        _ = pwrite(fd, text, text.count, 1 << 20)
        let planted = Array(secret.utf8)
        _ = pwrite(fd, planted, planted.count, off_t(5 << 20))
        if extra > 0 {
            let more = secureRandomBytes(extra)
            _ = pwrite(fd, more, more.count, off_t(9 << 20))
        }
        close(fd)
        defer { unlink(ram) }
        let writer = try BundleWriter(path: dir + "/" + name)
        let stats = try SparseImage.save(from: ram, to: writer.file(Manifest.memoryFile))
        try Data("device-state \(secret)".utf8).write(to: URL(fileURLWithPath: writer.file(Manifest.devicesFile)))
        var members = [Manifest.memoryFile, Manifest.devicesFile]
        if let disk {
            try disk.write(to: URL(fileURLWithPath: writer.file(Manifest.diskFile)))
            members.append(Manifest.diskFile)
        }
        let files = try writer.entries(for: members, known: [Manifest.memoryFile: stats.sha256])
        let manifest = Manifest(
            vm: .init(name: vm, id: "0b7c2a4e-8f1d-4c3b-9a6e-5d4f3e2a1b0c"),
            machine: .init(memoryMiB: 64, cpus: 1, accel: "tcg", kernel: nil, initrd: nil, append: nil, disk: disk != nil),
            qemu: .init(version: "7.2.0", argv: ["qemu"]), guest: nil,
            memory: .init(bytes: stats.bytes, dataBytes: stats.dataBytes, zeroBytes: stats.zeroBytes, excludedBytes: 0), files: files)
        try writer.commit(manifest, sealKey: Data(repeating: 3, count: 32))
        return dir + "/" + name
    }
}

import Foundation
import SparcSupport

/// The guests sparc builds itself.
public enum GuestKind: String, CaseIterable, Codable, Sendable {
    /// Debian's kernel and busybox in an initramfs, an ext4 data disk at /data (`make guest`).
    case busybox
    /// Debian 12 with systemd, sshd and bash on an ext4 root disk, with the sparc-guest
    /// package installed (`make guest-debian`).
    case debian
}

/// How a VM boots: the kernel and initrd given to QEMU, or the disk's own bootloader.
public enum BootSource: String, CaseIterable, Codable, Sendable {
    /// QEMU loads a kernel and initrd (`--kernel`, or the built guest's copies).
    case kernel
    /// The firmware boots the disk (GRUB, then the guest's own kernel): no host file is involved.
    case disk
}

/// A built guest: its kernel, initrd, disk and kernel command line.
public struct GuestImage: Sendable {
    public let kind: GuestKind
    public let directory: String
    public var kernel: String { directory + "/vmlinuz" }
    public var initrd: String { directory + "/initrd.img" }
    /// The data disk (busybox) or the root disk (debian).
    public var disk: String { directory + (kind == .busybox ? "/data.qcow2" : "/disk.qcow2") }
    /// `init_on_free=1` scrubs freed pages.
    public var append: String {
        switch kind {
        case .busybox: return GuestImage.defaultAppend
        case .debian: return "console=ttyS0 root=/dev/vda1 rw init_on_free=1 quiet"
        }
    }
    /// The Debian guest's disk carries GRUB and boots itself; the busybox guest's disk is data only.
    public var defaultBoot: BootSource { kind == .debian ? .disk : .kernel }
    public static let defaultAppend = "console=ttyS0 init_on_free=1 quiet"

    public init(kind: GuestKind = .busybox, directory: String) {
        self.kind = kind
        self.directory = directory
    }

    static func buildDirectory(_ kind: GuestKind) -> String { kind == .busybox ? "build/guest" : "build/guest-debian" }

    /// Finds a built guest: `$SPARC_GUEST_DIR` (busybox) or `$SPARC_DEBIAN_GUEST_DIR`, then the
    /// build directory in a source checkout above the running executable, then the installed location.
    public static func locate(_ kind: GuestKind = .busybox, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> GuestImage
    {
        var candidates: [String] = []
        let variable = kind == .busybox ? "SPARC_GUEST_DIR" : "SPARC_DEBIAN_GUEST_DIR"
        if let dir = environment[variable], !dir.isEmpty { candidates.append(dir) }
        let installed = kind == .busybox ? "guest" : "guest-debian"
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            // An installed sparc: PREFIX/bin/sparc and PREFIX/share/sparc/GUEST ('make install').
            candidates.append(Path.directory(of: Path.directory(of: exe)) + "/share/sparc/" + installed)
            var dir = Path.directory(of: exe)
            while dir != "/" && !dir.isEmpty {
                candidates.append(dir + "/" + buildDirectory(kind))
                dir = Path.directory(of: dir)
            }
        }
        candidates += ["/usr/local/share/sparc/\(installed)", "/usr/share/sparc/\(installed)"]
        for c in candidates {
            let image = GuestImage(kind: kind, directory: c)
            if FileSystem.exists(image.kernel) && FileSystem.exists(image.initrd) && (kind == .busybox || FileSystem.exists(image.disk)) {
                return image
            }
        }
        let make = kind == .busybox ? "make guest" : "make guest-debian"
        throw SparcError("the \(kind.rawValue) guest image is not built: run '\(make)' (or set \(variable))")
    }
}

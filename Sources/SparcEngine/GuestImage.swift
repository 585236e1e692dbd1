import Foundation
import SparcSupport

/// The default guest built by `make guest`: kernel, initramfs with the agent, data disk.
public struct GuestImage: Sendable {
    public let directory: String
    public var kernel: String { directory + "/vmlinuz" }
    public var initrd: String { directory + "/initrd.img" }
    public var dataDisk: String { directory + "/data.qcow2" }
    /// The kernel command line of the default guest; `init_on_free=1` scrubs freed pages.
    public static let defaultAppend = "console=ttyS0 init_on_free=1 quiet"

    public init(directory: String) { self.directory = directory }

    /// Finds the default guest: `$SPARC_GUEST_DIR`, then `build/guest` in a directory
    /// above the running executable (a source checkout), then the installed location.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GuestImage {
        var candidates: [String] = []
        if let dir = environment["SPARC_GUEST_DIR"], !dir.isEmpty { candidates.append(dir) }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var dir = Path.directory(of: exe)
            while dir != "/" && !dir.isEmpty {
                candidates.append(dir + "/build/guest")
                dir = Path.directory(of: dir)
            }
        }
        candidates += ["/usr/local/share/sparc/guest", "/usr/share/sparc/guest"]
        for c in candidates where FileSystem.exists(c + "/vmlinuz") && FileSystem.exists(c + "/initrd.img") {
            return GuestImage(directory: c)
        }
        throw SparcError("default guest image not found: run 'make guest' (or set SPARC_GUEST_DIR)")
    }
}

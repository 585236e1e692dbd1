import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Serves a VM's RSDM port (virtio-serial `org.sparc.rsdm.0`) until QEMU closes it.
/// A bad request is answered with an error; nothing a guest sends ends the server.
extension VMManager {
    /// The RSDM daemon: `sparc-rsdmd` beside this executable, or in its lib/libexec directory.
    static func rsdmDaemon() -> String? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        let dir = Path.directory(of: exe)
        for candidate in [dir + "/sparc-rsdmd", dir + "/../libexec/sparc/sparc-rsdmd", dir + "/../lib/sparc/sparc-rsdmd"]
        where access(candidate, X_OK) == 0 {
            return Path.normalize(candidate)
        }
        return nil
    }

    /// Starts the host side of the VM's RSDM port: a detached, supervised `sparc-rsdmd`.
    /// `socket` and `log` default to the VM's runtime directory; a libvirt domain's are elsewhere.
    func startRSDMServer(name: String, vmId: String, qemuPid: pid_t, socket: String? = nil, log logPath: String? = nil) throws {
        guard let daemon = Self.rsdmDaemon() else {
            throw SparcError("sparc-rsdmd is missing beside the sparc executable: reinstall sparc ('make install')")
        }
        let layout = layout(name)
        let log = open(logPath ?? layout.directory + "/rsdm.log", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o600)
        defer { if log >= 0 { close(log) } }
        _ = try Subprocess.spawn(
            [daemon, "--socket", socket ?? layout.rsdmSocket, "--state-dir", stateDirectory, "--vm-id", vmId, "--qemu-pid", String(qemuPid)],
            stderr: log >= 0 ? log : nil, newSession: true)
    }
}

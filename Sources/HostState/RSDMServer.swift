import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Serves a VM's RSDM port (virtio-serial `org.sparc.rsdm.0`) until QEMU closes it.
/// A bad request is answered with an error; nothing a guest sends ends the server.
public enum RSDMServer {
    public static func run(socketPath: String, store: RSDMStore) throws {
        var socket: UnixSocket?
        for _ in 0..<100 {
            socket = try? UnixSocket.connect(to: socketPath)
            if socket != nil { break }
            usleep(100_000)
        }
        guard let socket else { throw SparcError("RSDM port \(socketPath) is not reachable") }
        var lines = LineBuffer(maxLine: 64 << 10)
        while true {
            guard let chunk = try socket.read(deadline: nil), !chunk.isEmpty else { return }
            for frame in lines.append(chunk) {
                switch frame {
                case .line(let line) where !line.isEmpty:
                    try socket.write(store.handle(line), deadline: Date().addingTimeInterval(10))
                case .oversized(let head):
                    // Every request is answered, a too large one too: under the id its start names.
                    try socket.write(RSDMStore.refusal(head: head, maxBytes: lines.maxLine), deadline: Date().addingTimeInterval(10))
                default: continue
                }
            }
        }
    }
}

/// Keeps a VM's RSDM server running while its QEMU lives: a server that crashes or fails is
/// started again (at most 10 times a minute), so a guest cannot take RSDM away from itself.
public enum RSDMSupervisor {
    /// Runs `worker` until it ends cleanly (QEMU closed the port) or QEMU is gone.
    public static func run(worker: [String], qemuPid: pid_t, log: (String) -> Void) -> Int32 {
        var restarts: [Date] = []
        while true {
            let pid: pid_t
            do {
                pid = try Subprocess.spawn(worker, stderr: 2)
            } catch {
                log("cannot start the RSDM server: \(error)")
                return 1
            }
            let status = Subprocess.wait(pid)
            if status == 0 || !FileSystem.processAlive(qemuPid) { return 0 }
            restarts = restarts.filter { Date().timeIntervalSince($0) < 60 } + [Date()]
            log("the RSDM server ended with status \(status); restarting it")
            if restarts.count > 10 {
                log("the RSDM server failed 10 times in a minute; giving up")
                return 1
            }
            usleep(200_000)
        }
    }
}

import Foundation
import HostState
import SparcSupport

/// sparc-rsdmd: the host side of one VM's rollback-sensitive data port. Started detached by
/// `sparc vm start` and `sparc restore`; it supervises a worker process that serves the
/// port, and ends when QEMU closes the port or exits.
///
///   sparc-rsdmd --socket PATH --state-dir DIR --vm-id UUID --qemu-pid PID [--worker]

signal(SIGPIPE, SIG_IGN)
umask(0o077)
var options: [String: String] = [:]
var worker = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    if a == "--worker" {
        worker = true
    } else if a.hasPrefix("--"), let v = args.popFirst() {
        options[String(a.dropFirst(2))] = v
    } else {
        printError("sparc-rsdmd: unexpected argument '\(a.terminalSafe)'")
        exit(2)
    }
}
guard let socket = options["socket"], let state = options["state-dir"], let id = options["vm-id"],
    let qemuPid = options["qemu-pid"].flatMap({ Int32($0) })
else {
    printError("usage: sparc-rsdmd --socket PATH --state-dir DIR --vm-id UUID --qemu-pid PID")
    exit(2)
}
if worker {
    do {
        try RSDMServer.run(socketPath: socket, store: RSDMStore(directory: state, vmId: id))
        exit(0)
    } catch {
        printError("sparc-rsdmd: \(error)")
        exit(1)
    }
}
let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
exit(RSDMSupervisor.run(worker: [me] + CommandLine.arguments.dropFirst() + ["--worker"], qemuPid: qemuPid) { printError("sparc-rsdmd: \($0)") })

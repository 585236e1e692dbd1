import Foundation
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport

/// QEMU's own save and restore of the same VM: what sparc is measured against.
enum QEMUBaseline {
    /// QEMU's own save of the whole RAM and devices over a descriptor (as `virsh save` does),
    /// synced; the guest runs on after. Returns the seconds it took.
    static func save(layout: RuntimeLayout, to file: String) throws -> Double {
        let qmp = try QMPClient(socketPath: layout.qmpSocket)
        defer { qmp.close() }
        let seconds = try time {
            let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            defer { close(fd) }
            try qmp.execute("stop")
            try qmp.execute("migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": false]]])
            try qmp.passDescriptor(fd, as: "bench")
            try qmp.execute("migrate", ["uri": "fd:bench"])
            try qmp.waitForMigration(timeout: 600)
            syncAll()
        }
        try qmp.execute("cont")
        return seconds
    }

    /// QEMU's `-incoming` restore of `saved` on an overlay of the bundle's disk, to a running
    /// guest; the QEMU is killed after. Returns the seconds from launch to `cont`.
    static func restore(disk: String, saved: String, spec: MachineSpec) throws -> Double {
        let qemuLayout = RuntimeLayout(name: "qemu-restore", root: root)
        try FileSystem.makeDirectories(qemuLayout.directory)
        defer { FileSystem.removeTree(qemuLayout.directory) }
        let overlay = qemuLayout.directory + "/disk.qcow2"
        _ = try Subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", disk, overlay])
        let ram = try GuestRAM.create(vm: "qemu-restore", bytes: spec.memoryBytes)
        defer { GuestRAM.remove(ram) }
        let command = QEMUCommand(
            spec: spec, layout: qemuLayout, ramPath: ram,
            disk: [
                DiskLayer(path: disk, format: "qcow2", writable: false), DiskLayer(path: overlay, format: "qcow2", writable: true, serial: 1),
            ],
            incoming: true, sandbox: manager.sandbox)
        var pid: pid_t = 0
        defer {
            if pid > 0 {
                kill(pid, SIGKILL)
                _ = QEMUProcess.waitForExit(pid, timeout: 10)
            }
        }
        return try time {
            let (p, qmp) = try manager.launch(command, layout: qemuLayout)
            pid = p
            let fd = open(saved, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            try qmp.passDescriptor(fd, as: "bench")
            try qmp.execute("migrate-incoming", ["uri": "fd:bench"])
            while true {
                let (status, error) = try qmp.migrationState()
                if status == "completed" { break }
                if status == "failed" { throw SparcError("QEMU restore failed: \(error ?? "")") }
                usleep(5000)
            }
            try qmp.execute("cont")
            qmp.close()
        }
    }
}

import Foundation
import SparcSupport

/// Builds the QEMU command line for a machine.
///
/// The same builder serves start and restore, so the device set matches exactly, which
/// migration requires. Guest RAM is a shared file the host can read (`share=on`), and
/// nothing else holds sizeable guest memory: no default devices, no VGA.
public struct QEMUCommand {
    public static let binaryName = "qemu-system-x86_64"

    public var spec: MachineSpec
    public var layout: RuntimeLayout
    /// The qcow2 file the VM writes to (drive `disk0`), when the spec has a disk.
    public var diskPath: String?
    /// Start paused, waiting for `migrate-incoming`.
    public var incoming: Bool
    public var binary: String

    public init(spec: MachineSpec, layout: RuntimeLayout, diskPath: String?, incoming: Bool = false, binary: String = binaryName) {
        self.spec = spec
        self.layout = layout
        self.diskPath = diskPath
        self.incoming = incoming
        self.binary = binary
    }

    /// QEMU splits option values at commas; a literal comma is written twice.
    static func escape(_ value: String) -> String { value.replacingOccurrences(of: ",", with: ",,") }

    public var arguments: [String] {
        var a: [String] = [binary]
        a += ["-name", "sparc-\(layout.name)"]
        a += ["-machine", "q35,memory-backend=ram0"]
        a += ["-accel", spec.accel.rawValue]
        if spec.accel == .kvm { a += ["-cpu", "host"] }
        a += ["-smp", String(spec.cpus)]
        a += ["-m", "\(spec.memoryMiB)M"]
        a += [
            "-object",
            "memory-backend-file,id=ram0,size=\(spec.memoryMiB)M,mem-path=\(Self.escape(layout.ramPath)),share=on",
        ]
        a += ["-nodefaults", "-no-user-config", "-vga", "none", "-display", "none"]
        if let kernel = spec.kernel {
            a += ["-kernel", kernel]
            if let initrd = spec.initrd { a += ["-initrd", initrd] }
            if let append = spec.append { a += ["-append", append] }
        }
        a += ["-chardev", "socket,id=qmp,path=\(Self.escape(layout.qmpSocket)),server=on,wait=off"]
        a += ["-mon", "chardev=qmp,mode=control"]
        a += ["-chardev", "socket,id=console,path=\(Self.escape(layout.consoleSocket)),server=on,wait=off"]
        a += ["-serial", "chardev:console"]
        // ttyS1 carries `sparc terminal`: a pty relay in the guest, so typed text never passes the agent.
        a += ["-chardev", "socket,id=terminal,path=\(Self.escape(layout.terminalSocket)),server=on,wait=off"]
        a += ["-serial", "chardev:terminal"]
        a += ["-device", "virtio-serial-pci,id=vser0"]
        a += ["-chardev", "socket,id=agent,path=\(Self.escape(layout.agentSocket)),server=on,wait=off"]
        a += ["-device", "virtserialport,bus=vser0.0,chardev=agent,name=org.sparc.agent.0"]
        // Rollback-sensitive data: guest programs ask the host, whose store no restore rolls back.
        a += ["-chardev", "socket,id=rsdm,path=\(Self.escape(layout.rsdmSocket)),server=on,wait=off"]
        a += ["-device", "virtserialport,bus=vser0.0,chardev=rsdm,name=org.sparc.rsdm.0"]
        if spec.hasDisk, let diskPath {
            a += ["-drive", "file=\(Self.escape(diskPath)),if=none,id=disk0,format=qcow2,cache=writeback"]
            a += ["-device", "virtio-blk-pci,drive=disk0,id=vblk0"]
        }
        // A new generation id on every restore tells the guest kernel to reseed its RNG.
        a += ["-device", "vmgenid,guid=auto"]
        // Restore loads device state paused (-S) so the host decides when the guest runs.
        if incoming { a += ["-S", "-incoming", "defer"] }
        a += ["-pidfile", layout.pidFile]
        return a
    }
}

import Foundation
import SparcSupport

/// One layer of the machine's disk chain (drive `disk0`): the base image or an overlay.
///
/// QEMU gets every layer as descriptors in an fd set (`/dev/fdset/N`), never as a path it
/// opens itself: a QEMU that dropped its privileges (`-runas`) can still reopen a layer
/// read-only or read-write, and it opens no file sparc did not hand it.
public struct DiskLayer: Codable, Equatable, Sendable {
    public var path: String
    /// `qcow2` or `raw`.
    public var format: String
    /// Opened read-write too (the active layer, or a base that overlays are committed into).
    public var writable: Bool
    /// Follow the backing file named inside the image (an operator's own image chain). Images
    /// from a bundle never do: their header is untrusted and could name any host file.
    public var followsOwnBacking: Bool
    /// The disk size the guest sees (overlays are made with it, without opening their backing).
    public var virtualSize: Int64
    /// QEMU's node name for the layer and the fd set holding its descriptors: unique for the
    /// life of one QEMU, since layers come and go (overlays added, committed, deleted).
    public var node: String
    public var fdSet: Int

    public init(
        path: String, format: String, writable: Bool, followsOwnBacking: Bool = false, virtualSize: Int64 = 0,
        serial: Int = 0
    ) {
        self.path = path
        self.format = format
        self.writable = writable
        self.followsOwnBacking = followsOwnBacking
        self.virtualSize = virtualSize
        self.node = QEMUCommand.nodeName(layer: serial)
        self.fdSet = QEMUCommand.fdSet(layer: serial)
    }
}

/// How QEMU is confined: the seccomp sandbox is always on; as root QEMU also drops to an
/// unprivileged user once it has opened its files.
public struct QEMUSandbox: Codable, Equatable, Sendable {
    /// The user QEMU runs as after start-up (`-runas`), or nil to stay who started it.
    public var user: String?

    public init(user: String?) { self.user = user }

    /// The user QEMU drops to: `$SPARC_QEMU_USER` (empty: none), else `sparc-qemu` when
    /// sparc runs as root and that user exists (`make install` creates it).
    public static func detect(environment: [String: String] = ProcessInfo.processInfo.environment) -> QEMUSandbox {
        if let u = environment["SPARC_QEMU_USER"] { return QEMUSandbox(user: u.isEmpty ? nil : u) }
        guard geteuid() == 0, getpwnam(defaultUser) != nil else { return QEMUSandbox(user: nil) }
        return QEMUSandbox(user: defaultUser)
    }

    public static let defaultUser = "sparc-qemu"

    /// `-sandbox` keeps QEMU from spawning programs, changing resource controls and using
    /// obsolete system calls. It must allow the one set*id step of `-runas` (taken after the
    /// filter is installed); without `-runas` it denies privilege changes too.
    public var arguments: [String] {
        let elevate = user == nil ? "deny" : "allow"
        var a = ["-sandbox", "on,obsolete=deny,elevateprivileges=\(elevate),spawn=deny,resourcecontrol=deny"]
        if let user { a += ["-runas", user] }
        return a
    }
}

/// Builds the QEMU command line for a machine.
///
/// The same builder serves start and restore, so the device set matches exactly, which
/// migration requires. Guest RAM is a shared file the host can read (`share=on`), and
/// nothing else holds sizeable guest memory: no default devices, no VGA.
public struct QEMUCommand {
    public static let binaryName = "qemu-system-x86_64"
    /// Node name of the disk's top layer; overlays added at run time are named after their index.
    public static func nodeName(layer: Int) -> String { "disk0-l\(layer)" }
    /// The fd set of a layer (fd sets of layers added at run time continue the numbering).
    public static func fdSet(layer: Int) -> Int { layer + 1 }

    public var spec: MachineSpec
    public var layout: RuntimeLayout
    /// The guest RAM file (in a private directory under /dev/shm).
    public var ramPath: String
    /// The disk chain, base first, when the spec has a disk.
    public var disk: [DiskLayer]
    /// Start paused, waiting for `migrate-incoming`.
    public var incoming: Bool
    public var binary: String
    public var sandbox: QEMUSandbox

    public init(
        spec: MachineSpec, layout: RuntimeLayout, ramPath: String, disk: [DiskLayer] = [], incoming: Bool = false,
        binary: String = binaryName, sandbox: QEMUSandbox = QEMUSandbox(user: nil)
    ) {
        self.spec = spec
        self.layout = layout
        self.ramPath = ramPath
        self.disk = disk
        self.incoming = incoming
        self.binary = binary
        self.sandbox = sandbox
    }

    static func json(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// QEMU splits option values at commas; a literal comma is written twice.
    static func escape(_ value: String) -> String { value.replacingOccurrences(of: ",", with: ",,") }

    /// The child's descriptor for the guest RAM file: QEMU maps the file sparc created and
    /// checked, through the descriptor, never by a path someone could swap.
    public static let ramDescriptor: Int32 = 64

    /// The descriptors QEMU must inherit: child fd number, file, and whether it is the
    /// read-write one. The caller opens them and passes them to the spawn.
    public var descriptors: [(fd: Int32, path: String, writable: Bool)] {
        guard spec.hasDisk else { return [] }
        var out: [(Int32, String, Bool)] = []
        var next: Int32 = 3
        for layer in disk {
            out.append((next, layer.path, false))
            next += 1
            if layer.writable {
                out.append((next, layer.path, true))
                next += 1
            }
        }
        return out
    }

    public var arguments: [String] {
        var a: [String] = [binary]
        a += ["-name", "sparc-\(layout.name)"]
        a += sandbox.arguments
        a += ["-machine", "q35,memory-backend=ram0"]
        a += ["-accel", spec.accel.rawValue]
        if spec.accel == .kvm { a += ["-cpu", "host"] }
        a += ["-smp", String(spec.cpus)]
        // In KiB: the RAM has extra bytes beyond whole MiB (MachineSpec.unalignedTailBytes).
        a += ["-m", "\(spec.memoryBytes >> 10)k"]
        a += [
            "-object",
            "memory-backend-file,id=ram0,size=\(spec.memoryBytes >> 10)k,mem-path=/proc/self/fd/\(Self.ramDescriptor),share=on",
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
        a += ["-device", "virtserialport,bus=vser0.0,chardev=agent,name=\(VirtioPortName.agent)"]
        // Rollback-sensitive data: guest programs ask the host, whose store no restore rolls back.
        a += ["-chardev", "socket,id=rsdm,path=\(Self.escape(layout.rsdmSocket)),server=on,wait=off"]
        a += ["-device", "virtserialport,bus=vser0.0,chardev=rsdm,name=\(VirtioPortName.rsdm)"]
        if spec.hasDisk && !disk.isEmpty {
            var fds = descriptors.makeIterator()
            for (i, layer) in disk.enumerated() {
                let set = layer.fdSet
                for _ in 0..<(layer.writable ? 2 : 1) {
                    let d = fds.next()!
                    a += ["-add-fd", "fd=\(d.fd),set=\(set),opaque=\(d.writable ? "rw" : "ro")"]
                }
                let node = layer.node
                // locking=off: sparc holds QEMU's image locks on the fd set's descriptors (see DiskLock).
                var format: [String: Any] = [
                    "driver": layer.format, "node-name": node, "read-only": !layer.writable,
                    "file": [
                        "driver": "file", "node-name": node + "-file", "filename": "/dev/fdset/\(set)", "read-only": !layer.writable,
                        "locking": "off",
                    ] as [String: Any],
                ]
                if layer.format == "qcow2" {
                    if i > 0 {
                        format["backing"] = disk[i - 1].node
                    } else if !layer.followsOwnBacking {
                        format["backing"] = NSNull()
                    }
                }
                // JSON syntax: only it can say `"backing": null`.
                a += ["-blockdev", Self.json(format)]
            }
            a += ["-device", "virtio-blk-pci,drive=\(disk[disk.count - 1].node),id=vblk0"]
        }
        if let network = spec.network { a += network.arguments }
        // A new generation id on every restore tells the guest kernel to reseed its RNG.
        a += ["-device", "vmgenid,guid=auto"]
        // Restore loads device state paused (-S) so the host decides when the guest runs.
        if incoming { a += ["-S", "-incoming", "defer"] }
        a += ["-pidfile", layout.pidFile]
        return a
    }
}

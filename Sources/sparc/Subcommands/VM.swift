import ArgumentParser
import Libvirt
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct VM: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start, stop and list virtual machines.",
        subcommands: [Start.self, Stop.self, Status.self, List.self, Remove.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot a VM and return once its guest agent answers.",
            discussion: """
                Without --kernel, boots a guest sparc built: --guest busybox (the default, 'make guest': \
                Debian's kernel, busybox, an ext4 data disk at /data) or --guest debian ('make \
                guest-debian': Debian 12 with systemd, sshd and the sparc-guest package).
                Disks: a VM on --disk FILE writes to FILE and keeps its writes across stop and start, \
                as any VM does; a Debian guest gets a disk of its own (a copy of the built image in \
                sparc's state directory). Every checkpoint still holds the disk as it was at that \
                moment, and a restore takes the disk back to it. --ephemeral writes to an overlay \
                that 'sparc vm stop' discards instead (the busybox guest's data disk always does).
                Boot: the Debian guest's disk boots itself (GRUB, then the kernel and initrd inside \
                the guest), so neither the VM nor its bundles depend on a kernel file of the host's; \
                --boot disk does the same for a disk of your own, --boot kernel (or --kernel) has \
                QEMU load the kernel (sparc keeps a copy of it by digest for restores).
                Network: none by default. --net user gives the guest QEMU's own NAT (it reaches out; \
                the host reaches in through forwarded ports: --net user,hostfwd=tcp::2222-:22 makes \
                'ssh -p 2222 root@localhost' reach the guest's sshd); --net tap,ifname=TAP attaches \
                to a tap interface you made and bridged ('ip tuntap add TAP mode tap').
                Examples:
                  sparc vm start --guest debian --memory 1024 --net user,hostfwd=tcp::2222-:22
                  sparc vm start --name web --disk /var/lib/images/web.qcow2 --kernel vmlinuz --initrd initrd.img \\
                      --append 'console=ttyS0 root=/dev/vda rw'
                """)
        @Option(help: "Name of the VM.") var name: String = "default"
        @OptionGroup var lock: LockOptions
        @Option(parsing: .unconditional, help: "Guest RAM in MiB.") var memory: Int = 256
        @Option(parsing: .unconditional, help: "Virtual CPUs.") var cpus: Int = 1
        @Option(help: "busybox or debian: the built guest to boot (without --kernel).") var guest: GuestKind = .busybox
        @Option(help: "Disk image (qcow2 or raw) the VM runs on and writes to.") var disk: String?
        @Flag(help: "Discard the disk's writes at stop (an overlay on the image).") var ephemeral = false
        @Option(help: "Network card: user[,hostfwd=tcp::HOSTPORT-:GUESTPORT]... or tap,ifname=TAP.") var net: String?
        @Option(help: "kernel or disk: QEMU loads the kernel, or the disk's bootloader boots (debian's default).")
        var boot: BootSource?
        @Option(help: "Kernel to boot instead of the default guest's.") var kernel: String?
        @Option(help: "Initramfs for --kernel.") var initrd: String?
        @Option(help: "Kernel command line for --kernel.") var append: String?
        @Option(help: "auto, tcg or kvm. auto uses KVM only where stock guest kernels run on it.")
        var accel: AccelChoice = .auto
        @Option(parsing: .unconditional, help: "Seconds to wait for the guest agent after boot.") var agentTimeout: Double = 120

        func validate() throws {
            guard agentTimeout > 0, agentTimeout <= 3600 else {
                throw ValidationError("--agent-timeout must be more than 0 and at most 3600 seconds (got \(agentTimeout))")
            }
        }

        @OptionGroup var connection: ConnectOption

        func run() throws {
            try connection.refuseForDomains("vm start", instead: "'virsh start \(name)'")
            var o = StartOptions()
            o.name = name
            o.memoryMiB = memory
            o.cpus = cpus
            o.disk = disk
            o.guest = guest
            o.ephemeral = ephemeral
            o.kernel = kernel
            o.initrd = initrd
            o.append = append
            o.agentTimeout = agentTimeout
            o.network = net
            o.boot = boot
            o.accel = accel.accelerator
            let begin = Date()
            let state = try lock.apply(VMManager()).start(o, progress: progressPrinter())
            endProgress()
            print(
                "VM '\(state.name)' running: pid \(state.pid), \(state.spec.memoryMiB) MiB, \(state.spec.accel.rawValue), agent ready in \(String(format: "%.1f", Date().timeIntervalSince(begin))) s"
            )
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shut a VM down cleanly and remove its runtime files.",
            discussion: """
                The guest shuts down as on a power-off (its agent runs 'systemctl poweroff', or \
                'poweroff' without systemd; without an agent QEMU presses the ACPI power button), \
                so services stop and file systems unmount clean. A guest that has not powered off \
                after --timeout seconds is stopped the hard way, as with --force: its caches are \
                synced and QEMU quits.
                """)
        @Option(help: "Name of the VM.") var name: String = "default"
        @Flag(help: "Quit QEMU at once (after a sync) instead of shutting the guest down.") var force = false
        @OptionGroup var lock: LockOptions
        @Option(parsing: .unconditional, help: "Seconds to wait for the guest to power off.") var timeout: Double = 90
        func validate() throws {
            guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
        }
        @OptionGroup var connection: ConnectOption
        func run() throws {
            try connection.refuseForDomains("vm stop", instead: "'virsh shutdown \(name)' or 'virsh destroy \(name)'")
            let report = try lock.apply(VMManager()).stop(name: name, force: force, timeout: timeout, progress: progressPrinter())
            endProgress()
            if let note = report.note, report.how == .quit, !force { printError("sparc: warning: \(note)") }
            switch report.how {
            case .shutDown: print(String(format: "VM '%@' shut down in %.1f s", name, report.seconds))
            case .quit: print("VM '\(name)' stopped (QEMU quit)")
            case .alreadyExited: print("VM '\(name)' had already exited; its files are removed")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether a VM runs and whether its agent answers.")
        @Option(help: "Name of the VM.") var name: String = "default"
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectOption
        func run() throws {
            try connection.refuseForDomains("vm status", instead: "'sparc vm list --connect URI' or 'virsh domstate \(name)'")
            let s = try VMManager().status(name: name)
            if json { return try printStampedJSON(s) }
            print("name:     \(s.name)")
            print("state:    \(s.state)")
            if let pid = s.pid { print("pid:      \(pid)") }
            if let m = s.memoryMiB { print("memory:   \(m) MiB") }
            if let a = s.accel { print("accel:    \(a)") }
            if let q = s.qemuVersion { print("qemu:     \(q)") }
            if let t = s.startedAt { print("started:  \(t)") }
            if let r = s.restoredFrom { print("restored: \(r.terminalSafe)") }
            if let a = s.agent { print("agent:    \(a)") }
            if let g = s.guest { print("guest:    \(g)") }
            if let r = s.recovered { print("recovered: \(r)") }
            if let x = s.sandbox { print("sandbox:  \(x)") }
            print("runtime:  \(s.runtimeDirectory)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List VMs known to sparc, or with --connect the domains of a libvirt daemon (running or not, and whether each is prepared).")
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Every VM sparc knows, running or not, with its disk and its checkpoints in the store.") var all = false
        @OptionGroup var connection: ConnectOption
        func run() throws {
            if let uri = connection.uri { return try listDomains(uri) }
            if all { return try listKnown() }
            let all = try VMManager().list()
            if json { return try printJSON(all, key: "vms") }
            if all.isEmpty {
                print("no VMs (start one with 'sparc vm start')")
                return
            }
            print(pad("NAME", 16) + pad("STATE", 14) + pad("PID", 9) + pad("MEMORY", 10) + "RESTORED FROM")
            for s in all {
                print(
                    pad(s.name, 16) + pad(s.state, 14) + pad(s.pid.map(String.init) ?? "-", 9)
                        + pad(s.memoryMiB.map { "\($0) MiB" } ?? "-", 10) + (s.restoredFrom ?? "-"))
            }
        }

        func listKnown() throws {
            let manager = try VMManager()
            // The store is read when it can be opened without asking (a wrapped key needs its passphrase file).
            let store = FileSystem.isDirectory(BundleHome.path() + "/store") ? try? openStore() : nil
            let known = manager.knownVMs(store: store)
            if json { return try printJSON(known, key: "vms") }
            if known.isEmpty { return print("sparc knows no VMs here (start one with 'sparc vm start')") }
            print(pad("NAME", 16) + pad("STATE", 10) + pad("DISK", 12) + pad("CHECKPOINTS", 24) + "LAST CHECKPOINT")
            for vm in known {
                let disk = vm.diskBytes.map { formatBytes($0) + (vm.diskOwnedBySparc ? "" : "*") } ?? "-"
                let checkpoints = vm.checkpoints.map { "\($0) (\(formatBytes(vm.checkpointBytes ?? 0)) own)" } ?? "? (store locked)"
                print(pad(vm.name, 16) + pad(vm.state, 10) + pad(disk, 12) + pad(checkpoints, 24) + (vm.lastCheckpoint ?? "-"))
            }
            if known.contains(where: { $0.disk != nil && !$0.diskOwnedBySparc }) { print("* a disk file you named: 'sparc vm rm' leaves it") }
        }

        func listDomains(_ uri: String) throws {
            let domains = try LibvirtConnection(uri: uri).domains()
            if json { return try printJSON(domains, key: "domains") }
            if domains.isEmpty {
                print("libvirt at \(uri) has no domains")
                return
            }
            print(pad("NAME", 20) + pad("STATE", 14) + "SPARC")
            for d in domains {
                print(pad(d.name, 20) + pad(d.state, 14) + (d.prepared ? "prepared" : "not prepared: 'sparc libvirt prepare \(d.name)' adds " + d.missing.joined(separator: ", ")))
            }
        }
    }
}

extension GuestKind: ExpressibleByArgument {}
extension BootSource: ExpressibleByArgument {}

/// `--accel`: auto leaves the choice to sparc (KVM only where stock guest kernels run on it).
enum AccelChoice: String, CaseIterable, ExpressibleByArgument {
    case auto, tcg, kvm

    var accelerator: Accelerator? {
        switch self {
        case .auto: nil
        case .tcg: .tcg
        case .kvm: .kvm
        }
    }
}

extension VM {
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Remove a stopped VM's state: the disk sparc made for it, its identity, its rollback-sensitive data.",
            discussion: """
                It asks first (--yes for scripts). A disk file you named with --disk stays, as do \
                the VM's history and, unless --checkpoints, its checkpoints in the store (they \
                restore as a clone). A running VM is refused: stop it first.
                Examples:
                  sparc vm rm --name old
                  sparc vm rm --name scratch --checkpoints --yes
                """)
        @Option(help: "The VM to remove.") var name: String
        @Flag(help: "Also remove its checkpoints from the store (recorded as pruned in its history).") var checkpoints = false
        @Flag(help: "Do not ask.") var yes = false
        @Flag(help: "Print what was removed as JSON.") var json = false

        func run() throws {
            let manager = try VMManager()
            let store = checkpoints ? try openStore() : nil
            guard let vm = manager.knownVMs(store: store).first(where: { $0.name == name }) else {
                throw SparcError("no VM named '\(name.terminalSafe)' is known here (see 'sparc vm list --all')")
            }
            if !yes {
                guard isatty(0) != 0 else { throw SparcError("removing VM '\(name.terminalSafe)' needs a confirmation: pass --yes") }
                var what = ["its identity and rollback-sensitive data"]
                if let disk = vm.disk, vm.diskOwnedBySparc { what.insert("its disk \(disk.terminalSafe) (\(formatBytes(vm.diskBytes ?? 0)))", at: 0) }
                if checkpoints { what.append("its \(vm.checkpoints ?? 0) checkpoint(s) in the store") }
                FileHandle.standardError.write(Data("remove VM '\(name.terminalSafe)': \(what.joined(separator: ", "))? It cannot be undone. [y/N] ".utf8))
                guard let answer = readLine(), answer.lowercased().hasPrefix("y") else { return print("kept") }
            }
            let removal = try manager.removeVM(name, store: store)
            if json { return try printStampedJSON(removal) }
            for r in removal.removed { print("removed \(r.terminalSafe)") }
            if removal.checkpointsRemoved > 0 { print("removed \(removal.checkpointsRemoved) checkpoint(s) from the store (their chunks go at 'sparc store gc')") }
            for k in removal.kept { print("kept \(k.terminalSafe)") }
        }
    }
}

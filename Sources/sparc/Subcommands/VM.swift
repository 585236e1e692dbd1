import ArgumentParser
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
        subcommands: [Start.self, Stop.self, Status.self, List.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot a VM and return once its guest agent answers.",
            discussion: """
                Without --kernel, boots the default guest built by 'make guest' (Debian kernel, busybox, \
                sparc-agent, an ext4 data disk at /data). The disk image is used read-only as a base: the \
                guest writes to an overlay in the runtime directory, which 'sparc vm stop' discards; \
                checkpoints keep the disk state.
                """)
        @Option(help: "Name of the VM.") var name: String = "default"
        @Option(parsing: .unconditional, help: "Guest RAM in MiB.") var memory: Int = 256
        @Option(parsing: .unconditional, help: "Virtual CPUs.") var cpus: Int = 1
        @Option(help: "Disk image (qcow2 or raw) used as the base of the data disk.") var disk: String?
        @Option(help: "Kernel to boot instead of the default guest's.") var kernel: String?
        @Option(help: "Initramfs for --kernel.") var initrd: String?
        @Option(help: "Kernel command line for --kernel.") var append: String?
        @Option(help: "auto, tcg or kvm. auto uses KVM only where stock guest kernels run on it.")
        var accel: String = "auto"
        @Option(parsing: .unconditional, help: "Seconds to wait for the guest agent after boot.") var agentTimeout: Double = 120

        func validate() throws {
            guard agentTimeout > 0, agentTimeout <= 3600 else {
                throw ValidationError("--agent-timeout must be between 0 and 3600 seconds (got \(agentTimeout))")
            }
        }

        func run() throws {
            var o = StartOptions()
            o.name = name
            o.memoryMiB = memory
            o.cpus = cpus
            o.disk = disk
            o.kernel = kernel
            o.initrd = initrd
            o.append = append
            o.agentTimeout = agentTimeout
            switch accel {
            case "auto": o.accel = nil
            case "tcg": o.accel = .tcg
            case "kvm": o.accel = .kvm
            default: throw SparcError("--accel must be auto, tcg or kvm (got '\(accel)')")
            }
            let begin = Date()
            let state = try VMManager().start(o, progress: progressPrinter())
            endProgress()
            print(
                "VM '\(state.name)' running: pid \(state.pid), \(state.spec.memoryMiB) MiB, \(state.spec.accel.rawValue), agent ready in \(String(format: "%.1f", Date().timeIntervalSince(begin))) s"
            )
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a VM (the guest's file systems are synced first) and remove its runtime files.")
        @Option(help: "Name of the VM.") var name: String = "default"
        func run() throws {
            try VMManager().stop(name: name, progress: progressPrinter())
            endProgress()
            print("VM '\(name)' stopped")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether a VM runs and whether its agent answers.")
        @Option(help: "Name of the VM.") var name: String = "default"
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let s = try VMManager().status(name: name)
            if json { return try printJSON(s) }
            print("name:     \(s.name)")
            print("state:    \(s.state)")
            if let pid = s.pid { print("pid:      \(pid)") }
            if let m = s.memoryMiB { print("memory:   \(m) MiB") }
            if let a = s.accel { print("accel:    \(a)") }
            if let q = s.qemuVersion { print("qemu:     \(q)") }
            if let t = s.startedAt { print("started:  \(t)") }
            if let r = s.restoredFrom { print("restored: \(r.terminalSafe)") }
            if let a = s.agent { print("agent:    \(a)") }
            if let x = s.sandbox { print("sandbox:  \(x)") }
            print("runtime:  \(s.runtimeDirectory)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List VMs known to sparc.")
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let all = try VMManager().list()
            if json { return try printJSON(all) }
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
    }
}

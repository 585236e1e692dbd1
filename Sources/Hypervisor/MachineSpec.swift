import Foundation
import SparcSupport

/// How QEMU executes guest code.
public enum Accelerator: String, Codable, Sendable, CaseIterable {
    case tcg, kvm

    /// KVM when this host offers a usable stock KVM, else TCG.
    ///
    /// A PVM-only KVM module (as on some cloud hosts) cannot run stock guest
    /// kernels, so it counts as no KVM.
    public static func detect() -> Accelerator { kvmProblem() == nil ? .kvm : .tcg }

    /// Why KVM cannot run a stock guest kernel here (nil: it can).
    public static func kvmProblem() -> String? {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else { return "/dev/kvm is missing or not usable" }
        if FileSystem.exists("/sys/module/kvm_pvm") { return "this host's KVM is PVM only, which stock guest kernels do not run on" }
        if FileSystem.exists("/sys/module/kvm_intel") || FileSystem.exists("/sys/module/kvm_amd") { return nil }
        return "neither kvm_intel nor kvm_amd is loaded"
    }
}

/// Everything that defines the virtual machine's hardware and boot, independent of
/// where its runtime files live. Saved in bundles so restore rebuilds the same machine.
public struct MachineSpec: Codable, Equatable, Sendable {
    public var memoryMiB: Int
    public var cpus: Int
    public var accel: Accelerator
    public var kernel: String?
    public var initrd: String?
    public var append: String?
    /// True when the VM has a data disk (virtio-blk, drive id `disk0`).
    public var hasDisk: Bool
    /// The network card, or nil for none.
    public var network: NetworkSpec?
    /// RAM beyond `memoryMiB`: `unalignedTailBytes` on machines sparc starts (nil on those it
    /// started before, and on restores of their bundles), so that QEMU logs the guest's writes
    /// exactly (see `unalignedTailBytes`).
    public var extraRAMBytes: Int64?

    /// What sparc adds to the RAM of every machine it starts: 8 KiB, so the RAM block's length
    /// is no multiple of 64 pages. QEMU before 9.0 syncs such a block's dirty log page by page,
    /// and that path makes the vCPUs' TLBs trap writes again; the fast path for aligned blocks
    /// does not (QEMU commit 03bfc2188f), and under TCG a live copy then misses pages the guest
    /// wrote. 8 KiB, not 4: QEMU rounds `-m` up to 8 KiB.
    public static let unalignedTailBytes: Int64 = 8192

    public init(
        memoryMiB: Int = 256, cpus: Int = 1, accel: Accelerator = .tcg, kernel: String? = nil, initrd: String? = nil,
        append: String? = nil, hasDisk: Bool = false, network: NetworkSpec? = nil
    ) {
        self.network = network
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.accel = accel
        self.kernel = kernel
        self.initrd = initrd
        self.append = append
        self.hasDisk = hasDisk
    }

    /// The guest RAM's size: `memoryMiB` and the extra bytes.
    public var memoryBytes: Int64 { (Int64(memoryMiB) << 20) + (extraRAMBytes ?? 0) }

    /// Checks values an operator could get wrong, with messages that say what to do.
    public func validate() throws {
        guard memoryMiB >= 64 else { throw SparcError("memory must be at least 64 MiB (got \(memoryMiB))") }
        guard memoryMiB <= 1 << 20 else { throw SparcError("memory of \(memoryMiB) MiB is more than 1 TiB") }
        guard (1...64).contains(cpus) else { throw SparcError("cpus must be between 1 and 64") }
        for (what, path) in [("kernel", kernel), ("initrd", initrd)] {
            guard let path else { continue }
            var st = stat()
            guard stat(path, &st) == 0 else { throw SparcError("\(what) \(path) does not exist") }
            // A FIFO or device would be read until it ends (never).
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw SparcError("\(what) \(path) is not a regular file") }
        }
        if initrd != nil && kernel == nil { throw SparcError("--initrd needs --kernel") }
        if kernel != nil && initrd == nil {
            throw SparcError("--kernel needs --initrd (the guest's initramfs, where its agent starts); a disk with its own bootloader boots with --boot disk")
        }
    }
}

/// Where one VM's runtime files live: sockets, pid file, disk overlays, the VM's state.
/// Guest RAM lives apart, in a private directory under /dev/shm (see `GuestRAM`).
public struct RuntimeLayout: Sendable {
    public let name: String
    public let directory: String

    public init(name: String, root: String) {
        self.name = name
        self.directory = root + "/" + name
    }

    public var qmpSocket: String { directory + "/qmp.sock" }
    public var agentSocket: String { directory + "/agent.sock" }
    public var consoleSocket: String { directory + "/console.sock" }
    public var terminalSocket: String { directory + "/terminal.sock" }
    /// Console input is held while a checkpoint holds this lock (see `SerialConsole`).
    public var inputHold: String { directory + "/input.hold" }
    /// Written by a checkpoint before it pauses QEMU, removed when QEMU runs again: if its
    /// writer died in between, the next command resumes the guest.
    public var pausedMarker: String { directory + "/paused-by" }
    /// Written by a restore until its guest runs ("restore PID", "qemu PID", "ram PATH"): if
    /// its writer died before that, the next command removes the half-started VM.
    public var restoringMarker: String { directory + "/restoring-by" }
    /// Written by a checkpoint before it freezes the guest, removed when it ends; written by a
    /// restore once its guest runs frozen, removed when the guest is thawed (see
    /// `FreezeMarker`): if its writer died in between, the next sparc command for the VM
    /// thaws the guest at once and removes what a checkpoint was writing.
    public var atWorkMarker: String { directory + "/at-work-by" }
    public var rsdmSocket: String { directory + "/rsdm.sock" }
    public var pidFile: String { directory + "/qemu.pid" }
    public var stateFile: String { directory + "/vm.json" }
    public var errorLog: String { directory + "/qemu.err" }

    /// The per-user runtime root: `$SPARC_RUNTIME_DIR`, `$XDG_RUNTIME_DIR/sparc`, or
    /// `/run/sparc` for root. There is no fallback into a shared directory such as /tmp:
    /// another user could own the path first. `checkedRoot` makes sure it is private.
    public static func defaultRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let dir = environment["SPARC_RUNTIME_DIR"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_RUNTIME_DIR"], !xdg.isEmpty { return xdg + "/sparc" }
        if geteuid() == 0 { return "/run/sparc" }
        return nil
    }

    /// The runtime root, created if needed and checked to be this user's private directory.
    public static func checkedRoot(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        guard let root = defaultRoot(environment: environment) else {
            throw SparcError("no runtime directory: set XDG_RUNTIME_DIR (or SPARC_RUNTIME_DIR) to a directory only you can use")
        }
        try FileSystem.ensurePrivateDirectory(root, what: "runtime directory")
        return root
    }

    /// VM names become file names and QEMU option values: keep them plain.
    public static func validate(name: String) throws { try VMName.check(name) }
}

/// The VM's network card (virtio-net) and where its traffic goes.
///
/// `user` is QEMU's own NAT (no host set-up; the guest reaches out, the host reaches in only
/// through forwarded ports); `tap` attaches to a host tap interface the operator made and
/// bridged. QEMU's bridge helper is not offered: the sandbox forbids QEMU to spawn it.
public struct NetworkSpec: Codable, Equatable, Sendable {
    public enum Backend: String, Codable, Sendable { case user, tap }
    public var backend: Backend
    /// Port forwards for `user`, in QEMU's `hostfwd` form.
    public var forwards: [String]
    /// The host interface for `tap`.
    public var tap: String?
    /// The card's MAC address; a restore keeps it.
    public var mac: String

    public init(backend: Backend, forwards: [String] = [], tap: String? = nil, mac: String = NetworkSyntax.randomMAC()) {
        self.backend = backend
        self.forwards = forwards
        self.tap = tap
        self.mac = mac
    }

    /// Reads `--net`: `user`, `user,hostfwd=tcp::2222-:22[,hostfwd=…]` or `tap,ifname=TAP`.
    public static func parse(_ text: String, mac: String = NetworkSyntax.randomMAC()) throws -> NetworkSpec {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let usage = "--net must be 'user', 'user,hostfwd=tcp::HOSTPORT-:GUESTPORT' or 'tap,ifname=NAME'"
        switch parts.first {
        case "user":
            var forwards: [String] = []
            for option in parts.dropFirst() {
                guard option.hasPrefix("hostfwd="), NetworkSyntax.isForward(String(option.dropFirst(8))) else {
                    throw SparcError("\(usage) (not understood: '\(option.terminalSafe)')")
                }
                forwards.append(String(option.dropFirst(8)))
            }
            return NetworkSpec(backend: .user, forwards: forwards, mac: mac)
        case "tap":
            guard parts.count == 2, parts[1].hasPrefix("ifname="), NetworkSyntax.isInterface(String(parts[1].dropFirst(7))) else {
                throw SparcError(usage)
            }
            return NetworkSpec(backend: .tap, tap: String(parts[1].dropFirst(7)), mac: mac)
        default:
            throw SparcError("\(usage) (got '\(text.terminalSafe)')")
        }
    }

    /// The same card with user networking and no forwards (for a bundle whose host side is not trusted).
    public var withoutHostSide: NetworkSpec { NetworkSpec(backend: .user, mac: mac) }

    /// How `--net` would say it.
    public var description: String {
        switch backend {
        case .user: (["user"] + forwards.map { "hostfwd=" + $0 }).joined(separator: ",")
        case .tap: "tap,ifname=\(tap ?? "")"
        }
    }

    var arguments: [String] {
        var netdev: String
        switch backend {
        case .user: netdev = (["user", "id=net0"] + forwards.map { "hostfwd=" + $0 }).joined(separator: ",")
        case .tap: netdev = "tap,id=net0,ifname=\(tap ?? ""),script=no,downscript=no"
        }
        // romfile= : no PXE option ROM, so a restore does not depend on the host's iPXE files.
        return ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0,mac=\(mac),romfile="]
    }
}

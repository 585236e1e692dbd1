import Foundation
import SparcSupport

/// The bundle's table of contents: what was saved, from which machine, and the digest of
/// every file.
///
/// These are the on-disk record types of the bundle format, versioned on their own: the
/// engine converts its runtime types (machine spec, agent answers) into them, so a change to
/// the wire protocol or the QEMU builder never silently changes the format. Every value a
/// bundle carries is untrusted input: `decode` checks it before anything uses it.
public struct Manifest: Codable, Equatable, Sendable {
    /// 3: the owner map is `owners.bin` (bounded, read as a stream); 2 had `owners.json`.
    public static let currentFormatVersion = 3
    /// Formats this sparc reads.
    public static let readableFormatVersions = 2...3
    public static let fileName = "manifest.json"
    /// The host's MAC over the manifest digest (see `BundleSeal`); not listed in `files`.
    public static let sealFile = "host.seal"
    public static let memoryFile = Member.memory.rawValue
    public static let devicesFile = Member.devices.rawValue
    public static let diskFile = Member.disk.rawValue
    /// Page owners (pid, mapping or kernel kind per frame), for attributing search hits.
    public static let ownersFile = Member.ownerMap.rawValue

    /// The files a bundle may hold. Member names are fixed: a name from a manifest is never
    /// used as a path.
    public enum Member: String, CaseIterable, Codable, Sendable {
        case memory = "memory.img"
        case devices = "devices.vmstate"
        case disk = "disk.qcow2"
        /// The disk as the guest sees it, a sparse raw image: how the store keeps a disk it
        /// read through QEMU (by offset, so an unchanged block is an unchanged chunk).
        case diskImage = "disk.img"
        /// The owner map of format-2 bundles (JSON), still read.
        case owners = "owners.json"
        /// The owner map (see `OwnerMapFile`).
        case ownerMap = "owners.bin"
        /// A libvirt domain's definition, as libvirt saves it for a restore.
        case domain = "domain.xml"

        /// The most a member may weigh before it is read at all (the memory image is bounded
        /// by the machine's RAM size instead).
        public var sizeLimit: Int64 {
            switch self {
            // The largest machine's RAM and the bytes it may have beyond whole MiB.
            case .memory: return (Int64(Manifest.maxMemoryMiB) << 20) + Manifest.Machine.extraRAMLimit
            case .devices: return 1 << 30
            case .disk, .diskImage: return 64 << 40
            // Format-2 maps are digested as a stream whatever their size; readers decode only
            // up to OwnerIndex.maxLegacyJSONBytes.
            case .owners: return 4 << 30
            // One kind byte per frame of the largest machine, plus the bounded runs and names.
            case .ownerMap: return (Int64(Manifest.maxMemoryMiB) << 8) + (256 << 20)
            case .domain: return 4 << 20
            }
        }
    }

    static let maxMemoryMiB = 1 << 20
    /// A manifest is decoded whole (JSON costs ~13× its size in memory): 8 MiB is far more than a
    /// checkpoint writes and keeps a hostile one's decoding near 100 MiB.
    public static let maxManifestBytes: Int64 = 8 << 20

    /// Which VM this is: its name on the host that saved it and its identity (a UUID made
    /// when the VM first started), which rollback-sensitive data follows.
    public struct VMRecord: Codable, Equatable, Sendable {
        public var name: String
        public var id: String
        public init(name: String, id: String) {
            self.name = name
            self.id = id
        }
    }

    /// A boot file the restored VM needs again (kernel, initrd), named by its digest: restore
    /// takes it from sparc's content-addressed store, never from a path in the bundle.
    public struct BootFile: Codable, Equatable, Sendable {
        public var sha256: String
        public var size: Int64
        /// Where it came from on the saving host (for messages only).
        public var origin: String
        public init(sha256: String, size: Int64, origin: String) {
            self.sha256 = sha256
            self.size = size
            self.origin = origin
        }
    }

    public struct Machine: Codable, Equatable, Sendable {
        public var memoryMiB: Int
        public var cpus: Int
        /// `tcg` or `kvm`.
        public var accel: String
        public var kernel: BootFile?
        public var initrd: BootFile?
        public var append: String?
        /// The VM has a data disk (virtio-blk); its state is `disk.qcow2`.
        public var disk: Bool
        /// The VM kept its disk writes in a file of its own (restore writes the state back
        /// there) rather than in an overlay discarded at stop.
        public var persistentDisk: Bool
        /// The network card, or nil for none.
        public var network: Network?
        /// RAM beyond `memoryMiB` (sparc's machines since 0.3 have 8 KiB more, see
        /// `MachineSpec.unalignedTailBytes`); nil: none.
        public var extraRAMBytes: Int64?
        public init(
            memoryMiB: Int, cpus: Int, accel: String, kernel: BootFile?, initrd: BootFile?, append: String?, disk: Bool,
            persistentDisk: Bool = false, network: Network? = nil, extraRAMBytes: Int64? = nil
        ) {
            self.extraRAMBytes = extraRAMBytes
            self.network = network
            self.persistentDisk = persistentDisk
            self.memoryMiB = memoryMiB
            self.cpus = cpus
            self.accel = accel
            self.kernel = kernel
            self.initrd = initrd
            self.append = append
            self.disk = disk
        }
        /// The guest RAM's size (the memory image's): `memoryMiB` and the extra bytes.
        public var memoryBytes: Int64 { (Int64(memoryMiB) << 20) + (extraRAMBytes ?? 0) }
        /// The most RAM a manifest may have beyond `memoryMiB` (less than a MiB, in whole 8 KiB).
        public static let extraRAMLimit: Int64 = 1 << 20
    }

    /// A virtio-net card: its MAC and what it was attached to on the host.
    public struct Network: Codable, Equatable, Sendable {
        /// `user` (QEMU's NAT) or `tap`.
        public var backend: String
        /// `hostfwd` rules of `user` networking.
        public var forwards: [String]
        /// The host tap interface of `tap`.
        public var tap: String?
        public var mac: String
        public init(backend: String, forwards: [String], tap: String?, mac: String) {
            self.backend = backend
            self.forwards = forwards
            self.tap = tap
            self.mac = mac
        }
    }

    public struct QEMUInfo: Codable, Equatable, Sendable {
        public var version: String
        /// The full command line of the checkpointed QEMU, for the record (never executed).
        public var argv: [String]
        public init(version: String, argv: [String]) {
            self.version = version
            self.argv = argv
        }
    }

    public struct FileEntry: Codable, Equatable, Sendable {
        public var name: String
        public var size: Int64
        /// The file's `ChunkedDigest`.
        public var sha256: String
        public init(name: String, size: Int64, sha256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Memory: Codable, Equatable, Sendable {
        public var bytes: Int64
        public var dataBytes: Int64
        public var zeroBytes: Int64
        public var excludedBytes: Int64
        /// Memory the guest held free, left out (nil in bundles from before free memory was).
        public var freeBytes: Int64?
        public init(bytes: Int64, dataBytes: Int64, zeroBytes: Int64, excludedBytes: Int64, freeBytes: Int64? = nil) {
            self.bytes = bytes
            self.dataBytes = dataBytes
            self.zeroBytes = zeroBytes
            self.excludedBytes = excludedBytes
            self.freeBytes = freeBytes
        }
        /// What a memory image's copy counted.
        public init(_ stats: SparseCopyStats) {
            self.init(
                bytes: stats.bytes, dataBytes: stats.dataBytes, zeroBytes: stats.zeroBytes, excludedBytes: stats.excludedBytes,
                freeBytes: stats.freeBytes)
        }
    }

    /// What the checkpoint did with memory and swap slots the guest held free.
    public struct FreeMemory: Codable, Equatable, Sendable {
        /// Free memory left out of the memory image (it reads as zeros), buddy and per-CPU lists together.
        public var bytes: Int64
        /// The part of it on the per-CPU lists.
        public var perCPUBytes: Int64
        /// Swap slots zeroed in the disk state: free ones, and those only the swap cache held for excluded pages.
        public var swapBytes: Int64
        /// Whether the guest zeroes what it frees (`init_on_free=1`): nil where unknown.
        public var guestZeroesOnFree: Bool?
        /// Whether the guest poisons freed pages (`page_poison=1`): they then keep its pattern, which it checks.
        public var guestPoisonsFreePages: Bool?
        /// The operator kept free memory in the bundle (`--save-free-memory`).
        public var savedOnRequest: Bool
        /// What was saved after all, and why.
        public var notes: [GuestText]
        public init(
            bytes: Int64 = 0, perCPUBytes: Int64 = 0, swapBytes: Int64 = 0, guestZeroesOnFree: Bool? = nil, savedOnRequest: Bool = false,
            notes: [GuestText] = []
        ) {
            self.bytes = bytes
            self.perCPUBytes = perCPUBytes
            self.swapBytes = swapBytes
            self.guestZeroesOnFree = guestZeroesOnFree
            self.savedOnRequest = savedOnRequest
            self.notes = notes
        }
    }

    /// A process left out of the checkpoint: restore kills it before the guest runs on.
    public struct ExcludedProcess: Codable, Equatable, Sendable {
        public var pid: Int32
        /// Field 22 of /proc/PID/stat: tells this process from a later one with the same pid.
        public var startTime: UInt64
        /// The command name in clear: written by bundles before names were hidden; nil now.
        public var command: GuestText?
        /// HMAC-SHA256 of the command name under a key of the host that made the bundle: a
        /// process may have named itself with the secret (`prctl(PR_SET_NAME)`), so the name
        /// is never written in clear; that host can still test a guess.
        public var commandHash: String?
        /// "pid 12", "name bash", "on pts/0", "child of 12", "holds the master of pts/0".
        public var reason: GuestText
        public init(pid: Int32, startTime: UInt64, command: GuestText? = nil, commandHash: String? = nil, reason: GuestText) {
            self.pid = pid
            self.startTime = startTime
            self.command = command
            self.commandHash = commandHash
            self.reason = reason
        }

        /// How a screen shows it: the old clear name, or that the name is hidden.
        public var displayName: GuestText { command ?? "(name hidden)" }
    }

    /// What the operator asked to leave out and what that came to. Empty when nothing was excluded.
    public struct Exclusion: Codable, Equatable, Sendable {
        /// The targets as the operator named them: "pid 12", "name bash", "tty pts/0".
        public var targets: [GuestText]
        public var scope: String?
        /// Bytes of the memory image left out (all kinds, overlaps counted once).
        public var bytes: Int64
        /// Bytes per kind (user, pagecache, pipe, socket, tty, kstack).
        public var bytesByKind: [String: UInt64]
        /// The processes the targets resolved to; restore kills them.
        public var processes: [ExcludedProcess]
        public var ttys: [GuestText]
        public var ranges: Int
        public var keptSharedPages: Int
        /// Files whose page cache was left out: evicted after restore.
        public var evictFiles: [GuestText]
        /// Files on memory-only file systems left out (opt-in): removed after restore.
        public var removeFiles: [GuestText]
        /// Time the agent took to collect the ranges (guest frozen, VM running).
        public var collectMilliseconds: Double
        public var warnings: [GuestText]
        /// Under --best-effort, the steps that could not complete: what this bundle may hold
        /// although it was to be left out. Nil or empty: the exclusion is complete.
        public var gaps: [GuestText]?
        /// Descendants of the excluded processes that had exited (their data in others' queues
        /// is dropped at restore too). Nil: none.
        public var exitedPids: [Int32]?
        /// Where their data may still be that sparc could not leave out, each with what to do.
        public var possibleCopies: [GuestText]?

        public init(
            targets: [GuestText] = [], scope: String? = nil, bytes: Int64 = 0, bytesByKind: [String: UInt64] = [:],
            processes: [ExcludedProcess] = [], ttys: [GuestText] = [], ranges: Int = 0, keptSharedPages: Int = 0,
            evictFiles: [GuestText] = [], removeFiles: [GuestText] = [], collectMilliseconds: Double = 0, warnings: [GuestText] = []
        ) {
            self.targets = targets
            self.scope = scope
            self.bytes = bytes
            self.bytesByKind = bytesByKind
            self.processes = processes
            self.ttys = ttys
            self.ranges = ranges
            self.keptSharedPages = keptSharedPages
            self.evictFiles = evictFiles
            self.removeFiles = removeFiles
            self.collectMilliseconds = collectMilliseconds
            self.warnings = warnings
        }

        public var isEmpty: Bool { targets.isEmpty }
    }

    /// Where a libvirt domain's bundle came from: it restores as that domain, under libvirt.
    public struct LibvirtRecord: Codable, Equatable, Sendable {
        /// The connection it was saved through (`qemu:///system`).
        public var uri: String
        /// libvirt's machine type (`pc-i440fx-7.2`): the RAM file's layout follows it.
        public var machineType: String
        public init(uri: String, machineType: String) {
            self.uri = uri
            self.machineType = machineType
        }
    }

    public struct Guest: Codable, Equatable, Sendable {
        public var kernel: GuestText
        public var bootId: GuestText
        public var agentVersion: GuestText
        public init(kernel: GuestText, bootId: GuestText, agentVersion: GuestText) {
            self.kernel = kernel
            self.bootId = bootId
            self.agentVersion = agentVersion
        }
    }

    public var format: String = "sparc-bundle"
    public var formatVersion: Int = currentFormatVersion
    public var createdAt: String
    public var vm: VMRecord
    public var machine: Machine
    public var qemu: QEMUInfo
    public var guest: Guest?
    public var memory: Memory
    /// Free memory and swap: nil in bundles from before sparc left them out.
    public var freeMemory: FreeMemory?
    public var exclusion: Exclusion
    public var files: [FileEntry]
    /// Set for a libvirt domain (whose name and UUID are `vm`); its definition is `domain.xml`.
    public var libvirt: LibvirtRecord?
    /// How the device state was saved: nil, QEMU's stream with shared RAM ignored
    /// (`x-ignore-shared`, loaded the same way); `guestRAMOmitted`, a pre-copy stream whose
    /// guest-RAM pages sparc took out (loaded without `x-ignore-shared`, the RAM left as filled).
    public var deviceState: DeviceStateFormat?

    public enum DeviceStateFormat: String, Codable, Sendable {
        case guestRAMOmitted
    }
    /// SHA-256 of this file's bytes with this value written as 64 zeros.
    public var manifestSHA256: String

    public init(
        createdAt: Date = Date(), vm: VMRecord, machine: Machine, qemu: QEMUInfo, guest: Guest?, memory: Memory,
        exclusion: Exclusion = Exclusion(), files: [FileEntry]
    ) {
        self.createdAt = Manifest.timestamp(createdAt)
        self.vm = vm
        self.machine = machine
        self.qemu = qemu
        self.guest = guest
        self.memory = memory
        self.exclusion = exclusion
        self.files = files
        self.manifestSHA256 = Manifest.placeholderDigest
    }

    static let placeholderDigest = String(repeating: "0", count: 64)

    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    public func file(named name: String) -> FileEntry? { files.first { $0.name == name } }
    public func file(_ member: Member) -> FileEntry? { file(named: member.rawValue) }
    /// Which member holds the disk state: a qcow2 image (`disk.qcow2`) or the disk as the
    /// guest sees it (`disk.img`); nil without a disk.
    public var diskMember: Member? { file(.disk) != nil ? .disk : file(.diskImage) != nil ? .diskImage : nil }

    /// Encodes with the self-digest filled in: any changed byte of the file is detected.
    public func encoded() throws -> Data {
        var copy = self
        copy.manifestSHA256 = Manifest.placeholderDigest
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(copy)
        data.append(0x0A)
        let digest = SHA256Hasher.hex(of: data)
        guard let range = data.range(of: Data("\"manifestSHA256\" : \"\(Manifest.placeholderDigest)\"".utf8)) else {
            throw SparcError("internal error: manifest digest field not found")
        }
        data.replaceSubrange(range, with: Data("\"manifestSHA256\" : \"\(digest)\"".utf8))
        return data
    }

    /// Decodes a manifest, checks its self-digest and every value in it.
    public static func decode(_ data: Data) throws -> Manifest {
        struct Header: Decodable {
            var format: String?
            var formatVersion: Int?
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: data), header.format == "sparc-bundle" else {
            throw SparcError("manifest.json is not a sparc bundle manifest", kind: .negative)
        }
        guard let version = header.formatVersion, readableFormatVersions.contains(version) else {
            let v = header.formatVersion.map(String.init) ?? "?"
            throw SparcError(
                "bundle format version \(v) is not supported (this sparc reads versions \(readableFormatVersions.lowerBound)–\(readableFormatVersions.upperBound)"
                    + ((header.formatVersion ?? 0) < readableFormatVersions.lowerBound ? "; the bundle was written by an older sparc)" : "; upgrade sparc)"))
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw SparcError("manifest.json is not a valid sparc manifest", kind: .negative)
        }
        let claimed = Data("\"manifestSHA256\" : \"\(manifest.manifestSHA256)\"".utf8)
        guard Self.isDigest(manifest.manifestSHA256), let range = data.range(of: claimed) else {
            throw SparcError("manifest.json digest field is damaged", kind: .negative)
        }
        var zeroed = data
        zeroed.replaceSubrange(range, with: Data("\"manifestSHA256\" : \"\(placeholderDigest)\"".utf8))
        guard SHA256Hasher.hex(of: zeroed) == manifest.manifestSHA256 else {
            throw SparcError("manifest.json has been modified (its digest does not match)", kind: .negative)
        }
        try manifest.validate()
        return manifest
    }

    static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// True for a VM identity (a lower-case UUID).
    public static func isIdentity(_ s: String) -> Bool { isUUID(s) }

    static func isUUID(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && s.utf8.allSatisfy { $0 == 0x2D || ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Checks every value a hostile manifest could bend: names, sizes, counts, digests.
    /// A sealed manifest can still be anybody's: sealing proves integrity, not good intent.
    public func validate() throws {
        func bad(_ what: String) -> SparcError { SparcError("manifest.json is not valid: \(what)", kind: .negative) }
        guard VMName.isValid(vm.name) else { throw bad("VM name '\(vm.name.terminalSafe)' is not a valid name") }
        guard Self.isUUID(vm.id) else { throw bad("VM id '\(vm.id.terminalSafe)' is not a UUID") }
        guard (64...Self.maxMemoryMiB).contains(machine.memoryMiB) else { throw bad("memory of \(machine.memoryMiB) MiB") }
        if let extra = machine.extraRAMBytes {
            guard extra > 0, extra < Machine.extraRAMLimit, extra % 8192 == 0 else { throw bad("\(extra) bytes of RAM beyond whole MiB") }
        }
        guard (1...64).contains(machine.cpus) else { throw bad("\(machine.cpus) CPUs") }
        guard ["tcg", "kvm"].contains(machine.accel) else { throw bad("accelerator '\(machine.accel.terminalSafe)'") }
        for boot in [machine.kernel, machine.initrd].compactMap({ $0 }) {
            guard Self.isDigest(boot.sha256), boot.size >= 0 else { throw bad("a boot file's digest or size") }
        }
        if machine.initrd != nil && machine.kernel == nil { throw bad("an initrd without a kernel") }
        if let append = machine.append, append.utf8.contains(0) || append.utf8.count > 4096 { throw bad("the kernel command line") }
        if let net = machine.network {
            guard NetworkSyntax.isMAC(net.mac) else { throw bad("the network card's MAC address") }
            switch net.backend {
            case "user":
                guard net.tap == nil, net.forwards.count <= 64, net.forwards.allSatisfy(NetworkSyntax.isForward) else {
                    throw bad("the network's port forwards")
                }
            case "tap":
                guard net.forwards.isEmpty, let tap = net.tap, NetworkSyntax.isInterface(tap) else { throw bad("the network's tap interface") }
            default: throw bad("network backend '\(net.backend.terminalSafe)'")
            }
        }
        guard memory.bytes == machine.memoryBytes else {
            throw bad("memory image of \(memory.bytes) bytes for a machine with \(machine.memoryMiB) MiB")
        }
        for v in [memory.dataBytes, memory.zeroBytes, memory.excludedBytes] where v < 0 || v > memory.bytes {
            throw bad("memory statistics out of range")
        }
        var seen = Set<String>()
        for f in files {
            guard let member = Member(rawValue: f.name) else { throw bad("unknown file '\(f.name.terminalSafe)' (a bundle holds only fixed names)") }
            guard seen.insert(f.name).inserted else { throw bad("\(f.name) is listed twice") }
            guard f.size >= 0, f.size <= member.sizeLimit else { throw bad("\(f.name) has a size of \(f.size) bytes") }
            guard Self.isDigest(f.sha256) else { throw bad("\(f.name) has no valid digest") }
        }
        guard file(.memory)?.size == memory.bytes else { throw bad("the memory image is missing or not the machine's RAM size") }
        guard file(.devices) != nil else { throw bad("the device state is missing") }
        guard file(.disk) == nil || file(.diskImage) == nil else { throw bad("two disk states") }
        guard machine.disk == (diskMember != nil) else { throw bad("the disk state does not match the machine's disk") }
        guard (libvirt != nil) == (file(.domain) != nil) else { throw bad("a libvirt domain's definition without its record, or the reverse") }
        for p in exclusion.processes where p.pid <= 0 { throw bad("excluded process with pid \(p.pid)") }
        guard exclusion.bytes >= 0, exclusion.ranges >= 0, exclusion.keptSharedPages >= 0 else { throw bad("exclusion counts") }
    }
}

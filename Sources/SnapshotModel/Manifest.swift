import Foundation
import GuestQuery
import Hypervisor
import SparcSupport

/// The bundle's table of contents: what was saved, from which machine, and the digest of every file.
public struct Manifest: Codable, Equatable, Sendable {
    public static let currentFormatVersion = 1
    public static let fileName = "manifest.json"
    public static let memoryFile = "memory.img"
    public static let devicesFile = "devices.vmstate"
    public static let diskFile = "disk.qcow2"
    /// Page owners (pid, mapping or kernel kind per frame), for attributing search hits.
    public static let ownersFile = "owners.json"

    public struct QEMUInfo: Codable, Equatable, Sendable {
        public var version: String
        /// The full command line of the checkpointed QEMU, for the record.
        public var argv: [String]
        public init(version: String, argv: [String]) {
            self.version = version
            self.argv = argv
        }
    }

    /// A boot file the restored VM needs again (kernel, initrd), checked by digest.
    public struct BootFile: Codable, Equatable, Sendable {
        public var path: String
        public var sha256: String
        public init(path: String, sha256: String) {
            self.path = path
            self.sha256 = sha256
        }
    }

    public struct FileEntry: Codable, Equatable, Sendable {
        public var name: String
        public var size: Int64
        public var sha256: String
        public init(name: String, size: Int64, sha256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Memory: Codable, Equatable, Sendable {
        public var file: String
        public var bytes: Int64
        public var dataBytes: Int64
        public var zeroBytes: Int64
        public var excludedBytes: Int64
        public init(file: String, bytes: Int64, dataBytes: Int64, zeroBytes: Int64, excludedBytes: Int64) {
            self.file = file
            self.bytes = bytes
            self.dataBytes = dataBytes
            self.zeroBytes = zeroBytes
            self.excludedBytes = excludedBytes
        }
    }

    /// What the operator asked to leave out and what that came to. Empty when nothing was excluded.
    public struct Exclusion: Codable, Equatable, Sendable {
        /// The targets as the operator named them: "pid 12", "name bash", "tty pts/0".
        public var targets: [String]
        public var scope: String?
        /// Bytes of the memory image left out (all kinds, overlaps counted once).
        public var bytes: Int64
        /// Bytes per kind (user, pagecache, pipe, socket, tty, kstack).
        public var bytesByKind: [String: UInt64]
        /// The processes the targets resolved to; restore kills them.
        public var processes: [ExcludedProcess]
        public var ttys: [String]
        public var ranges: Int
        public var keptSharedPages: Int
        /// Files whose page cache was left out: evicted after restore.
        public var evictFiles: [String]
        /// Files on memory-only file systems left out (opt-in): removed after restore.
        public var removeFiles: [String]
        /// Time the agent took to collect the ranges (guest frozen, VM running).
        public var collectMilliseconds: Double
        public var warnings: [String]

        public init(
            targets: [String] = [], scope: String? = nil, bytes: Int64 = 0, bytesByKind: [String: UInt64] = [:],
            processes: [ExcludedProcess] = [], ttys: [String] = [], ranges: Int = 0, keptSharedPages: Int = 0,
            evictFiles: [String] = [], removeFiles: [String] = [], collectMilliseconds: Double = 0, warnings: [String] = []
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

    public struct Guest: Codable, Equatable, Sendable {
        public var kernel: String
        public var bootId: String
        public var agentVersion: String
        public init(kernel: String, bootId: String, agentVersion: String) {
            self.kernel = kernel
            self.bootId = bootId
            self.agentVersion = agentVersion
        }
    }

    public var format: String = "sparc-bundle"
    public var formatVersion: Int = currentFormatVersion
    public var createdAt: String
    public var vmName: String
    public var machine: MachineSpec
    public var qemu: QEMUInfo
    public var kernel: BootFile?
    public var initrd: BootFile?
    public var guest: Guest?
    public var memory: Memory
    public var exclusion: Exclusion
    public var files: [FileEntry]
    /// SHA-256 of this file's bytes with this value written as 64 zeros.
    public var manifestSHA256: String

    public init(
        createdAt: Date = Date(), vmName: String, machine: MachineSpec, qemu: QEMUInfo, kernel: BootFile?,
        initrd: BootFile?, guest: Guest?, memory: Memory, exclusion: Exclusion = Exclusion(), files: [FileEntry]
    ) {
        self.createdAt = Manifest.timestamp(createdAt)
        self.vmName = vmName
        self.machine = machine
        self.qemu = qemu
        self.kernel = kernel
        self.initrd = initrd
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

    /// Decodes a manifest and checks its self-digest.
    public static func decode(_ data: Data) throws -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw SparcError("manifest.json is not a valid sparc manifest", kind: .negative)
        }
        guard manifest.format == "sparc-bundle" else {
            throw SparcError("manifest.json is not a sparc bundle manifest", kind: .negative)
        }
        guard manifest.formatVersion == currentFormatVersion else {
            throw SparcError(
                "bundle format version \(manifest.formatVersion) is not supported (this sparc reads \(currentFormatVersion))")
        }
        let claimed = Data("\"manifestSHA256\" : \"\(manifest.manifestSHA256)\"".utf8)
        guard manifest.manifestSHA256.count == 64, let range = data.range(of: claimed) else {
            throw SparcError("manifest.json digest field is damaged", kind: .negative)
        }
        var zeroed = data
        zeroed.replaceSubrange(range, with: Data("\"manifestSHA256\" : \"\(placeholderDigest)\"".utf8))
        guard SHA256Hasher.hex(of: zeroed) == manifest.manifestSHA256 else {
            throw SparcError("manifest.json has been modified (its digest does not match)", kind: .negative)
        }
        return manifest
    }
}

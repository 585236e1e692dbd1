import Foundation
import Hypervisor
import SparcSupport

/// What sparc records about a running VM in its runtime directory (`vm.json`).
public struct VMState: Codable, Equatable, Sendable {
    public var name: String
    public var spec: MachineSpec
    public var argv: [String]
    public var pid: Int32
    public var qemuVersion: String
    public var startedAt: String
    /// The read-only image the VM's disk chain starts from.
    public var diskBase: String?
    /// The qcow2 overlay the VM writes to now.
    public var diskActive: String?
    /// Overlays created so far (the active one last); removed when the VM stops.
    public var diskOverlays: [String]
    /// The bundle this VM was restored from, if any.
    public var restoredFrom: String?

    public init(
        name: String, spec: MachineSpec, argv: [String], pid: Int32, qemuVersion: String, diskBase: String?,
        diskActive: String?, diskOverlays: [String], restoredFrom: String? = nil
    ) {
        self.name = name
        self.spec = spec
        self.argv = argv
        self.pid = pid
        self.qemuVersion = qemuVersion
        self.startedAt = ISO8601DateFormatter().string(from: Date())
        self.diskBase = diskBase
        self.diskActive = diskActive
        self.diskOverlays = diskOverlays
        self.restoredFrom = restoredFrom
    }

    static func load(_ path: String) throws -> VMState {
        do {
            return try JSONDecoder().decode(VMState.self, from: try FileSystem.readFile(path))
        } catch let e as SparcError {
            throw e
        } catch {
            throw SparcError("runtime state \(path) is damaged: \(error)")
        }
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileSystem.writeAtomically(try encoder.encode(self), to: path)
    }
}

/// A VM's status as `sparc vm status` reports it.
public struct VMStatus: Codable, Equatable, Sendable {
    public var name: String
    /// running, paused, stopped, or whatever QEMU reports.
    public var state: String
    public var pid: Int32?
    public var memoryMiB: Int?
    public var accel: String?
    public var qemuVersion: String?
    public var startedAt: String?
    public var restoredFrom: String?
    public var agent: String?
    public var runtimeDirectory: String
}

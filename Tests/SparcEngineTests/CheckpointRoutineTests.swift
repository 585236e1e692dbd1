import Foundation
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcSupport
import TestSupport
import XCTest

@testable import SparcEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The one checkpoint routine (`VMManager.runCheckpoint`) against a fake machine, a fake
/// agent and a RAM file in a temporary directory: a checkpoint writes a bundle that verifies
/// and holds the RAM; a failure at any step of the machine, QEMU or the agent, or a cancel,
/// leaves no bundle and no partial directory, the machine running and the guest thawed.
final class CheckpointRoutineTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["run/fake", "state", "out"] }

    /// A machine whose steps are recorded and can be made to fail.
    final class FakeMachine: Machine {
        let noun = "VM"
        let name = "fake"
        let identity = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
        let monitor: MachineMonitor
        let agentSocket: String
        let ramBytes: UInt64 = 64 << 20
        let ramPath: String
        let layout: RuntimeLayout
        let connect: String? = nil
        var failAt: String?
        var steps: [String] = []
        var running = true

        init(dir: String, agent: FakeGuestAgent, monitor: FakeMonitor) throws {
            self.monitor = monitor
            agentSocket = agent.path
            layout = RuntimeLayout(name: "fake", root: dir + "/run")
            ramPath = dir + "/ram"
            // Sparse but for one page of guest bytes.
            let fd = open(ramPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            defer { close(fd) }
            guard fd >= 0, ftruncate(fd, off_t(ramBytes)) == 0 else { throw SparcError.posix("cannot make", ramPath) }
            _ = "guest bytes".withCString { pwrite(fd, $0, 11, 8192) }
        }

        func step(_ name: String) throws {
            steps.append(name)
            if failAt == name { throw SparcError("\(name) failed (injected)") }
        }

        func writeOwnMembers(_ writer: BundleWriter) throws -> [String] { try step("members"); return [] }
        func pause() throws { try step("pause"); running = false }
        func resume() throws { try step("resume"); running = true }
        func prepareDiskDiversion() throws { try step("prepare") }
        func divertDisk(marker: (String) throws -> Void) throws -> (path: String, format: String)? { try step("divert"); return nil }
        func openRAM() throws -> Int32 {
            try step("ram")
            return open(ramPath, O_RDONLY | O_CLOEXEC)
        }
        func mergeDisk(progress: VMManager.Progress?) throws { try step("merge") }
        func stop(progress: VMManager.Progress?) throws { try step("stop"); running = false }
        func undo(paused: Bool) -> [String] {
            steps.append("undo")
            if paused { running = true }
            return []
        }
        func describe(into manifest: inout Manifest) {}
        func manifestHeader() -> (vm: Manifest.VMRecord, machine: Manifest.Machine, qemu: Manifest.QEMUInfo) {
            (
                .init(name: name, id: identity),
                .init(memoryMiB: 64, cpus: 1, accel: "tcg", kernel: nil, initrd: nil, append: nil, disk: false, persistentDisk: false),
                .init(version: "7.2.0", argv: [])
            )
        }
    }

    var fixtures = 0

    /// A machine, its agent and QEMU of their own (in a directory of their own), one state
    /// directory and one output directory for all.
    func fixture() throws -> (VMManager, FakeMachine, FakeGuestAgent, FakeMonitor) {
        fixtures += 1
        let own = dir + "/m\(fixtures)"
        try FileSystem.makeDirectories(own + "/run/fake")
        let manager = try VMManager(root: own + "/run", stateDirectory: dir + "/state", agentTimeout: 10)
        let agent = try FakeGuestAgent(dir: own)
        let monitor = FakeMonitor()
        return (manager, try FakeMachine(dir: own, agent: agent, monitor: monitor), agent, monitor)
    }

    func leftovers() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir + "/out") }

    func testCheckpointWritesAVerifiedBundleAndLeavesTheMachineRunning() throws {
        let (manager, machine, agent, _) = try fixture()
        let out = dir + "/out/c.sparc"
        let report = try manager.runCheckpoint(machine, output: out, stopAfter: false, exclusion: nil, saveFreeMemory: true, cancel: nil, progress: nil)
        XCTAssertEqual(report.bundle, out)
        XCTAssertEqual(machine.steps, ["members", "prepare", "pause", "divert", "ram", "resume", "merge"], "the overlay is made before the pause")
        XCTAssertTrue(machine.running)
        XCTAssertFalse(agent.frozen, "thawed")
        let reader = try BundleReader(path: out)
        XCTAssertEqual(reader.manifest.vm.id, machine.identity)
        XCTAssertEqual(reader.manifest.memory.bytes, Int64(machine.ramBytes))
        XCTAssertNotNil(reader.manifest.file(.devices))
        let memory = try Data(contentsOf: URL(fileURLWithPath: out + "/memory.img"))
        XCTAssertEqual(memory, try Data(contentsOf: URL(fileURLWithPath: machine.ramPath)), "the memory image is the RAM")
        XCTAssertEqual(String(decoding: try Data(contentsOf: URL(fileURLWithPath: out + "/devices.vmstate")), as: UTF8.self), "QEVM device state")
        XCTAssertFalse(FileSystem.exists(machine.layout.atWorkMarker), "no marker left")
        XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint])
        XCTAssertEqual(try leftovers(), ["c.sparc"])
    }

    func testStopAfterStopsInsteadOfResuming() throws {
        let (manager, machine, agent, _) = try fixture()
        _ = try manager.runCheckpoint(machine, output: dir + "/out/s.sparc", stopAfter: true, exclusion: nil, saveFreeMemory: true, cancel: nil, progress: nil)
        XCTAssertEqual(machine.steps, ["members", "prepare", "pause", "divert", "ram", "stop"])
        XCTAssertFalse(machine.running)
        XCTAssertEqual(agent.thaws, 0, "a stopped guest is not thawed")
    }

    /// A failure at each step of the machine before the bundle is sealed: the error comes
    /// through, the machine runs (resumed when it was paused), the guest is thawed, nothing
    /// is left in the output directory and no marker stays.
    func testFailureAtEveryStepIsUndone() throws {
        for failing in ["members", "prepare", "pause", "divert", "ram", "resume"] {
            let (manager, machine, agent, _) = try fixture()
            machine.failAt = failing
            XCTAssertThrowsError(
                try manager.runCheckpoint(machine, output: dir + "/out/f.sparc", stopAfter: false, exclusion: nil, saveFreeMemory: true, cancel: nil, progress: nil),
                failing)
            XCTAssertTrue(machine.running || failing == "resume", "\(failing): the machine runs")
            XCTAssertEqual(machine.steps.last, "undo", "\(failing): undone")
            XCTAssertFalse(agent.frozen, "\(failing): thawed")
            XCTAssertEqual(try leftovers(), [], "\(failing): no bundle, no partial directory")
            XCTAssertFalse(FileSystem.exists(machine.layout.atWorkMarker), "\(failing): no marker")
            XCTAssertEqual(try manager.history("fake").entries().count, 0, "\(failing): nothing recorded")
        }
    }

    func testQEMUFailingToSaveItsDevicesIsUndone() throws {
        let (manager, machine, agent, monitor) = try fixture()
        monitor.failMigration = true
        XCTAssertThrowsError(try manager.runCheckpoint(machine, output: dir + "/out/m.sparc", stopAfter: false, exclusion: nil, saveFreeMemory: true, cancel: nil, progress: nil))
        XCTAssertEqual(machine.steps, ["members", "prepare", "pause", "divert", "undo"])
        XCTAssertTrue(machine.running)
        XCTAssertFalse(agent.frozen)
        XCTAssertEqual(try leftovers(), [])
    }

    /// A cancel at each phase the progress reports: a cancel error (ECANCELED), the machine
    /// running, the guest thawed, nothing left.
    func testCancelAtEveryPhaseLeavesNothing() throws {
        for phase in [ProgressEvent.CheckpointPhase.recordingOwners, .savingDevices, .copyingMemory, .thawing, .hashing, .writingManifest] {
            let (manager, machine, agent, _) = try fixture()
            let cancel = Cancellation()
            XCTAssertThrowsError(
                try manager.runCheckpoint(
                    machine, output: dir + "/out/x.sparc", stopAfter: false, exclusion: nil, saveFreeMemory: true, cancel: cancel,
                    progress: { if $0.phase == phase { cancel.cancel() } })
            ) { XCTAssertEqual(($0 as? SparcError)?.posixCode, ECANCELED, "\(phase): \($0)") }
            XCTAssertTrue(machine.running, "\(phase)")
            XCTAssertFalse(agent.frozen, "\(phase): thawed")
            XCTAssertEqual(try leftovers(), [], "\(phase)")
            XCTAssertFalse(FileSystem.exists(machine.layout.atWorkMarker), "\(phase)")
        }
    }
}

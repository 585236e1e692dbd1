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

/// The one restore routine (`VMManager.runRestore`) against a fake target, the fake agent and
/// QMP of the checkpoint tests, and a bundle the checkpoint routine wrote: a restore fills the
/// RAM with the bundle's memory, hands QEMU its device state, resumes and has the agent thaw
/// the guest; a refusal touches nothing; a failure or cancel before the guest runs ends what
/// was started and records nothing.
final class RestoreRoutineTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["state", "out"] }

    /// A machine to restore into whose steps are recorded and can be made to fail.
    final class FakeTarget: RestoreTarget {
        let noun = "VM"
        let name = "fake"
        let reader: BundleReader
        let layout: RuntimeLayout
        let connect: String? = nil
        let monitor: FakeMonitor
        /// Held here: a test that does not look at the agent still restores with it.
        let agent: FakeGuestAgent
        let ramPath: String
        var failAt: String?
        var steps: [String] = []
        /// Whether a machine of that name runs (before: the one replaced; after: the restored one).
        var running = false
        var started = false
        var pid: pid_t { started ? 4242 : 0 }

        init(reader: BundleReader, dir: String, agent: FakeGuestAgent, monitor: FakeMonitor) {
            self.reader = reader
            self.monitor = monitor
            self.agent = agent
            layout = RuntimeLayout(name: "fake", root: dir + "/run")
            ramPath = dir + "/restored-ram"
        }

        func step(_ name: String) throws {
            steps.append(name)
            if failAt == name { throw SparcError("\(name) failed (injected)") }
        }

        func runningNow(replace: Bool) throws -> Bool {
            try step("running")
            if running && !replace { throw SparcError("VM 'fake' is running") }
            return running
        }
        func prepare(provenance: Provenance, policy: RestorePolicy, replacing: Bool) throws -> [GuestText] { try step("prepare"); return [] }
        func stopRunning(progress: VMManager.Progress?) throws { try step("stop"); running = false }
        var stoppedOutcome: String { "the VM it was to replace had been stopped" }
        func clearLeftovers() { steps.append("clear") }
        func restoreDisk(progress: VMManager.Progress?, cancel: Cancellation?) throws { try step("disk") }
        func startPaused(memory: ByteSource, progress: VMManager.Progress?, cancel: Cancellation?) throws -> MachineMonitor {
            try step("start")
            started = true
            progress?("loading memory")
            try SparseImage.load(
                from: memory, to: ramPath, expectedSize: reader.manifest.memory.bytes, expectedDigest: reader.manifest.file(.memory)!.sha256,
                progress: nil, cancel: cancel)
            return monitor
        }
        func waitForDeviceState() throws { try step("devices") }
        func register(provenance: Provenance) throws { try step("register") }
        func resume() throws { try step("resume"); running = true }
        func agentSocket() throws -> String { agent.path }
        func afterThaw(provenance: Provenance, agent: AgentClient) -> [GuestText] { steps.append("after"); return [] }
        func abandon() {
            steps.append("abandon")
            started = false
        }
        func explain(_ error: Error) -> Error? { nil }
    }

    var fixtures = 0

    /// A bundle written by the checkpoint routine from a fake machine (sealed by this host,
    /// the newest in its history), and a target, agent and QEMU to restore it into.
    func fixture(checkpoints: Int = 1) throws -> (VMManager, FakeTarget, FakeGuestAgent, FakeMonitor, source: String, bundles: [String]) {
        fixtures += 1
        let own = dir + "/r\(fixtures)"
        try FileSystem.makeDirectories(own + "/run/fake")
        let manager = try VMManager(root: own + "/run", stateDirectory: dir + "/state-\(fixtures)", agentTimeout: 10)
        let agent = try FakeGuestAgent(dir: own)
        let monitor = FakeMonitor()
        let machine = try CheckpointRoutineTests.FakeMachine(dir: own, agent: agent, monitor: monitor)
        var bundles: [String] = []
        for n in 0..<checkpoints {
            let out = dir + "/out/r\(fixtures)-\(n).sparc"
            _ = try manager.runCheckpoint(machine, output: out, stopAfter: false, exclusion: nil, saveFreeMemory: true, cancel: nil, progress: nil)
            bundles.append(out)
        }
        // The guest was saved frozen: the restored one wakes frozen.
        agent.frozen = true
        let target = FakeTarget(reader: try BundleReader(path: bundles[0]), dir: own, agent: agent, monitor: monitor)
        return (manager, target, agent, monitor, machine.ramPath, bundles)
    }

    func restore(_ manager: VMManager, _ target: FakeTarget, replace: Bool = false, policy: RestorePolicy = RestorePolicy(), cancel: Cancellation? = nil, progress: VMManager.Progress? = nil) throws -> RestoreReport {
        try manager.runRestore(target, replace: replace, killExcluded: true, policy: policy, progress: progress, cancel: cancel)
    }

    func testRestoreFillsTheRAMLoadsTheDevicesAndThawsTheGuest() throws {
        let (manager, target, agent, monitor, source, _) = try fixture()
        let report = try restore(manager, target)
        XCTAssertEqual(target.steps, ["running", "prepare", "clear", "disk", "start", "devices", "register", "resume", "after"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target.ramPath)), try Data(contentsOf: URL(fileURLWithPath: source)), "the RAM is the checkpoint's")
        XCTAssertEqual(String(decoding: monitor.received, as: UTF8.self), "QEVM device state", "QEMU was handed the bundle's device state")
        XCTAssertFalse(agent.frozen, "the agent thawed the guest")
        XCTAssertEqual(report.pid, 4242)
        XCTAssertFalse(report.replaced)
        XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint, .restore])
        XCTAssertFalse(FileSystem.exists(target.layout.atWorkMarker), "no marker left")
        XCTAssertFalse(FileSystem.exists(target.layout.directory + "/devices.vmstate"), "the device state's copy is gone")
    }

    /// A running machine of that name is refused without --replace (nothing else done), and
    /// with it verified against, then stopped.
    func testARunningMachineIsReplacedOnlyWhenAsked() throws {
        let (manager, target, _, _, _, _) = try fixture()
        target.running = true
        XCTAssertThrowsError(try restore(manager, target))
        XCTAssertEqual(target.steps, ["running"])
        target.steps = []
        let report = try restore(manager, target, replace: true)
        XCTAssertEqual(target.steps, ["running", "prepare", "stop", "disk", "start", "devices", "register", "resume", "after"])
        XCTAssertTrue(report.replaced)
    }

    /// An older bundle is a rollback: refused with its own case before the target is asked
    /// anything but whether it runs.
    func testRollbackIsRefusedBeforeAnythingIsTouched() throws {
        let (manager, target, _, _, _, _) = try fixture(checkpoints: 2)
        XCTAssertThrowsError(try restore(manager, target)) { error in
            guard case .rollback = error as? RestoreRefusal else { return XCTFail("not a rollback refusal: \(error)") }
        }
        XCTAssertEqual(target.steps, ["running"])
        var policy = RestorePolicy()
        policy.allowRollback = true
        target.steps = []
        let report = try restore(manager, target, policy: policy)
        XCTAssertTrue(report.rollback)
        XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint, .checkpoint, .rollback])
    }

    /// A failure at each step before the guest runs: the error comes through, what was started
    /// is ended, nothing is recorded and the device state's copy is gone.
    func testFailureAtEveryStepBeforeTheGuestRunsEndsWhatWasStarted() throws {
        for failing in ["prepare", "disk", "start", "devices", "register", "resume"] {
            let (manager, target, _, _, _, _) = try fixture()
            target.failAt = failing
            XCTAssertThrowsError(try restore(manager, target), failing)
            if failing != "prepare" { XCTAssertEqual(target.steps.last, "abandon", "\(failing): ended") }
            XCTAssertFalse(target.started, "\(failing): nothing left running")
            XCTAssertFalse(target.running, "\(failing): never resumed")
            XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint], "\(failing): nothing recorded")
            XCTAssertFalse(FileSystem.exists(target.layout.directory + "/devices.vmstate"), "\(failing): no copy left")
        }
    }

    func testQEMURefusingTheDeviceStateEndsIt() throws {
        let (manager, target, _, monitor, _, _) = try fixture()
        monitor.failMigration = true
        XCTAssertThrowsError(try restore(manager, target))
        XCTAssertEqual(target.steps, ["running", "prepare", "clear", "disk", "start", "abandon"])
        XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint])
    }

    /// A cancel at each phase before the guest runs: a cancel error (ECANCELED), nothing
    /// started, nothing recorded; once the guest runs, a cancel no longer stops the restore.
    func testCancelBeforeTheGuestRunsChangesNothing() throws {
        for phase in ["verifying", "loading memory", "loading device state"] {
            let (manager, target, _, _, _, _) = try fixture()
            let cancel = Cancellation()
            XCTAssertThrowsError(try restore(manager, target, cancel: cancel, progress: { if $0.text.hasPrefix(phase) { cancel.cancel() } })) {
                XCTAssertEqual(($0 as? SparcError)?.posixCode, ECANCELED, "\(phase): \($0)")
            }
            XCTAssertFalse(target.started, "\(phase): nothing left running")
            XCTAssertFalse(target.running, "\(phase)")
            XCTAssertEqual(try manager.history("fake").entries().map(\.event), [.checkpoint], "\(phase)")
        }
        let (manager, target, agent, _, _, _) = try fixture()
        let cancel = Cancellation()
        _ = try restore(manager, target, cancel: cancel, progress: { if $0.text.hasPrefix("thawing") { cancel.cancel() } })
        XCTAssertFalse(agent.frozen, "the excluded processes' end and the thaw are not cancelled")
    }

    /// An agent that does not thaw after the guest runs: the restore says so and leaves the
    /// machine running (never ended: its guest runs), the marker for the next command.
    func testAnAgentThatDoesNotThawIsReportedAndTheMachineRunsOn() throws {
        let (manager, target, agent, _, _, _) = try fixture()
        agent.refuseThaw = true
        XCTAssertThrowsError(try restore(manager, target))
        XCTAssertTrue(target.running)
        XCTAssertFalse(target.steps.contains("abandon"))
        XCTAssertTrue(FileSystem.exists(target.layout.atWorkMarker), "the next command finds the restore that did not finish")
    }
}

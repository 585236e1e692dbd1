import Foundation
import GuestQuery
import SparcSupport
import XCTest

/// A test class whose tests share one booted guest (TCG boots take seconds), with a
/// private runtime, state and work directory; every test leaves the VM running.
class GuestTestCase: XCTestCase {
    /// The VM name of the subclass.
    class var vmName: String { "e2e" }
    /// Extra `vm start` arguments of the subclass (another guest, more memory).
    class var startArguments: [String] { [] }
    /// Whether the class boots its shared VM (tests that start their own VMs say no).
    class var bootsVM: Bool { true }

    struct Shared {
        var runtime = ""
        var work = ""
        var sparc: SparcRunner!
        var bootError: String?
    }

    nonisolated(unsafe) static var shared: [String: Shared] = [:]

    var vm: String { Self.vmName }
    var sparc: SparcRunner { Self.shared[Self.vmName]!.sparc }
    var work: String { Self.shared[Self.vmName]!.work }
    var runtime: String { Self.shared[Self.vmName]!.runtime }

    override class func setUp() {
        super.setUp()
        var s = Shared()
        do {
            s.runtime = try makeTempDir("rt-\(vmName)")
            s.work = try makeTempDir("work-\(vmName)")
            s.sparc = SparcRunner(runtime: s.runtime)
            if bootsVM {
                let out = try s.sparc.run(["vm", "start", "--name", vmName] + startArguments)
                if out.status != 0 { s.bootError = out.stderr }
            }
        } catch {
            s.bootError = "\(error)"
        }
        shared[vmName] = s
    }

    override class func tearDown() {
        if let s = shared[vmName] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: s.runtime)) ?? [] {
                _ = try? s.sparc.run(["vm", "stop", "--name", name, "--force"])
            }
            FileSystem.removeTree(s.runtime)
            FileSystem.removeTree(s.runtime + "-state")
            FileSystem.removeTree(s.runtime + "-bundles")
            FileSystem.removeTree(s.work)
        }
        super.tearDown()
    }

    /// The longest one test may run; past it the watchdog kills the class's VMs, so whatever
    /// waits on them fails and the run goes on (a hang must fail a test, never stall CI).
    class var testTimeLimit: TimeInterval { 1200 }
    private var watchdog: DispatchWorkItem?

    override func setUp() {
        super.setUp()
        let runtime = Self.shared[Self.vmName]?.runtime ?? ""
        let name = self.name
        let limit = Self.testTimeLimit
        let item = DispatchWorkItem {
            FileHandle.standardError.write(Data("watchdog: \(name) still runs after \(Int(limit)) s; killing the QEMU processes of \(runtime)\n".utf8))
            Self.killVMs(in: runtime)
        }
        watchdog = item
        DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: item)
    }

    override func tearDown() {
        watchdog?.cancel()
        watchdog = nil
        super.tearDown()
    }

    /// Kills every QEMU whose pid file is in `runtime` (the test's own VMs only).
    static func killVMs(in runtime: String) {
        guard !runtime.isEmpty else { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? [] {
            let text = String(decoding: FileManager.default.contents(atPath: runtime + "/" + name + "/qemu.pid") ?? Data(), as: UTF8.self)
            if let pid = Int32(text.trimmed), pid > 1 { kill(pid, SIGKILL) }
        }
    }

    override func setUpWithError() throws {
        let bootError = Self.shared[Self.vmName]?.bootError
        if let bootError { XCTFail("the test VM did not boot: \(bootError)") }
        try XCTSkipIf(bootError != nil)
    }

    /// Runs a shell command in the guest and returns its stdout (trimmed).
    @discardableResult
    func guest(_ script: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try sparc.ok(["exec", "--name", vm, "--", "sh", "-c", script], file: file, line: line).trimmed
    }

    /// Starts a shell command in the guest in the background and returns its pid.
    func detach(_ script: String, file: StaticString = #filePath, line: UInt = #line) throws -> Int32 {
        let pid = try sparc.ok(["exec", "--name", vm, "--detach", "--", "sh", "-c", script], file: file, line: line).trimmed
        return Int32(pid) ?? -1
    }

    /// Whether the number a guest process keeps writing into `file` grows past its value now:
    /// polled (up to 300 times, 0.1 s apart) for progress the guest itself records, never a
    /// span of time. For "it runs on" after a checkpoint or a restore.
    func advances(_ file: String, line: UInt = #line) throws -> Bool {
        let start = Int(try guest("cat \(file) 2>/dev/null")) ?? -1
        for _ in 0..<300 {
            if (Int((try? guest("cat \(file) 2>/dev/null")) ?? "") ?? -1) > start { return true }
            usleep(100_000)
        }
        return false
    }

    /// Starts `sparc-probe assemble KIND SEED` in the guest and returns its pid once it says
    /// "ready" (its secret is whole in its memory).
    func assembled(_ kind: String, seed: Int) throws -> Int32 {
        let ready = "/run/assembled-\(kind)-\(seed)"
        let pid = try detach("exec sparc-probe assemble \(kind) \(seed) > \(ready)")
        try guest("i=0; while ! grep -q ready \(ready) 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; grep -q ready \(ready)")
        return pid
    }

    /// Leaves the guest's kernel helper as the agent loads it at its start: with the terminal
    /// offsets from BTF, its write ledger recording from then on (a test that unloaded it).
    func reloadKernelHelperThroughTheAgent(file: StaticString = #filePath, line: UInt = #line) {
        let agent = AgentClient(socketPath: runtime + "/\(vm)/agent.sock", timeout: 120)
        _ = try? agent.memoryLayout()
        agent.close()
        XCTAssertNotEqual(
            try? guest("cat /sys/module/sparc_helper/parameters/n_tty_read_buf_offset"), "-1", "the agent loaded the helper again", file: file, line: line)
    }

    /// Reads what a guest process writes into a FIFO (waiting for it to appear), then removes it.
    func readFifo(_ path: String) throws -> String {
        try guest("i=0; while [ ! -p \(path) ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat \(path); rm -f \(path)")
    }

    // MARK: - Shared checks

    func noOops(file: StaticString = #filePath, line: UInt = #line) throws {
        let log = try guest("dmesg")
        for bad in ["Oops", "BUG:", "WARNING:", "Call Trace", "segfault", "I/O error", "EXT4-fs error"] {
            XCTAssertFalse(log.contains(bad), "guest kernel logged '\(bad)':\n\(log)", file: file, line: line)
        }
    }

    /// The VM must be running with its processes thawed (exec answers and the agent says so).
    func assertHealthy(file: StaticString = #filePath, line: UInt = #line) throws {
        let status = try sparc.run(["vm", "status", "--name", vm, "--json"])
        XCTAssertEqual(status.status, 0, file: file, line: line)
        XCTAssertTrue(status.stdout.contains("\"state\" : \"running\""), status.stdout, file: file, line: line)
        XCTAssertFalse(status.stdout.contains("frozen"), "guest left frozen: \(status.stdout)", file: file, line: line)
        XCTAssertEqual(try guest("echo alive", file: file, line: line), "alive", file: file, line: line)
    }

    func assertNoVM(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(FileSystem.exists(runtime + "/" + name), "runtime dir of \(name) left behind", file: file, line: line)
        let shm = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("sparc-\(name)-") }
        XCTAssertEqual(shm, [], "RAM file left behind", file: file, line: line)
        let list = try sparc.run(["vm", "list", "--json"])
        XCTAssertFalse(list.stdout.contains("\"\(name)\""), file: file, line: line)
    }
}

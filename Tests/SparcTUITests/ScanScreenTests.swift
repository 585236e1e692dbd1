import GuestQuery
import HexView
import SecretScan
import SnapshotModel
import SparcSupport
import XCTest

@testable import SparcTUI

final class ScanScreenTests: XCTestCase {
    static func finding(_ rule: String, pid: Int32?, command: String = "holder", offset: UInt64, length: Int = 20) -> SecretFinding {
        SecretFinding(
            rule: SecretRule(id: rule, namespace: "sparc", description: "", severity: "high"), file: "/b/a.sparc/memory.img", offset: offset,
            length: length, encoding: "ascii", address: offset,
            owner: PageOwner(pid: pid, command: pid == nil ? nil : GuestText(command), mapping: pid == nil ? "pagecache" : "[heap]"),
            preview: "AKIA…[16 hidden]", revealed: false)
    }

    func model() -> TUIModel {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.processes.update([
            GuestProcess(pid: 1, ppid: 0, user: "root", state: "S", tty: nil, rssKiB: 1, command: "init", kernelThread: false),
            GuestProcess(pid: 77, ppid: 1, user: "root", state: "S", tty: nil, rssKiB: 1, command: "holder", kernelThread: false),
        ])
        m.setBundles(["a.sparc"])
        m.tab = .bundles
        return m
    }

    func testF5ScansTheBundleUnderTheCursorOneJobAtATime() {
        var m = model()
        XCTAssertEqual(m.handle(.function(5)), .scan(bundle: "a.sparc"))
        XCTAssertEqual(m.handle(.char("S")), .scan(bundle: "a.sparc"))
        m.busy = "checkpoint: copying memory"
        XCTAssertEqual(m.handle(.function(5)), .none, "refused while a checkpoint runs")
        XCTAssertTrue(m.status.contains("one job at a time"), m.status)
    }

    func testFindingsAreGroupedByOwnerAndTTagsTheOwner() {
        var m = model()
        m.receiveFindings(
            [Self.finding("aws_access_key_id", pid: 77, offset: 0x1000), Self.finding("shadow_hash", pid: nil, offset: 0x2000),
             Self.finding("github_token", pid: 77, offset: 0x3000)], bundle: "a.sparc")
        XCTAssertEqual(
            m.findingsScreen?.rows, [.owner("pid 77 holder", count: 2), .finding(0), .finding(2), .owner("kernel: pagecache", count: 1), .finding(1)])
        var buffer = CellBuffer(width: 120, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("3 finding(s), 2 owner(s)"), buffer.text)
        XCTAssertTrue(buffer.text.contains("pid 77 holder — 2 finding(s)"), buffer.text)
        XCTAssertTrue(buffer.text.contains("TagOwner"), "the function bar follows the mode")
        XCTAssertEqual(m.findingsScreen?.index, 0)
        _ = m.handle(.char("n"))
        XCTAssertEqual(m.findingsScreen?.index, 2, "the cursor moves in display order, over the owner headings")
        _ = m.handle(.char("t"))
        XCTAssertEqual(m.processes.tagged, [77])
        _ = m.handle(.char("n"))
        XCTAssertEqual(m.findingsScreen?.index, 1)
        _ = m.handle(.char("t"))
        XCTAssertTrue(m.status.contains("no process owns"), m.status)
        XCTAssertEqual(m.handle(.escape), .none)
        XCTAssertTrue(m.findingsScreen == nil)
    }

    /// Enter opens the hex view at the finding with its bytes hidden; v reveals them.
    func testHexViewHidesTheSecretUntilRevealed() {
        var m = model()
        m.receiveFindings([Self.finding("aws_access_key_id", pid: 77, offset: 0x1008, length: 4)], bundle: "a.sparc")
        XCTAssertEqual(m.handle(.enter), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x1000 - 64))
        m.hex?.data = Array(repeating: UInt8(ascii: "."), count: 72) + Array("AKIA".utf8) + Array(repeating: UInt8(ascii: "."), count: 100)
        var buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertFalse(buffer.text.contains("41 4B 49 41"), buffer.text)
        XCTAssertFalse(buffer.text.contains("AKIA"), buffer.text)
        XCTAssertTrue(buffer.text.contains("** ** ** **"), buffer.text)
        XCTAssertTrue(buffer.text.contains("Reveal"))
        _ = m.handle(.char("v"))
        buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("41 4B 49 41"), buffer.text)
        XCTAssertTrue(buffer.text.contains("AKIA"), buffer.text)
        XCTAssertTrue(buffer.text.contains("Hide"))
    }
}

final class BundleListTests: XCTestCase {
    /// The cursor stays on its bundle when the list changes, and goes to one just saved.
    func testCursorFollowsItsBundleAndTheNewOne() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles(["a.sparc", "c.sparc"])
        m.bundleList.panel.cursor = 1
        m.setBundles(["a.sparc", "b.sparc", "c.sparc"])
        XCTAssertEqual(m.bundleList.names[m.bundleList.cursor], "c.sparc")
        m.setBundles(["a.sparc", "b.sparc", "c.sparc", "d.sparc"], select: "b.sparc")
        XCTAssertEqual(m.bundleList.names[m.bundleList.cursor], "b.sparc")
        m.setBundles(["a.sparc"])
        XCTAssertEqual(m.bundleList.cursor, 0)
    }
}

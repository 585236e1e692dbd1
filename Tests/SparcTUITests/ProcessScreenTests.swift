import GuestQuery
import XCTest

@testable import SparcTUI

final class ProcessScreenTests: XCTestCase {
    func proc(_ pid: Int32, _ cmd: String, kernel: Bool = false) -> GuestProcess {
        GuestProcess(pid: pid, ppid: 1, user: "root", state: "S", tty: pid == 3 ? "ttyS0" : nil, rssKiB: 4, command: cmd, kernelThread: kernel)
    }

    func testRendersTableAndFunctionBar() {
        var screen = ProcessScreen(vmName: "default")
        screen.update([proc(1, "init"), proc(2, "[kthreadd]", kernel: true), proc(3, "-/bin/sh")])
        var buffer = CellBuffer(width: 80, height: 24)
        screen.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("default — 2 processes"))
        XCTAssertTrue(buffer.line(1).contains("PID"))
        XCTAssertTrue(buffer.line(2).hasSuffix("init"), buffer.text)
        XCTAssertTrue(buffer.line(3).contains("ttyS0"))
        XCTAssertFalse(buffer.text.contains("kthreadd"), "kernel threads are hidden")
        screen.showKernelThreads = true
        buffer = CellBuffer(width: 80, height: 24)
        screen.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("kthreadd"), "K shows them")
        XCTAssertTrue(buffer.line(0).contains("2 processes + 1 kernel threads"), buffer.line(0))
        var m = TUIModel(vmName: "default", bundleDirectory: "/b")
        m.processes = screen
        XCTAssertEqual(m.functionKeys.first { $0.key == .char("K") }?.label, "HideKern")
        screen.showKernelThreads = false
        XCTAssertEqual(buffer.cell(row: 2, column: 0).style, .selected)
        buffer = CellBuffer(width: 80, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(23).contains("F10Quit"), buffer.line(23))
    }

    func testCursorStaysOnPidAcrossRefresh() {
        var screen = ProcessScreen(vmName: "v")
        screen.update([proc(1, "a"), proc(5, "b"), proc(9, "c")])
        screen.move(by: 1)
        XCTAssertEqual(screen.selectedPid, 5)
        screen.update([proc(1, "a"), proc(4, "new"), proc(5, "b")])
        XCTAssertEqual(screen.selectedPid, 5)
        screen.update([proc(1, "a")])
        XCTAssertEqual(screen.selectedPid, 1, "a vanished pid moves the cursor to the top")
    }

    func testSmallAndLargeTerminals() {
        var screen = ProcessScreen(vmName: "v")
        screen.update((1...100).map { proc(Int32($0), "p\($0)") })
        for (w, h) in [(80, 24), (200, 60), (10, 3)] {
            var buffer = CellBuffer(width: w, height: h)
            screen.render(into: &buffer)
            XCTAssertEqual(buffer.text.split(separator: "\n", omittingEmptySubsequences: false).count, h)
        }
    }
}

final class ProcessRowTests: XCTestCase {
    func testColumnsLineUp() {
        let header = ProcessScreen.row("PID", "PPID", "USER", "S", "TTY", "RSS", "COMMAND")
        let row = ProcessScreen.row("112", "1", "root", "S", "ttyS0", "4K", "-/bin/sh")
        XCTAssertEqual(header, "    PID    PPID USER     S TTY           RSS COMMAND")
        XCTAssertEqual(row, "    112       1 root     S ttyS0          4K -/bin/sh")
        XCTAssertEqual(header.range(of: "COMMAND")?.lowerBound.utf16Offset(in: header), row.range(of: "-/bin/sh")?.lowerBound.utf16Offset(in: row))
    }
}

final class TaggingTests: XCTestCase {
    func p(_ pid: Int32, _ ppid: Int32, _ cmd: String) -> GuestProcess {
        GuestProcess(pid: pid, ppid: ppid, user: "root", state: "S", tty: nil, rssKiB: 1, command: cmd, kernelThread: false)
    }

    var list: [GuestProcess] { [p(1, 0, "init"), p(10, 1, "bash"), p(11, 10, "vim"), p(12, 11, "gpg"), p(20, 1, "sshd")] }

    func testTagsSurviveRefreshAndVanishWithTheirProcess() {
        var s = ProcessScreen(vmName: "v")
        s.update(list)
        s.move(by: 1)
        s.toggleTag()  // tags pid 10, moves to 11
        XCTAssertEqual(s.tagged, [10])
        XCTAssertEqual(s.selectedPid, 11)
        XCTAssertEqual(s.broughtAlong, [11, 12], "a tag brings its descendants")
        s.update(list.reversed())
        XCTAssertEqual(s.tagged, [10])
        XCTAssertEqual(s.selectedPid, 11)
        s.update(list.filter { $0.pid != 10 })
        XCTAssertEqual(s.tagged, [], "a tag goes with its process")
    }

    func testTagWithChildrenAndClear() {
        var s = ProcessScreen(vmName: "v")
        s.update(list)
        s.move(by: 1)
        s.tagWithChildren()
        XCTAssertEqual(s.tagged, [10, 11, 12])
        s.clearTags()
        XCTAssertEqual(s.tagged, [])
    }

    func testTreeViewAndFilterAndMarks() {
        var s = ProcessScreen(vmName: "v")
        s.update(list)
        s.treeView = true
        XCTAssertEqual(s.rows.map(\.process.pid), [1, 10, 11, 12, 20])
        XCTAssertEqual(s.rows.map(\.depth), [0, 1, 2, 3, 1])
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.processes = s
        XCTAssertEqual(m.functionKeys.first { $0.key == .function(5) }?.label, "List", "labels follow the mode")
        s.move(by: 1)
        s.toggleTag()
        var buffer = CellBuffer(width: 80, height: 24)
        s.render(into: &buffer)
        XCTAssertTrue(buffer.line(3).hasPrefix("*"), buffer.text)
        XCTAssertTrue(buffer.line(4).hasPrefix("+"), buffer.text)
        XCTAssertTrue(buffer.line(4).contains("└─ vim"), buffer.text)
        XCTAssertEqual(s.rows.map(\.prefix), ["", "├─ ", "│  └─ ", "│     └─ ", "└─ "], "htop's tree lines")
        XCTAssertTrue(buffer.line(0).contains("1 tagged, +2 along"))
        s.filter = "SSH"
        XCTAssertEqual(s.rows.map(\.process.pid), [20])
    }

    func testHelpListsTheKeys() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        _ = m.handle(.function(1))
        var buffer = CellBuffer(width: 100, height: 40)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("Spc       tag for exclusion"), buffer.text)
        XCTAssertTrue(buffer.text.contains("F10, q    quit"), buffer.text)
        XCTAssertTrue(buffer.line(39).contains("EscClose"))
    }
}

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
        XCTAssertTrue(buffer.line(2).hasSuffix("init"))
        XCTAssertTrue(buffer.line(3).contains("ttyS0"))
        XCTAssertFalse(buffer.text.contains("kthreadd"), "kernel threads are hidden")
        XCTAssertEqual(buffer.cell(row: 2, column: 0).style, .selected)
        XCTAssertTrue(buffer.line(23).contains("F10Quit"))
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

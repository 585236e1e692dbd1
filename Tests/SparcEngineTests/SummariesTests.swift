import Foundation
import SnapshotModel
import SparcSupport
import XCTest

@testable import SparcEngine

final class SummariesTests: XCTestCase {
    func testByteCounts() {
        XCTAssertEqual(formatBytes(512), "512 B")
        XCTAssertEqual(formatBytes(1536), "1.5 KiB")
        XCTAssertEqual(formatBytes(3 << 30), "3.0 GiB")
    }

    /// One report, two fronts: the CLI's lines and the TUI's status line say the same facts.
    func testCheckpointReportLines() {
        var exclusion = Manifest.Exclusion(
            targets: ["pid 42"], scope: "all", bytes: 3 << 20, bytesByKind: ["user": 2 << 20, "pipe": 4096, "swap": 8192],
            processes: [.init(pid: 42, startTime: 1, commandHash: "ab", reason: "pid 42")], ranges: 7, keptSharedPages: 3,
            warnings: ["a \u{1b}[31mwarning"])
        exclusion.gaps = ["a gap"]
        let report = CheckpointReport(
            bundle: "/b/x.sparc", memoryBytes: 256 << 20, memoryDataBytes: 40 << 20, devicesBytes: 300_000, diskBytes: nil,
            downtime: 0.25, total: 1.5, stopped: false, exclusion: exclusion, liveNames: [42: "vim"])
        let lines = report.summaryLines
        XCTAssertEqual(lines.first, "checkpoint saved: /b/x.sparc")
        XCTAssertTrue(lines.contains("    pid 42 vim  [pid 42]"), "\(lines)")
        XCTAssertTrue(lines.contains("    user 2.0 MiB, pipe 4.0 KiB, swap slots zeroed in the disk state 8.0 KiB"), "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("    warning: a ") && !$0.contains("\u{1b}") }, "terminal-safe: \(lines)")
        XCTAssertTrue(lines.contains("    GAP (--best-effort, may be in the bundle): a gap"))
        XCTAssertEqual(lines.last, "  guest paused 0.25 s, total 1.50 s")
        XCTAssertEqual(
            report.oneLine,
            "saved /b/x.sparc in 1.5 s, guest paused 0.25 s; excluded user 2.0 MiB, pipe 4.0 KiB, swap slots zeroed in the disk state 8.0 KiB; 3 kept-shared pages, 1 warning(s)")
    }

    /// A live copy says whether it was checked at the stop, what the check mended, and how
    /// long QEMU's setup held the guest's interrupts; a paused copy says none of it.
    func testLiveCopyLines() {
        var report = CheckpointReport(
            bundle: "/b/x.sparc", memoryBytes: 256 << 20, memoryDataBytes: 40 << 20, devicesBytes: 300_000, diskBytes: nil,
            downtime: 0.06, total: 1.5, stopped: false, exclusion: Manifest.Exclusion(), liveNames: [:])
        XCTAssertFalse(report.summaryLines.contains { $0.contains("while the guest ran") || $0.contains("setup") })
        report.liveCopied = true
        report.liveCopySetup = 1.26
        XCTAssertTrue(report.summaryLines.contains { $0.contains("while the guest ran") && $0.contains("not checked") }, "\(report.summaryLines)")
        XCTAssertTrue(report.summaryLines.contains { $0.contains("1.26 s") }, "\(report.summaryLines)")
        report.liveCopyRepairedPages = 3
        report.liveCopySetup = 0.03
        XCTAssertTrue(report.summaryLines.contains { $0.contains("3 page(s)") }, "\(report.summaryLines)")
        XCTAssertFalse(report.summaryLines.contains { $0.contains("setup") }, "a setup too short to notice is not named")
    }

    func testSummaryOfSomethingThatIsNoBundle() throws {
        let dir = NSTemporaryDirectory() + "sparc-summary-\(getpid())"
        try FileSystem.makeDirectories(dir)
        defer { FileSystem.removeTree(dir) }
        let s = BundleSummary(path: dir)
        XCTAssertNotNil(s.damage)
        XCTAssertTrue(s.line.hasPrefix("damaged: "), s.line)
    }
}

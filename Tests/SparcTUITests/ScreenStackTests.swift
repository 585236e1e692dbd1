import GuestQuery
import HexView
import SnapshotModel
import XCTest

@testable import SparcTUI

/// The screen manager: binding tables draw the bar and the help, views stack over the
/// Bundles screen, pop-ups over everything, prompts are typed, and jobs report through one
/// channel.
final class ScreenStackTests: XCTestCase {
    func hexModel() -> TUIModel {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.tab = .bundles
        _ = m.push(.hex(HexScreen(HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0x100, highlight: nil, size: 0x1000))))
        return m
    }

    /// Every key on a screen's function bar is in its help, and pressing it does what the
    /// table says (the bar, the help and the keys come from one table).
    func testTheBarAndTheHelpComeFromTheBindingTables() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles(["a.sparc"])
        for tab in TUIModel.Tab.allCases {
            m.tab = tab
            let help = m.helpLines.joined(separator: "\n")
            for entry in m.functionKeys {
                XCTAssertTrue(help.contains(entry.name), "\(tab): \(entry.name) is on the bar but not in the help")
            }
        }
        var h = hexModel()
        let help = h.helpLines.joined(separator: "\n")
        XCTAssertTrue(help.contains("Hex view — keys") && help.contains("Every screen"), help)
        for entry in h.functionKeys { XCTAssertTrue(help.contains(entry.name), "hex: \(entry.name)") }
        // F1 and F10 work in the hex view too; Tab leaves it on its screen.
        _ = h.handle(.function(1))
        XCTAssertTrue(h.helpShown)
        _ = h.handle(.escape)
        _ = h.handle(.tab)
        XCTAssertEqual(h.tab, .processes)
        XCTAssertNil(h.hex, "not on view from the Processes screen")
        _ = h.handle(.function(6))
        XCTAssertNotNil(h.hex, "back on the Bundles screen, the hex view is where it was")
        XCTAssertEqual(h.handle(.function(10)), .quit)
    }

    /// The go-to-offset prompt is not a search: no search hints, F5/F6 change nothing, a bad
    /// offset is said on the hex view itself, and an offset past the end stops at the end.
    func testGoToOffsetIsItsOwnPrompt() {
        var m = hexModel()
        _ = m.handle(.char("g"))
        XCTAssertEqual(m.prompt?.purpose, .goToOffset)
        let encodings = m.searchEncodings
        _ = m.handle(.function(5))
        _ = m.handle(.function(6))
        XCTAssertEqual(m.searchEncodings, encodings)
        XCTAssertFalse(m.searchIgnoreCase)
        var buffer = CellBuffer(width: 120, height: 24)
        m.render(into: &buffer)
        XCTAssertFalse(buffer.line(22).contains("F5 encodings"), buffer.line(22))
        for ch in "zz" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .none)
        buffer = CellBuffer(width: 120, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(22).contains("'zz' is not an offset"), "said on the hex view: \(buffer.line(22))")
        _ = m.handle(.char("g"))
        for ch in "0x999999" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .loadHex(path: "/b/a.sparc/memory.img", offset: 0xff0), "the last row of the file")
    }

    /// Pop-ups stack over views: a question over the hex view takes the keys, then the view
    /// has them again; Esc backs out one view at a time.
    func testPopupsAndViewsStack() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles(["a.sparc"])
        _ = m.handle(.function(6))
        let hit = SearchHit(file: "/b/a.sparc/memory.img", offset: 0x400, length: 3, encoding: "ascii", address: nil, context: "key", owner: nil)
        _ = m.receiveHits([hit])
        XCTAssertEqual(m.handle(.enter), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x3c0))
        _ = m.handle(.function(8))
        XCTAssertNotNil(m.confirm, "the checkpoint question is over the hex view")
        XCTAssertEqual(m.handle(.pageDown), .none, "the question takes the keys")
        XCTAssertNil(m.confirm)
        XCTAssertEqual(m.handle(.pageDown), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x3c0 + 256))
        _ = m.handle(.escape)
        XCTAssertNotNil(m.hitsScreen)
        XCTAssertNil(m.hex)
        _ = m.handle(.escape)
        XCTAssertTrue(m.pushed.isEmpty)
    }

    /// What jobs send comes through one channel, in order: progress drives the bar, the end
    /// puts the status and the result on their screens (a saved bundle under the cursor, a
    /// refused rollback as a question).
    func testJobEventsComeThroughOneChannel() {
        let channel = JobChannel()
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles(["a.sparc", "c.sparc"])
        channel.post(.progress("checkpoint: copying memory 40%", fraction: 0.4))
        for e in channel.drain() { _ = m.apply(e) }
        XCTAssertEqual(m.busy, "checkpoint: copying memory 40%")
        XCTAssertEqual(m.busyFraction, 0.4)
        channel.post(.finished("saved b.sparc", .saved("b.sparc")))
        channel.post(.guest(.failure(GuestViewError("agent did not answer"))))
        let effects = channel.drain().map { m.apply($0) }
        XCTAssertEqual(effects, [.refresh, .none])
        XCTAssertNil(m.busy)
        XCTAssertEqual(m.status, "agent did not answer")
        m.setBundles(["a.sparc", "b.sparc", "c.sparc"])
        XCTAssertEqual(m.bundleList.names[m.bundleList.cursor], "b.sparc", "the new bundle is under the cursor")
        XCTAssertTrue(channel.drain().isEmpty)
        _ = m.apply(.finished("", .rollbackRefused("a.sparc")))
        XCTAssertEqual(m.confirm?.effect, .restore(bundle: "a.sparc", allowRollback: true))
    }
}

import GuestQuery
import HexView
import SnapshotModel
import SparcEngine
import XCTest

@testable import SparcTUI

final class TUIModelTests: XCTestCase {
    func model() -> TUIModel {
        var m = TUIModel(vmName: "default", bundleDirectory: "/b")
        m.processes.update([
            GuestProcess(pid: 1, ppid: 0, user: "root", state: "S", tty: nil, rssKiB: 1, command: "init", kernelThread: false),
            GuestProcess(pid: 50, ppid: 1, user: "root", state: "S", tty: "pts/0", rssKiB: 1, command: "bash", kernelThread: false),
        ])
        m.showGuest(ttys: [GuestTTY(name: "pts/0", kind: .pty, pids: [50]), GuestTTY(name: "ttyS0", kind: .serial, pids: [])])
        m.setBundles(["a.sparc"])
        return m
    }

    func testCheckpointAsksAndDefaultsToNo() {
        var m = model()
        _ = m.handle(.down)
        _ = m.handle(.char(" "))
        XCTAssertEqual(m.handle(.function(8)), .none)
        XCTAssertNotNil(m.confirm)
        var buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("[ No ]"), buffer.text)
        XCTAssertTrue(buffer.text.contains("1 process(es) and 0 terminal(s) excluded, scope all"), buffer.text)
        XCTAssertTrue(m.confirm?.question.contains("Left out: 50 root bash") == true, "named from the live guest: \(m.confirm?.question ?? "")")
        XCTAssertEqual(m.handle(.enter), .none, "Enter on the default answer is No")
        XCTAssertNil(m.confirm)
        _ = m.handle(.char("C"))
        if case .checkpoint(let request, let output) = m.handle(.char("y")) {
            XCTAssertEqual(request.pids, [50])
            XCTAssertNil(output, "into the store")
        } else {
            XCTFail("y confirms")
        }
        _ = m.handle(.char("C"))
        XCTAssertEqual(m.handle(.char("n")), .none)
    }

    /// The config's rules join the tags: its scope is the UI's, a command name goes to the agent,
    /// a pattern picks pids from the live list, and the dialog names both before anything runs.
    func testTheConfigsRulesAreShownAndApplied() throws {
        var m = model()
        var config = SparcConfig()
        try config.merge("scope = \"user\"\n[exclude]\ncommands = [\"ssh-agent\", \"sshd: *@pts/*\"]\n", from: "/test.toml")
        m.config = config
        XCTAssertEqual(m.scope, .user, "the config's scope")
        m.processes.update(m.processes.processes + [
            GuestProcess(pid: 70, ppid: 1, user: "root", state: "S", tty: "pts/0", rssKiB: 1, command: "sshd: bob@pts/0", kernelThread: false)
        ])
        _ = m.handle(.function(8))
        let question = m.confirm?.question ?? ""
        XCTAssertTrue(question.contains("70 root sshd: bob@pts/0") && question.contains("by the config, every process named ssh-agent"), question)
        XCTAssertTrue(question.contains("1 process(es), 1 name(s)"), question)
        if case .checkpoint(let request, _) = m.handle(.char("y")) {
            XCTAssertEqual(request.pids, [70])
            XCTAssertEqual(request.names, ["ssh-agent"])
            XCTAssertEqual(request.scope, .user)
        } else {
            XCTFail("y confirms")
        }
    }

    /// F9 on the Bundles screen deletes after a confirmation that says what goes: a stored
    /// checkpoint's unique bytes, or a bundle directory and its files; read-only refuses.
    func testDeleteAsksAndSaysWhatGoes() {
        var m = model()
        m.bundleList.stored = ["web-20261207-101010"]
        m.bundleList.uniqueBytes["web-20261207-101010"] = 3 << 20
        m.setBundles(["web-20261207-101010", "a.sparc"])
        _ = m.handle(.function(6))
        _ = m.handle(.home)
        XCTAssertEqual(m.handle(.function(9)), .none)
        XCTAssertTrue(m.confirm?.question.contains("3.0 MiB only it holds") == true, m.confirm?.question ?? "no question")
        XCTAssertEqual(m.handle(.enter), .none, "Enter on the default answer is No")
        _ = m.handle(.function(9))
        XCTAssertEqual(m.handle(.char("y")), .delete(bundle: "web-20261207-101010"))
        _ = m.handle(.down)
        _ = m.handle(.function(9))
        XCTAssertTrue(m.confirm?.question.contains("/b/a.sparc and every file in it") == true, m.confirm?.question ?? "no question")
        XCTAssertEqual(m.handle(.char("y")), .delete(bundle: "a.sparc"))
        var ro = TUIModel(vmName: "default", bundleDirectory: "/b", readonly: true)
        ro.setBundles(["a.sparc"])
        _ = ro.handle(.function(6))
        XCTAssertEqual(ro.handle(.function(9)), .none)
        XCTAssertNil(ro.confirm)
        // Read-only: the bar and the help offer nothing that writes (F7, F8, F9), on every screen.
        for screen in [2, 4, 6] {
            _ = ro.handle(.function(screen))
            let keys = ro.functionKeys.map(\.label)
            XCTAssertFalse(keys.contains("Restore") || keys.contains("Checkpt") || keys.contains("Delete"), "\(keys)")
            XCTAssertFalse(ro.helpLines.contains { $0.contains("checkpoint with the tagged") || $0.contains("restore wizard") }, "\(ro.helpLines)")
        }
        _ = m.handle(.function(6))
        XCTAssertTrue(m.functionKeys.map(\.label).contains("Restore"), "a writable UI still offers them")
    }

    /// `u` on the Bundles screen offers the VM's newest undo point (asking first), and says so
    /// when there is none; another VM's undo point is not offered.
    func testUndoOffersTheVMsNewestUndoPoint() {
        var m = model()
        m.setBundles(["default-20261207-090000-undo", "default-20261207-100000-undo", "other-20261207-110000-undo", "a.sparc"])
        m.bundleList.stored = ["default-20261207-090000-undo", "default-20261207-100000-undo", "other-20261207-110000-undo"]
        m.bundleList.vms = ["default-20261207-090000-undo": "default", "default-20261207-100000-undo": "default", "other-20261207-110000-undo": "other"]
        _ = m.handle(.function(6))
        _ = m.handle(.char("u"))
        XCTAssertNil(m.confirm, "no undo point is known yet")
        XCTAssertTrue(m.status.contains("has no undo point"), m.status)
        m.bundleList.undoPoints = Set(m.bundleList.vms.keys)
        _ = m.handle(.char("u"))
        XCTAssertEqual(m.confirm?.effect, .undo(bundle: "default-20261207-100000-undo"))
        XCTAssertEqual(m.handle(.enter), .none, "No is the default")
        _ = m.handle(.char("u"))
        XCTAssertEqual(m.handle(.char("y")), .undo(bundle: "default-20261207-100000-undo"))
    }

    /// F7 on another VM's bundle does not offer what the UI cannot carry out: it says which
    /// command restores it (its own VM, or a clone) and asks nothing.
    func testAnotherVMsBundleIsNotOfferedForRestore() {
        var m = model()
        m.bundleList.vms = ["a.sparc": "ux1"]
        _ = m.handle(.function(6))
        XCTAssertEqual(m.handle(.function(7)), .none)
        XCTAssertNil(m.confirm)
        XCTAssertTrue(m.status.contains("saved from VM 'ux1'") && m.status.contains("--clone"), m.status)
        m.bundleList.vms = ["a.sparc": "default"]
        _ = m.handle(.function(7))
        XCTAssertEqual(m.confirm?.effect, .restore(bundle: "a.sparc", allowRollback: false))
    }

    /// The list says what the background verification found for the files as they are now:
    /// verifying until it is done, verified or not, and verifying again once the files change.
    func testBundlesShowWhetherTheyAreVerified() {
        var m = model()
        m.setBundles(["a.sparc", "b.sparc"])
        m.bundleList.details = ["a.sparc": "2026-12-07T10:00:00  bundle  1 MiB", "b.sparc": "2026-12-07T10:00:01  bundle  1 MiB"]
        m.bundleList.identities = ["a.sparc": "1", "b.sparc": "2"]
        _ = m.handle(.function(6))
        func screen() -> String {
            var buffer = CellBuffer(width: 120, height: 10)
            m.render(into: &buffer)
            return buffer.text
        }
        XCTAssertEqual(screen().components(separatedBy: "verifying…").count - 1, 2)
        _ = m.apply(.verified("a.sparc", identity: "1", problem: nil))
        _ = m.apply(.verified("b.sparc", identity: "2", problem: "memory.img: content differs from its digest in the manifest"))
        XCTAssertTrue(screen().contains("1 MiB  verified"), screen())
        XCTAssertTrue(screen().contains("NOT VERIFIED: memory.img: content differs"), screen())
        m.bundleList.identities["a.sparc"] = "1b"
        XCTAssertTrue(screen().contains("1 MiB  verifying…"), "a changed bundle is verified again: \(screen())")
    }

    /// The header says the VM's state; a stopped VM's process list is marked as not live and
    /// nothing is checkpointed from it; once the agent answers again its error goes.
    func testTheHeaderTellsTheVMsStateAndAStaleListIsMarked() {
        var m = model()
        func screen() -> String {
            var buffer = CellBuffer(width: 140, height: 10)
            m.render(into: &buffer)
            return buffer.text
        }
        _ = m.apply(.guest(.failure(GuestViewError("no VM named 'default' is running", state: "stopped"))))
        XCTAssertTrue(screen().contains("VM default: stopped"), screen())
        XCTAssertTrue(screen().contains("NOT LIVE"), screen())
        XCTAssertEqual(m.handle(.function(8)), .none)
        XCTAssertNil(m.confirm, "no checkpoint is offered for a stopped VM")
        XCTAssertTrue(m.status.contains("is stopped"), m.status)
        _ = m.apply(.guest(.failure(GuestViewError("agent did not answer", state: "not answering"))))
        _ = m.apply(.guest(.success(GuestView(processes: m.processes.processes, ttys: [], state: "running"))))
        XCTAssertTrue(screen().contains("VM default: running") && !screen().contains("NOT LIVE"), screen())
        XCTAssertFalse(m.status.contains("agent did not answer"), "the agent's silence is over: \(m.status)")
    }

    /// The restore question says what is lost before Yes: the running VM, everything since
    /// the checkpoint (memory and disk).
    func testRestoreSaysWhatItDestroys() {
        var m = model()
        m.bundleList.createdAt = ["a.sparc": "2026-12-07T09:15:00"]
        _ = m.apply(.guest(.success(GuestView(processes: m.processes.processes, ttys: [], state: "running"))))
        _ = m.handle(.function(6))
        _ = m.handle(.function(7))
        let question = m.confirm?.question ?? ""
        XCTAssertTrue(question.contains("running VM is stopped (2 processes now)"), question)
        XCTAssertTrue(question.contains("stored first as its undo point"), question)
        XCTAssertTrue(question.contains("since 2026-12-07T09:15:00 UTC, in memory and on its disk"), question)
        XCTAssertEqual(m.handle(.enter), .none, "No is the default")
    }

    func testTerminalsTagAndScope() {
        var m = model()
        _ = m.handle(.tab)
        XCTAssertEqual(m.tab, .terminals)
        _ = m.handle(.char(" "))
        XCTAssertEqual(Array(m.terminals.tagged.keys), ["pts/0"])
        _ = m.handle(.char("s"))
        XCTAssertEqual(m.exclusion, ExclusionRequest(ttys: ["pts/0"], scope: .user))
        var buffer = CellBuffer(width: 80, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("* pts/0"), buffer.text)
        XCTAssertTrue(buffer.text.contains("50 bash"), buffer.text)
        _ = m.handle(.backTab)
        XCTAssertEqual(m.tab, .processes)
    }

    /// A terminal tag is bound to its session: when that session ends and the pty is reused,
    /// the tag is dropped with a word, never carried over to the next session.
    func testTerminalTagsAreBoundToTheirSession() {
        var m = model()
        let first = TTYSession(tty: "pts/0", leader: 50, leaderStart: 1000)
        m.showGuest(ttys: [GuestTTY(name: "pts/0", kind: .pty, pids: [50], session: first)])
        _ = m.handle(.tab)
        _ = m.handle(.char(" "))
        XCTAssertEqual(m.exclusion.ttySessions, [first], "the tag names the session")
        XCTAssertEqual(m.exclusion.ttys, [])
        // A refresh with the same session keeps the tag.
        m.showGuest(ttys: [GuestTTY(name: "pts/0", kind: .pty, pids: [50, 51], session: first)])
        XCTAssertEqual(m.terminals.tagged.count, 1)
        // The session ended and another login took pts/0 (its leader even reuses pid 50).
        m.showGuest(ttys: [GuestTTY(name: "pts/0", kind: .pty, pids: [50], session: TTYSession(tty: "pts/0", leader: 50, leaderStart: 2000))])
        XCTAssertTrue(m.terminals.tagged.isEmpty, "the tag went with its session")
        XCTAssertTrue(m.exclusion.isEmpty)
        XCTAssertTrue(m.status.contains("has ended: its tag was dropped"), m.status)
    }

    func testBundleSearchPromptAndReadonly() {
        var m = model()
        _ = m.handle(.function(6))
        _ = m.handle(.enter)
        for ch in "hunter2" { _ = m.handle(.char(ch)) }
        _ = m.handle(.function(5))
        _ = m.handle(.function(6))
        var buffer = CellBuffer(width: 140, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(22).contains("[ascii+utf8+utf16le+utf16be, any case]"), buffer.line(22))
        XCTAssertEqual(m.handle(.enter), .search(pattern: "hunter2", bundle: "a.sparc", encodings: SearchEncoding.allCases, ignoreCase: true))
        var ro = TUIModel(vmName: "v", bundleDirectory: "/b", readonly: true)
        XCTAssertEqual(ro.handle(.function(8)), .none)
        XCTAssertNil(ro.confirm)
        XCTAssertTrue(ro.status.contains("read-only"))
    }

    func testQuitHelpAndSizes() {
        var m = model()
        _ = m.handle(.char("?"))
        XCTAssertTrue(m.helpShown)
        _ = m.handle(.char("x"))
        XCTAssertFalse(m.helpShown)
        for (w, h) in [(80, 24), (200, 60)] {
            var buffer = CellBuffer(width: w, height: h)
            m.render(into: &buffer)
            XCTAssertTrue(buffer.line(0).contains("Processes"), "tabs shown at \(w)x\(h)")
            XCTAssertTrue(buffer.line(h - 1).contains("F10Quit"))
        }
        XCTAssertEqual(m.handle(.char("q")), .quit)
    }
}

final class RestoreWizardTests: XCTestCase {
    func testRestoreListsStepsAndDefaultsToNo() {
        var m = TUIModel(vmName: "default", bundleDirectory: "/b")
        m.setBundles(["a.sparc"])
        m.bundleList.kills = ["a.sparc": ["50 bash"]]
        _ = m.handle(.function(6))
        _ = m.handle(.function(7))
        XCTAssertTrue(m.confirm?.question.contains("kill 50 bash, evict their page cache") ?? false, "\(String(describing: m.confirm))")
        XCTAssertEqual(m.handle(.escape), .none)
        _ = m.handle(.char("R"))
        XCTAssertEqual(m.handle(.char("y")), .restore(bundle: "a.sparc", allowRollback: false))
        var ro = TUIModel(vmName: "v", bundleDirectory: "/b", readonly: true)
        ro.setBundles(["a.sparc"])
        _ = ro.handle(.function(6))
        _ = ro.handle(.function(7))
        XCTAssertNil(ro.confirm)
    }
}

final class HitsAndHexTests: XCTestCase {
    func testStepThroughHitsAndOpenHex() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        _ = m.handle(.function(6))
        _ = m.receiveHits([
            SearchHit(file: "/b/a.sparc/memory.img", offset: 0x1234, length: 6, encoding: "ascii", address: 0x1234, context: "..secret..", owner: nil),
            SearchHit(file: "/b/a.sparc/memory.img", offset: 0x9000, length: 6, encoding: "utf16le", address: 0x9000, context: "s.e.c.", owner: nil),
        ])
        var buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("[1/2]"), buffer.text)
        _ = m.handle(.char("n"))
        XCTAssertEqual(m.hitsScreen?.index, 1)
        _ = m.handle(.char("N"))
        XCTAssertEqual(m.handle(.enter), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x1230 - 64))
        m.hex?.data = (0..<256).map { UInt8(0x41 + $0 % 26) }
        XCTAssertEqual(m.hex?.isMemoryImage, true)
        m.hex?.layout = PhysicalLayout(ramBytes: 256 << 20)  // as the front end sets it when it loads the page
        buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("hit 1/2"))
        XCTAssertTrue(buffer.text.contains("000011f0  0000011f0"), buffer.text)
        XCTAssertEqual(buffer.cell(row: 1, column: 21).style, .bytePrintable, "bytes coloured by category")
        XCTAssertEqual(buffer.cell(row: 5, column: 21 + 4 * 3).style, .byteHit, "the hit at 0x1234 stands out")
        XCTAssertEqual(m.handle(.pageDown), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x11f0 + 256))
        _ = m.handle(.char("g"))
        for ch in "0x2005" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x2000))
        _ = m.handle(.escape)
        XCTAssertNil(m.hex)
        _ = m.handle(.escape)
        XCTAssertTrue(m.pushed.isEmpty)
    }
}

final class FilterProgressCancelTests: XCTestCase {
    func testIncrementalFilterProgressBarAndCancel() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.processes.update([
            GuestProcess(pid: 1, ppid: 0, user: "root", state: "S", tty: nil, rssKiB: 1, command: "init", kernelThread: false),
            GuestProcess(pid: 7, ppid: 1, user: "root", state: "S", tty: nil, rssKiB: 1, command: "gpg-agent", kernelThread: false),
        ])
        _ = m.handle(.char("/"))
        _ = m.handle(.char("g"))
        XCTAssertEqual(m.processes.rows.map(\.process.pid), [7], "the filter applies while typing")
        _ = m.handle(.enter)
        XCTAssertEqual(m.processes.filter, "g")
        _ = m.handle(.char("/"))
        _ = m.handle(.escape)
        XCTAssertEqual(m.processes.filter, "")

        m.busy = "checkpoint: copying memory 40%"
        // The bar follows the engine's typed phase, not the words.
        m.busyFraction = ProgressEvent(.copyingMemory, "copying memory 40%").checkpointFraction
        var buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(22).hasPrefix("[##########----------] checkpoint: copying memory 40%"), buffer.line(22))
        XCTAssertEqual(m.handle(.escape), .cancel)
        XCTAssertTrue(buffer.line(22).contains("(Esc cancels)"))

        // Past the point of no return (the bundle written, its disk merging back; storing) the
        // line stops offering Esc, and Esc cancels nothing.
        _ = m.apply(.progress("checkpoint: writing the disk overlay back", fraction: 1, cancellable: false))
        buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        XCTAssertFalse(buffer.line(22).contains("Esc cancels"), buffer.line(22))
        XCTAssertEqual(m.handle(.escape), .none)
        XCTAssertTrue(m.status.contains("cannot be cancelled"), m.status)
        // Quitting then waits instead of promising a cancel.
        XCTAssertEqual(m.handle(.char("q")), .none)
        XCTAssertEqual(m.confirm?.effect, .forceQuit)
        XCTAssertFalse(m.confirm?.question.contains("cancelled first") ?? true, m.confirm?.question ?? "")
        _ = m.handle(.enter)
        _ = m.apply(.finished("stored v-1", .none))
        XCTAssertTrue(m.busyCancellable, "the next job starts cancellable")
    }
}

final class MouseTests: XCTestCase {
    func testClicksOnRowsAndTheFunctionBar() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.processes.update((1...5).map {
            GuestProcess(pid: Int32($0), ppid: 0, user: "root", state: "S", tty: nil, rssKiB: 1, command: "p\($0)", kernelThread: false)
        })
        _ = m.click(row: 4, column: 10, height: 24)
        XCTAssertEqual(m.processes.selectedPid, 3, "row 4 is the third process")
        // "F1Help    " is 10 columns, "F5Tree    " the next 10: a click there toggles the tree.
        _ = m.click(row: 23, column: 12, height: 24)
        XCTAssertTrue(m.processes.treeView)
        // Further along: "K" shows kernel threads, "Spc" tags the selected process.
        func column(of key: String) -> Int { m.functionKeys.prefix { $0.name != key }.reduce(0) { $0 + $1.width } + 1 }
        _ = m.click(row: 23, column: column(of: "K"), height: 24)
        XCTAssertTrue(m.processes.showKernelThreads)
        _ = m.click(row: 23, column: column(of: "Spc"), height: 24)
        XCTAssertEqual(m.processes.tagged, [3])
        var q = TUIModel(vmName: "v", bundleDirectory: "/b")
        let bar = q.functionKeys
        let start = bar.prefix { $0.name != "F10" }.reduce(0) { $0 + $1.width }
        XCTAssertEqual(q.click(row: 23, column: start + 1, height: 24), .quit)
    }

    /// The tab titles on the header switch screens on a click; they are where they are drawn.
    func testTabTitlesSwitchScreens() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        var buffer = CellBuffer(width: 100, height: 24)
        m.render(into: &buffer)
        let header = buffer.line(0)
        for (title, tab) in [("Bundles", TUIModel.Tab.bundles), ("Terminals", .terminals), ("Processes", .processes)] {
            let column = header.distance(from: header.startIndex, to: header.range(of: " \(title)")!.lowerBound) + 2
            _ = m.click(row: 0, column: column, height: 24, width: 100)
            XCTAssertEqual(m.tab, tab, "a click on '\(title)' at column \(column)")
        }
        _ = m.click(row: 0, column: 1, height: 24, width: 100)
        XCTAssertEqual(m.tab, .processes, "the title's left part is no tab")
    }
}

final class KeysManualTests: XCTestCase {
    /// `sparc.tui(1)` lists each screen's keys from the tables the help and the bar are drawn
    /// from, and marks what `--readonly` leaves out.
    func testTheManualListsEveryScreensKeys() {
        let manual = TUIModel.keysManual()
        for screen in ["Processes", "Terminals", "Bundles", "Search hits", "Credential findings"] {
            XCTAssertTrue(manual.contains(".Ss \(screen)\n"), screen)
        }
        XCTAssertTrue(manual.contains(".It Sy I\n\\&invert the sort order"), manual)
        XCTAssertTrue(manual.contains("(not with --readonly)"))
        XCTAssertFalse(manual.unicodeScalars.contains { !$0.isASCII }, "roff escapes, not raw UTF-8")
    }
}

final class SortTests: XCTestCase {
    /// `>` and `<` choose the column, `I` inverts, as in htop; the cursor and the tags stay on
    /// their pids, and the title says the order.
    func testTheProcessListSortsByAColumn() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        let rss: [Int32: Int64] = [1: 300, 2: 100, 3: 900, 4: 200]
        m.processes.update(rss.keys.sorted().map {
            GuestProcess(pid: $0, ppid: 0, user: $0 == 3 ? "alice" : "root", state: "S", tty: nil, rssKiB: rss[$0]!, command: "p\($0)", kernelThread: false)
        })
        XCTAssertEqual(m.processes.rows.map(\.process.pid), [1, 2, 3, 4], "by pid at first")
        _ = m.handle(.char(" "))
        XCTAssertEqual(m.processes.tagged, [1])
        m.processes.selectedPid = 3
        for _ in 0..<5 { _ = m.handle(.char(">")) }
        XCTAssertEqual(m.processes.sortColumn, .rss)
        XCTAssertEqual(m.processes.rows.map(\.process.pid), [2, 4, 1, 3])
        _ = m.handle(.char("I"))
        XCTAssertEqual(m.processes.rows.map(\.process.pid), [3, 1, 4, 2], "inverted")
        XCTAssertEqual(m.processes.selectedPid, 3, "the cursor stays on its process")
        XCTAssertEqual(m.processes.tagged, [1], "and the tags on theirs")
        var buffer = CellBuffer(width: 120, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("by RSS ↓"), buffer.line(0))
        _ = m.handle(.char("<"))
        _ = m.handle(.char("<"))
        _ = m.handle(.char("<"))
        XCTAssertEqual(m.processes.sortColumn, .user)
        XCTAssertEqual(m.processes.rows.first?.process.pid, 1, "root before alice, inverted; pid breaks ties")
        _ = m.handle(.char("I"))
        XCTAssertEqual(m.processes.rows.first?.process.pid, 3, "alice first")
    }
}

final class ListScrollingTests: XCTestCase {
    /// A long Bundles list scrolls with its cursor (arrows, pages, Home/End, clicks), as every list does.
    func testLongBundleListScrolls() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles((1...100).map { String(format: "b%03d.sparc", $0) })
        m.screenHeight = 24
        _ = m.handle(.function(6))
        XCTAssertEqual(m.tab, .bundles)
        func screen() -> CellBuffer {
            var buffer = CellBuffer(width: 80, height: 24)
            m.render(into: &buffer)
            return buffer
        }
        XCTAssertTrue(screen().line(2).contains("b001.sparc"))
        XCTAssertFalse(screen().text.contains("b021.sparc"), "20 rows fit")
        _ = m.handle(.end)
        XCTAssertEqual(m.bundleList.cursor, 99)
        var buffer = screen()
        XCTAssertTrue(buffer.line(21).contains("b100.sparc"), buffer.text)
        XCTAssertEqual(buffer.cell(row: 21, column: 3).style, .selected)
        XCTAssertFalse(buffer.text.contains("b080.sparc"))
        XCTAssertTrue(buffer.line(0).contains("[100/100]"), buffer.line(0))
        _ = m.handle(.pageUp)
        XCTAssertEqual(m.bundleList.cursor, 80, "a page is the screen's rows less one")
        for _ in 0..<5 { _ = m.handle(.up) }
        buffer = screen()
        XCTAssertTrue(buffer.text.contains("b076.sparc"))
        // A click on the list's fourth row picks what is shown there.
        let top = Int(buffer.line(2).trimmingCharacters(in: .whitespaces).dropFirst().prefix(3))! - 1
        _ = m.click(row: 5, column: 4, height: 24)
        XCTAssertEqual(m.bundleList.cursor, top + 3)
        _ = m.handle(.home)
        XCTAssertEqual(m.bundleList.cursor, 0)
        XCTAssertTrue(screen().line(2).contains("b001.sparc"))
    }

    func testLongTerminalListScrolls() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.showGuest(ttys: (0..<60).map { GuestTTY(name: "pts/\($0)", kind: .pty, pids: []) })
        _ = m.handle(.tab)
        XCTAssertEqual(m.tab, .terminals)
        for _ in 0..<45 { _ = m.handle(.down) }
        var buffer = CellBuffer(width: 80, height: 24)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("pts/45"), buffer.text)
        XCTAssertFalse(buffer.text.contains("pts/0 "), "scrolled past the first")
    }
}

final class OneJobAtATimeTests: XCTestCase {
    /// A search asked for while a checkpoint runs is refused (the checkpoint keeps its busy
    /// state and its cancellation), and goes once the checkpoint is done.
    func testASecondJobWaitsForTheFirst() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.setBundles(["a.sparc"])
        _ = m.handle(.function(6))
        m.busy = "checkpoint: copying memory"
        _ = m.handle(.enter)
        for ch in "x" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .none)
        XCTAssertTrue(m.status.contains("one job at a time"), m.status)
        m.busy = nil
        _ = m.handle(.enter)
        for ch in "x" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .search(pattern: "x", bundle: "a.sparc", encodings: [.ascii, .utf16le], ignoreCase: false))
    }
}

final class HelpQuitFileTests: XCTestCase {
    func testHelpFollowsTheScreenQuitAsksAndAnyFileSearch() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        _ = m.handle(.function(4))
        _ = m.handle(.function(1))
        var buffer = CellBuffer(width: 100, height: 30)
        m.render(into: &buffer)
        XCTAssertTrue(buffer.text.contains("Terminals — keys"), buffer.text)
        XCTAssertTrue(buffer.text.contains("Every screen"))
        XCTAssertFalse(buffer.text.contains("Processes — keys"))
        _ = m.handle(.escape)

        m.busy = "checkpoint: copying memory"
        XCTAssertEqual(m.handle(.char("q")), .none, "quitting while work runs asks first")
        XCTAssertEqual(m.confirm?.effect, .forceQuit)
        XCTAssertEqual(m.handle(.enter), .none, "default No")
        m.busy = nil
        XCTAssertEqual(m.handle(.char("q")), .quit)

        var f = TUIModel(vmName: "v", bundleDirectory: "/b")
        _ = f.handle(.function(6))
        _ = f.handle(.char("o"))
        for ch in "/var/dump.raw" { _ = f.handle(.char(ch)) }
        _ = f.handle(.enter)
        for ch in "key" { _ = f.handle(.char(ch)) }
        XCTAssertEqual(f.handle(.enter), .search(pattern: "key", bundle: "/var/dump.raw", encodings: [.ascii, .utf16le], ignoreCase: false))
    }
}

final class SearchFromHereTests: XCTestCase {
    func testSearchFromTheHexViewOpensTheNextHit() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.tab = .bundles
        _ = m.push(.hex(HexScreen(HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0x5000, highlight: nil, isMemoryImage: true))))
        _ = m.handle(.char("/"))
        for ch in "key" { _ = m.handle(.char(ch)) }
        XCTAssertEqual(m.handle(.enter), .search(pattern: "key", bundle: "/b/a.sparc/memory.img", encodings: [.ascii, .utf16le], ignoreCase: false))
        let hits = [0x100, 0x6000, 0x9000].map {
            SearchHit(file: "/b/a.sparc/memory.img", offset: UInt64($0), length: 3, encoding: "ascii", address: nil, context: "key", owner: nil)
        }
        XCTAssertEqual(m.receiveHits(hits), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x6000 - 64))
        XCTAssertEqual(m.hitsScreen?.index, 1)
        XCTAssertEqual(m.hex?.highlight, 0x6000..<0x6003)
    }
}

final class HexViewAddressTests: XCTestCase {
    /// A guest of 3 GiB keeps 2 GiB below the PCI hole and the rest from 4 GiB: rows past the
    /// split show 4 GiB-based addresses, not file offsets shifted by the hit's difference.
    func testAddressesFollowTheLowHighSplit() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.tab = .bundles
        var page = HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0x7FFF_FFE0, highlight: nil, isMemoryImage: true)
        page.layout = PhysicalLayout(ramBytes: 3 << 30)
        page.data = (0..<64).map { UInt8($0) }
        _ = m.push(.hex(HexScreen(page)))
        var buffer = CellBuffer(width: 100, height: 10)
        m.render(into: &buffer)
        let rows = (0..<buffer.height).map { buffer.line($0) }
        // Each row: file offset, then guest address.
        let crossing = rows.first { $0.hasPrefix("80000000") } ?? ""
        XCTAssertTrue(crossing.hasPrefix("80000000  100000000"), rows.joined(separator: "\n"))
        XCTAssertTrue(rows.contains { $0.hasPrefix("7fffffe0  07fffffe0") }, rows.joined(separator: "\n"))
    }

    /// At 80 columns a memory image's rows (offset, address, 16 pairs, 16 characters) do not
    /// fit: the view shows 8 bytes a row, as hexyl does, and every character stays on screen.
    func testANarrowTerminalShowsEightBytesARowWithTheirCharacters() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.tab = .bundles
        var page = HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0x1000, highlight: nil, isMemoryImage: true)
        page.layout = PhysicalLayout(ramBytes: 1 << 30)
        page.bytesPerLine = HexPrinter.bytesPerLine(columns: 80, withAddress: true)
        XCTAssertEqual(page.bytesPerLine, 8)
        XCTAssertEqual(HexPrinter.bytesPerLine(columns: 100, withAddress: true), 16)
        XCTAssertEqual(HexPrinter.bytesPerLine(columns: 80, withAddress: false), 16, "a plain file's rows fit in 80 columns")
        page.data = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".utf8)
        _ = m.push(.hex(HexScreen(page)))
        var buffer = CellBuffer(width: 80, height: 12)
        m.render(into: &buffer)
        let rows = (0..<buffer.height).map { buffer.line($0) }
        XCTAssertTrue(rows.contains { $0.hasPrefix("00001000  000001000  41 42") && $0.contains("|ABCDEFGH|") }, rows.joined(separator: "\n"))
        XCTAssertTrue(rows.contains { $0.hasPrefix("00001008  000001008") && $0.contains("|IJKLMNOP|") }, rows.joined(separator: "\n"))
        // A row down moves 8 bytes, not 16.
        XCTAssertEqual(m.handle(.down), .loadHex(path: "/b/a.sparc/memory.img", offset: 0x1008))
    }

    func testDomainPickerOpensOnlyARunningPreparedDomain() {
        var model = TUIModel(vmName: "default", bundleDirectory: "/tmp")
        model.domainPicker = DomainPicker(
            uri: "qemu:///system",
            domains: [
                DomainChoice(name: "db", state: "running", missing: ["a VM generation id (<genid/>)"]),
                DomainChoice(name: "mail", state: "shut off", missing: []),
                DomainChoice(name: "web", state: "running", missing: []),
            ])
        var buffer = CellBuffer(width: 80, height: 10)
        model.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("libvirt qemu:///system — pick a domain"), buffer.text)
        XCTAssertTrue(buffer.line(2).contains("db") && buffer.line(2).contains("not prepared"), buffer.text)
        XCTAssertEqual(model.handle(.enter), .none)
        XCTAssertTrue(model.domainPicker?.status.contains("sparc libvirt prepare db") == true)
        XCTAssertEqual(model.handle(.down), .none)
        XCTAssertEqual(model.handle(.enter), .none)
        XCTAssertTrue(model.domainPicker?.status.contains("virsh start mail") == true)
        XCTAssertEqual(model.handle(.down), .none)
        XCTAssertEqual(model.handle(.enter), .refresh, "a running, prepared domain opens")
        XCTAssertNil(model.domainPicker)
        XCTAssertEqual(model.processes.vmName, "web")
        model.render(into: &buffer)
        XCTAssertTrue(buffer.line(0).contains("web"), buffer.text)

        var empty = TUIModel(vmName: "default", bundleDirectory: "/tmp")
        empty.domainPicker = DomainPicker(uri: "qemu:///system", domains: [])
        XCTAssertTrue(empty.domainPicker!.status.contains("no domains"))
        XCTAssertEqual(empty.handle(.enter), .none)
        XCTAssertEqual(empty.handle(.char("q")), .quit)
    }
}

final class QuitAfterBackTests: XCTestCase {
    /// `q` closes the hex view; a second `q` right after asks before quitting (three presses
    /// from a hex view over the hits would otherwise end sparc); `q` on a screen quits at once.
    func testSecondQAfterClosingAViewAsks() {
        var m = TUIModel(vmName: "v", bundleDirectory: "/b")
        m.tab = .bundles
        XCTAssertEqual(m.handle(.char("q")), .quit, "q on a screen quits")
        _ = m.push(.hex(HexScreen(HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0, highlight: nil))))
        XCTAssertEqual(m.handle(.char("q")), .none)
        XCTAssertTrue(m.pushed.isEmpty, "q closed the view")
        XCTAssertEqual(m.handle(.char("q")), .none, "the next q asks")
        XCTAssertEqual(m.handle(.char("n")), .none, "No keeps sparc")
        _ = m.push(.hex(HexScreen(HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0, highlight: nil))))
        _ = m.handle(.escape)
        XCTAssertEqual(m.handle(.char("q")), .quit, "after Esc closed the view, q quits as on any screen")
        _ = m.push(.hex(HexScreen(HexPage(path: "/b/a.sparc/memory.img", title: "t", offset: 0, highlight: nil))))
        _ = m.handle(.char("q"))
        _ = m.handle(.char("q"))
        XCTAssertEqual(m.handle(.char("y")), .quit, "Yes quits")
    }
}

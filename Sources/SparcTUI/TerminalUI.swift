import CNCurses
import Foundation
import GuestQuery
import HexView
import SecretScan
import SnapshotModel
import SparcEngine
import SparcSupport

/// The curses front: owns the terminal and the event loop. All curses calls happen here,
/// on the thread that called `run`; long work (checkpoint, search) runs on another thread
/// and reports through a shared box that the loop polls.
public final class TerminalUI {
    let manager: VMManager
    let color: Bool
    var model: TUIModel
    let work = SharedBox<(busy: String?, result: String?)>((nil, nil))
    /// How far the running checkpoint is (from its typed phase), for the progress bar.
    let workFraction = SharedBox<Double?>(nil)
    let foundHits = SharedBox<[SearchHit]?>(nil)
    /// The bundle a checkpoint just wrote, for the Bundles list to put its cursor on.
    let justSaved = SharedBox<String?>(nil)
    /// A finished credential scan's findings and the bundle, for the UI thread to show.
    let foundFindings = SharedBox<(findings: [SecretFinding], bundle: String)?>(nil)
    /// Cancels the work in progress (checkpoint or search).
    var cancellation = Cancellation()
    /// A restore refused as a rollback, waiting for the operator's confirmation.
    let pendingRollback = SharedBox<String?>(nil)

    /// `picker`: open on a list of libvirt domains (the manager's `connect`) instead of `vmName`.
    public init(
        manager: VMManager, vmName: String, color: Bool, bundleDirectory: String = FileManager.default.currentDirectoryPath, readonly: Bool = false,
        picker: DomainPicker? = nil
    ) {
        self.manager = manager
        self.color = color
        self.model = TUIModel(vmName: vmName, bundleDirectory: bundleDirectory, readonly: readonly)
        model.domainPicker = picker
    }

    /// The guest's processes and terminals as the agent last gave them (or why it could not).
    typealias GuestSnapshot = Result<([GuestProcess], [GuestTTY]), Error>

    /// The latest answer from the agent, waiting for the loop to apply it.
    let snapshot = SharedBox<GuestSnapshot?>(nil)
    let refreshing = SharedBox(false)

    /// Lists the bundles (local files, read here, so a bundle just written is there for the
    /// next key) and asks the agent for the process list off the UI thread (it may take
    /// seconds to answer), except the first time, which fills the screen before it is drawn.
    func refresh(wait: Bool = false) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: model.bundleDirectory)) ?? [])
            .filter { $0.hasSuffix(".sparc") }.sorted()
        model.setBundles(names, select: justSaved.value)
        justSaved.value = nil
        for b in model.bundles where model.bundleDetails[b] == nil {
            let summary = BundleSummary(path: model.bundleDirectory + "/" + b)
            model.bundleDetails[b] = summary.line
            if summary.damage == nil { model.bundleKills[b] = summary.kills }
        }
        // Until a domain is picked there is no agent to ask.
        guard model.domainPicker == nil else { return }
        guard !refreshing.mutate({ r -> Bool in
            defer { r = true }
            return r
        }) else { return }
        let vm = model.processes.vmName
        let manager = self.manager
        let snapshot = self.snapshot
        let refreshing = self.refreshing
        let ask = {
            snapshot.value = Result { () -> ([GuestProcess], [GuestTTY]) in
                let agent = try manager.agentClient(vm, timeout: 5)
                defer { agent.close() }
                return (try agent.processes(), try agent.ttys())
            }
            refreshing.value = false
        }
        if wait { ask() } else { startThread(ask) }
    }

    /// Applies the agent's latest answer to the model (on the UI thread).
    func applyRefresh() {
        guard let s = snapshot.value else { return }
        snapshot.value = nil
        switch s {
        case .success(let (processes, ttys)):
            model.processes.update(processes)
            model.ttys = ttys
        case .failure(let error):
            model.status = "\(error)"
        }
    }

    func start(_ effect: Effect) {
        let manager = self.manager
        let work = self.work
        let workFraction = self.workFraction
        let vm = model.processes.vmName
        // One job at a time, and it keeps its own cancellation: a search started during a
        // checkpoint would clear the checkpoint's busy state, and quitting then could leave QEMU paused.
        switch effect {
        case .checkpoint, .search, .restore, .scan:
            if let running = work.value.busy {
                model.status = "\(running) — one job at a time (Esc cancels it)"
                return
            }
            cancellation = Cancellation()
            workFraction.value = nil
        default: break
        }
        let cancel = cancellation
        // A step held for a test (SPARC_FAULT stall) ends on this job's cancel too.
        FaultPoint.interruption = cancel
        switch effect {
        case .cancel:
            return
        case .checkpoint(let request, let output):
            work.value = ("checkpoint: starting", nil)
            let saved = justSaved
            startThread {
                do {
                    let r = try manager.checkpoint(
                        name: vm, output: output, exclusion: request.isEmpty ? nil : request, cancel: cancel,
                        progress: { event in
                            if let f = event.checkpointFraction { workFraction.value = f }
                            work.value = ("checkpoint: \(event.text)", nil)
                        })
                    saved.value = Path.base(of: r.bundle)
                    work.value = (nil, r.oneLine + " — on Bundles (F6), F5 scans it for credentials")
                } catch {
                    work.value = (nil, "checkpoint failed: \(error)")
                }
            }
        case .search(let pattern, let bundle, let encodings, let ignoreCase):
            work.value = ("searching \(bundle)", nil)
            let path = bundle.hasPrefix("/") ? bundle : model.bundleDirectory + "/" + bundle
            let hitsBox = foundHits
            startThread {
                do {
                    let query = try SearchQuery.text(pattern, encodings: encodings, ignoreCase: ignoreCase)
                    let hits = try ForensicSearch.search(
                        paths: [path], query: query,
                        progress: { file, done, total in
                            work.value = ("searching \(Path.base(of: file)) \(done * 100 / max(total, 1))%", nil)
                        }, cancel: cancel)
                    hitsBox.value = hits
                    if hits.isEmpty {
                        work.value = (nil, "'\(pattern)': not found in any file of the bundle \(bundle)")
                    } else {
                        let first = hits[0]
                        work.value = (nil, "'\(pattern)': \(hits.count) hit(s); first in \(Path.base(of: first.file)) at 0x\(String(first.offset, radix: 16))" + (first.owner.map { " [\($0.description)]" } ?? ""))
                    }
                } catch {
                    work.value = (nil, "search failed: \(error)")
                }
            }
        case .scan(let bundle):
            work.value = ("scanning \(bundle) for credentials", nil)
            let path = bundle.hasPrefix("/") ? bundle : model.bundleDirectory + "/" + bundle
            let findingsBox = foundFindings
            startThread {
                do {
                    let report = try CredentialScan.scan(
                        paths: [path], rules: try SecretRules(),
                        progress: { file, done, total in
                            work.value = ("scanning \(Path.base(of: file)) \(done * 100 / max(total, 1))% (Esc cancels)", nil)
                        }, cancel: cancel)
                    if report.findings.isEmpty {
                        work.value = (nil, "no credentials found in \(bundle)")
                    } else {
                        findingsBox.value = (report.findings, bundle)
                        let owners = report.owningProcesses.map { "pid \($0.pid) \($0.command)" }
                        work.value = (nil, "\(report.findings.count) credential finding(s) in \(bundle)" + (owners.isEmpty ? "" : ", held by " + owners.joined(separator: ", ")))
                    }
                } catch {
                    work.value = (nil, "scan failed: \(error)")
                }
            }
        case .loadHex(let path, let offset):
            let count = TUIModel.hexBytes(height: Int(sparc_lines()))
            var data = [UInt8](repeating: 0, count: count)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
                var st = stat()
                if model.hex?.isMemoryImage == true, fstat(fd, &st) == 0 { model.hex?.layout = PhysicalLayout(ramBytes: UInt64(st.st_size)) }
                close(fd)
                data.removeLast(count - max(0, n))
            }
            model.hex?.data = data
        case .restore(let bundle, let allowRollback):
            work.value = ("restore: starting", nil)
            let path = model.bundleDirectory + "/" + bundle
            let pending = pendingRollback
            startThread {
                do {
                    let r = try manager.restore(
                        bundle: path, name: vm, replace: true, policy: RestorePolicy(allowRollback: allowRollback),
                        progress: { work.value = ("restore: \($0)", nil) }, cancel: cancel)
                    let killed = r.cleanup?.killed ?? []
                    work.value = (nil, "restored \(bundle) (epoch \(r.epoch)\(r.rollback ? ", rollback logged" : ""))"
                        + (killed.isEmpty ? "; all processes run on" : "; killed \(killed.map(String.init).joined(separator: " ")), the rest runs on"))
                } catch RestoreRefusal.rollback {
                    pending.value = bundle
                    work.value = (nil, "")
                } catch {
                    work.value = (nil, "restore failed: \(error)")
                }
            }
        default: break
        }
    }

    static func decode(_ key: Int32) -> Key? {
        switch key {
        case KEY_UP: return .up
        case KEY_DOWN: return .down
        case KEY_PPAGE: return .pageUp
        case KEY_NPAGE: return .pageDown
        case KEY_HOME: return .home
        case KEY_END: return .end
        case 9: return .tab
        case KEY_BTAB: return .backTab
        case 10, 13, KEY_ENTER: return .enter
        case 27: return .escape
        case KEY_BACKSPACE, 127, 8: return .backspace
        case 32...126: return .char(Character(Unicode.Scalar(UInt8(key))))
        default:
            for n in 1...12 where key == sparc_key_f(Int32(n)) { return .function(n) }
            return nil
        }
    }

    nonisolated(unsafe) static var interruptFlag: sig_atomic_t = 0

    public func run() throws {
        setlocale(LC_ALL, "")
        initscr()
        defer { endwin() }
        cbreak()
        noecho()
        keypad(sparc_stdscr(), true)
        set_escdelay(25)
        curs_set(0)
        if color && has_colors() {
            start_color()
            use_default_colors()
            init_pair(1, Int16(COLOR_BLACK), Int16(COLOR_CYAN))
            init_pair(2, Int16(COLOR_BLACK), Int16(COLOR_GREEN))
            init_pair(3, Int16(COLOR_YELLOW), -1)
            // Byte categories, hexyl's palette: NUL grey, printable cyan, whitespace green,
            // other ASCII magenta, non-ASCII yellow.
            init_pair(4, Int16(COLOR_BLACK + 8 < 16 && COLORS >= 16 ? COLOR_BLACK + 8 : COLOR_WHITE), -1)
            init_pair(5, Int16(COLOR_CYAN), -1)
            init_pair(6, Int16(COLOR_GREEN), -1)
            init_pair(7, Int16(COLOR_MAGENTA), -1)
            init_pair(8, Int16(COLOR_YELLOW), -1)
        }
        mousemask(sparc_all_mouse_events(), nil)
        timeout(200)
        // Ctrl-C, SIGTERM and SIGHUP (the terminal closed) quit through the loop, so a running
        // checkpoint is cancelled and unwinds (the guest resumed and thawed, nothing partial
        // left) and endwin always runs.
        for sig in [SIGINT, SIGTERM, SIGHUP] { signal(sig) { _ in TerminalUI.interruptFlag = 1 } }
        // On a crash, give the terminal back before dying with the same signal.
        for sig in [SIGSEGV, SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGTRAP] {
            signal(sig) { s in
                endwin()
                signal(s, SIG_DFL)
                raise(s)
            }
        }
        refresh(wait: true)
        var lastRefresh = Date()
        while true {
            applyRefresh()
            let w = work.value
            model.busy = w.busy
            model.busyFraction = w.busy == nil ? nil : workFraction.value
            if let found = foundFindings.value {
                foundFindings.value = nil
                model.receiveFindings(found.findings, bundle: found.bundle)
            }
            if let hits = foundHits.value {
                foundHits.value = nil
                let effect = model.receiveHits(hits)
                if effect != .none { start(effect) }
            }
            if let result = w.result {
                model.status = result
                work.value = (nil, nil)
                refresh()
            }
            if let bundle = pendingRollback.value {
                pendingRollback.value = nil
                model.confirm = TUIModel.Confirm(
                    question: "\(bundle) is older than the newest checkpoint: restoring it rolls the VM back (it is logged). Restore anyway?",
                    effect: .restore(bundle: bundle, allowRollback: true))
            }
            if Self.interruptFlag != 0 {
                if work.value.busy != nil {
                    cancellation.cancel()
                    model.status = "interrupted: cancelling the work first…"
                    draw()
                    while work.value.busy != nil { usleep(50_000) }
                }
                return
            }
            draw()
            let code = getch()
            if code == ERR {
                if model.busy == nil && Date().timeIntervalSince(lastRefresh) > 2 {
                    refresh()
                    lastRefresh = Date()
                }
                continue
            }
            if code == KEY_RESIZE { continue }
            let effect: Effect
            if code == KEY_MOUSE {
                var event = MEVENT()
                guard getmouse(&event) == OK, event.bstate & sparc_button1_clicked() != 0 else { continue }
                effect = model.click(row: Int(event.y), column: Int(event.x), height: Int(sparc_lines()))
            } else {
                guard let key = Self.decode(code) else { continue }
                effect = model.handle(key)
            }
            switch effect {
            case .quit:
                return
            case .forceQuit:
                // Cancel and wait for the checkpoint to unwind (it resumes the guest) before leaving.
                cancellation.cancel()
                model.status = "cancelling before quitting…"
                draw()
                while work.value.busy != nil { usleep(50_000) }
                return
            case .refresh:
                refresh()
                lastRefresh = Date()
            case .none: break
            case .cancel:
                cancellation.cancel()
                model.status = "cancelling…"
            default: start(effect)
            }
        }
    }

    func attributes(_ style: CellBuffer.Style) -> attr_t {
        switch style {
        case .normal: return 0
        case .header: return color ? sparc_color_pair(2) | sparc_a_bold() : sparc_a_reverse()
        case .selected: return color ? sparc_color_pair(1) : sparc_a_reverse()
        case .status: return color ? sparc_color_pair(3) : sparc_a_bold()
        case .key: return sparc_a_bold()
        case .dim: return sparc_a_bold()
        case .tagged: return color ? sparc_color_pair(3) | sparc_a_bold() : sparc_a_bold()
        case .byteNull: return color ? sparc_color_pair(4) | sparc_a_dim() : sparc_a_dim()
        case .bytePrintable: return color ? sparc_color_pair(5) : 0
        case .byteWhitespace: return color ? sparc_color_pair(6) : 0
        case .byteOtherASCII: return color ? sparc_color_pair(7) : 0
        case .byteNonASCII: return color ? sparc_color_pair(8) : 0
        case .byteHit: return sparc_a_reverse() | sparc_a_bold()
        }
    }

    func draw() {
        var rows: Int32 = 0
        var cols: Int32 = 0
        sparc_getmaxyx(sparc_stdscr(), &rows, &cols)
        var buffer = CellBuffer(width: Int(cols), height: Int(rows))
        model.screenHeight = Int(rows)
        model.render(into: &buffer)
        erase()
        for r in 0..<buffer.height {
            var c = 0
            while c < buffer.width {
                let style = buffer.cell(row: r, column: c).style
                var run = ""
                var end = c
                while end < buffer.width && buffer.cell(row: r, column: end).style == style {
                    run.append(buffer.cell(row: r, column: end).character)
                    end += 1
                }
                let attr = attributes(style)
                attron(Int32(bitPattern: UInt32(truncatingIfNeeded: attr)))
                let scalars = Array(run.unicodeScalars.map { wchar_t(bitPattern: $0.value) }) + [0]
                mvaddnwstr(Int32(r), Int32(c), scalars, Int32(scalars.count - 1))
                attroff(Int32(bitPattern: UInt32(truncatingIfNeeded: attr)))
                c = end
            }
        }
        CNCurses.refresh()
    }
}

import Foundation
import GuestQuery
import HexView
import SecretScan
import SnapshotModel
import SparcEngine
import SparcSupport

/// A key press, decoded from curses by the front end (tests build them directly).
public enum Key: Equatable, Sendable {
    case char(Character), up, down, pageUp, pageDown, home, end, tab, backTab, enter, escape, backspace, function(Int)
}

/// What the front end must do after a key: the model itself never touches the VM.
public enum Effect: Equatable, Sendable {
    case none, quit, refresh
    /// A checkpoint into the store (`output` nil) or into a bundle directory.
    case checkpoint(ExclusionRequest, output: String?)
    /// Delete a stored checkpoint (from the list; its chunks go at gc) or a bundle directory.
    case delete(bundle: String)
    case search(pattern: String, bundle: String, encodings: [SearchEncoding], ignoreCase: Bool)
    case restore(bundle: String, allowRollback: Bool)
    /// Restore the VM's undo point (the state its last restore replaced), taking none.
    case undo(bundle: String)
    /// Scan a bundle for credentials with the built-in rules.
    case scan(bundle: String)
    /// Read bytes of `path` from `offset` into the hex view's page.
    case loadHex(path: String, offset: UInt64)
    /// Stop the running checkpoint or search at its next safe point.
    case cancel
    /// Quit even though work is running (the operator confirmed).
    case forceQuit
}

/// A view pushed over the Bundles screen: a search's hits, a scan's findings, the hex view.
public enum PushedScreen {
    case hits(HitsScreen)
    case findings(FindingsScreen)
    case hex(HexScreen)
}

/// The screen manager (htop's ScreenManager), free of curses: three tab screens, the views
/// pushed over the Bundles screen, the pop-ups over everything, and the state they share
/// (the VM, the tags' exclusion, the running job, the status line). Keys go to the top of the
/// stack; each screen's binding table says what they do.
public struct TUIModel {
    public enum Tab: Int, CaseIterable, Sendable {
        case processes, terminals, bundles
        var title: String { ["Processes", "Terminals", "Bundles"][rawValue] }
    }

    public var tab: Tab = .processes
    public var processes: ProcessScreen
    public var terminals = TerminalsScreen()
    public var bundleList: BundlesScreen
    /// Views over the Bundles screen, the last on top.
    public var pushed: [PushedScreen] = []
    /// Pop-ups over everything, the last on top.
    public var popups: [Popup] = []
    public var scope: ExclusionScope = .all
    /// The operator's config (`sparc config show`): its exclusion rules apply to checkpoints here too.
    public var config = SparcConfig() {
        didSet { scope = config.scope ?? scope }
    }
    /// The running job's progress line, and how far it is (0…1) when the engine says.
    public var busy: String?
    public var busyFraction: Double?
    /// Whether the running job's current step still stops on a cancel.
    public var busyCancellable = true
    /// Search options, toggled in a search prompt: F5 cycles encodings, F6 case.
    public var searchEncodings: [SearchEncoding] = [.ascii, .utf16le]
    public var searchIgnoreCase = false
    /// Set when a search started in the hex view: the next hit at or after it opens.
    public var searchFrom: UInt64?
    static let encodingChoices: [[SearchEncoding]] = [[.ascii, .utf16le], SearchEncoding.allCases, [.ascii], [.utf16le]]
    /// With `tui --connect` and no domain named: the domain list, shown until one is picked.
    public var domainPicker: DomainPicker?
    public var readonly: Bool
    /// The screen's height at the last draw: how far a page key moves a list.
    public var screenHeight = 24
    public var status = ""
    /// The VM's state as last seen (running, paused, frozen, stopped, dead, not answering).
    public var vmState: String?
    /// The status line the agent's last silence left (cleared once it answers again).
    var guestError: String?

    public init(vmName: String, bundleDirectory: String, readonly: Bool = false) {
        processes = ProcessScreen(vmName: vmName)
        bundleList = BundlesScreen(directory: bundleDirectory)
        self.readonly = readonly
    }

    public var bundleDirectory: String { bundleList.directory }

    /// The question on top, if a question is on top.
    public var confirm: Confirm? {
        if case .confirm(let c)? = popups.last { return c }
        return nil
    }

    /// The prompt on top, if a prompt is on top.
    public var prompt: Prompt? {
        if case .prompt(let p)? = popups.last { return p }
        return nil
    }

    public var helpShown: Bool {
        if case .help? = popups.last { return true }
        return false
    }

    /// The hex view's page, when the hex view is on view.
    public var hex: HexPage? {
        get {
            if case .hex(let h)? = viewOnTop { return h.page }
            return nil
        }
        set {
            guard let newValue, case .hex(var h)? = pushed.last else { return }
            h.page = newValue
            pushed[pushed.count - 1] = .hex(h)
        }
    }

    /// The exclusion the tags stand for, with the config's rules (a command name, or the
    /// processes of the live list that a pattern or a user names).
    public var exclusion: ExclusionRequest {
        let configured = config.exclusion(for: processes.vmName, processes: processes.processes)
        var request = ExclusionRequest(
            pids: Array(processes.tagged.union(configured.pids)).sorted(), names: configured.names,
            ttys: terminals.tagged.filter { $0.value == nil }.keys.sorted(), scope: scope)
        let pinned = terminals.tagged.compactMap { $0.value }.sorted { $0.tty < $1.tty }
        if !pinned.isEmpty { request.ttySessions = pinned }
        return request
    }

    // MARK: - The stack

    /// Whether the last key was a `q` that closed a view (the next `q` asks before quitting).
    var qClosedAView = false

    mutating func ask(_ question: String, _ effect: Effect) { popups.append(.confirm(Confirm(question: question, effect: effect))) }

    mutating func push(_ screen: PushedScreen) -> Effect {
        tab = .bundles
        pushed.append(screen)
        if case .hex(let h) = screen { return .loadHex(path: h.page.path, offset: h.page.offset) }
        return .none
    }

    mutating func pop() -> Effect {
        _ = pushed.popLast()
        return .none
    }

    mutating func withHits(_ change: (inout HitsScreen) -> Void) {
        guard case .hits(var s)? = pushed.last else { return }
        change(&s)
        pushed[pushed.count - 1] = .hits(s)
    }

    mutating func withFindings(_ change: (inout FindingsScreen) -> Void) {
        guard case .findings(var s)? = pushed.last else { return }
        change(&s)
        pushed[pushed.count - 1] = .findings(s)
    }

    mutating func withHex(_ change: (inout HexScreen) -> Void) {
        guard case .hex(var s)? = pushed.last else { return }
        change(&s)
        pushed[pushed.count - 1] = .hex(s)
    }

    /// What is on view under the pop-ups: a pushed view on the Bundles screen, else the tab.
    var viewOnTop: PushedScreen? { tab == .bundles ? pushed.last : nil }

    // MARK: - Binding tables

    /// The keys every screen has.
    static func commonTable(_ m: TUIModel) -> BindingTable {
        BindingTable(
            title: "Every screen",
            bindings: [
                Binding([.function(1), .char("?")], bar: "Help", "this help; any key closes it") { m in
                    m.popups.append(.help(m.helpLines))
                    return .none
                },
                Binding([.function(8), .char("C")], bar: "Checkpt", "checkpoint with the tagged processes and terminals left out", writes: true) { m in
                    m.askCheckpoint()
                },
                Binding([.tab], bar: "Next", "next screen (Shift-Tab: previous; F2/F4/F6 Processes, Terminals, Bundles)") { m in
                    m.tab = Tab(rawValue: (m.tab.rawValue + 1) % Tab.allCases.count)!
                    return .none
                },
                Binding([.backTab], "previous screen") { m in
                    m.tab = Tab(rawValue: (m.tab.rawValue + Tab.allCases.count - 1) % Tab.allCases.count)!
                    return .none
                },
                Binding([.function(2)], "Processes") { $0.tab = .processes; return .none },
                Binding([.function(4)], "Terminals") { $0.tab = .terminals; return .none },
                Binding([.function(6)], "Bundles") { $0.tab = .bundles; return .none },
                Binding([.char("s")], "scope: all (kernel buffers too) or user") { m in
                    m.scope = m.scope == .all ? .user : .all
                    m.status = "scope: \(m.scope.rawValue)"
                    return .none
                },
                Binding([.char("r")], "refresh now (it also refreshes every 2 s)") { _ in .refresh },
                Binding([.escape], "cancel a running checkpoint, search, scan or restore") { m in m.busy != nil ? .cancel : .none },
                Binding([.function(10), .char("q")], bar: "Quit", "quit (asks while work runs)") { m in
                    guard let busy = m.busy else { return .quit }
                    m.ask(
                        m.busyCancellable
                            ? "Work is running (\(busy)). Quit anyway? It is cancelled first (nothing of it is kept)."
                            : "Work is finishing (\(busy)) and cannot be cancelled now. Quit once it is done?", .forceQuit)
                    return .none
                },
            ])
    }

    /// The table of the screen on view.
    var screenTable: BindingTable {
        switch viewOnTop {
        case .hits?: return HitsScreen.table(self)
        case .findings?: return FindingsScreen.table(self)
        case .hex?: return HexScreen.table(self)
        case nil:
            switch tab {
            case .processes: return ProcessScreen.table(self)
            case .terminals: return TerminalsScreen.table(self)
            case .bundles: return BundlesScreen.table(self)
            }
        }
    }

    /// Every screen's keys as its help (`?`) lists them, from the same tables: the KEYS
    /// section of `sparc.tui(1)` in mdoc (`sparc tui --keys-manual`, run by `make install`).
    public static func keysManual() -> String {
        let m = TUIModel(vmName: "VM", bundleDirectory: "/")
        let tables = [
            ProcessScreen.table(m), TerminalsScreen.table(m), BundlesScreen.table(m), HitsScreen.table(m), FindingsScreen.table(m), HexScreen.table(m),
            commonTable(m),
        ]
        // Backslashes and newlines escaped, anything past ASCII as roff's \[uXXXX].
        func escaped(_ s: String) -> String {
            s.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "\n", with: " ").unicodeScalars.map {
                $0.isASCII ? String($0) : "\\[u" + String(format: "%04X", $0.value) + "]"
            }.joined()
        }
        var out = ".Sh KEYS\n"
        for table in tables {
            out += ".Ss \(escaped(table.title.replacingOccurrences(of: " — keys", with: "")))\n.Bl -tag -width Ds\n"
            for b in table.bindings {
                let names = b.keys.map { FunctionKey($0, "").name }.joined(separator: ", ")
                out += ".It Sy \(escaped(names))\n\\&\(escaped(b.help))\(b.writes ? " (not with --readonly)" : "")\n"
            }
            out += ".El\n"
        }
        return out
    }

    /// The help of the screen on view: its own keys first, then the keys every screen has.
    public var helpLines: [String] { shown(screenTable).helpLines + [""] + shown(Self.commonTable(self)).helpLines }

    /// A table as the bar and the help show it: without what writes when read-only.
    func shown(_ table: BindingTable) -> BindingTable { readonly ? table.readOnly : table }

    /// The function bar of what is on screen now; clicks on it act as its keys.
    public var functionKeys: [FunctionKey] {
        switch popups.last {
        case .help?: return [.init(.escape, "Close")]
        case .confirm?: return [.init(.char("y"), "Yes"), .init(.char("n"), "No"), .init(.tab, "Switch")]
        case .prompt(let p)?:
            return (p.takesSearchOptions ? [.init(.function(5), "Encoding"), .init(.function(6), "Case")] : [])
                + [.init(.enter, "OK"), .init(.escape, "Cancel")]
        case nil:
            let common = shown(Self.commonTable(self)).functionKeys
            let own = shown(screenTable).functionKeys
            // Help first, the screen's own keys, then the rest of every screen's (Quit last).
            return common.prefix(1) + own + common.dropFirst().filter { entry in !own.contains { $0.key == entry.key } }
        }
    }

    // MARK: - Keys

    /// The effect of a key; a job (checkpoint, search, restore, scan) asked for while another
    /// runs is refused with a word in the status line: one job at a time.
    public mutating func handle(_ key: Key) -> Effect {
        let effect = handleKey(key)
        switch effect {
        case .checkpoint, .search, .restore, .undo, .scan:
            if let busy {
                status = "\(busy) — one job at a time (Esc cancels it)"
                return .none
            }
        default: break
        }
        return effect
    }

    mutating func handleKey(_ key: Key) -> Effect {
        if var picker = domainPicker {
            if key == .char("q") || key == .function(10) { return .quit }
            let picked = picker.handle(key, screenHeight: screenHeight)
            domainPicker = picked == nil ? picker : nil
            if let picked {
                processes = ProcessScreen(vmName: picked)
                return .refresh
            }
            return .none
        }
        if let popup = popups.popLast() {
            return handlePopup(popup, key)
        }
        // Esc cancels running work first, on every screen (a view's Esc is Back otherwise).
        if busy != nil, key == .escape {
            guard busyCancellable else {
                status = "this step cannot be cancelled: it finishes on its own"
                return .none
            }
            return .cancel
        }
        if let binding = screenTable.binding(for: key) ?? Self.commonTable(self).binding(for: key) {
            let depth = pushed.count
            let quitAfterClose = qClosedAView
            let effect = binding.action(&self)
            // `q` is Back in a view and Quit on a screen: a second `q` just after one closed a
            // view asks before quitting (hex view, hits, Bundles: three presses would end sparc).
            qClosedAView = key == .char("q") && pushed.count < depth
            if effect == .quit, key == .char("q"), quitAfterClose {
                ask("Quit sparc? (q just closed a view; q on a screen quits, Esc and q close views)", .quit)
                return .none
            }
            return effect
        }
        qClosedAView = false
        // Keys no table names: the lists' motion (one row, a page, the ends).
        let screenHeight = screenHeight
        switch viewOnTop {
        case .hits?: withHits { _ = $0.panel.move(key, screenHeight: screenHeight) }
        case .findings?: withFindings { _ = $0.move(key, screenHeight: screenHeight) }
        case .hex?: break
        case nil:
            switch tab {
            case .processes: _ = processes.move(key)
            case .terminals: _ = terminals.panel.move(key, screenHeight: screenHeight)
            case .bundles: _ = bundleList.panel.move(key, screenHeight: screenHeight)
            }
        }
        return .none
    }

    /// A key for the pop-up on top (taken off the stack; put back while it stays).
    mutating func handlePopup(_ popup: Popup, _ key: Key) -> Effect {
        switch popup {
        case .help:
            return .none  // any key closes it
        case .confirm(var c):
            switch key {
            case .char("y"), .char("Y"): return c.effect
            case .tab, .char("h"), .char("l"), .up, .down:
                c.yes.toggle()
                popups.append(.confirm(c))
            case .enter: return c.yes ? c.effect : .none
            default: break  // n, Esc and everything else: No
            }
            return .none
        case .prompt(var p):
            switch key {
            case .escape:
                if p.purpose == .filter { processes.filter = "" }
                return .none
            case .enter:
                return submit(p)
            case .function(5) where p.takesSearchOptions:
                let i = Self.encodingChoices.firstIndex(of: searchEncodings) ?? 0
                searchEncodings = Self.encodingChoices[(i + 1) % Self.encodingChoices.count]
            case .function(6) where p.takesSearchOptions: searchIgnoreCase.toggle()
            case .backspace: if !p.text.isEmpty { p.text.removeLast() }
            case .char(let ch): p.text.append(ch)
            default: break
            }
            popups.append(.prompt(p))
            if p.purpose == .filter {
                processes.filter = p.text
                processes.move(by: 0)
            }
            return .none
        }
    }

    /// Enter in a prompt: what it was for.
    mutating func submit(_ p: Prompt) -> Effect {
        switch p.purpose {
        case .filter: return .none
        case .chooseFile:
            if !p.text.isEmpty { popups.append(.prompt(Prompt(purpose: .search(p.text)))) }
            return .none
        case .goToOffset:
            let t = p.text.lowercased()
            guard let v = t.hasPrefix("0x") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t) else {
                status = "'\(p.text)' is not an offset"
                return .none
            }
            var effect = Effect.none
            withHex { effect = $0.go(to: v) }
            return effect
        case .search(let target):
            return p.text.isEmpty ? .none : .search(pattern: p.text, bundle: target, encodings: searchEncodings, ignoreCase: searchIgnoreCase)
        }
    }

    mutating func askCheckpoint() -> Effect {
        guard !readonly else {
            status = "read-only: checkpoint is disabled"
            return .none
        }
        guard busy == nil else { return .none }
        if let vmState, !["running", "paused", "frozen"].contains(vmState) {
            status = "VM '\(processes.vmName)' is \(vmState): nothing to checkpoint (start it, or restore a checkpoint with F7)"
            return .none
        }
        let request = exclusion
        let what =
            request.isEmpty
            ? "nothing excluded"
            : "\(request.pids.count) process(es)\(request.names.isEmpty ? "" : ", \(request.names.count) name(s)") and \(request.ttys.count + (request.ttySessions?.count ?? 0)) terminal(s) excluded, scope \(scope.rawValue)"
        ask("Checkpoint '\(processes.vmName)' (\(what)) into the store in \(bundleDirectory) (encrypted)?" + leftOutNames(request), .checkpoint(request, output: nil))
        return .none
    }

    /// Every process and terminal the exclusion leaves out, named from the live guest (pid,
    /// user, command; the descendants that go along by count), so nothing is confirmed blind.
    func leftOutNames(_ request: ExclusionRequest) -> String {
        guard !request.isEmpty else { return "" }
        let byPid = Dictionary(processes.processes.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        var names = request.pids.map { pid in byPid[pid].map { "\($0.pid) \($0.user) \($0.command)" } ?? "\(pid) (gone from the guest)" }
        let shown = 6
        if names.count > shown { names = Array(names.prefix(shown)) + ["and \(request.pids.count - shown) more"] }
        let along = processes.broughtAlong.count
        var text = " Left out: " + names.joined(separator: "; ")
        if along > 0 { text += " (+\(along) descendant(s) along)" }
        let ttys = request.ttys.map(\.description) + (request.ttySessions ?? []).map { "\($0.tty) session" }
        if !ttys.isEmpty { text += "; terminals " + ttys.joined(separator: ", ") + " and everything on them" }
        if !request.names.isEmpty { text += "; by the config, every process named " + request.names.joined(separator: ", ") }
        return text + "."
    }

    /// `t` on a finding: its owning process is tagged, when it still runs.
    mutating func tagOwner(of f: SecretFinding) {
        guard let pid = f.owner?.pid else {
            status = "no process owns this finding (\(f.ownerLabel)): nothing to tag"
            return
        }
        guard processes.processes.contains(where: { $0.pid == pid }) else {
            status = "pid \(pid) no longer runs in '\(processes.vmName)': nothing to tag"
            return
        }
        processes.tag(pid)
        status = "tagged pid \(pid) (\(f.owner?.command ?? "?")) for exclusion — F8 checkpoints without it"
    }

    // MARK: - What jobs send back

    /// Applies what a job (or the agent's refresh) sent; returns what the front end must do next.
    public mutating func apply(_ event: JobEvent) -> Effect {
        switch event {
        case .progress(let line, let fraction, let cancellable):
            busy = line
            busyFraction = fraction
            busyCancellable = cancellable
            return .none
        case .guest(.success(let view)):
            processes.update(view.processes)
            processes.live = true
            vmState = view.state
            // The agent's earlier silence is over: its message goes.
            if let said = guestError, status == said { status = "" }
            guestError = nil
            if let said = terminals.update(view.ttys) { status = said }
            return .none
        case .guest(.failure(let error)):
            // The list stays for reference, marked as not live; nothing is offered on it.
            processes.live = false
            vmState = error.state
            status = error.message
            guestError = error.message
            return .none
        case .verified(let name, let identity, let problem):
            bundleList.verdicts[name] = BundlesScreen.Verdict(identity: identity, problem: problem)
            return .none
        case .finished(let line, let result):
            busy = nil
            busyFraction = nil
            busyCancellable = true
            if !line.isEmpty { status = line }
            switch result {
            case .none: return .refresh
            case .saved(let bundle):
                bundleList.setNames(bundleList.names, select: bundle)
                savedBundle = bundle
                return .refresh
            case .hits(let hits): return receiveHits(hits)
            case .findings(let findings, let bundle):
                receiveFindings(findings, bundle: bundle)
                return .none
            case .rollbackRefused(let bundle):
                ask(
                    "\(bundle) is older than the newest checkpoint: restoring it rolls the VM back (it is logged). Restore anyway?",
                    .restore(bundle: bundle, allowRollback: true))
                return .none
            }
        }
    }

    /// The bundle a checkpoint just wrote: the next listing puts the cursor on it.
    public var savedBundle: String?

    /// Takes a search's hits; after a search from the hex view, opens the next hit there.
    public mutating func receiveHits(_ found: [SearchHit]) -> Effect {
        guard !found.isEmpty else { return .none }
        let from = searchFrom
        searchFrom = nil
        var screen = HitsScreen(found)
        guard let from else {
            return push(.hits(screen))
        }
        guard let next = found.firstIndex(where: { $0.offset >= from }) else {
            status = "no hit after offset 0x\(String(from, radix: 16))"
            return push(.hits(screen))
        }
        screen.panel.cursor = next
        // The search ran from a hex view: the hits go under it, the new page on top.
        if case .hex? = pushed.last { pushed.removeLast() }
        _ = push(.hits(screen))
        return push(.hex(screen.hexAtHit))
    }

    /// Takes a scan's findings and shows them, the first one under the cursor.
    public mutating func receiveFindings(_ found: [SecretFinding], bundle: String) {
        _ = push(.findings(FindingsScreen(found, bundle: bundle)))
    }

    /// Replaces the bundle list (see `BundlesScreen.setNames`).
    public mutating func setBundles(_ names: [String], select: String? = nil) {
        bundleList.setNames(names, select: select ?? savedBundle)
        savedBundle = nil
    }

    // MARK: - Drawing

    public func render(into buffer: inout CellBuffer) {
        let w = buffer.width
        if let domainPicker {
            domainPicker.render(into: &buffer)
            return
        }
        if case .help(let lines)? = popups.last {
            for (i, line) in lines.enumerated() where i + 1 < buffer.height - 1 {
                buffer.put(line, row: i + 1, column: 2, style: line.hasSuffix("keys") || line == "Every screen" ? .header : .normal)
            }
            FunctionBar.render(functionKeys, into: &buffer)
            return
        }
        switch viewOnTop {
        case .hits(let s)?: s.render(self, into: &buffer)
        case .findings(let s)?: s.render(self, into: &buffer)
        case .hex(let s)?: s.render(self, into: &buffer)
        case nil:
            switch tab {
            case .processes: processes.render(into: &buffer)
            case .terminals: terminals.render(self, into: &buffer)
            case .bundles: bundleList.render(self, into: &buffer)
            }
        }
        // Tabs on the header's right, the active one highlighted (the hex view's title, a
        // file's path and what is in it, keeps the whole line); the VM's state before them,
        // as k9s shows its context.
        if case .hex? = viewOnTop {} else {
            var col = max(0, w - Tab.allCases.reduce(0) { $0 + $1.title.count + 3 })
            if let vmState {
                let label = " VM \(processes.vmName): \(vmState) "
                buffer.put(label, row: 0, column: max(0, col - label.count - 1), style: vmState == "running" ? .header : .selected)
            }
            for t in Tab.allCases {
                buffer.put(" \(t.title) ", row: 0, column: col, style: t == tab ? .selected : .header)
                col += t.title.count + 3
            }
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        if let busy { buffer.put(Self.progressLine(busy, fraction: busyFraction, cancellable: busyCancellable), row: buffer.height - 2, style: .status, fill: w) }
        if let p = prompt {
            let options = searchEncodings.map(\.rawValue).joined(separator: "+") + (searchIgnoreCase ? ", any case" : ", exact case")
            let hint: String
            switch p.purpose {
            case .filter: hint = "(Enter keeps, Esc clears)"
            case .search: hint = "[\(options)] (F5 encodings, F6 case, Enter searches, Esc cancels)"
            case .chooseFile, .goToOffset: hint = "(Enter goes, Esc cancels)"
            }
            buffer.put("\(p.label): \(p.text)▏  \(hint)", row: buffer.height - 2, style: .status, fill: w)
        }
        if let c = confirm { Self.renderQuestion(c, into: &buffer) }
        FunctionBar.render(functionKeys, into: &buffer)
    }

    /// A box in the middle: the question word-wrapped, the answer under it.
    static func renderQuestion(_ c: Confirm, into buffer: inout CellBuffer) {
        let w = buffer.width
        let width = max(20, min(w - 4, 90))
        var lines: [String] = []
        var current = ""
        for word in c.question.split(separator: " ") {
            if current.count + word.count + 1 > width - 4 && !current.isEmpty {
                lines.append(current)
                current = ""
            }
            current += (current.isEmpty ? "" : " ") + word
        }
        if !current.isEmpty { lines.append(current) }
        let answer = c.yes ? "[ Yes ]   No  " : "  Yes  [ No ]"
        let top = max(1, (buffer.height - lines.count - 4) / 2)
        let left = max(0, (w - width) / 2)
        for r in 0..<(lines.count + 4) { buffer.put("", row: top + r, column: left, style: .selected, fill: width) }
        for (i, line) in lines.enumerated() { buffer.put(line, row: top + 1 + i, column: left + 2, style: .selected) }
        buffer.put(answer, row: top + lines.count + 2, column: left + (width - answer.count) / 2, style: .selected)
    }

    /// A mouse click at (row, column) on a screen `height` rows high and `width` wide: a
    /// function-bar label acts as its key; a tab title opens its screen; a click on a list
    /// row moves the cursor there.
    public mutating func click(row: Int, column: Int, height: Int, width: Int = 80) -> Effect {
        if row == height - 1 {
            guard let entry = FunctionBar.entry(atColumn: column, of: functionKeys) else { return .none }
            return handle(entry.key)
        }
        if row == 0, popups.isEmpty {
            if case .hex? = viewOnTop { return .none }
            // Where `render` puts the titles: right-aligned on the header line.
            var col = max(0, width - Tab.allCases.reduce(0) { $0 + $1.title.count + 3 })
            for t in Tab.allCases {
                if column >= col && column < col + t.title.count + 2 {
                    tab = t
                    return .none
                }
                col += t.title.count + 3
            }
            return .none
        }
        guard popups.isEmpty, row >= 2 else { return .none }
        let screenHeight = height
        _ = screenHeight
        switch viewOnTop {
        case .hits?: withHits { $0.panel.click(row: row, screenHeight: height) }
        case .findings?, .hex?: break
        case nil:
            switch tab {
            case .processes:
                let r = processes.rows
                if let i = ListViewport(count: r.count, cursor: processes.selectedIndex, screenHeight: height).index(atScreenRow: row) {
                    processes.selectedPid = r[i].process.pid
                }
            case .terminals: terminals.panel.click(row: row, screenHeight: height)
            case .bundles: bundleList.panel.click(row: row, screenHeight: height)
            }
        }
        return .none
    }

    /// A progress bar when the work says how far it is (a checkpoint's phase), else the text.
    /// "(Esc cancels)" only while a cancel still stops the work.
    static func progressLine(_ busy: String, fraction: Double?, cancellable: Bool = true) -> String {
        let hint = cancellable ? "  (Esc cancels)" : "  (finishing: cannot be cancelled now)"
        guard let fraction else { return busy + hint }
        let done = Int((min(max(fraction, 0), 1) * 20).rounded(.down))
        return "[" + String(repeating: "#", count: done) + String(repeating: "-", count: 20 - done) + "] " + busy + hint
    }
}

import Foundation
import GuestQuery
import HexView
import SecretScan
import SnapshotModel
import SparcSupport

/// A key press, decoded from curses by the front end (tests build them directly).
public enum Key: Equatable, Sendable {
    case char(Character), up, down, pageUp, pageDown, home, end, tab, backTab, enter, escape, backspace, function(Int)
}

/// What the front end must do after a key: the model itself never touches the VM.
public enum Effect: Equatable, Sendable {
    case none, quit, refresh
    case checkpoint(ExclusionRequest, output: String)
    case search(pattern: String, bundle: String, encodings: [SearchEncoding], ignoreCase: Bool)
    case restore(bundle: String, allowRollback: Bool)
    /// Scan a bundle for credentials with the built-in rules.
    case scan(bundle: String)
    /// Read bytes of `path` from `offset` into `hex.data` (the hex view asks for its page).
    case loadHex(path: String, offset: UInt64)
    /// Stop the running checkpoint or search at its next safe point.
    case cancel
    /// Quit even though work is running (the operator confirmed).
    case forceQuit
}

/// The hex view's page: where it is and the bytes the front end loaded.
public struct HexPage: Equatable, Sendable {
    public var path: String
    public var title: String
    public var offset: UInt64
    public var highlight: Range<UInt64>?
    /// Whether the file is a guest memory image (its rows show guest-physical addresses).
    public var isMemoryImage = false
    /// For a credential finding: whether its bytes are hidden (`v` reveals them); nil otherwise.
    public var hidden: Bool? = nil
    /// The image's layout, from its size (the front end reads it when it loads the page):
    /// file offsets map to guest addresses through it, above the low/high split too.
    public var layout: PhysicalLayout?
    public var data: [UInt8] = []
}

/// The whole UI state, free of curses: screens, tags, dialogs, running work.
public struct TUIModel {
    public enum Tab: Int, CaseIterable, Sendable {
        case processes, terminals, bundles
        var title: String { ["Processes", "Terminals", "Bundles"][rawValue] }
    }

    /// A yes/no question whose default answer is No.
    public struct Confirm: Equatable, Sendable {
        public var question: String
        public var effect: Effect
        public var yes = false
    }

    public var tab: Tab = .processes
    public var processes: ProcessScreen
    public var ttys: [GuestTTY] = [] {
        didSet { dropEndedTerminalTags() }
    }
    /// Tagged terminals by name, each bound to the session it had when tagged (nil: it had
    /// none): pty numbers are reused, and a tag must never name the next session on its pty.
    public var taggedTTYs: [String: TTYSession?] = [:]

    /// Drops the tags whose session has ended since (the terminal may be another's by now), saying so.
    mutating func dropEndedTerminalTags() {
        for (name, session) in taggedTTYs {
            guard let session else { continue }
            let now = ttys.first { $0.name.unescaped == name }?.session
            if now != session {
                taggedTTYs[name] = nil
                status = "the session of pid \(session.leader) on \(name) has ended: its tag was dropped"
            }
        }
    }
    public var ttyCursor = 0
    public var bundles: [String] = []
    public var bundleCursor = 0
    public var bundleDirectory: String
    /// One line per bundle: time, size, what was excluded, whether its manifest is intact.
    public var bundleDetails: [String: String] = [:]
    /// What restoring each bundle kills (command names), from its manifest.
    public var bundleKills: [String: [String]] = [:]
    public var scope: ExclusionScope = .all
    public var confirm: Confirm?
    /// Text being typed for a prompt (search pattern), with what it is for.
    public var prompt: (label: String, text: String, bundle: String)?
    public var busy: String?
    /// How far the running work is (0…1), when the engine says (a checkpoint's phase).
    public var busyFraction: Double?
    /// Hits of the last search, shown over the bundle list until Esc.
    public var hits: [SearchHit] = []
    public var hitIndex = 0
    public var hex: HexPage?
    /// Findings of the last credential scan, shown over the bundle list until Esc.
    public var findings: [SecretFinding] = []
    public var findingIndex = 0
    public var scannedBundle: String?
    /// Search options, toggled in the search prompt: F5 cycles encodings, F6 case.
    public var searchEncodings: [SearchEncoding] = [.ascii, .utf16le]
    public var searchIgnoreCase = false
    /// Set when a search started in the hex view: the next hit at or after it opens.
    public var searchFrom: UInt64?
    static let encodingChoices: [[SearchEncoding]] = [[.ascii, .utf16le], SearchEncoding.allCases, [.ascii], [.utf16le]]
    public var help = false
    /// With `tui --connect` and no domain named: the domain list, shown until one is picked.
    public var domainPicker: DomainPicker?
    public var readonly: Bool
    /// The screen's height at the last draw: how far a page key moves a list.
    public var screenHeight = 24
    public var status: String {
        get { processes.status }
        set { processes.status = newValue }
    }

    public init(vmName: String, bundleDirectory: String, readonly: Bool = false) {
        processes = ProcessScreen(vmName: vmName)
        self.bundleDirectory = bundleDirectory
        self.readonly = readonly
    }

    /// The exclusion the tags stand for.
    public var exclusion: ExclusionRequest {
        var request = ExclusionRequest(
            pids: processes.tagged.sorted(), ttys: taggedTTYs.filter { $0.value == nil }.keys.sorted(), scope: scope)
        let pinned = taggedTTYs.compactMap { $0.value }.sorted { $0.tty < $1.tty }
        if !pinned.isEmpty { request.ttySessions = pinned }
        return request
    }

    func nextBundlePath(now: Date = Date()) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        return bundleDirectory + "/\(processes.vmName)-\(f.string(from: now)).sparc"
    }

    /// The effect of a key; a job (checkpoint, search, restore) asked for while another runs
    /// is refused with a word in the status line: one job at a time.
    public mutating func handle(_ key: Key) -> Effect {
        let effect = handleKey(key)
        switch effect {
        case .checkpoint, .search, .restore, .scan:
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
        if help {
            help = false
            return .none
        }
        if var c = confirm {
            switch key {
            case .char("y"), .char("Y"):
                confirm = nil
                return c.effect
            case .tab, .char("h"), .char("l"), .up, .down:
                c.yes.toggle()
                confirm = c
            case .enter:
                confirm = nil
                return c.yes ? c.effect : .none
            default:
                confirm = nil  // n, Esc and everything else: No
            }
            return .none
        }
        if var p = prompt {
            // A prompt without a bundle is the incremental process filter.
            let filtering = p.bundle.isEmpty
            switch key {
            case .escape:
                prompt = nil
                if filtering { processes.filter = "" }
            case .enter:
                prompt = nil
                if filtering { return .none }
                if p.bundle == "file:" {
                    guard !p.text.isEmpty else { return .none }
                    prompt = ("Search \(p.text) for", "", p.text)
                    return .none
                }
                if p.bundle == "hex:" {
                    let t = p.text.lowercased()
                    guard var page = hex, let v = t.hasPrefix("0x") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t) else {
                        status = "'\(p.text)' is not an offset"
                        return .none
                    }
                    page.offset = v / UInt64(HexRow.width) * UInt64(HexRow.width)
                    hex = page
                    return .loadHex(path: page.path, offset: page.offset)
                }
                return p.text.isEmpty
                    ? .none : .search(pattern: p.text, bundle: p.bundle, encodings: searchEncodings, ignoreCase: searchIgnoreCase)
            case .function(5) where !filtering:
                let i = Self.encodingChoices.firstIndex(of: searchEncodings) ?? 0
                searchEncodings = Self.encodingChoices[(i + 1) % Self.encodingChoices.count]
            case .function(6) where !filtering: searchIgnoreCase.toggle()
            case .backspace: if !p.text.isEmpty { p.text.removeLast(); prompt = p }
            case .char(let ch):
                p.text.append(ch)
                prompt = p
            default: break
            }
            if filtering, let p = prompt {
                processes.filter = p.text
                processes.move(by: 0)
            }
            return .none
        }
        if busy != nil, key == .escape { return .cancel }
        if hex != nil && prompt == nil { return handleHex(key) }
        if !findings.isEmpty && tab == .bundles, let effect = handleScan(key) { return effect }
        if !hits.isEmpty && tab == .bundles, let effect = handleHits(key) { return effect }
        switch key {
        case .char("q"), .function(10):
            if busy != nil {
                confirm = Confirm(question: "Work is running (\(busy!)). Quit anyway? A checkpoint is cancelled first.", effect: .forceQuit)
                return .none
            }
            return .quit
        case .char("?"), .function(1):
            help = true
            return .none
        case .tab: tab = Tab(rawValue: (tab.rawValue + 1) % Tab.allCases.count)!
        case .backTab: tab = Tab(rawValue: (tab.rawValue + Tab.allCases.count - 1) % Tab.allCases.count)!
        case .function(2): tab = .processes
        case .function(4): tab = .terminals
        case .function(6): tab = .bundles
        case .char("s"):
            scope = scope == .all ? .user : .all
            status = "scope: \(scope.rawValue)"
        case .char("C"), .function(8):
            guard !readonly else {
                status = "read-only: checkpoint is disabled"
                return .none
            }
            guard busy == nil else { return .none }
            let request = exclusion
            let what = request.isEmpty ? "nothing excluded" : "\(request.pids.count) process(es) and \(request.ttys.count) terminal(s) excluded, scope \(scope.rawValue)"
            let output = nextBundlePath()
            confirm = Confirm(question: "Checkpoint '\(processes.vmName)' (\(what)) to \(output)?", effect: .checkpoint(request, output: output))
        case .char("r"): return .refresh
        default:
            switch tab {
            case .processes: handleProcesses(key)
            case .terminals: handleTerminals(key)
            case .bundles: return handleBundles(key)
            }
        }
        return .none
    }

    // MARK: - Drawing

    public func render(into buffer: inout CellBuffer) {
        let w = buffer.width
        if let domainPicker {
            domainPicker.render(into: &buffer)
            return
        }
        if help {
            ProcessScreenHelp.render(helpLines, into: &buffer)
            return
        }
        if let hex {
            renderHex(hex, into: &buffer)
            return
        }
        switch tab {
        case .processes: processes.render(into: &buffer)
        case .terminals: renderTerminals(into: &buffer)
        case .bundles:
            if !findings.isEmpty {
                renderScan(into: &buffer)
            } else if !hits.isEmpty {
                renderHits(into: &buffer)
            } else {
                renderBundles(into: &buffer)
            }
        }
        // Tabs on the header's right, the active one highlighted.
        var col = max(0, w - Tab.allCases.reduce(0) { $0 + $1.title.count + 3 })
        for t in Tab.allCases {
            buffer.put(" \(t.title) ", row: 0, column: col, style: t == tab ? .selected : .header)
            col += t.title.count + 3
        }
        if let busy { buffer.put(Self.progressLine(busy, fraction: busyFraction), row: buffer.height - 2, style: .status, fill: w) }
        if let p = prompt {
            let options = searchEncodings.map(\.rawValue).joined(separator: "+") + (searchIgnoreCase ? ", any case" : ", exact case")
            let hint = p.bundle.isEmpty ? "(Enter keeps, Esc clears)" : "[\(options)] (F5 encodings, F6 case, Enter searches, Esc cancels)"
            buffer.put("\(p.label): \(p.text)▏  \(hint)", row: buffer.height - 2, style: .status, fill: w)
        }
        if let c = confirm {
            // A box in the middle: the question word-wrapped, the answer under it.
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
        if confirm != nil { FunctionBar.render(functionKeys, into: &buffer) }
    }

    /// The help of the screen on view: its own keys first, then the keys every screen has.
    public var helpLines: [String] {
        let own: [String]
        switch tab {
        case .processes: own = ProcessScreenHelp.processKeys
        case .terminals: own = ["Terminals — keys", "  Up/Down, j/k  move", "  Space     tag the terminal (everything on it is left out)", "  U         clear terminal tags"]
        case .bundles:
            own = !findings.isEmpty
                ? ["Credential findings — keys", "  n/N, Up/Down  step through the findings (grouped by owner)",
                   "  Enter     hex view at the finding, its bytes hidden (v reveals them)",
                   "  t         tag the owning process for exclusion (F8 then checkpoints without it)", "  Esc       back to the bundles"]
                : hits.isEmpty
                ? ["Bundles — keys", "  Up/Down, j/k  move", "  Enter, F3 search the bundle (prompt: F5 encodings, F6 case)",
                   "  o         search any file by path", "  F5, S     scan the bundle for credentials (keys, tokens, passwords)",
                   "  F7, R     restore wizard (asks first; default No)"]
                : ["Search hits — keys", "  n/N, Up/Down  step through the hits", "  Enter     hex view at the hit (PgUp/PgDn, g goes to an offset,",
                   "            / or F3 searches from there)", "  Esc       back to the bundles"]
        }
        return own + [""] + ProcessScreenHelp.commonKeys
    }

    /// The function bar of what is on screen now; clicks on it act as its keys.
    public var functionKeys: [FunctionKey] {
        if help { return [.init(.escape, "Close")] }
        if confirm != nil { return [.init(.char("y"), "Yes"), .init(.char("n"), "No"), .init(.tab, "Switch")] }
        if let hex {
            let reveal: [FunctionKey] = hex.hidden.map { [.init(.char("v"), $0 ? "Reveal" : "Hide")] } ?? []
            return reveal + [
                .init(.pageUp, "Up"), .init(.pageDown, "Down"), .init(.char("g"), "Goto"), .init(.function(3), "Search"),
                .init(.escape, "Back"), .init(.function(10), "Quit"),
            ]
        }
        switch tab {
        case .processes: return processes.functionKeys
        case .terminals:
            return [
                .init(.function(1), "Help"), .init(.char(" "), "Tag"), .init(.char("U"), "Untag"), .init(.function(8), "Checkpt"),
                .init(.tab, "Next"), .init(.function(10), "Quit"),
            ]
        case .bundles:
            if !findings.isEmpty {
                return [
                    .init(.enter, "Hex"), .init(.char("t"), "TagOwner"), .init(.char("n"), "Next"), .init(.char("N"), "Prev"),
                    .init(.escape, "Back"), .init(.function(10), "Quit"),
                ]
            }
            if !hits.isEmpty {
                return [
                    .init(.char("n"), "Next"), .init(.char("N"), "Prev"), .init(.enter, "Hex"), .init(.escape, "Back"),
                    .init(.function(10), "Quit"),
                ]
            }
            return [
                .init(.function(1), "Help"), .init(.function(3), "Search"), .init(.function(5), "Scan"), .init(.function(7), "Restore"),
                .init(.function(8), "Checkpt"), .init(.tab, "Next"), .init(.function(10), "Quit"),
            ]
        }
    }

    /// A mouse click at (row, column) on a screen `height` rows high: a function-bar label
    /// acts as its key; a click on a list row moves the cursor there.
    public mutating func click(row: Int, column: Int, height: Int) -> Effect {
        if row == height - 1 {
            guard let entry = FunctionBar.entry(atColumn: column, of: functionKeys) else { return .none }
            return handle(entry.key)
        }
        guard confirm == nil, hex == nil, !help, row >= 2 else { return .none }
        switch tab {
        case .processes:
            let r = processes.rows
            if let i = ListViewport(count: r.count, cursor: processes.selectedIndex, screenHeight: height).index(atScreenRow: row) {
                processes.selectedPid = r[i].process.pid
            }
        case .terminals:
            if let i = ListViewport(count: ttys.count, cursor: ttyCursor, screenHeight: height).index(atScreenRow: row) { ttyCursor = i }
        case .bundles:
            if !hits.isEmpty {
                if let i = ListViewport(count: hits.count, cursor: hitIndex, screenHeight: height).index(atScreenRow: row) { hitIndex = i }
            } else if let i = ListViewport(count: bundles.count, cursor: bundleCursor, screenHeight: height).index(atScreenRow: row) {
                bundleCursor = i
            }
        }
        return .none
    }

    /// A progress bar when the work says how far it is (a checkpoint's phase), else the text.
    static func progressLine(_ busy: String, fraction: Double?) -> String {
        guard let fraction else { return busy + "  (Esc cancels)" }
        let done = Int((min(max(fraction, 0), 1) * 20).rounded(.down))
        return "[" + String(repeating: "#", count: done) + String(repeating: "-", count: 20 - done) + "] " + busy + "  (Esc cancels)"
    }

}

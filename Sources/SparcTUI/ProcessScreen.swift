import GuestQuery

/// The process list: a table of guest processes with a cursor and tags that stay on their
/// pids across refreshes (htop style), a tree view, and an incremental filter.
public struct ProcessScreen {
    public var processes: [GuestProcess] = []
    public var selectedPid: Int32?
    public var vmName: String
    /// Processes the operator tagged for exclusion, by pid.
    public private(set) var tagged: Set<Int32> = []
    public var treeView = false
    /// Kernel threads are hidden unless the operator asks (`K`, as in htop).
    public var showKernelThreads = false
    /// Only rows whose command contains this text (case-insensitive) are shown.
    public var filter = ""
    /// Whether the list is the guest's now (false once its agent stopped answering).
    public var live = true

    /// The column the list is sorted by (`<` and `>` choose it, `I` inverts, as in htop).
    public enum SortColumn: Int, CaseIterable, Sendable {
        case pid, ppid, user, state, tty, rss, command
        var title: String { ["PID", "PPID", "USER", "S", "TTY", "RSS", "COMMAND"][rawValue] }
    }
    public var sortColumn: SortColumn = .pid
    public var sortDescending = false

    /// Whether `a` comes before `b` in the chosen order (pid breaks ties, so it is total).
    func ordered(_ a: GuestProcess, _ b: GuestProcess) -> Bool {
        func compare<T: Comparable>(_ x: T, _ y: T) -> Bool? { x == y ? nil : (x < y) != sortDescending }
        let decided: Bool?
        switch sortColumn {
        case .pid: decided = compare(a.pid, b.pid)
        case .ppid: decided = compare(a.ppid, b.ppid)
        case .user: decided = compare(a.user.description, b.user.description)
        case .state: decided = compare(a.state.description, b.state.description)
        case .tty: decided = compare(a.tty?.description ?? "", b.tty?.description ?? "")
        case .rss: decided = compare(a.rssKiB, b.rssKiB)
        case .command: decided = compare(a.command.description, b.command.description)
        }
        return decided ?? (a.pid < b.pid)
    }

    /// `<` / `>`: the previous or next column to sort by.
    public mutating func cycleSort(by step: Int) {
        let all = SortColumn.allCases
        sortColumn = all[(sortColumn.rawValue + step + all.count) % all.count]
    }

    public init(vmName: String) { self.vmName = vmName }

    /// The processes on view: kernel threads only when asked for, then the filter.
    var visible: [GuestProcess] {
        processes.filter {
            (showKernelThreads || !$0.kernelThread) && (filter.isEmpty || $0.command.unescaped.lowercased().contains(filter.lowercased()))
        }
    }

    /// The rows in display order, with their depth and tree prefix (htop's lines) in tree view.
    public var rows: [(process: GuestProcess, depth: Int, prefix: String)] {
        let shown = visible.sorted(by: ordered)
        guard treeView else { return shown.map { ($0, 0, "") } }
        let pids = Set(shown.map(\.pid))
        var children: [Int32: [GuestProcess]] = [:]
        for p in shown { children[pids.contains(p.ppid) && p.ppid != p.pid ? p.ppid : -1, default: []].append(p) }
        var out: [(GuestProcess, Int, String)] = []
        func walk(_ parent: Int32, _ depth: Int, _ lead: String) {
            let kids = (children[parent] ?? []).sorted(by: ordered)
            for (i, p) in kids.enumerated() {
                let last = i == kids.count - 1
                out.append((p, depth, depth == 0 ? "" : lead + (last ? "└─ " : "├─ ")))
                walk(p.pid, depth + 1, depth == 0 ? "" : lead + (last ? "   " : "│  "))
            }
        }
        walk(-1, 0, "")
        return out
    }

    public var selectedIndex: Int {
        guard let pid = selectedPid, let i = rows.firstIndex(where: { $0.process.pid == pid }) else { return 0 }
        return i
    }

    /// Replaces the list, keeping the cursor and the tags on the same pids when they still exist.
    public mutating func update(_ list: [GuestProcess]) {
        processes = list
        let alive = Set(processes.map(\.pid))
        tagged.formIntersection(alive)
        if selectedPid == nil || !alive.contains(selectedPid!) { selectedPid = rows.first?.process.pid }
    }

    public mutating func move(by delta: Int) {
        let r = rows
        guard !r.isEmpty else { return }
        let i = min(max(0, selectedIndex + delta), r.count - 1)
        selectedPid = r[i].process.pid
    }

    /// Space: tag or untag the process under the cursor, then move down.
    public mutating func toggleTag() {
        guard let pid = selectedPid else { return }
        if tagged.contains(pid) { tagged.remove(pid) } else { tagged.insert(pid) }
        move(by: 1)
    }

    /// Tags one process (the Scan view's `t` tags a finding's owner).
    public mutating func tag(_ pid: Int32) { tagged.insert(pid) }

    /// `c`: tag the process under the cursor with all its descendants.
    public mutating func tagWithChildren() {
        guard let pid = selectedPid else { return }
        tagged.formUnion(descendants(of: pid) + [pid])
    }

    /// `U`: clear all tags.
    public mutating func clearTags() { tagged.removeAll() }

    public func descendants(of pid: Int32) -> [Int32] {
        var out: [Int32] = []
        var frontier = [pid]
        while let p = frontier.popLast() {
            let kids = processes.filter { $0.ppid == p }.map(\.pid)
            out += kids
            frontier += kids
        }
        return out
    }

    /// Processes that an exclusion of the tagged ones brings along (their descendants).
    public var broughtAlong: Set<Int32> {
        Set(tagged.flatMap { descendants(of: $0) }).subtracting(tagged)
    }

    /// One table row: right-aligned numbers, left-aligned names, the command last.
    static func row(_ pid: String, _ ppid: String, _ user: String, _ state: String, _ tty: String, _ rss: String, _ command: String)
        -> String
    {
        func left(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func right(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        return [right(pid, 7), right(ppid, 7), left(user, 8), left(state, 1), left(tty, 8), right(rss, 8), command]
            .joined(separator: " ")
    }

    static func table(_ m: TUIModel) -> BindingTable {
        let p = m.processes
        return BindingTable(
            title: "Processes — keys",
            bindings: [
                Binding([.function(5), .char("t")], bar: p.treeView ? "List" : "Tree", "tree view on/off") { $0.processes.treeView.toggle(); return .none },
                Binding([.char("K")], bar: p.showKernelThreads ? "HideKern" : "ShowKern", "show or hide kernel threads") {
                    $0.processes.showKernelThreads.toggle()
                    return .none
                },
                Binding([.char(" ")], bar: "Tag", "tag for exclusion (and move down); + marks what comes along") { $0.processes.toggleTag(); return .none },
                Binding([.char("c")], "tag with all children") { $0.processes.tagWithChildren(); return .none },
                Binding([.char(">"), .char(".")], "sort by the next column (PID, PPID, USER, S, TTY, RSS, COMMAND)") {
                    $0.processes.cycleSort(by: 1)
                    return .none
                },
                Binding([.char("<"), .char(",")], "sort by the previous column") { $0.processes.cycleSort(by: -1); return .none },
                Binding([.char("I")], "invert the sort order") { $0.processes.sortDescending.toggle(); return .none },
                Binding([.char("U")], bar: "Untag", "clear all tags (processes and terminals)") { m in
                    m.processes.clearTags()
                    m.terminals.clearTags()
                    return .none
                },
                Binding([.function(3), .char("/")], "filter by command as you type (Enter keeps, Esc clears)") { m in
                    m.popups.append(.prompt(Prompt(purpose: .filter, text: m.processes.filter)))
                    return .none
                },
            ])
    }

    /// Arrows, pages and Home/End move the cursor; false for any other key.
    mutating func move(_ key: Key) -> Bool {
        switch key {
        case .up, .char("k"): move(by: -1)
        case .down, .char("j"): move(by: 1)
        case .pageUp: move(by: -10)
        case .pageDown: move(by: 10)
        case .home: move(by: -1_000_000)
        case .end: move(by: 1_000_000)
        default: return false
        }
        return true
    }

    public func render(into buffer: inout CellBuffer) {
        let w = buffer.width
        let along = broughtAlong
        let kernel = processes.filter(\.kernelThread).count
        var title = " sparc — \(vmName) — \(processes.count - kernel) processes" + (showKernelThreads ? " + \(kernel) kernel threads" : "")
        if !tagged.isEmpty {
            title += " — \(tagged.count) tagged, +\(along.count) along"
            // With scope all a process's terminal buffers go too.
            let ttys = Set(processes.filter { tagged.contains($0.pid) }.compactMap(\.tty)).sorted().map(\.description)
            if !ttys.isEmpty { title += ", tty buffers of \(ttys.joined(separator: ","))" }
        }
        if !filter.isEmpty { title += " — filter: \(filter)" }
        if sortColumn != .pid || sortDescending { title += " — by \(sortColumn.title) \(sortDescending ? "↓" : "↑")" }
        if !live { title += " — NOT LIVE: the list as last seen" }
        buffer.put(title, row: 0, style: .header, fill: w)
        buffer.put("  " + Self.row("PID", "PPID", "USER", "S", "TTY", "RSS", "COMMAND"), row: 1, style: .dim, fill: w)
        let all = rows
        for (i, row) in ListViewport(count: all.count, cursor: selectedIndex, screenHeight: buffer.height).visible {
            let p = all[i].process
            let entry = all[i]
            let mark = tagged.contains(p.pid) ? "* " : along.contains(p.pid) ? "+ " : "  "
            let line = mark + Self.row(String(p.pid), String(p.ppid), "\(p.user)", "\(p.state)", p.tty?.description ?? "?", "\(p.rssKiB)K", entry.prefix + "\(p.command)")
            let style: CellBuffer.Style = p.pid == selectedPid ? .selected : (tagged.contains(p.pid) ? .tagged : .normal)
            buffer.put(line, row: row, style: style, fill: w)
        }
    }
}

/// One entry of the function bar: the key it stands for, its name on the bar and its label.
///
/// A click on the entry acts as its key, so the bar and the key handling cannot disagree.
public struct FunctionKey: Equatable, Sendable {
    public var key: Key
    public var label: String

    public init(_ key: Key, _ label: String) {
        self.key = key
        self.label = label
    }

    /// The key as the bar shows it (`F5`, `Spc`, `Esc`, `n`).
    public var name: String {
        switch key {
        case .function(let n): return "F\(n)"
        case .char(" "): return "Spc"
        case .char(let c): return String(c)
        case .tab: return "Tab"
        case .backTab: return "S-Tab"
        case .escape: return "Esc"
        case .enter: return "Enter"
        case .pageUp: return "PgUp"
        case .pageDown: return "PgDn"
        case .up: return "Up"
        case .down: return "Down"
        case .home: return "Home"
        case .end: return "End"
        case .backspace: return "Bksp"
        }
    }

    /// The columns the entry takes on the bar: its name and an 8-column label.
    var width: Int { name.count + 8 }
}

/// The bottom line of key labels.
enum FunctionBar {
    static func render(_ keys: [FunctionKey], into buffer: inout CellBuffer) {
        let row = buffer.height - 1
        buffer.put("", row: row, style: .selected, fill: buffer.width)
        var col = 0
        for entry in keys {
            buffer.put(entry.name, row: row, column: col, style: .key)
            buffer.put(entry.label, row: row, column: col + entry.name.count, style: .selected, fill: 8)
            col += entry.width
        }
    }

    /// The entry under `column` of the bar, if any.
    static func entry(atColumn column: Int, of keys: [FunctionKey]) -> FunctionKey? {
        var col = 0
        for entry in keys {
            if column >= col && column < col + entry.width { return entry }
            col += entry.width
        }
        return nil
    }
}

import GuestQuery

/// The process list: a table of guest processes with a cursor that stays on its pid
/// across refreshes.
public struct ProcessScreen {
    public var processes: [GuestProcess] = []
    public var selectedPid: Int32?
    public var scroll = 0
    public var status = ""
    public var vmName: String

    public init(vmName: String) { self.vmName = vmName }

    var selectedIndex: Int {
        guard let pid = selectedPid, let i = processes.firstIndex(where: { $0.pid == pid }) else { return 0 }
        return i
    }

    /// Replaces the list, keeping the cursor on the same pid when it still exists.
    public mutating func update(_ list: [GuestProcess]) {
        processes = list.filter { !$0.kernelThread }
        if selectedPid == nil || !processes.contains(where: { $0.pid == selectedPid }) {
            selectedPid = processes.first?.pid
        }
    }

    public mutating func move(by delta: Int) {
        guard !processes.isEmpty else { return }
        let i = min(max(0, selectedIndex + delta), processes.count - 1)
        selectedPid = processes[i].pid
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

    public func render(into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — \(vmName) — \(processes.count) processes", row: 0, style: .header, fill: w)
        buffer.put(Self.row("PID", "PPID", "USER", "S", "TTY", "RSS", "COMMAND"), row: 1, style: .dim, fill: w)
        let rows = max(0, buffer.height - 4)
        let top = min(max(0, selectedIndex - rows + 1), max(0, processes.count - rows))
        for (i, p) in processes.dropFirst(top).prefix(rows).enumerated() {
            let line = Self.row(String(p.pid), String(p.ppid), p.user, p.state, p.tty ?? "?", "\(p.rssKiB)K", p.command)
            buffer.put(line, row: 2 + i, style: p.pid == selectedPid ? .selected : .normal, fill: w)
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        var col = 0
        for (key, label) in [("F5", "Refresh"), ("F10", "Quit")] {
            buffer.put(key, row: buffer.height - 1, column: col, style: .key)
            buffer.put(label, row: buffer.height - 1, column: col + key.count, style: .selected, fill: 8)
            col += key.count + 8
        }
    }
}

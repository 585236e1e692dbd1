import Foundation

/// The Terminals screen: the guest's terminals, tagged for exclusion with everything on them.
extension TUIModel {
    mutating func handleTerminals(_ key: Key) {
        switch key {
        case .up, .down, .char("k"), .char("j"), .pageUp, .pageDown, .home, .end:
            ttyCursor = ListViewport.move(ttyCursor, count: ttys.count, by: key, screenHeight: screenHeight) ?? ttyCursor
        case .char(" "):
            guard ttyCursor < ttys.count else { return }
            let name = ttys[ttyCursor].name.unescaped
            if taggedTTYs[name] != nil { taggedTTYs[name] = nil } else { taggedTTYs[name] = .some(ttys[ttyCursor].session) }
            ttyCursor = min(max(0, ttys.count - 1), ttyCursor + 1)
        case .char("U"): taggedTTYs.removeAll()
        default: break
        }
    }

    func renderTerminals(into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — \(processes.vmName) — terminals (\(taggedTTYs.count) tagged)", row: 0, style: .header, fill: w)
        buffer.put("  TTY       KIND             PROCESSES", row: 1, style: .dim, fill: w)
        for (i, row) in ListViewport(count: ttys.count, cursor: ttyCursor, screenHeight: buffer.height).visible {
            let t = ttys[i]
            let mark = taggedTTYs[t.name.unescaped] != nil ? "* " : "  "
            func name(_ pid: Int32, whole: Bool) -> String {
                let command = processes.processes.first { $0.pid == pid }?.command.description ?? ""
                return "\(pid) " + (whole ? command : command.split(separator: " ").first.map(String.init) ?? "")
            }
            let names = t.pids.map { name($0, whole: false) }
            // The master's holder says what the terminal is: "sshd: root@pts/0", a terminal program.
            let held = t.holders.isEmpty ? "" : "  [held by " + t.holders.map { name($0, whole: true) }.joined(separator: ", ") + "]"
            let line = mark + t.name.description.padding(toLength: 10, withPad: " ", startingAt: 0) + t.kind.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0)
                + (names.isEmpty ? "-" : names.joined(separator: ", ")) + held
            buffer.put(line, row: row, style: i == ttyCursor ? .selected : (taggedTTYs[t.name.unescaped] != nil ? .tagged : .normal), fill: w)
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        FunctionBar.render(functionKeys, into: &buffer)
    }
}

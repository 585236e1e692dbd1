import Foundation
import GuestQuery

/// The Terminals screen: the guest's terminals, tagged for exclusion with everything on them.
public struct TerminalsScreen {
    public internal(set) var ttys: [GuestTTY] = []
    /// Tagged terminals by name, each bound to the session it had when tagged (nil: it had
    /// none): pty numbers are reused, and a tag must never name the next session on its pty.
    public internal(set) var tagged: [String: TTYSession?] = [:]
    var panel = ListPanel()

    /// Takes the agent's list; drops the tags whose session has ended since (the terminal may
    /// be another's by now) and returns what to say about it.
    mutating func update(_ list: [GuestTTY]) -> String? {
        ttys = list
        panel.resize(list.count)
        var said: String?
        for (name, session) in tagged {
            guard let session else { continue }
            let now = ttys.first { $0.name.unescaped == name }?.session
            if now != session {
                tagged[name] = nil
                said = "the session of pid \(session.leader) on \(name) has ended: its tag was dropped"
            }
        }
        return said
    }

    mutating func toggleTag() {
        guard panel.cursor < ttys.count else { return }
        let name = ttys[panel.cursor].name.unescaped
        if tagged[name] != nil { tagged[name] = nil } else { tagged[name] = .some(ttys[panel.cursor].session) }
        panel.step(1)
    }

    mutating func clearTags() { tagged.removeAll() }

    static func table(_ m: TUIModel) -> BindingTable {
        BindingTable(
            title: "Terminals — keys",
            bindings: [
                Binding([.char(" ")], bar: "Tag", "tag the terminal (everything on it is left out)") { $0.terminals.toggleTag(); return .none },
                Binding([.char("U")], bar: "Untag", "clear terminal tags") { $0.terminals.clearTags(); return .none },
            ])
    }

    func render(_ m: TUIModel, into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — \(m.processes.vmName) — terminals (\(tagged.count) tagged)", row: 0, style: .header, fill: w)
        buffer.put("  TTY       KIND             PROCESSES", row: 1, style: .dim, fill: w)
        for (i, row) in panel.viewport(screenHeight: buffer.height).visible {
            let t = ttys[i]
            let mark = tagged[t.name.unescaped] != nil ? "* " : "  "
            func name(_ pid: Int32, whole: Bool) -> String {
                let command = m.processes.processes.first { $0.pid == pid }?.command.description ?? ""
                return "\(pid) " + (whole ? command : command.split(separator: " ").first.map(String.init) ?? "")
            }
            let names = t.pids.map { name($0, whole: false) }
            // The master's holder says what the terminal is: "sshd: root@pts/0", a terminal program.
            let held = t.holders.isEmpty ? "" : "  [held by " + t.holders.map { name($0, whole: true) }.joined(separator: ", ") + "]"
            let line = mark + t.name.description.padding(toLength: 10, withPad: " ", startingAt: 0) + t.kind.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0)
                + (names.isEmpty ? "-" : names.joined(separator: ", ")) + held
            buffer.put(line, row: row, style: i == panel.cursor ? .selected : (tagged[t.name.unescaped] != nil ? .tagged : .normal), fill: w)
        }
    }
}

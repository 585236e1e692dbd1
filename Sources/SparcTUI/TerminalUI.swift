import CNCurses
import Foundation
import GuestQuery
import SparcEngine

/// The curses front: owns the terminal and the event loop; all curses calls happen here,
/// on the thread that called `run`.
public final class TerminalUI {
    let manager: VMManager
    let color: Bool
    var screen: ProcessScreen

    public init(manager: VMManager, vmName: String, color: Bool) {
        self.manager = manager
        self.color = color
        self.screen = ProcessScreen(vmName: vmName)
    }

    func refresh() {
        do {
            let agent = try manager.agentClient(screen.vmName, timeout: 5)
            defer { agent.close() }
            screen.update(try agent.processes())
            screen.status = "refreshed"
        } catch {
            screen.status = "\(error)"
        }
    }

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
        }
        timeout(2000)
        refresh()
        var help = false
        var filtering = false
        while true {
            draw(help: help)
            let key = getch()
            if help {
                if key != ERR { help = false }
                continue
            }
            if filtering {
                switch key {
                case 27: screen.filter = ""; filtering = false
                case 10, 13, KEY_ENTER: filtering = false
                case KEY_BACKSPACE, 127, 8: if !screen.filter.isEmpty { screen.filter.removeLast() }
                case 32...126: screen.filter.append(Character(Unicode.Scalar(UInt8(key))))
                default: break
                }
                screen.status = filtering ? "filter: \(screen.filter)▏ (Enter keeps, Esc clears)" : ""
                screen.move(by: 0)
                continue
            }
            switch key {
            case Int32(UInt8(ascii: "q")), sparc_key_f(10): return
            case KEY_UP, Int32(UInt8(ascii: "k")): screen.move(by: -1)
            case KEY_DOWN, Int32(UInt8(ascii: "j")): screen.move(by: 1)
            case KEY_PPAGE: screen.move(by: -10)
            case KEY_NPAGE: screen.move(by: 10)
            case KEY_HOME: screen.move(by: -1_000_000)
            case KEY_END: screen.move(by: 1_000_000)
            case Int32(UInt8(ascii: " ")): screen.toggleTag()
            case Int32(UInt8(ascii: "c")): screen.tagWithChildren()
            case Int32(UInt8(ascii: "U")): screen.clearTags()
            case Int32(UInt8(ascii: "t")), sparc_key_f(5): screen.treeView.toggle()
            case Int32(UInt8(ascii: "/")), sparc_key_f(3):
                filtering = true
                screen.status = "filter: \(screen.filter)▏ (Enter keeps, Esc clears)"
            case Int32(UInt8(ascii: "?")), sparc_key_f(1): help = true
            case Int32(UInt8(ascii: "r")), ERR: refresh()
            default: break
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
        }
    }

    func draw(help: Bool) {
        var rows: Int32 = 0
        var cols: Int32 = 0
        sparc_getmaxyx(sparc_stdscr(), &rows, &cols)
        var buffer = CellBuffer(width: Int(cols), height: Int(rows))
        if help { ProcessScreenHelp.render(into: &buffer) } else { screen.render(into: &buffer) }
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

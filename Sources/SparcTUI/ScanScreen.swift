import HexView
import SecretScan
import SparcSupport

/// A credential scan's findings over the Bundles screen, grouped by owner: Enter opens the
/// hex view at a finding (its bytes hidden until `v`), `t` tags the owning process.
public struct FindingsScreen {
    public let findings: [SecretFinding]
    public let bundle: String
    /// The finding under the cursor (an index into `findings`).
    public internal(set) var index = 0

    /// One line of the findings list: an owner's heading or one of its findings.
    enum Row: Equatable {
        case owner(String, count: Int)
        case finding(Int)
    }

    /// The list's rows: each owner (most findings first) with its findings under it.
    let rows: [Row]
    /// The findings in the order the list shows them.
    let order: [Int]

    init(_ findings: [SecretFinding], bundle: String) {
        self.findings = findings
        self.bundle = bundle
        rows = SecretFinding.groupedByOwner(findings).flatMap { group in
            [Row.owner(group.owner, count: group.indices.count)] + group.indices.map(Row.finding)
        }
        order = rows.compactMap { if case .finding(let i) = $0 { return i } else { return nil } }
        index = order.first ?? 0
    }

    /// Moves through the findings (headings are skipped) by a motion key.
    mutating func move(_ key: Key, screenHeight: Int) -> Bool {
        let position = order.firstIndex(of: index) ?? 0
        guard let moved = ListViewport.move(position, count: order.count, by: key, screenHeight: screenHeight) else { return false }
        index = order[moved]
        return true
    }

    /// One finding down (positive) or up.
    mutating func step(_ delta: Int) {
        let position = order.firstIndex(of: index) ?? 0
        guard !order.isEmpty else { return }
        index = order[min(order.count - 1, max(0, position + delta))]
    }

    var hexAtFinding: HexScreen {
        let f = findings[index]
        let start = f.offset / UInt64(HexRow.width) * UInt64(HexRow.width)
        let top: UInt64 = start >= 64 ? start - 64 : 0
        return HexScreen(
            HexPage(
                path: f.file, title: "\(f.file) — \(f.rule.id) [\(f.ownerLabel)]", offset: top,
                highlight: f.offset..<f.offset + UInt64(f.length), isMemoryImage: f.address != nil, hidden: true))
    }

    static func table(_ m: TUIModel) -> BindingTable {
        BindingTable(
            title: "Credential findings — keys",
            bindings: [
                Binding([.enter], bar: "Hex", "hex view at the finding, its bytes hidden (v reveals them)") { m in
                    guard case .findings(let screen)? = m.pushed.last, !screen.findings.isEmpty else { return .none }
                    return m.push(.hex(screen.hexAtFinding))
                },
                Binding([.char("t")], bar: "TagOwner", "tag the owning process for exclusion (F8 then checkpoints without it)") { m in
                    guard case .findings(let screen)? = m.pushed.last, !screen.findings.isEmpty else { return .none }
                    m.tagOwner(of: screen.findings[screen.index])
                    return .none
                },
                Binding([.char("n")], bar: "Next", "next finding (grouped by owner)") { m in m.withFindings { $0.step(1) }; return .none },
                Binding([.char("N")], bar: "Prev", "previous finding") { m in m.withFindings { $0.step(-1) }; return .none },
                Binding([.escape, .char("q")], bar: "Back", "back to the bundles") { m in m.pop() },
            ])
    }

    func render(_ m: TUIModel, into buffer: inout CellBuffer) {
        let w = buffer.width
        let owners = Set(findings.map(\.ownerLabel)).count
        buffer.put(" sparc — credentials in \(bundle): \(findings.count) finding(s), \(owners) owner(s)", row: 0, style: .header, fill: w)
        let cursor = rows.firstIndex(of: .finding(index)) ?? 0
        for (i, row) in ListViewport(count: rows.count, cursor: cursor, screenHeight: buffer.height).visible {
            switch rows[i] {
            case .owner(let heading, let count):
                buffer.put(" \(heading) — \(count) finding(s)", row: row, style: .header, fill: w)
            case .finding(let n):
                let f = findings[n]
                let place = "\(Path.base(of: f.file)) 0x\(String(f.offset, radix: 16))"
                buffer.put("    \(f.rule.id) (\(f.rule.severity))  \(place)  \(f.preview)", row: row, style: n == index ? .selected : .normal, fill: w)
            }
        }
    }
}

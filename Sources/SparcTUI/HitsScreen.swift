import HexView
import SparcSupport

/// A search's hits, over the Bundles screen; each opens the hex view at its offset.
public struct HitsScreen {
    public internal(set) var hits: [SearchHit]
    var panel = ListPanel()

    init(_ hits: [SearchHit]) {
        self.hits = hits
        panel.resize(hits.count)
    }

    public var index: Int { panel.cursor }

    /// The hex view at the hit under the cursor, the hit highlighted.
    var hexAtHit: HexScreen {
        let h = hits[panel.cursor]
        let start = h.offset / UInt64(HexRow.width) * UInt64(HexRow.width)
        let top: UInt64 = start >= 64 ? start - 64 : 0
        return HexScreen(
            HexPage(
                path: h.file, title: "\(h.file) — hit \(panel.cursor + 1)/\(hits.count)" + (h.owner.map { " [\($0.description)]" } ?? ""),
                offset: top, highlight: h.offset..<h.offset + UInt64(h.length), isMemoryImage: h.address != nil))
    }

    static func table(_ m: TUIModel) -> BindingTable {
        BindingTable(
            title: "Search hits — keys",
            bindings: [
                Binding([.char("n")], bar: "Next", "next hit") { m in m.withHits { $0.panel.step(1) }; return .none },
                Binding([.char("N")], bar: "Prev", "previous hit") { m in m.withHits { $0.panel.step(-1) }; return .none },
                Binding([.enter], bar: "Hex", "hex view at the hit (PgUp/PgDn, g goes to an offset, / or F3 searches from there)") { m in
                    guard case .hits(let screen)? = m.pushed.last else { return .none }
                    return m.push(.hex(screen.hexAtHit))
                },
                Binding([.escape, .char("q")], bar: "Back", "back to the bundles") { m in m.pop() },
            ])
    }

    func render(_ m: TUIModel, into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — search hits [\(panel.cursor + 1)/\(hits.count)]", row: 0, style: .header, fill: w)
        for (i, row) in panel.viewport(screenHeight: buffer.height).visible {
            let h = hits[i]
            let owner = h.owner.map { "[\($0.description)] " } ?? ""
            let line = "  \(Path.base(of: h.file)) 0x\(String(h.offset, radix: 16)) \(h.encoding) \(owner)\(h.context)"
            buffer.put(line, row: row, style: i == panel.cursor ? .selected : .normal, fill: w)
        }
    }
}

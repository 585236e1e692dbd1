import HexView
import SnapshotModel

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
    /// The file's size, when the front end knows it (paging stops at its end).
    public var size: UInt64?
    /// Bytes a row: 16, or 8 on a terminal too narrow for 16 and their characters.
    public var bytesPerLine = HexRow.width
}

/// The hex view: a page of a file, coloured by byte category (hexyl's palette), with guest
/// addresses for memory images.
public struct HexScreen {
    public var page: HexPage

    init(_ page: HexPage) { self.page = page }

    /// Bytes the hex view shows on a screen of `height` lines, `perLine` bytes a row.
    public static func bytes(height: Int, perLine: Int = HexRow.width) -> Int { max(1, height - 4) * perLine }

    /// Moves the page to `offset` (rounded down to a row, kept inside the file when its size is known).
    mutating func go(to offset: UInt64) -> Effect {
        let row = UInt64(page.bytesPerLine)
        var target = offset / row * row
        if let size = page.size, size > 0, target >= size { target = (size - 1) / row * row }
        page.offset = target
        return .loadHex(path: page.path, offset: target)
    }

    static func table(_ m: TUIModel) -> BindingTable {
        var step = UInt64(HexRow.width)
        if case .hex(let screen)? = m.pushed.last { step = UInt64(screen.page.bytesPerLine) }
        func move(_ m: inout TUIModel, _ to: (UInt64) -> UInt64) -> Effect {
            var effect = Effect.none
            m.withHex { effect = $0.go(to: to($0.page.offset)) }
            return effect
        }
        var bindings = [
            Binding([.pageUp], bar: "Up", "a page up") { move(&$0) { $0 >= step * 16 ? $0 - step * 16 : 0 } },
            Binding([.pageDown], bar: "Down", "a page down") { move(&$0) { $0 + step * 16 } },
            Binding([.up, .char("k")], "a row up") { move(&$0) { $0 >= step ? $0 - step : 0 } },
            Binding([.down, .char("j")], "a row down") { move(&$0) { $0 + step } },
            Binding([.home], "to the start") { move(&$0) { _ in 0 } },
            Binding([.char("g")], bar: "Goto", "go to an offset (0x… hex or decimal)") { m in
                m.popups.append(.prompt(Prompt(purpose: .goToOffset)))
                return .none
            },
            Binding([.function(3), .char("/")], bar: "Search", "search this file from here (the next hit opens)") { m in
                guard case .hex(let screen)? = m.pushed.last else { return .none }
                m.searchFrom = screen.page.offset
                m.popups.append(.prompt(Prompt(purpose: .search(screen.page.path))))
                return .none
            },
            Binding([.escape, .char("q")], bar: "Back", "back to where the view was opened") { m in m.pop() },
        ]
        if case .hex(let screen)? = m.pushed.last, let hidden = screen.page.hidden {
            bindings.insert(
                Binding([.char("v")], bar: hidden ? "Reveal" : "Hide", "reveal or hide the finding's bytes") { m in
                    m.withHex { $0.page.hidden?.toggle() }
                    return .none
                }, at: 0)
        }
        return BindingTable(title: "Hex view — keys", bindings: bindings)
    }

    func render(_ m: TUIModel, into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" " + page.title, row: 0, style: .header, fill: w)
        let printer = HexPrinter(
            color: false, address: page.layout.map { layout in { layout.physicalAddress(fileOffset: $0) } }, highlight: page.highlight,
            bytesPerLine: page.bytesPerLine)
        if page.data.isEmpty, let size = page.size {
            buffer.put("  (offset 0x\(String(page.offset, radix: 16)) is past the end of the file, \(size) bytes)", row: 2, style: .dim)
        }
        // Squeezing could fold the hit's row away: with a hit on the page, every row shows.
        let rows = HexRow.rows(page.data, offset: page.offset, squeeze: page.highlight == nil, width: printer.bytesPerLine)
        for (i, row) in rows.enumerated() where i + 1 < buffer.height - 2 {
            let line = printer.line(row)
            buffer.put(line, row: 1 + i, style: .normal, fill: w)
            // Colour each byte's hex pair and character by its category (the hit in reverse).
            guard case .bytes(let off, let data) = row else { continue }
            let charStart = printer.charColumn
            for (j, b) in data.enumerated() {
                let hit = page.highlight?.contains(off + UInt64(j)) ?? false
                let style = hit ? CellBuffer.Style.byteHit : Self.style(ByteCategory(b))
                let col = printer.column(ofByte: j)
                if hit && page.hidden == true {
                    // A credential stays hidden until the operator reveals it (v).
                    buffer.put("**", row: 1 + i, column: col, style: style)
                    buffer.put("*", row: 1 + i, column: charStart + j, style: style)
                    continue
                }
                for c in col..<col + 2 where c < w { buffer.recolor(row: 1 + i, column: c, style: style) }
                if charStart + j < w { buffer.recolor(row: 1 + i, column: charStart + j, style: style) }
            }
        }
    }

    static func style(_ category: ByteCategory) -> CellBuffer.Style {
        switch category {
        case .null: return .byteNull
        case .printable: return .bytePrintable
        case .whitespace: return .byteWhitespace
        case .otherASCII: return .byteOtherASCII
        case .nonASCII: return .byteNonASCII
        }
    }
}

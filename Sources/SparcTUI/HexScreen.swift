import HexView

/// The hex view: a page of a file, coloured by byte category, with guest addresses for memory images.
extension TUIModel {
    /// Rows of bytes the hex view shows on a screen of `height` lines.
    public static func hexBytes(height: Int) -> Int { max(1, height - 4) * HexRow.width }

    mutating func handleHex(_ key: Key) -> Effect {
        guard var page = hex else { return .none }
        let step = UInt64(HexRow.width)
        switch key {
        case .escape, .char("q"):
            hex = nil
            return .none
        case .down, .char("j"): page.offset += step
        case .up, .char("k"): page.offset = page.offset >= step ? page.offset - step : 0
        case .pageDown: page.offset += step * 16
        case .pageUp: page.offset = page.offset >= step * 16 ? page.offset - step * 16 : 0
        case .home: page.offset = 0
        case .char("v") where page.hidden != nil:
            page.hidden!.toggle()
            hex = page
            return .none
        case .char("g"):
            prompt = ("Go to offset (0x… hex or decimal)", "", "hex:")
            return .none
        case .char("/"), .function(3):
            searchFrom = page.offset
            prompt = ("Search from here for", "", page.path)
            return .none
        default: return .none
        }
        hex = page
        return .loadHex(path: page.path, offset: page.offset)
    }

    func renderHex(_ page: HexPage, into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" " + page.title, row: 0, style: .header, fill: w)
        let printer = HexPrinter(
            color: false, address: page.layout.map { layout in { layout.physicalAddress(fileOffset: $0) } }, highlight: page.highlight)
        // Squeezing could fold the hit's row away: with a hit on the page, every row shows.
        let rows = HexRow.rows(page.data, offset: page.offset, squeeze: page.highlight == nil)
        for (i, row) in rows.enumerated() where i + 1 < buffer.height - 2 {
            let line = printer.line(row)
            buffer.put(line, row: 1 + i, style: .normal, fill: w)
            // Colour each byte's hex pair and character by its category (the hit in reverse).
            guard case .bytes(let off, let data) = row else { continue }
            let hexStart = printer.address == nil ? 10 : 21
            let charStart = hexStart + HexRow.width * 3 + 1 + 2
            for (j, b) in data.enumerated() {
                let hit = page.highlight?.contains(off + UInt64(j)) ?? false
                let style = hit ? CellBuffer.Style.byteHit : Self.style(ByteCategory(b))
                let col = hexStart + j * 3 + (j >= 8 ? 1 : 0)
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
        FunctionBar.render(functionKeys, into: &buffer)
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

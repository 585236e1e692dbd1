/// Prints hex rows (hexyl style) to any output: offset column(s), 16 bytes in two groups,
/// a character panel, each byte category in its own colour, repeated rows squeezed.
public struct HexPrinter {
    public var color: Bool
    /// Adds a guest-physical address column: maps a file offset to an address.
    public var address: ((UInt64) -> UInt64)?
    /// Bytes to highlight (a search hit).
    public var highlight: Range<UInt64>?
    /// Bytes per line: 16 in two groups of 8, or one group of 8 where 16 do not fit.
    public var bytesPerLine: Int

    public init(color: Bool, address: ((UInt64) -> UInt64)? = nil, highlight: Range<UInt64>? = nil, bytesPerLine: Int = HexRow.width) {
        self.color = color
        self.address = address
        self.highlight = highlight
        self.bytesPerLine = bytesPerLine == 8 ? 8 : HexRow.width
    }

    /// Where a line's first hex pair starts (after the offset and address columns).
    public var hexColumn: Int { address == nil ? 10 : 21 }
    /// Where a line's character panel starts.
    public var charColumn: Int { hexColumn + bytesPerLine * 3 + (bytesPerLine > 8 ? 1 : 0) + 2 }
    /// A line's full width.
    public var lineWidth: Int { charColumn + bytesPerLine + 1 }

    /// The hex column of byte `i` of a line.
    public func column(ofByte i: Int) -> Int { hexColumn + i * 3 + (i >= 8 ? 1 : 0) }

    /// 16 bytes a line when that fits in `columns`, else 8 (as hexyl narrows its panels).
    public static func bytesPerLine(columns: Int, withAddress: Bool) -> Int {
        HexPrinter(color: false, address: withAddress ? { $0 } : nil).lineWidth <= columns ? HexRow.width : 8
    }

    static let reset = "\u{1B}[0m"

    /// ANSI colour of a category (hexyl's palette).
    public static func ansi(_ category: ByteCategory) -> String {
        switch category {
        case .null: return "\u{1B}[90m"  // grey
        case .printable: return "\u{1B}[36m"  // cyan
        case .whitespace: return "\u{1B}[32m"  // green
        case .otherASCII: return "\u{1B}[35m"  // magenta
        case .nonASCII: return "\u{1B}[33m"  // yellow
        }
    }

    func hex16(_ v: UInt64, width: Int) -> String {
        let s = String(v, radix: 16)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    public func line(_ row: HexRow) -> String {
        guard case .bytes(let offset, let data) = row else { return "*" }
        var out = hex16(offset, width: 8)
        if let address { out += "  " + hex16(address(offset), width: 9) }
        out += "  "
        var chars = ""
        for i in 0..<bytesPerLine {
            if i == 8 { out += " " }
            guard i < data.count else {
                out += "   "
                continue
            }
            let b = data[i]
            let cat = ByteCategory(b)
            let hit = highlight?.contains(offset + UInt64(i)) ?? false
            let hexText = hex16(UInt64(b), width: 2)
            let symbol = String(cat.symbol(for: b))
            if color {
                let style = hit ? "\u{1B}[1;7m" : Self.ansi(cat)
                out += style + hexText + Self.reset + " "
                chars += style + symbol + Self.reset
            } else {
                out += (hit ? hexText.uppercased() : hexText) + " "
                chars += symbol
            }
        }
        return out + " |" + chars + "|"
    }

    /// Writes the rows for `data` (starting at file offset `offset`).
    public func print<Out: TextOutputStream>(_ data: [UInt8], offset: UInt64, squeeze: Bool, to out: inout Out) {
        for row in HexRow.rows(data, offset: offset, squeeze: squeeze, width: bytesPerLine) { out.write(line(row) + "\n") }
    }
}

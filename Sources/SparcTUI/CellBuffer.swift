import SparcSupport

/// A grid of characters with styles: screens draw here, the curses driver copies it out,
/// and tests read it as text.
public struct CellBuffer: Equatable {
    public enum Style: Equatable, Sendable {
        case normal, header, selected, status, key, dim, tagged
        /// Hex view byte categories (HexView.ByteCategory), each with its own colour.
        case byteNull, bytePrintable, byteWhitespace, byteOtherASCII, byteNonASCII, byteHit
    }
    public struct Cell: Equatable {
        public var character: Character = " "
        public var style: Style = .normal
    }

    public let width: Int
    public let height: Int
    public private(set) var cells: [Cell]

    public init(width: Int, height: Int) {
        self.width = max(0, width)
        self.height = max(0, height)
        cells = Array(repeating: Cell(), count: self.width * self.height)
    }

    /// Writes `text` at (row, column), clipped to the buffer, padding to `fill` columns.
    /// Control characters are shown escaped (guest text must not drive the terminal).
    public mutating func put(_ text: String, row: Int, column: Int = 0, style: Style = .normal, fill: Int? = nil) {
        guard row >= 0 && row < height else { return }
        var col = column
        for ch in text.terminalSafe {
            guard col < width else { break }
            if col >= 0 { cells[row * width + col] = Cell(character: ch, style: style) }
            col += 1
        }
        if let fill {
            while col < min(width, column + fill) {
                if col >= 0 { cells[row * width + col] = Cell(character: " ", style: style) }
                col += 1
            }
        }
    }

    public func cell(row: Int, column: Int) -> Cell { cells[row * width + column] }

    /// Changes the style of one cell, keeping its character.
    public mutating func recolor(row: Int, column: Int, style: Style) {
        guard row >= 0, row < height, column >= 0, column < width else { return }
        cells[row * width + column].style = style
    }

    /// The row as plain text (trailing spaces trimmed).
    public func line(_ row: Int) -> String {
        var s = String(cells[(row * width)..<((row + 1) * width)].map(\.character))
        while s.last == " " { s.removeLast() }
        return s
    }

    /// The whole buffer as text, one line per row.
    public var text: String { (0..<height).map(line).joined(separator: "\n") }
}

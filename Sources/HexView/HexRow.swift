/// How a byte is shown: each category gets its own colour in the hex view.
public enum ByteCategory: Equatable, Sendable {
    case null, printable, whitespace, otherASCII, nonASCII

    public init(_ byte: UInt8) {
        switch byte {
        case 0: self = .null
        case 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20: self = .whitespace
        case 0x21...0x7E: self = .printable
        case 0x01...0x7F: self = .otherASCII
        default: self = .nonASCII
        }
    }

    /// The character panel's symbol for the byte.
    public func symbol(for byte: UInt8) -> Character {
        switch self {
        case .null: return "⋄"
        case .printable: return Character(Unicode.Scalar(byte))
        case .whitespace: return byte == 0x20 ? " " : "_"
        case .otherASCII: return "•"
        case .nonASCII: return "×"
        }
    }
}

/// One line of a hex dump: 16 bytes at an offset, or a marker for squeezed repeats.
public enum HexRow: Equatable, Sendable {
    case bytes(offset: UInt64, data: [UInt8])
    /// Rows identical to the one before were left out (hexyl and xxd print `*`).
    case squeezed

    public static let width = 16

    /// Splits `data` (which starts at `offset`) into rows of `width` bytes (16, or 8 on a narrow
    /// terminal as hexyl does), squeezing runs of identical full rows.
    public static func rows(_ data: [UInt8], offset: UInt64 = 0, squeeze: Bool = true, width: Int = HexRow.width) -> [HexRow] {
        var squeezer = HexRowSqueezer(squeeze: squeeze, width: width)
        return squeezer.rows(data, offset: offset)
    }

    /// Plain-text form: `00000010  de ad be ef ...  |....|`.
    public var text: String {
        switch self {
        case .squeezed: return "*"
        case .bytes(let offset, let data):
            var hex = ""
            for (i, b) in data.enumerated() {
                if i == 8 { hex += " " }
                hex += String(b, radix: 16).leftPad(2) + " "
            }
            hex += String(repeating: " ", count: (HexRow.width - data.count) * 3 + (data.count <= 8 ? 1 : 0))
            let chars = String(data.map { ByteCategory($0).symbol(for: $0) })
            return String(offset, radix: 16).leftPad(8) + "  " + hex + " |" + chars + "|"
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// Turns a stream of bytes, fed in pieces, into hex rows: repeated rows are squeezed across
/// piece boundaries too, so a dump of any length is printed without holding it in memory.
/// Pieces must start at multiples of the row width from the first one.
public struct HexRowSqueezer {
    public let squeeze: Bool
    /// Bytes per row.
    public let width: Int
    var previous: [UInt8]?
    var squeezing = false

    public init(squeeze: Bool = true, width: Int = HexRow.width) {
        self.squeeze = squeeze
        self.width = max(1, width)
    }

    /// True inside a squeezed run of zero rows: more zero rows add nothing to the output.
    public var inZeroRun: Bool { squeezing && previous.map { $0.allSatisfy { $0 == 0 } } == true }

    public mutating func rows(_ data: [UInt8], offset: UInt64) -> [HexRow] {
        var rows: [HexRow] = []
        var i = 0
        while i < data.count {
            let line = Array(data[i..<min(data.count, i + width)])
            if squeeze, line.count == width, previous == line {
                if !squeezing { rows.append(.squeezed) }
                squeezing = true
            } else {
                rows.append(.bytes(offset: offset + UInt64(i), data: line))
                squeezing = false
            }
            previous = line
            i += width
        }
        return rows
    }
}

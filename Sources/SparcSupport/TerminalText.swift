/// Text from a guest or a bundle is hostile: a process name, an argument or an RSDM key can
/// carry escape sequences that retitle, clear or rewrite the operator's terminal. Everything
/// printed from such a source goes through `terminalSafe`.
extension StringProtocol {
    /// The text with control characters made visible: C0 and C1 controls, DEL and the
    /// Unicode bidirectional overrides become `\e`, `\t`, `\xHH` or `\u{HHHH}`, so the
    /// terminal shows them instead of obeying them. Plain text comes back unchanged.
    public var terminalSafe: String {
        guard unicodeScalars.contains(where: TerminalText.needsEscape) else { return String(self) }
        var out = ""
        for scalar in unicodeScalars {
            guard TerminalText.needsEscape(scalar) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar.value {
            case 0x1B: out += "\\e"
            case 0x09: out += "\\t"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0..<0x100: out += "\\x" + TerminalText.hex(scalar.value, digits: 2)
            default: out += "\\u{" + TerminalText.hex(scalar.value, digits: 4) + "}"
            }
        }
        return out
    }
}

enum TerminalText {
    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0..<0x20, 0x7F..<0xA0: return true
        // Bidirectional embeddings, overrides and isolates reorder what the operator reads.
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: return true
        default: return false
        }
    }

    static func hex(_ v: UInt32, digits: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }
}

/// Text that came from a guest or a bundle: a process name, an argument, a terminal name, an
/// agent's message, a file name in a manifest. Hostile by nature, so its only way to a
/// terminal is escaped: `description` and string interpolation give `terminalSafe`, and the
/// text as sent is reached only through `unescaped`, whose name says where it may go (JSON,
/// comparisons, hashing, the guest itself) and where not.
///
/// It encodes as a plain JSON string, so wire and bundle formats do not change.
public struct GuestText: Codable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringInterpolation {
    private let text: String

    public init(_ text: String) { self.text = text }
    public init(stringLiteral value: String) { text = value }
    public init(stringInterpolation: StringInterpolation) { text = stringInterpolation.text }

    /// Builds a guest text from parts: other guest texts go in as they are (the result is still
    /// guest text, escaped on its way out), everything else as it prints.
    public struct StringInterpolation: StringInterpolationProtocol {
        var text = ""
        public init(literalCapacity: Int, interpolationCount: Int) { text.reserveCapacity(literalCapacity) }
        public mutating func appendLiteral(_ literal: String) { text += literal }
        public mutating func appendInterpolation(_ value: GuestText) { text += value.text }
        public mutating func appendInterpolation(_ value: GuestText?) { text += value?.text ?? "nil" }
        public mutating func appendInterpolation<T>(_ value: T) { text += "\(value)" }
    }

    public init(from decoder: Decoder) throws { text = try decoder.singleValueContainer().decode(String.self) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }

    /// The text made safe for a terminal (what `print` and interpolation show).
    public var description: String { text.terminalSafe }
    /// The same as `description`, for code that escapes plain strings the same way.
    public var terminalSafe: String { description }

    /// The text exactly as the guest or bundle gave it: for comparing, hashing, JSON output and
    /// sending back to the guest, never for printing.
    public var unescaped: String { text }

    public var isEmpty: Bool { text.isEmpty }

    public static func < (a: GuestText, b: GuestText) -> Bool { a.text < b.text }
}

extension Array where Element == GuestText {
    /// Guest texts from plain strings (the agent builds its answers this way).
    public init(_ strings: [String]) { self = strings.map { GuestText($0) } }

    /// The texts escaped and joined, for a terminal.
    public func joined(separator: String) -> String { map(\.description).joined(separator: separator) }
}

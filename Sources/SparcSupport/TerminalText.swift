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

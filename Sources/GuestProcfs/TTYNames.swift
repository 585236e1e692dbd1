import GuestQuery

/// Terminal names as the guest's tools print them.
public enum TTYNames {
    /// Names a terminal from the `tty_nr` field of /proc/PID/stat.
    public static func name(ttyNr: Int) -> String? {
        if ttyNr == 0 { return nil }
        let major = (ttyNr >> 8) & 0xfff
        let minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00)
        switch major {
        case 4 where minor >= 64: return "ttyS\(minor - 64)"
        case 4: return "tty\(minor)"
        case 136...143: return "pts/\((major - 136) * 256 + minor)"
        case 5 where minor == 1: return "console"
        case 5 where minor == 0: return "tty"
        default: return "\(major):\(minor)"
        }
    }

    /// The kind of a terminal, from its name.
    public static func kind(_ name: String) -> GuestTTY.Kind {
        if name.hasPrefix("ttyS") { return .serial }
        if name.hasPrefix("pts/") { return .pty }
        if name == "console" { return .console }
        if name.hasPrefix("tty"), Int(name.dropFirst(3)) != nil { return .virtualConsole }
        return .other
    }

    /// A terminal as the operator may name it ("/dev/pts/1" or "pts/1").
    public static func normalize(_ name: String) -> String {
        name.hasPrefix("/dev/") ? String(name.dropFirst(5)) : name
    }
}

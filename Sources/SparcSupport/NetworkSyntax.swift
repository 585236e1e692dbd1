#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The syntax of what a VM's network card is attached to, shared by the command line and the
/// bundle reader (a bundle's network comes back only when every part passes these checks).
public enum NetworkSyntax {
    /// A host port forward in QEMU's `hostfwd` form: `tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`.
    public static func isForward(_ rule: String) -> Bool {
        let sides = rule.split(separator: "-", omittingEmptySubsequences: false)
        guard sides.count == 2 else { return false }
        let host = sides[0].split(separator: ":", omittingEmptySubsequences: false)
        let guest = sides[1].split(separator: ":", omittingEmptySubsequences: false)
        guard host.count == 3, ["tcp", "udp"].contains(host[0]), guest.count == 2 else { return false }
        return isAddress(host[1]) && isPort(host[2]) && isAddress(guest[0]) && isPort(guest[1])
    }

    /// A Linux interface name (what `ip link` accepts: 1–15 characters, no slash or space).
    public static func isInterface(_ name: String) -> Bool {
        (1...15).contains(name.utf8.count) && name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        }
    }

    /// A unicast MAC address, six hex pairs separated by colons.
    public static func isMAC(_ mac: String) -> Bool {
        let parts = mac.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }) else { return false }
        return UInt8(parts[0], radix: 16)! & 1 == 0
    }

    /// A locally administered MAC address in QEMU's 52:54:00 range.
    public static func randomMAC() -> String {
        let hex = Array("0123456789abcdef")
        return "52:54:00:" + (0..<3).map { _ in
            let b = Int.random(in: 0...255)
            return String([hex[b >> 4], hex[b & 15]])
        }.joined(separator: ":")
    }

    static func isPort(_ s: Substring) -> Bool {
        guard let n = Int(s), String(n) == s else { return false }
        return (1...65535).contains(n)
    }

    static func isAddress(_ s: Substring) -> Bool {
        if s.isEmpty { return true }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in Int(p).map { (0...255).contains($0) && String($0) == p } ?? false }
    }
}

import GuestQuery
import SparcSupport

/// Keeps the agent's process list inside one frame whatever the guest's users do: a process's
/// arguments can be megabytes (up to the kernel's ARG_MAX) and a user can start thousands.
/// Each command line is cut to a per-process share, and when the list is still too large the
/// share shrinks until it fits (down to the bare command name); a cut says so in the text
/// (`… [cut N bytes]`), so the operator sees that more was there.
public enum ProcessListBudget {
    /// What one process's command line may take when the list is small.
    public static let commandBytes = 1024
    /// What the whole list may take: far below the 64 MiB frame, so that decoding it on the
    /// host stays cheap too.
    public static let listBytes = 8 << 20
    /// Roughly what a process costs in the frame besides its command (pid, user, state, keys).
    static let overhead = 160
    /// The longest user name kept.
    public static let userBytes = 64

    /// Cuts `text` to at most `limit` bytes at a character boundary, saying how much was cut.
    public static func cut(_ text: String, to limit: Int) -> String {
        let bytes = text.utf8.count
        guard bytes > limit else { return text }
        let marker = " … [cut \(bytes) bytes]"
        var kept = Substring(text)
        // Drop whole characters until the kept part and the marker fit.
        let room = max(0, limit - marker.utf8.count)
        var used = 0
        var end = kept.startIndex
        for ch in kept {
            let n = ch.utf8.count
            if used + n > room { break }
            used += n
            end = kept.index(after: end)
        }
        kept = kept[..<end]
        return String(kept) + marker
    }

    /// The list with every command line and user name within its share.
    public static func fit(_ processes: [GuestProcess], listBytes: Int = listBytes) -> [GuestProcess] {
        var share = commandBytes
        while true {
            var total = 0
            let fitted = processes.map { p -> GuestProcess in
                var q = p
                q.user = GuestText(cut(p.user.unescaped, to: userBytes))
                q.command = GuestText(cut(p.command.unescaped, to: share))
                total += q.command.unescaped.utf8.count + q.user.unescaped.utf8.count + overhead
                return q
            }
            if total <= listBytes || share <= 48 { return fitted }
            share /= 2
        }
    }
}

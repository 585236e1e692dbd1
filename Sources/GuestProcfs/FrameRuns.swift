/// Turns per-frame marks into byte ranges of guest-physical memory.
public enum FrameRuns {
    /// The runs of consecutive frames whose mark is `mark`, as byte ranges (frame × page size).
    public static func ranges(in marks: [UInt8], equal mark: UInt8, pageSize: Int) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        var runStart = -1
        for pfn in 0...marks.count {
            let hit = pfn < marks.count && marks[pfn] == mark
            if hit && runStart < 0 { runStart = pfn }
            if !hit && runStart >= 0 {
                out.append(UInt64(runStart) * UInt64(pageSize)..<UInt64(pfn) * UInt64(pageSize))
                runStart = -1
            }
        }
        return out
    }
}

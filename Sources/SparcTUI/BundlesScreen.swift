
/// The Bundles screen: the bundle directory, searched, restored through the wizard.
extension TUIModel {
    mutating func handleBundles(_ key: Key) -> Effect {
        switch key {
        case .up, .down, .char("k"), .char("j"), .pageUp, .pageDown, .home, .end:
            bundleCursor = ListViewport.move(bundleCursor, count: bundles.count, by: key, screenHeight: screenHeight) ?? bundleCursor
        case .char("/"), .function(3), .enter:
            guard bundleCursor < bundles.count else { return .none }
            prompt = ("Search \(bundles[bundleCursor]) for", "", bundles[bundleCursor])
        case .char("S"), .function(5):
            guard bundleCursor < bundles.count else { return .none }
            return .scan(bundle: bundles[bundleCursor])
        case .char("o"):
            prompt = ("Search which file (path)", "", "file:")
        case .char("R"), .function(7):
            guard bundleCursor < bundles.count else { return .none }
            guard !readonly else {
                status = "read-only: restore is disabled"
                return .none
            }
            let b = bundles[bundleCursor]
            let kills = bundleKills[b] ?? []
            let killStep = kills.isEmpty ? "" : " kill \(kills.joined(separator: ", ")), evict their page cache,"
            confirm = Confirm(
                question: "Restore \(b) over '\(processes.vmName)'? Steps: verify every file, start QEMU, load state,\(killStep) reseed the RNG, thaw.",
                effect: .restore(bundle: b, allowRollback: false))
        default: break
        }
        return .none
    }

    /// Replaces the bundle list, keeping the cursor on the bundle it was on (by name), or
    /// moving it to `select` (a checkpoint just saved it: F5 then scans it).
    public mutating func setBundles(_ names: [String], select: String? = nil) {
        let current = bundleCursor < bundles.count ? bundles[bundleCursor] : nil
        bundles = names
        if let i = (select ?? current).flatMap({ names.firstIndex(of: $0) }) {
            bundleCursor = i
        } else {
            bundleCursor = min(bundleCursor, max(0, names.count - 1))
        }
    }

    func renderBundles(into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — bundles in \(bundleDirectory)", row: 0, style: .header, fill: w)
        if bundles.isEmpty { buffer.put("  (no bundles yet: F8 takes a checkpoint)", row: 2, style: .dim) }
        let view = ListViewport(count: bundles.count, cursor: bundleCursor, screenHeight: buffer.height)
        if view.top > 0 || view.top + view.rows < bundles.count {
            buffer.put(" sparc — bundles in \(bundleDirectory) [\(bundleCursor + 1)/\(bundles.count)]", row: 0, style: .header, fill: w)
        }
        for (i, row) in view.visible {
            let b = bundles[i]
            let detail = bundleDetails[b].map { "  " + $0 } ?? ""
            buffer.put("  " + b + detail, row: row, style: i == bundleCursor ? .selected : .normal, fill: w)
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        FunctionBar.render(functionKeys, into: &buffer)
    }
}

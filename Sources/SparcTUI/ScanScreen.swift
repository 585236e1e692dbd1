import HexView
import SecretScan
import SparcSupport

/// The credential scan's findings over the Bundles screen, grouped by owner: Enter opens the
/// hex view at a finding (its bytes hidden until `v`), `t` tags the owning process.
extension TUIModel {
    /// One line of the findings list: an owner's heading or one of its findings.
    enum ScanRow: Equatable {
        case owner(String, count: Int)
        case finding(Int)
    }

    /// The list's rows: each owner (most findings first) with its findings under it.
    var scanRows: [ScanRow] {
        SecretFinding.groupedByOwner(findings).flatMap { group in
            [ScanRow.owner(group.owner, count: group.indices.count)] + group.indices.map(ScanRow.finding)
        }
    }

    /// Takes a scan's findings and shows them, the first one under the cursor.
    public mutating func receiveFindings(_ found: [SecretFinding], bundle: String) {
        findings = found
        scannedBundle = bundle
        findingIndex = scanRows.compactMap { if case .finding(let i) = $0 { return i } else { return nil } }.first ?? 0
        tab = .bundles
    }

    mutating func handleScan(_ key: Key) -> Effect? {
        let order = scanRows.compactMap { row -> Int? in if case .finding(let i) = row { return i } else { return nil } }
        let position = order.firstIndex(of: findingIndex) ?? 0
        switch key {
        case .escape:
            findings = []
            scannedBundle = nil
            return Effect.none
        case .down, .char("j"), .char("n"):
            findingIndex = order[min(order.count - 1, position + 1)]
        case .up, .char("k"), .char("N"):
            findingIndex = order[max(0, position - 1)]
        case .pageDown, .pageUp, .home, .end:
            let moved = ListViewport.move(position, count: order.count, by: key, screenHeight: screenHeight) ?? position
            findingIndex = order[moved]
        case .char("t"):
            let f = findings[findingIndex]
            guard let pid = f.owner?.pid else {
                status = "no process owns this finding (\(f.ownerLabel)): nothing to tag"
                return Effect.none
            }
            guard processes.processes.contains(where: { $0.pid == pid }) else {
                status = "pid \(pid) no longer runs in '\(processes.vmName)': nothing to tag"
                return Effect.none
            }
            processes.tag(pid)
            status = "tagged pid \(pid) (\(f.owner?.command ?? "?")) for exclusion — F8 checkpoints without it"
        case .enter:
            let f = findings[findingIndex]
            let start = f.offset / UInt64(HexRow.width) * UInt64(HexRow.width)
            let top = start >= 64 ? start - 64 : 0
            hex = HexPage(
                path: f.file, title: "\(f.file) — \(f.rule.id) [\(f.ownerLabel)]", offset: top,
                highlight: f.offset..<f.offset + UInt64(f.length), isMemoryImage: f.address != nil, hidden: true)
            return .loadHex(path: f.file, offset: top)
        default: return nil
        }
        return Effect.none
    }

    func renderScan(into buffer: inout CellBuffer) {
        let w = buffer.width
        let owners = Set(findings.map(\.ownerLabel)).count
        buffer.put(
            " sparc — credentials in \(scannedBundle ?? "?"): \(findings.count) finding(s), \(owners) owner(s)", row: 0, style: .header, fill: w)
        let rows = scanRows
        let cursor = rows.firstIndex(of: .finding(findingIndex)) ?? 0
        for (i, row) in ListViewport(count: rows.count, cursor: cursor, screenHeight: buffer.height).visible {
            switch rows[i] {
            case .owner(let heading, let count):
                buffer.put(" \(heading) — \(count) finding(s)", row: row, style: .header, fill: w)
            case .finding(let index):
                let f = findings[index]
                let place = "\(Path.base(of: f.file)) 0x\(String(f.offset, radix: 16))"
                let line = "    \(f.rule.id) (\(f.rule.severity))  \(place)  \(f.preview)"
                buffer.put(line, row: row, style: index == findingIndex ? .selected : .normal, fill: w)
            }
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        FunctionBar.render(functionKeys, into: &buffer)
    }
}

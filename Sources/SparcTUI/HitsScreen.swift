import HexView
import SparcSupport

/// The search hits over the Bundles screen, each opening the hex view at its offset.
extension TUIModel {
    /// Takes a search's hits; after a search from the hex view, opens the next hit there.
    public mutating func receiveHits(_ found: [SearchHit]) -> Effect {
        hits = found
        hitIndex = 0
        guard let from = searchFrom else { return .none }
        searchFrom = nil
        guard let next = found.firstIndex(where: { $0.offset >= from }) else {
            status = "no hit after offset 0x\(String(from, radix: 16))"
            return .none
        }
        hitIndex = next
        tab = .bundles
        return handleHits(.enter) ?? .none
    }

    mutating func handleHits(_ key: Key) -> Effect? {
        switch key {
        case .escape:
            hits = []
            return Effect.none
        case .char("n"), .down, .char("j"):
            hitIndex = min(hits.count - 1, hitIndex + 1)
            return Effect.none
        case .char("N"), .up, .char("k"):
            hitIndex = max(0, hitIndex - 1)
            return Effect.none
        case .enter:
            let h = hits[hitIndex]
            let start = h.offset / UInt64(HexRow.width) * UInt64(HexRow.width)
            let top = start >= 64 ? start - 64 : 0
            hex = HexPage(
                path: h.file, title: "\(h.file) — hit \(hitIndex + 1)/\(hits.count)" + (h.owner.map { " [\($0.description)]" } ?? ""),
                offset: top, highlight: h.offset..<h.offset + UInt64(h.length), isMemoryImage: h.address != nil)
            return .loadHex(path: h.file, offset: top)
        default: return nil
        }
    }

    func renderHits(into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — search hits [\(hitIndex + 1)/\(hits.count)]", row: 0, style: .header, fill: w)
        for (i, row) in ListViewport(count: hits.count, cursor: hitIndex, screenHeight: buffer.height).visible {
            let h = hits[i]
            let owner = h.owner.map { "[\($0.description)] " } ?? ""
            let line = "  \(Path.base(of: h.file)) 0x\(String(h.offset, radix: 16)) \(h.encoding) \(owner)\(h.context)"
            buffer.put(line, row: row, style: i == hitIndex ? .selected : .normal, fill: w)
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        FunctionBar.render(functionKeys, into: &buffer)
    }
}

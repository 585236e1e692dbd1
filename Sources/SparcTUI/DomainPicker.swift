import Foundation

/// One libvirt domain offered by `sparc tui --connect` (the front end lists them).
public struct DomainChoice: Equatable, Sendable {
    public var name: String
    /// running, paused, shut off, …
    public var state: String
    /// What `sparc libvirt prepare` would add (empty: prepared).
    public var missing: [String]
    public init(name: String, state: String, missing: [String]) {
        self.name = name
        self.state = state
        self.missing = missing
    }
}

/// The screen `sparc tui --connect URI` opens on: the daemon's domains, one picked with Enter.
/// Only a running, prepared domain opens; for the others the status line says what to do.
public struct DomainPicker: Equatable, Sendable {
    public var uri: String
    public var domains: [DomainChoice]
    public var cursor = 0
    public var status = ""

    public init(uri: String, domains: [DomainChoice]) {
        self.uri = uri
        self.domains = domains
        status = domains.isEmpty ? "libvirt at \(uri) has no domains ('virsh define' one, then 'sparc libvirt prepare')" : "Enter opens a domain, q quits"
    }

    /// Moves or picks; returns the domain to open when Enter picks one that can be opened.
    mutating func handle(_ key: Key, screenHeight: Int) -> String? {
        switch key {
        case .up, .down, .char("k"), .char("j"), .pageUp, .pageDown, .home, .end:
            cursor = ListViewport.move(cursor, count: domains.count, by: key, screenHeight: screenHeight) ?? cursor
        case .enter:
            guard cursor < domains.count else { return nil }
            let d = domains[cursor]
            if !d.missing.isEmpty {
                status = "\(d.name) is not prepared: run 'sparc libvirt prepare \(d.name) --connect \(uri)', then restart it"
            } else if d.state != "running" {
                status = "\(d.name) is \(d.state): 'virsh start \(d.name)' first"
            } else {
                return d.name
            }
        default: break
        }
        return nil
    }

    func render(into buffer: inout CellBuffer) {
        let w = buffer.width
        buffer.put(" sparc — libvirt \(uri) — pick a domain", row: 0, style: .header, fill: w)
        buffer.put("  DOMAIN                    STATE        SPARC", row: 1, style: .dim, fill: w)
        for (i, row) in ListViewport(count: domains.count, cursor: cursor, screenHeight: buffer.height).visible {
            let d = domains[i]
            let line = "  " + d.name.padding(toLength: 26, withPad: " ", startingAt: 0) + d.state.padding(toLength: 13, withPad: " ", startingAt: 0)
                + (d.missing.isEmpty ? "prepared" : "not prepared")
            buffer.put(line, row: row, style: i == cursor ? .selected : .normal, fill: w)
        }
        buffer.put(status, row: buffer.height - 2, style: .status, fill: w)
        FunctionBar.render([FunctionKey(.enter, "Open"), FunctionKey(.char("q"), "Quit")], into: &buffer)
    }
}

import Foundation
import SparcEngine

/// The Bundles screen: the checkpoints in the store and the bundle directories beside it,
/// searched, scanned, restored through the wizard, deleted after a confirmation.
public struct BundlesScreen {
    public let directory: String
    public internal(set) var names: [String] = []
    /// The names that are checkpoints in the store (the others are bundle directories).
    public var stored: Set<String> = []
    /// Bytes only each stored checkpoint holds (what deleting it frees at the next gc).
    public var uniqueBytes: [String: Int64] = [:]
    /// One line per bundle: time, size, what was excluded, whether its manifest is intact.
    public var details: [String: String] = [:]
    /// What restoring each bundle kills (command names), from its manifest.
    public var kills: [String: [String]] = [:]
    /// The VM each was saved from, from its manifest.
    public var vms: [String: String] = [:]
    /// When each was taken (UTC), from its manifest.
    public var createdAt: [String: String] = [:]
    /// The stored checkpoints that are undo points (the state a restore replaced).
    public var undoPoints: Set<String> = []
    /// What the background verification found, for the files it verified (by their identity:
    /// a bundle whose files change is verified again).
    public struct Verdict: Equatable, Sendable {
        public var identity: String
        public var problem: String?
    }
    public var verdicts: [String: Verdict] = [:]
    /// Each entry's files' identity now (inode, size, time of each file; a stored checkpoint's
    /// manifest object), set by whoever lists them.
    public var identities: [String: String] = [:]

    /// "verified", "NOT VERIFIED: why", or "verifying…" while the files are being (re)verified.
    public func verdictText(_ name: String) -> String {
        guard let v = verdicts[name], v.identity == identities[name] else { return "verifying…" }
        return v.problem.map { "NOT VERIFIED: " + $0 } ?? "verified"
    }
    var panel = ListPanel()

    init(directory: String) { self.directory = directory }

    public var cursor: Int { panel.cursor }
    var selected: String? { panel.cursor < names.count ? names[panel.cursor] : nil }

    /// Replaces the list, keeping the cursor on the bundle it was on (by name), or moving it
    /// to `select` (a checkpoint just saved it: F5 then scans it).
    public mutating func setNames(_ list: [String], select: String? = nil) {
        let current = selected
        names = list
        panel.resize(list.count)
        if let i = (select ?? current).flatMap({ list.firstIndex(of: $0) }) { panel.cursor = i }
    }

    static func table(_ m: TUIModel) -> BindingTable {
        BindingTable(
            title: "Bundles — keys",
            bindings: [
                Binding([.function(3), .enter, .char("/")], bar: "Search", "search the bundle (the prompt takes F5 encodings, F6 case)") { m in
                    guard let b = m.bundleList.selected else { return .none }
                    m.popups.append(.prompt(Prompt(purpose: .search(b))))
                    return .none
                },
                Binding([.char("o")], "search any file by path") { m in
                    m.popups.append(.prompt(Prompt(purpose: .chooseFile)))
                    return .none
                },
                Binding([.function(5), .char("S")], bar: "Scan", "scan the bundle for credentials (keys, tokens, passwords)") { m in
                    guard let b = m.bundleList.selected else { return .none }
                    return .scan(bundle: b)
                },
                Binding([.function(9), .char("D")], bar: "Delete", "delete the checkpoint (asks first; default No)", writes: true) { m in
                    guard let b = m.bundleList.selected else { return .none }
                    guard !m.readonly else {
                        m.status = "read-only: delete is disabled"
                        return .none
                    }
                    let what =
                        m.bundleList.stored.contains(b)
                        ? "the stored checkpoint \(b) (\(formatBytes(m.bundleList.uniqueBytes[b] ?? 0)) only it holds, freed at the next 'sparc store gc')? The VM's history keeps a record"
                        : "the bundle directory \(m.bundleList.directory)/\(b) and every file in it?"
                    m.ask("Delete \(what). It cannot be undone.", .delete(bundle: b))
                    return .none
                },
                Binding([.char("u")], "undo the last restore: back to the state it replaced (asks first; default No)", writes: true) { m in
                    guard !m.readonly else {
                        m.status = "read-only: undo is disabled"
                        return .none
                    }
                    let vm = m.processes.vmName
                    guard let point = m.bundleList.undoPoints.filter({ m.bundleList.vms[$0] == vm }).max() else {
                        m.status = "VM '\(vm)' has no undo point: a restore over it while it runs makes one"
                        return .none
                    }
                    m.ask(
                        "Undo the last restore of '\(vm)': restore \(point), the state it replaced? What runs now is replaced (no new undo point is taken).",
                        .undo(bundle: point))
                    return .none
                },
                Binding([.function(7), .char("R")], bar: "Restore", "restore wizard (asks first; default No)", writes: true) { m in
                    guard let b = m.bundleList.selected else { return .none }
                    guard !m.readonly else {
                        m.status = "read-only: restore is disabled"
                        return .none
                    }
                    // This UI restores over its own VM only: another VM's bundle gets the command that does it.
                    if let owner = m.bundleList.vms[b], owner != m.processes.vmName {
                        m.status =
                            "\(b) was saved from VM '\(owner)', not '\(m.processes.vmName)': restore it over its own VM with "
                            + "'sparc restore \(b) --replace', or as a copy with 'sparc restore \(b) --name NEW --clone'"
                        return .none
                    }
                    let kills = m.bundleList.kills[b] ?? []
                    let killStep = kills.isEmpty ? "" : " kill \(kills.joined(separator: ", ")), evict their page cache,"
                    // What is lost, said before Yes: the running VM and everything since the checkpoint.
                    let since = m.bundleList.createdAt[b].map { " since \($0) UTC" } ?? ""
                    let running = m.vmState == "running" || m.vmState == "frozen" || m.vmState == "paused"
                    let lost =
                        running
                        ? " The running VM is stopped (\(m.processes.processes.filter { !$0.kernelThread }.count) processes now) and everything it did\(since), in memory and on its disk, is replaced (its disk goes back to the checkpoint's); it is stored first as its undo point, which 'sparc undo' brings back."
                        : " Its disk goes back to the checkpoint's\(since)."
                    m.ask(
                        "Restore \(b) over '\(m.processes.vmName)'?\(lost) Steps: verify every file, start QEMU, load state,\(killStep) reseed the RNG, thaw.",
                        .restore(bundle: b, allowRollback: false))
                    return .none
                },
            ])
    }

    func render(_ m: TUIModel, into buffer: inout CellBuffer) {
        let w = buffer.width
        let view = panel.viewport(screenHeight: buffer.height)
        let position = view.top > 0 || view.top + view.rows < names.count ? " [\(panel.cursor + 1)/\(names.count)]" : ""
        // The counts before the directory: a narrow header cuts the path, not them.
        buffer.put(" sparc — checkpoints" + position + ": \(stored.count) stored, \(names.count - stored.count) bundle(s) in \(directory)", row: 0, style: .header, fill: w)
        if names.isEmpty { buffer.put("  (no checkpoints yet: F8 takes one into the store)", row: 2, style: .dim) }
        for (i, row) in view.visible {
            let b = names[i]
            let detail = details[b].map { "  " + $0 + "  " + verdictText(b) } ?? ""
            buffer.put("  " + b + detail, row: row, style: i == panel.cursor ? .selected : .normal, fill: w)
        }
    }
}

import Foundation
import GuestQuery
import SnapshotModel
import SparcSupport

/// A byte count as people read it: "512 B", "1.5 MiB".
public func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 {
        v /= 1024
        i += 1
    }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

/// What a bundle is, read once from its manifest, for every list of bundles (the CLI and
/// the TUI's Bundles screen say the same).
public struct BundleSummary: Sendable, Equatable {
    public var path: String
    public var createdAt: String = ""
    public var bytes: Int64 = 0
    /// The exclusion's targets as the operator named them (empty: nothing excluded).
    public var excluded: [GuestText] = []
    /// Steps of a --best-effort exclusion that fell short.
    public var gaps: [GuestText] = []
    /// What a restore ends: "pid name" of each excluded process.
    public var kills: [String] = []
    /// Why the manifest could not be read (nil when it could).
    public var damage: String?

    /// Bytes only this checkpoint holds in the store (nil for a bundle directory).
    public var uniqueBytes: Int64?
    /// The VM it was saved from.
    public var vm: String = ""

    /// Reads the manifest of the bundle at `path` (no digest is checked: `verify` does that).
    public init(path: String) {
        self.path = path
        do { take(try BundleReader(path: path).manifest) } catch { damage = "\(error)" }
    }

    /// A stored checkpoint: its bundle's manifest (authenticated by the store's seal) and the
    /// bytes only it holds.
    public init(stored name: String, manifest: Data, uniqueBytes: Int64) {
        path = name
        self.uniqueBytes = uniqueBytes
        do { take(try Manifest.decode(manifest)) } catch { damage = "\(error)" }
    }

    private mutating func take(_ m: Manifest) {
        vm = m.vm.name
        createdAt = String(m.createdAt.prefix(19))
        bytes = m.files.reduce(Int64(0)) { $0 + $1.size }
        excluded = m.exclusion.isEmpty ? [] : m.exclusion.targets
        gaps = m.exclusion.gaps ?? []
        kills = m.exclusion.processes.map { "\($0.pid) \($0.displayName)" }
    }

    /// One line: time, size, what was excluded, whether the exclusion is complete.
    public var line: String {
        if let damage { return "damaged: \(damage)" }
        let what = excluded.isEmpty ? "nothing excluded" : "excluded: " + excluded.joined(separator: ", ")
        let incomplete = gaps.isEmpty ? "" : "  INCOMPLETE: \(gaps.count) gap(s) (--best-effort)"
        guard let uniqueBytes else { return "\(createdAt)  bundle  \(formatBytes(bytes))  \(what)\(incomplete)" }
        return "\(createdAt)  stored, encrypted  \(formatBytes(bytes)) (\(formatBytes(uniqueBytes)) only here)  \(what)\(incomplete)"
    }
}

extension CheckpointReport {
    /// The report as the CLI prints it, one line per fact (names from the live guest, made
    /// safe for a terminal).
    public var summaryLines: [String] {
        var lines = ["checkpoint saved: \(bundle)"]
        lines.append(
            "  memory \(formatBytes(memoryBytes)) (\(formatBytes(memoryDataBytes)) data), devices \(formatBytes(devicesBytes))"
                + (diskBytes.map { ", disk \(formatBytes($0))" } ?? ""))
        let ex = exclusion
        if !ex.isEmpty {
            lines.append(
                "  excluded (scope \(ex.scope ?? "all")): \(formatBytes(ex.bytes)) in \(ex.ranges) ranges, collected in \(String(format: "%.0f", ex.collectMilliseconds)) ms")
            // Names from the live guest, for the operator's eyes; the bundle holds only a keyed hash of each.
            // pty numbers are reused: which session each terminal was.
            for t in ttySessions {
                lines.append("    terminal \(t.tty.terminalSafe): the session of pid \(t.leader) (\(liveNames[t.leader] ?? "?"))")
            }
            for p in ex.processes { lines.append("    pid \(p.pid) \(liveNames[p.pid] ?? p.displayName)  [\(p.reason)]") }
            if !excludedKinds.isEmpty { lines.append("    " + excludedKinds.joined(separator: ", ")) }
            lines.append("    kept-shared pages: \(ex.keptSharedPages)")
            for w in ex.warnings { lines.append("    warning: \(w)") }
            for c in ex.possibleCopies ?? [] { lines.append("    POSSIBLE COPY: \(c)") }
            for g in ex.gaps ?? [] { lines.append("    GAP (--best-effort, may be in the bundle): \(g)") }
        }
        if let freeMemory { lines += freeMemory.summaryLines }
        if let diskNote { lines.append("  " + diskNote) }
        if let missed = liveCopyRepairedPages {
            lines.append("  memory copied while the guest ran" + (missed > 0 ? "; \(missed) page(s) QEMU's dirty log missed were copied again at the stop" : ", checked against the stopped guest"))
        } else if liveCopied {
            lines.append("  memory copied while the guest ran (QEMU logs this RAM's writes page by page: not checked at the stop)")
        }
        // QEMU's first sync holds its lock: the guest runs, but its interrupts and I/O wait.
        if let setup = liveCopySetup, setup >= 0.1 {
            lines.append(String(format: "  QEMU's setup of the copy held the guest's interrupts and I/O %.2f s (its dirty log's first sync)", setup))
        }
        lines.append(String(format: "  guest paused %.2f s, total %.2f s%@", downtime, total, stopped ? ", VM stopped" : ""))
        return lines
    }

    /// What was left out, kind by kind ("user 2.0 MiB", …); swap slots are on the disk, so named apart.
    public var excludedKinds: [String] {
        let kinds = ExcludedKind.allCases.compactMap { k -> String? in
            guard let b = exclusion.bytesByKind[k.rawValue], b > 0 else { return nil }
            return "\(k.rawValue) \(formatBytes(Int64(b)))"
        }
        let swap = exclusion.bytesByKind["swap"].flatMap { $0 > 0 ? "swap slots zeroed in the disk state \(formatBytes(Int64($0)))" : nil }
        return kinds + (swap.map { [$0] } ?? [])
    }

    /// The report in one line, for a status bar.
    public var oneLine: String {
        let excluded =
            exclusion.isEmpty
            ? "" : "; excluded \(excludedKinds.joined(separator: ", ")); \(exclusion.keptSharedPages) kept-shared pages, \(exclusion.warnings.count) warning(s)"
        return "saved \(bundle) in \(String(format: "%.1f", total)) s, guest paused \(String(format: "%.2f", downtime)) s\(excluded)"
    }
}

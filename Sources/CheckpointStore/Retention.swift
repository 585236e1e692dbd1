import Foundation
import SparcSupport

/// Which stored checkpoints to keep, per VM (restic's `forget` rules): the newest `last`, and
/// the newest of each of the latest `hourly` hours, `daily` days and `weekly` ISO weeks that
/// have one. A VM's newest checkpoint is always kept (restore takes it without a rollback
/// flag, and the history's rollback check compares against it).
public struct RetentionPolicy: Codable, Equatable, Sendable {
    public var last = 0
    public var hourly = 0
    public var daily = 0
    public var weekly = 0

    public init(last: Int = 0, hourly: Int = 0, daily: Int = 0, weekly: Int = 0) {
        self.last = last
        self.hourly = hourly
        self.daily = daily
        self.weekly = weekly
    }

    public var isEmpty: Bool { last == 0 && hourly == 0 && daily == 0 && weekly == 0 }

    /// Each rule with the flag that sets it (`sparc prune --keep-last N`, and the config's
    /// `keep-last` without the dashes).
    public var flags: [(flag: String, count: Int)] {
        [("--keep-last", last), ("--keep-hourly", hourly), ("--keep-daily", daily), ("--keep-weekly", weekly)]
    }

    /// The rules in force as arguments (`--keep-last 3 --keep-daily 7`).
    public var arguments: [String] { flags.filter { $0.count > 0 }.flatMap { [$0.flag, String($0.count)] } }

    /// The rules in force, as the flags that set them ("--keep-last 3 --keep-daily 7").
    public var description: String { arguments.joined(separator: " ") }

    /// Sets the rule `flag` names (`--keep-daily`); false for a flag that is none of them.
    public mutating func set(_ flag: String, to count: Int) -> Bool {
        switch flag {
        case "--keep-last": last = count
        case "--keep-hourly": hourly = count
        case "--keep-daily": daily = count
        case "--keep-weekly": weekly = count
        default: return false
        }
        return true
    }

    /// One checkpoint's fate and why.
    public struct Decision: Codable, Equatable, Sendable {
        public var name: String
        public var vm: String
        public var createdAt: String
        public var keep: Bool
        /// The rules that keep it ("last", "daily", "newest"), empty for one that goes.
        public var reasons: [String]
    }

    /// What the rules decide for `entries` (any VMs, any order), newest first per VM.
    public func decide(_ entries: [(name: String, vm: String, createdAt: String)]) -> [Decision] {
        let parse = ISO8601DateFormatter()
        parse.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        func date(_ s: String) -> Date { parse.date(from: s) ?? plain.date(from: s) ?? .distantPast }
        var utc = Calendar(identifier: .iso8601)
        utc.timeZone = TimeZone(identifier: "UTC")!
        func bucket(_ d: Date, _ kind: String) -> String {
            let c = utc.dateComponents([.year, .month, .day, .hour, .yearForWeekOfYear, .weekOfYear], from: d)
            switch kind {
            case "hourly": return "\(c.year!)-\(c.month!)-\(c.day!) \(c.hour!)"
            case "daily": return "\(c.year!)-\(c.month!)-\(c.day!)"
            default: return "\(c.yearForWeekOfYear!)-W\(c.weekOfYear!)"
            }
        }
        var out: [Decision] = []
        for vm in Set(entries.map(\.vm)).sorted() {
            let mine = entries.filter { $0.vm == vm }.sorted { (date($0.createdAt), $0.name) > (date($1.createdAt), $1.name) }
            var reasons = [[String]](repeating: [], count: mine.count)
            if !mine.isEmpty { reasons[0].append("newest") }
            for i in 0..<min(last, mine.count) { reasons[i].append("last") }
            for (kind, count) in [("hourly", hourly), ("daily", daily), ("weekly", weekly)] where count > 0 {
                var seen = Set<String>()
                for (i, e) in mine.enumerated() {
                    let b = bucket(date(e.createdAt), kind)
                    guard !seen.contains(b) else { continue }
                    seen.insert(b)
                    if seen.count > count { break }
                    reasons[i].append(kind)
                }
            }
            for (i, e) in mine.enumerated() {
                out.append(Decision(name: e.name, vm: vm, createdAt: e.createdAt, keep: !reasons[i].isEmpty, reasons: reasons[i]))
            }
        }
        return out
    }
}

extension CheckpointStore {
    /// Applies `policy` to the checkpoints of `vm` (every VM when nil): removes those it does
    /// not keep (unless `dryRun`), then collects the chunks only they held. Returns every decision.
    ///
    /// `beforeRemoving` hears of each checkpoint just before it is removed (the history records
    /// it first, so a crash between the two leaves a record of a removal, never a silent one).
    public func prune(
        _ policy: RetentionPolicy, vm: String? = nil, dryRun: Bool, beforeRemoving: (StoredCheckpoint) -> Void = { _ in }
    ) throws -> (decisions: [RetentionPolicy.Decision], freed: (chunks: Int, bytes: Int64)) {
        guard !policy.isEmpty else { throw SparcError("prune needs a rule: --keep-last, --keep-hourly, --keep-daily or --keep-weekly") }
        // Undo points have their own rule: a new one replaces the VM's last.
        let stored = try names().map { try checkpoint($0) }.filter { (vm == nil || $0.vm == vm) && $0.undoPoint != true }
        let decisions = policy.decide(stored.map { (name: $0.name, vm: $0.vm, createdAt: $0.createdAt) })
        guard !dryRun else { return (decisions, (0, 0)) }
        for d in decisions where !d.keep {
            if let c = stored.first(where: { $0.name == d.name }) { beforeRemoving(c) }
            try delete(d.name)
            FaultPoint.reached("prune-after-delete")
        }
        return (decisions, try gc())
    }
}

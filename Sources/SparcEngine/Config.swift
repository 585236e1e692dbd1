import Foundation
import CheckpointStore
import GuestQuery
import SparcSupport
import TOMLKit

/// Defaults an operator sets once: `/etc/sparc/config.toml`, then
/// `$XDG_CONFIG_HOME/sparc/config.toml` (`~/.config/sparc/config.toml`), the later file's
/// values over the earlier's; `$SPARC_CONFIG` names the one file to read instead (empty: none).
///
///     bundles = "/srv/sparc/bundles"     # the bundle home, as $SPARC_BUNDLES (which wins)
///     scope = "all"                      # or "user": the exclusion scope when none is given
///     [retention]                        # what 'sparc prune' keeps when given no --keep-*
///     keep-last = 24
///     keep-daily = 7
///     [exclude]                          # left out of every checkpoint (CLI and TUI)
///     commands = ["ssh-agent", "gpg-agent", "sshd: *@pts/*"]
///     users = ["alice"]
///     units = ["vault.service"]          # every process of a systemd unit (patterns too)
///     [vm.web.exclude]                   # more for VM (or domain) 'web'
///     commands = ["vault"]
///
/// A command without `*`, `?` or `[` is a command name, left out as `--exclude-name` does (the
/// agent matches it while the guest is frozen); one with them is a pattern on the whole command
/// line, a user names every process of that user, and a unit every process in that systemd
/// unit's cgroup (its listener too: `ssh.service` without logind holds every SSH session):
/// these three are matched against the process list just before the checkpoint. Unknown keys
/// and values of the wrong kind are refused.
public struct SparcConfig: Equatable, Sendable {
    /// What leaves processes out of every checkpoint (or one VM's).
    public struct ExclusionRules: Equatable, Sendable {
        public var commands: [String] = []
        public var users: [String] = []
        public var units: [String] = []
        public var isEmpty: Bool { commands.isEmpty && users.isEmpty && units.isEmpty }

        static func + (a: ExclusionRules, b: ExclusionRules) -> ExclusionRules {
            func union(_ x: [String], _ y: [String]) -> [String] { x + y.filter { !x.contains($0) } }
            return ExclusionRules(commands: union(a.commands, b.commands), users: union(a.users, b.users), units: union(a.units, b.units))
        }
    }

    public var bundles: String?
    public var scope: ExclusionScope?
    public var retention: RetentionPolicy?
    public var exclude = ExclusionRules()
    public var perVM: [String: ExclusionRules] = [:]
    /// Where each value came from ("bundles" → the file), for `sparc config show`.
    public var sources: [String: String] = [:]
    /// The files read, in order.
    public var files: [String] = []

    public init() {}

    /// The rules for `vm`: every VM's, then its own.
    public func rules(for vm: String) -> ExclusionRules { exclude + (perVM[vm] ?? ExclusionRules()) }

    /// The files read, in order (those that exist).
    public static func paths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        if let explicit = environment["SPARC_CONFIG"] { return explicit.isEmpty ? [] : [explicit] }
        let user = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? "/nonexistent") + "/.config")
        return ["/etc/sparc/config.toml", user + "/sparc/config.toml"]
    }

    /// The configuration in force: each file in `paths` that exists, the later over the earlier.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SparcConfig {
        var config = SparcConfig()
        for path in paths(environment: environment) {
            let explicit = environment["SPARC_CONFIG"] != nil
            guard explicit || FileSystem.exists(path) else { continue }
            let data = try OpenedFile(regular: path, maxSize: 1 << 20).readAll()
            try config.merge(String(decoding: data, as: UTF8.self), from: path)
        }
        return config
    }

    /// Loaded once per process (the CLI checks it first, so later uses see a good one).
    public static let shared: Result<SparcConfig, Error> = Result { try load() }

    /// Reads one file's text over this configuration.
    public mutating func merge(_ text: String, from path: String) throws {
        func refuse(_ why: String) -> SparcError { SparcError("config \(path.terminalSafe): \(why)") }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw refuse("not TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description.terminalSafe)")
        }
        func string(_ value: TOMLValueConvertible, _ key: String) throws -> String {
            guard let s = value.string, !s.isEmpty, s.utf8.count <= 512, !s.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                throw refuse("'\(key)' must be a non-empty string on one line")
            }
            return s
        }
        func strings(_ value: TOMLValueConvertible, _ key: String) throws -> [String] {
            guard let array = value.array, array.count <= 256 else { throw refuse("'\(key)' must be a list of at most 256 strings") }
            return try array.map { try string($0, key) }
        }
        func count(_ value: TOMLValueConvertible, _ key: String) throws -> Int {
            guard let n = value.int, (0...100_000).contains(n) else { throw refuse("'\(key)' must be a whole number from 0") }
            return n
        }
        func rules(_ value: TOMLValueConvertible, _ at: String) throws -> ExclusionRules {
            guard let t = value.table else { throw refuse("'\(at)' must be a table") }
            var r = ExclusionRules()
            for key in t.keys {
                switch key {
                case "commands": r.commands = try strings(t[key]!, at + ".commands")
                case "users": r.users = try strings(t[key]!, at + ".users")
                case "units": r.units = try strings(t[key]!, at + ".units")
                default: throw refuse("unknown key '\(at).\(key.terminalSafe)' (known: commands, users, units)")
                }
            }
            return r
        }
        files.append(path)
        for key in table.keys {
            let value = table[key]!
            switch key {
            case "bundles":
                let b = try string(value, key)
                guard b.hasPrefix("/") else { throw refuse("'bundles' must be an absolute path") }
                bundles = b
            case "scope":
                guard let s = ExclusionScope(rawValue: try string(value, key)) else { throw refuse("'scope' must be \"all\" or \"user\"") }
                scope = s
            case "retention":
                guard let t = value.table else { throw refuse("'retention' must be a table") }
                var r = RetentionPolicy()
                for k in t.keys {
                    let n = try count(t[k]!, "retention." + k)
                    // The keys are prune's flags without their dashes.
                    guard r.set("--" + k, to: n) else {
                        throw refuse("unknown key 'retention.\(k.terminalSafe)' (known: keep-last, keep-hourly, keep-daily, keep-weekly)")
                    }
                }
                retention = r
            case "exclude":
                exclude = try rules(value, "exclude")
            case "vm":
                guard let vms = value.table else { throw refuse("'vm' must be a table of VM names") }
                for name in vms.keys {
                    guard VMName.isValid(name), let t = vms[name]!.table else { throw refuse("'vm.\(name.terminalSafe)' is not a VM's table") }
                    for k in t.keys where k != "exclude" { throw refuse("unknown key 'vm.\(name).\(k.terminalSafe)' (known: exclude)") }
                    if let e = t["exclude"] {
                        perVM[name] = try rules(e, "vm.\(name).exclude")
                        sources["vm.\(name).exclude"] = path
                    }
                }
                continue
            default:
                throw refuse("unknown key '\(key.terminalSafe)' (known: bundles, scope, retention, exclude, vm)")
            }
            sources[key] = path
        }
    }

    /// Whether `pattern` (with `*`, `?`, `[…]`) matches all of `text` (fnmatch's rules).
    public static func matches(_ pattern: String, _ text: String) -> Bool { fnmatch(pattern, text, 0) == 0 }

    public static func isPattern(_ command: String) -> Bool { command.contains { "*?[".contains($0) } }

    /// What the rules leave out of a checkpoint of `vm`: command names for the agent, and the
    /// pids of processes in `processes` that a pattern, a user or a unit names.
    public func exclusion(for vm: String, processes: [GuestProcess]) -> (names: [String], pids: [Int32]) {
        let r = rules(for: vm)
        let names = r.commands.filter { !Self.isPattern($0) }
        let patterns = r.commands.filter(Self.isPattern)
        let pids = processes.filter { p in
            !p.kernelThread
                && (r.users.contains(p.user.unescaped) || patterns.contains { Self.matches($0, p.command.unescaped) }
                    || p.unit.map { unit in r.units.contains { Self.matches($0, unit.unescaped) } } == true)
        }.map(\.pid)
        return (names, pids)
    }
}

import ArgumentParser
import CheckpointStore
import Foundation
import SparcEngine
import SparcSupport

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Defaults set once in a TOML file: the bundle home, the scope, retention, exclusion rules.",
        discussion: """
            Read from /etc/sparc/config.toml, then $XDG_CONFIG_HOME/sparc/config.toml \
            (~/.config/sparc/config.toml), the later's values over the earlier's; $SPARC_CONFIG \
            names the one file to read instead (empty: none). Flags and the environment win over it.
              bundles = "/srv/sparc/bundles"
              scope = "all"
              [retention]
              keep-last = 24
              keep-daily = 7
              [exclude]
              commands = ["ssh-agent", "gpg-agent", "sshd: *@pts/*"]
              users = ["alice"]
              units = ["vault.service"]
              [vm.web.exclude]
              commands = ["vault"]
            A command without * ? [ is a command name (as --exclude-name); with them, a pattern on \
            the whole command line. Rules apply to every checkpoint (CLI, TUI, scheduled); \
            'checkpoint --no-config-rules' leaves them aside once.
            """,
        subcommands: [Show.self], defaultSubcommand: Show.self)

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the configuration in force and where each value comes from.")
        @Flag(help: "Print it as JSON.") var json = false

        struct Shown: Encodable {
            var files: [String]
            var bundles: String
            var bundlesFrom: String
            var scope: String
            var scopeFrom: String
            /// keepLast, keepHourly, keepDaily, keepWeekly (the schema's names since it began).
            var retention: [String: Int]?
            var exclude: [String: [String]]
            var vms: [String: [String: [String]]]
        }

        /// A rule set as `--json` shows it, one list per kind.
        static func listed(_ r: SparcConfig.ExclusionRules) -> [String: [String]] { ["commands": r.commands, "users": r.users, "units": r.units] }

        func run() throws {
            let config = try SparcConfig.shared.get()
            let environment = ProcessInfo.processInfo.environment
            let bundlesFrom = environment["SPARC_BUNDLES"].map { $0.isEmpty ? nil : $0 } != nil ? "$SPARC_BUNDLES" : (config.sources["bundles"] ?? "default")
            let shown = Shown(
                files: config.files, bundles: BundleHome.path(), bundlesFrom: bundlesFrom, scope: (config.scope ?? .all).rawValue,
                scopeFrom: config.sources["scope"] ?? "default", retention: config.retention.map { ["keepLast": $0.last, "keepHourly": $0.hourly, "keepDaily": $0.daily, "keepWeekly": $0.weekly] },
                exclude: Self.listed(config.exclude), vms: config.perVM.mapValues(Self.listed))
            if json { return try printJSON(Versioned(result: shown, key: "config")) }
            let candidates = SparcConfig.paths()
            print("files:     " + (config.files.isEmpty ? "none (looked for \(candidates.joined(separator: ", ")))" : config.files.joined(separator: ", ")).terminalSafe)
            print("bundles:   \(shown.bundles.terminalSafe)  (from \(bundlesFrom.terminalSafe))")
            print("scope:     \(shown.scope)  (from \(shown.scopeFrom.terminalSafe))")
            if let r = config.retention {
                print("retention: \(r.flags.map { "\($0.flag.dropFirst(2)) \($0.count)" }.joined(separator: ", "))  (from \(config.sources["retention"]?.terminalSafe ?? "?"); 'sparc prune' with no --keep-*)")
            } else {
                print("retention: none ('sparc prune' needs --keep-*)")
            }
            func rules(_ r: SparcConfig.ExclusionRules) -> String {
                r.isEmpty ? "none" : (r.commands.map { SparcConfig.isPattern($0) ? "pattern '\($0)'" : "name \($0)" } + r.users.map { "user \($0)" } + r.units.map { "unit \($0)" }).joined(separator: ", ").terminalSafe
            }
            print("exclude:   \(rules(config.exclude))" + (config.exclude.isEmpty ? "" : "  (from \(config.sources["exclude"]?.terminalSafe ?? "?"); every checkpoint)"))
            for (vm, r) in config.perVM.sorted(by: { $0.key < $1.key }) {
                print("vm \(vm.terminalSafe): exclude \(rules(r))  (from \(config.sources["vm.\(vm).exclude"]?.terminalSafe ?? "?"))")
            }
        }
    }
}

import ArgumentParser
import Foundation
import SecretScan
import SparcEngine
import SparcSupport

/// The rule and allow-list options `scan` and `checkpoint --scan` share.
struct ScanRuleOptions: ParsableArguments {
    @Option(name: .customLong("rules"), help: ArgumentHelp("YARA rules to scan with as well (repeatable).", valueName: "file.yar"))
    var ruleFiles: [String] = []
    @Flag(help: "Leave the built-in credential rules out (then give --rules).") var noBuiltin = false
    @Option(help: "Encodings of the built-in rules: ascii, utf16le or all.") var encoding: ScanEncoding = .all
    @Flag(help: "Show each match whole instead of redacted (it prints the secrets).") var show = false
    @Option(
        help: ArgumentHelp(
            "Accept findings (repeatable): one secret by the sha256: fingerprint scan prints, RULE, or RULE@OWNER for one program's memory (a command) or one kind of kernel memory ('page cache').",
            discussion: "e.g. --allow sha256:1f2e3d4c5b6a7988 accepts one known key, such as the guest's own SSH host key.",
            valueName: "allowance"))
    var allow: [String] = []
    @Option(name: .customLong("allow-file"), help: ArgumentHelp("A file of accepted findings, one allowance (as --allow) per line, # comments.", valueName: "file"))
    var allowFile: String?
    @Option(help: "List at most this many findings of one rule per file (the rest are counted).") var maxPerRule: Int = 1000

    func validate() throws {
        guard (1...1_000_000).contains(maxPerRule) else { throw ValidationError("--max-per-rule must be between 1 and 1000000") }
    }

    func rules() throws -> SecretRules {
        let rules = try SecretRules(builtin: !noBuiltin, ascii: encoding != .utf16le, wide: encoding != .ascii, ruleFiles: ruleFiles)
        for warning in rules.warnings { printError("sparc: warning: \(warning)") }
        return rules
    }

    /// The allowances from --allow, --allow-file and, for a VM, its own allow-list file; one
    /// that names a rule the set does not have is a mistake (a typo would accept nothing).
    func allowances(vm: String? = nil, rules: SecretRules) throws -> [CredentialScan.Allowance] {
        var out = try allow.map(CredentialScan.Allowance.init(parsing:))
        if let allowFile { out += try CredentialScan.Allowance.load(allowFile) }
        if let vm {
            let own = CredentialScan.Allowance.listPath(vm: vm)
            if FileSystem.exists(own) { out += try CredentialScan.Allowance.load(own) }
        }
        let known = rules.ruleIDs
        for a in out {
            if let rule = a.rule, !known.contains(rule) {
                throw SparcError("allowance '\(rule)' names no rule (the rules are: \(known.sorted().joined(separator: ", ")); or give a finding's sha256: fingerprint)")
            }
        }
        return out
    }
}

enum ScanEncoding: String, ExpressibleByArgument, CaseIterable {
    case ascii, utf16le, all
}

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find credentials in bundles or files and say whose memory holds each.",
        discussion: """
            The built-in rules find private keys (PEM and OpenSSH, the whole block), AWS access \
            key ids and secret keys, GitHub, GitLab and Slack tokens, JSON web tokens, Google API \
            keys, password assignments and crypt(3) password hashes, in ASCII and UTF-16LE. \
            --rules adds your own rules in YARA syntax (libyara); they run per 32 MiB block of a \
            memory image, so a condition over the whole file (filesize, a count across it) sees \
            one block.
            Each finding shows the rule, the file and offset, the guest-physical address and the \
            owner of the page recorded at checkpoint time (pid and command, or the kind of kernel \
            memory), and a redacted preview; --show prints the secret itself.
            Exit status: 0 found, 1 none, 2 error.
            Examples:
              sparc scan monday.sparc
              sparc scan --rules ours.yar --allow openssh_private_key@sshd monday.sparc
              sparc scan --json --no-builtin --rules canary.yar /var/lib/vm/dump.raw
            """)
    @Argument(help: "Bundles, stored checkpoints (by name) or files to scan.") var paths: [String] = []
    @OptionGroup var ruleOptions: ScanRuleOptions
    @Flag(help: "Scan only the memory image of a bundle.") var memoryOnly = false
    @Flag(help: "Print the findings as JSON.") var json = false
    @Flag(help: "Print the built-in rules (YARA syntax) and exit: a start for rules of your own.") var printRules = false

    func run() throws {
        if printRules {
            let encoding = ruleOptions.encoding
            return print(BuiltinRules.source(ascii: encoding != .utf16le, wide: encoding != .ascii))
        }
        guard !paths.isEmpty else { throw ValidationError("give at least one bundle or file to scan") }
        let rules = try ruleOptions.rules()
        // Stored checkpoints named here are scanned in place, decrypted as they are read.
        let store = try StoredBundles().store(for: paths)
        let show = progressPrinter()
        let report = try CredentialScan.scan(
            paths: paths, store: store, rules: rules, reveal: ruleOptions.show, memoryOnly: memoryOnly, allow: try ruleOptions.allowances(rules: rules),
            maxFindingsPerRule: ruleOptions.maxPerRule,
            progress: show.map { p in { file, done, total in p("scanning \(Path.base(of: file)) \(done * 100 / max(total, 1))%") } })
        endProgress()
        if json {
            try printStampedJSON(report)
        } else {
            ScanOutput.print(report, scanned: paths)
        }
        if report.findings.isEmpty { throw ExitCode(1) }
    }
}

/// The text form of a scan's findings, shared with `checkpoint --scan`.
enum ScanOutput {
    static func line(_ f: SecretFinding) -> String {
        var line = "\(f.file.terminalSafe):0x\(String(f.offset, radix: 16))"
        if let a = f.address { line += " gpa 0x\(String(a, radix: 16))" }
        line += " \(f.rule.id) (\(f.rule.severity))"
        if f.encoding != "ascii" { line += " \(f.encoding)" }
        if let o = f.owner { line += " [\(o.description.terminalSafe)]" }
        return line + "  " + f.preview.terminalSafe + "  " + f.fingerprint
    }

    static func print(_ report: CredentialScan.Report, scanned paths: [String]) {
        for f in report.findings { Swift.print(line(f)) }
        for (rule, n) in report.capped.sorted(by: { $0.key < $1.key }) {
            Swift.print("\(rule): \(n) findings, only the first of each file listed (--max-per-rule)")
        }
        for note in report.notes { Swift.print("note: " + note.terminalSafe) }
        if report.findings.isEmpty {
            Swift.print("no credentials found in \(paths.joined(separator: ", "))" + (report.allowed > 0 ? " (\(report.allowed) allowed)" : ""))
            return
        }
        Swift.print("\(report.findings.count) finding(s)" + (report.allowed > 0 ? ", \(report.allowed) allowed" : "") + "; by owner:")
        for group in report.byOwner {
            let rules = Set(group.findings.map(\.rule.id)).sorted().joined(separator: ", ")
            Swift.print("  \(group.owner.terminalSafe): \(group.findings.count) (\(rules))")
        }
    }
}

import CheckpointStore
import Foundation
import HexView
import SecretScan
import SnapshotModel
import SparcSupport

/// Credential scanning of bundles and files: every finding with its guest-physical address
/// and the owner of its page from the bundle's owner map.
public enum CredentialScan {
    /// A finding the operator accepted: one secret by its fingerprint, or a rule everywhere,
    /// in one command's memory or in one kind of kernel memory.
    public struct Allowance: Equatable, Sendable {
        public var rule: String?
        /// The owning process's command (`sshd`) or kernel memory kind (`page cache`), or nil for every owner.
        public var owner: String?
        /// A finding's `sha256:…` fingerprint (a prefix of 8 or more hex digits will do).
        public var fingerprint: String?

        public init(rule: String, owner: String? = nil) {
            self.rule = rule
            self.owner = owner
        }

        public init(fingerprint: String) { self.fingerprint = fingerprint }

        /// Parses `RULE`, `RULE@OWNER` or `sha256:HEX`.
        public init(parsing text: String) throws {
            let text = text.trimmed
            if text.hasPrefix("sha256:") {
                let hex = text.dropFirst(7)
                guard hex.count >= 8, hex.count <= 64, hex.allSatisfy(\.isHexDigit) else {
                    throw SparcError("'\(text)' is not a fingerprint: give sha256: and at least 8 hex digits, as sparc scan prints them")
                }
                self.init(fingerprint: "sha256:" + hex.lowercased())
                return
            }
            let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).trimmed }
            guard let rule = parts.first, !rule.isEmpty, rule.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw SparcError("'\(text)' is not an allowance: give RULE, RULE@COMMAND (e.g. openssh_private_key@sshd) or a finding's sha256: fingerprint")
            }
            self.init(rule: rule, owner: parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil)
        }

        public func covers(_ finding: SecretFinding) -> Bool {
            if let fingerprint {
                return finding.fingerprint.hasPrefix(fingerprint) || fingerprint.hasPrefix(finding.fingerprint) && !finding.fingerprint.isEmpty
            }
            guard finding.rule.id == rule else { return false }
            guard let owner else { return true }
            guard let o = finding.owner else { return false }
            if o.pid == nil { return o.mapping.unescaped == owner || o.mapping.unescaped == "[\(owner)]" }
            return o.command.map { c in Path.base(of: c.unescaped.split(separator: " ").first.map(String.init) ?? c.unescaped) } == owner
        }

        /// Reads an allow-list file: one allowance per line, `#` comments.
        public static func load(_ path: String) throws -> [Allowance] {
            let file = try OpenedFile(regular: path, followSymlinks: true, maxSize: 1 << 20)
            let text = String(decoding: try file.readAll(), as: UTF8.self)
            var out: [Allowance] = []
            for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?.trimmed ?? ""
                guard !line.isEmpty else { continue }
                do { out.append(try Allowance(parsing: line)) } catch { throw SparcError("\(path):\(n + 1): \(error)") }
            }
            return out
        }

        /// The VM's own allow-list (`STATE/scan-allow/NAME`), if the operator made one.
        public static func listPath(vm: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
            StateDirectory.path(environment: environment) + "/scan-allow/" + vm
        }
    }

    /// What a scan found over all its paths.
    public struct Report: Codable, Sendable {
        public var findings: [SecretFinding]
        /// Rules with more findings than listed (per file), and how many.
        public var capped: [String: Int]
        public var notes: [String]
        /// Findings dropped by an allowance.
        public var allowed: Int
        public var bytesScanned: Int64

        /// Findings grouped by owner (a process, or a kind of kernel memory), most first.
        public var byOwner: [(owner: String, findings: [SecretFinding])] {
            SecretFinding.groupedByOwner(findings).map { ($0.owner, $0.indices.map { findings[$0] }) }
        }

        /// The processes that hold findings: pid and command, each once.
        public var owningProcesses: [(pid: Int32, command: String)] {
            var seen = Set<Int32>()
            var out: [(Int32, String)] = []
            for f in findings {
                guard let pid = f.owner?.pid, seen.insert(pid).inserted else { continue }
                out.append((pid, f.owner?.command?.description ?? "?"))
            }
            return out.sorted { $0.0 < $1.0 }
        }
    }

    /// Scans every file of each bundle (or only its memory image) and each other file.
    /// With `store`, a path that names a checkpoint in it is scanned in place.
    public static func scan(
        paths: [String], store: CheckpointStore? = nil, rules: SecretRules, reveal: Bool = false, memoryOnly: Bool = false, allow: [Allowance] = [],
        maxFindingsPerRule: Int = 1000, progress: ((String, Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> Report {
        let scanner = SecretScanner(rules: rules, maxFindingsPerRule: maxFindingsPerRule, reveal: reveal)
        var report = Report(findings: [], capped: [:], notes: [], allowed: 0, bytesScanned: 0)
        for path in paths {
            var targets = try ForensicSearch.targets(path, store: store)
            if memoryOnly { targets = targets.filter { $0.layout != nil } }
            for target in targets {
                var result = try scanner.scan(
                    file: target.file, displayName: target.display, progress: { done, total in progress?(target.display, done, total) },
                    cancel: cancel)
                report.bytesScanned += target.file.size
                if let layout = target.layout {
                    for i in result.findings.indices {
                        let address = layout.physicalAddress(fileOffset: result.findings[i].offset)
                        result.findings[i].address = address
                        result.findings[i].owner = target.owners?.owner(ofFrame: address / 4096)
                    }
                }
                let kept = result.findings.filter { f in !allow.contains { $0.covers(f) } }
                report.allowed += result.findings.count - kept.count
                report.findings += kept
                for (rule, n) in result.capped { report.capped[rule, default: 0] += n }
                report.notes += result.notes
            }
        }
        return report
    }

    /// The checkpoint gate's verdict on a new bundle.
    public struct Gate: Codable, Sendable {
        public var scan: Report
        /// The bundle was removed because it held credentials (`--refuse-secrets`).
        public var refused: Bool
        /// One line for the operator when refused: who holds what, and how to go on.
        public var message: String?
    }

    /// Scans a new bundle's memory image (what exclusion left in it); with `refuse`, any
    /// finding removes the bundle and the verdict names each owning process.
    public static func gate(
        bundle: String, rules: SecretRules, allow: [Allowance], refuse: Bool, reveal: Bool = false, maxFindingsPerRule: Int = 1000,
        progress: ((String, Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> Gate {
        let report = try scan(
            paths: [bundle], rules: rules, reveal: reveal, memoryOnly: true, allow: allow, maxFindingsPerRule: maxFindingsPerRule, progress: progress,
            cancel: cancel)
        if cancel?.isCancelled == true {
            // A scan that did not finish proves nothing: under --refuse-secrets the bundle goes.
            guard refuse else { throw VMManager.cancelled("the bundle \(bundle) was written, but its scan did not finish") }
            FileSystem.removeTree(bundle)
            throw VMManager.cancelled("the new bundle was removed: its scan did not finish, and --refuse-secrets keeps only scanned bundles")
        }
        guard refuse, !report.findings.isEmpty else { return Gate(scan: report, refused: false, message: nil) }
        let left = FileSystem.removeTree(bundle)
        guard left.isEmpty else { throw SparcError("cannot remove the refused bundle \(bundle): \(left.joined(separator: ", ")) left") }
        let holders = report.owningProcesses
        let kernel = report.findings.filter { $0.owner?.pid == nil }.count
        var who = holders.map { "pid \($0.pid) (\($0.command))" }.joined(separator: ", ")
        if kernel > 0 { who += (who.isEmpty ? "" : " and ") + "\(kernel) in memory no process maps" }
        let rulesFound = Set(report.findings.map(\.rule.id)).sorted().joined(separator: ", ")
        var advice = holders.isEmpty ? "" : "exclude them (" + holders.map { "--exclude-pid \($0.pid)" }.joined(separator: " ") + ") or "
        advice += "accept the findings with --allow RULE[@COMMAND]"
        return Gate(
            scan: report, refused: true,
            message: "refused: \(report.findings.count) credential(s) (\(rulesFound)) in memory that was not excluded, held by \(who); the bundle \(bundle) was removed: \(advice)")
    }
}

extension VMManager {
    /// Scans a checkpoint just written (`CredentialScan.gate`) and records in the VM's history
    /// a bundle the gate removed, by the digest it had: the history never names a checkpoint
    /// as kept that no longer exists.
    public func gateCheckpoint(
        _ report: CheckpointReport, vm name: String, rules: SecretRules, allow: [CredentialScan.Allowance], refuse: Bool, reveal: Bool = false,
        maxFindingsPerRule: Int = 1000, progress: ((String, Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> CredentialScan.Gate {
        // Read before the gate may remove the bundle.
        let digest = try BundleReader(path: report.bundle).manifest.manifestSHA256
        func discarded(_ why: String) { _ = try? history(name).append(.discarded, bundle: report.bundle, bundleDigest: digest, detail: why) }
        let gate: CredentialScan.Gate
        do {
            gate = try CredentialScan.gate(
                bundle: report.bundle, rules: rules, allow: allow, refuse: refuse, reveal: reveal, maxFindingsPerRule: maxFindingsPerRule,
                progress: progress, cancel: cancel)
        } catch {
            if refuse, !FileSystem.exists(report.bundle) { discarded("removed by --refuse-secrets: its scan did not finish") }
            throw error
        }
        if gate.refused { discarded("removed by --refuse-secrets: \(gate.scan.findings.count) credential finding(s)") }
        return gate
    }
}


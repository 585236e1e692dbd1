import COpenSSL
import CYaraScan
import Foundation
import HexView
import SnapshotModel
import SparcSupport

/// A rule of the set, as findings name it.
public struct SecretRule: Codable, Equatable, Hashable, Sendable {
    /// The rule's identifier (`aws_access_key_id`); user rules keep theirs.
    public var id: String
    /// `sparc` for the built-in rules, the rule file's namespace (`default`) for a user's.
    public var namespace: String
    public var description: String
    /// critical, high, medium or low (a user rule without `severity` metadata is medium).
    public var severity: String

    public init(id: String, namespace: String, description: String, severity: String) {
        self.id = id
        self.namespace = namespace
        self.description = description
        self.severity = severity
    }
}

/// A compiled rule set: the built-in credential rules, a user's YARA rules, or both.
///
/// The built-in rules run in two steps: Hyperscan finds every place one of them may end in
/// one pass at memory speed, then libyara matches exactly around each such place. A user's
/// rules are arbitrary YARA, so libyara scans for them everywhere.
public final class SecretRules: @unchecked Sendable {
    /// The built-in rules in libyara (the exact matcher) and their Hyperscan prefilter.
    let builtin: OpaquePointer?
    let prefilter: BuiltinPrefilter?
    /// The user's rule files in libyara.
    let user: OpaquePointer?
    /// Rule metadata read once per rule (matches come from any scanning thread).
    private let metaCache = SharedBox<[UInt: RuleFacts]>([:])
    public let ruleCount: Int
    /// Compiler warnings (a rule that slows scanning down, say), one line each.
    public let warnings: [String]

    /// The identifier of every rule in the set (built-in and the files'): what an allowance may name.
    public var ruleIDs: Set<String> {
        final class Names { var all = Set<String>() }
        let names = Names()
        for rules in [builtin, user].compactMap({ $0 }) {
            sparc_yara_rule_identifiers(rules, { ctx, id in
                Unmanaged<Names>.fromOpaque(ctx!).takeUnretainedValue().all.insert(String(cString: id!))
            }, Unmanaged.passUnretained(names).toOpaque())
        }
        return names.all
    }

    struct RuleFacts {
        var rule: SecretRule
        var reveal: Int
        var revealThrough: String?
        var extendTo: String?
    }

    /// Compiles the built-in rules (unless `builtin` is false) and each rule file.
    ///
    /// A rule file with an error is refused with one line naming the file and the line.
    public init(builtin useBuiltin: Bool = true, ascii: Bool = true, wide: Bool = true, ruleFiles: [String] = []) throws {
        var sources: [(name: String, text: String)] = []
        for path in ruleFiles {
            let file = try OpenedFile(regular: path, followSymlinks: true, maxSize: 16 << 20)
            guard let text = String(data: try file.readAll(), encoding: .utf8) else {
                throw SparcError("\(path): not a text file of YARA rules")
            }
            sources.append((path, text))
        }
        guard useBuiltin || !sources.isEmpty else { throw SparcError("no rules to scan with: --no-builtin needs at least one --rules FILE") }
        var warnings: [String] = []
        let user = sources.isEmpty ? nil : try Self.compile(sources, warnings: &warnings)
        if let user, sparc_yara_rule_count(user) == 0 {
            sparc_yara_destroy(user)
            throw SparcError("the rule files hold no rule: nothing to scan for")
        }
        var builtin: OpaquePointer?
        var prefilter: BuiltinPrefilter?
        do {
            if useBuiltin {
                builtin = try Self.compile(
                    [("built-in rules", BuiltinRules.source(ascii: ascii, wide: wide))], namespace: BuiltinRules.namespace, warnings: &warnings)
                prefilter = try BuiltinPrefilter(ascii: ascii, wide: wide)
            }
        } catch {
            if let user { sparc_yara_destroy(user) }
            if let builtin { sparc_yara_destroy(builtin) }
            throw error
        }
        self.user = user
        self.builtin = builtin
        self.prefilter = prefilter
        ruleCount = Int((user.map(sparc_yara_rule_count) ?? 0) + (builtin.map(sparc_yara_rule_count) ?? 0))
        self.warnings = warnings
    }

    static func compile(_ sources: [(name: String, text: String)], namespace: String? = nil, warnings: inout [String]) throws -> OpaquePointer {
        final class Messages { var errors: [String] = []; var warnings: [String] = [] }
        let messages = Messages()
        var errors: Int32 = 0
        let ctx = Unmanaged.passUnretained(messages).toOpaque()
        let rules: OpaquePointer? = sources.map(\.text).withCStrings { texts in
            sources.map(\.name).withCStrings { names in
                sparc_yara_compile(texts, names, Int32(sources.count), namespace, { ctx, isWarning, source, line, message in
                    let m = Unmanaged<Messages>.fromOpaque(ctx!).takeUnretainedValue()
                    let text = "\(String(cString: source!)):\(line): \(String(cString: message!))"
                    if isWarning != 0 { m.warnings.append(text) } else { m.errors.append(text) }
                }, ctx, &errors)
            }
        }
        guard errors == 0, let rules else { throw SparcError(messages.errors.first ?? "the rules could not be compiled") }
        warnings += messages.warnings
        return rules
    }

    deinit {
        if let builtin { sparc_yara_destroy(builtin) }
        if let user { sparc_yara_destroy(user) }
    }

    func facts(_ handle: UnsafeRawPointer?) -> RuleFacts {
        let key = UInt(bitPattern: handle)
        if let known = metaCache.value[key] { return known }
        func meta(_ name: String) -> String? {
            var buffer = [CChar](repeating: 0, count: 32)
            return sparc_yara_rule_meta(handle, name, &buffer, buffer.count).map { String(cString: $0) }
        }
        let rule = SecretRule(
            id: String(cString: sparc_yara_rule_identifier(handle)), namespace: String(cString: sparc_yara_rule_namespace(handle)),
            description: meta("description") ?? "", severity: meta("severity") ?? "medium")
        let facts = RuleFacts(rule: rule, reveal: meta("reveal").flatMap(Int.init) ?? 4, revealThrough: meta("reveal_through"), extendTo: meta("extend_to"))
        metaCache.mutate { $0[key] = facts }
        return facts
    }
}

/// One credential found: which rule, where, and a preview that hides the secret itself.
public struct SecretFinding: Codable, Equatable, Sendable {
    public var rule: SecretRule
    /// The file as the operator named it (`a.sparc/memory.raw`).
    public var file: String
    public var offset: UInt64
    public var length: Int
    /// `ascii` or `utf16le`.
    public var encoding: String
    /// The guest-physical address, for a bundle's memory image.
    public var address: UInt64?
    /// Whose memory holds it, from the bundle's owner map.
    public var owner: PageOwner?
    /// The match with all but its harmless lead hidden (or whole, when revealed).
    public var preview: String
    public var revealed: Bool
    /// `sha256:` and the first 16 hex digits of the matched bytes' SHA-256: names this
    /// secret (in an allow-list, say) without showing it.
    public var fingerprint: String

    public init(
        rule: SecretRule, file: String, offset: UInt64, length: Int, encoding: String, address: UInt64?, owner: PageOwner?, preview: String,
        revealed: Bool, fingerprint: String = ""
    ) {
        self.fingerprint = fingerprint
        self.rule = rule
        self.file = file
        self.offset = offset
        self.length = length
        self.encoding = encoding
        self.address = address
        self.owner = owner
        self.preview = preview
        self.revealed = revealed
    }
}

extension SecretFinding {
    /// Whose finding this is, as lists group them: `pid 121 sparc-probe`, `kernel: page cache`,
    /// or the file for a finding outside a memory image.
    public var ownerLabel: String {
        guard let owner else { return address == nil ? Path.base(of: file) : "owner unknown" }
        guard let pid = owner.pid else { return "kernel: \(owner.mapping)" }
        return "pid \(pid) \(owner.command ?? "?")"
    }

    /// Findings grouped by owner (indices into `findings`), the owner with most findings first.
    public static func groupedByOwner(_ findings: [SecretFinding]) -> [(owner: String, indices: [Int])] {
        var groups: [String: [Int]] = [:]
        for (i, f) in findings.enumerated() { groups[f.ownerLabel, default: []].append(i) }
        return groups.map { ($0.key, $0.value) }.sorted { ($0.1.count, $1.0) > ($1.1.count, $0.0) }
    }
}

/// Scans files with a rule set in one pass per file: read block by block (never mapped), holes skipped, blocks
/// overlapped by the longest match libyara reports, both cores busy, cancellable.
///
/// Rules are evaluated per block (32 MiB): a memory image is not one document, so a
/// condition that counts matches across the whole file (`#a > 100`, `filesize`) sees one block.
public struct SecretScanner: Sendable {
    public static let blockSize = 32 << 20
    /// Blocks overlap by the longest match libyara reports (YR_RE_SCAN_LIMIT).
    static let overlap = BuiltinRules.longestMatch
    public let rules: SecretRules
    /// Findings of one rule beyond this many are counted, not listed (a rule that matches
    /// everywhere must not exhaust memory).
    public var maxFindingsPerRule: Int
    /// Shows matches whole instead of redacted.
    public var reveal: Bool

    public init(rules: SecretRules, maxFindingsPerRule: Int = 1000, reveal: Bool = false) {
        self.rules = rules
        self.maxFindingsPerRule = maxFindingsPerRule
        self.reveal = reveal
    }

    /// What a scan of one file found, and what it could not list.
    public struct FileResult: Sendable {
        public var findings: [SecretFinding]
        /// Rules with more findings than listed, and how many each had.
        public var capped: [String: Int]
        /// One line each: a rule libyara stopped matching in a block (it matched almost everywhere).
        public var notes: [String]
    }

    /// Scans one opened file; `progress` gets (bytes done, bytes to do).
    public func scan(
        file opened: ByteSource, displayName: String? = nil, progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> FileResult {
        let file = FileBlocks(opened)
        let name = displayName ?? opened.path
        let size = file.size
        guard size > 0 else { return FileResult(findings: [], capped: [:], notes: []) }
        let regions = file.dataRegions(before: Self.overlap, after: Self.overlap)
        var blocks: [Span] = []
        for r in regions {
            var s = r.lowerBound
            while s < r.upperBound {
                let limit = min(r.upperBound, s + Self.blockSize)
                blocks.append(Span(start: s, limit: limit, end: min(size, limit + Self.overlap)))
                s = limit
            }
        }
        let passes = (rules.prefilter != nil ? 1 : 0) + (rules.user != nil ? 1 : 0)
        let total = Int64(blocks.reduce(0) { $0 + ($1.limit - $1.start) }) * Int64(passes)
        let done = SharedBox<Int64>(0)
        let step: (Int) -> Void = { bytes in
            let sofar = done.mutate { d -> Int64 in
                d += Int64(bytes)
                return d
            }
            progress?(sofar, total)
        }
        var raw: [RawMatch] = []
        var overflows = Set<String>()
        if let prefilter = rules.prefilter, let builtin = rules.builtin {
            // Where a built-in rule may match, found at memory speed; libyara then decides there.
            let windows = try candidateWindows(prefilter, file: file, size: size, blocks: blocks, step: step, cancel: cancel)
            raw += try yaraScan(builtin, file: file, spans: windows, name: name, cancel: cancel, overflows: &overflows, step: nil)
        }
        if let user = rules.user {
            raw += try yaraScan(user, file: file, spans: blocks, name: name, cancel: cancel, overflows: &overflows, step: step)
        }
        if cancel?.isCancelled == true { throw SparcError("scan cancelled") }
        return try assemble(raw, file: file, size: size, name: name, overflows: overflows)
    }

    /// A stretch of the file to scan: matches must start before `limit`; the bytes up to
    /// `end` let a match that starts there finish.
    struct Span {
        var start: Int
        var limit: Int
        var end: Int
    }

    /// Candidates in one block beyond this many: the block is handed to libyara whole.
    static let candidatesPerBlock = 100_000

    /// The stretches around every place a built-in pattern may end (each reaching back the
    /// longest match), merged where they overlap.
    func candidateWindows(
        _ prefilter: BuiltinPrefilter, file: FileBlocks, size: Int, blocks: [Span], step: @escaping (Int) -> Void,
        cancel: Cancellation?
    ) throws -> [Span] {
        let perBlock = SharedBox([[Int]](repeating: [], count: blocks.count))
        let whole = SharedBox<[Int]>([])
        let failure = SharedBox<String?>(nil)
        let database = prefilter.database
        DispatchQueue.concurrentPerform(iterations: blocks.count) { i in
            if cancel?.isCancelled == true || failure.value != nil { return }
            let b = blocks[i]
            do {
                let scratch = try database.threadScratch()
                defer { HyperscanDatabase.freeScratch(scratch) }
                var ends: [Int] = []
                var dense = false
                try file.withBytes(b.start..<b.end) { p, n in
                    try database.scan(p, length: n, scratch: scratch) { _, _, to in
                        ends.append(b.start + Int(to))
                        if ends.count > Self.candidatesPerBlock {
                            dense = true
                            return true
                        }
                        return ends.count % 4096 == 0 && cancel?.isCancelled == true
                    }
                }
                if dense {
                    whole.mutate { $0.append(i) }
                } else {
                    perBlock.mutate { $0[i] = ends }
                }
            } catch {
                failure.value = "\(error)"
            }
            step(b.limit - b.start)
        }
        if let message = failure.value { throw SparcError(message) }
        let reach = BuiltinRules.longestMatch + 64
        var windows: [Span] = []
        for end in perBlock.value.flatMap({ $0 }).sorted() {
            let lo = max(0, end - reach)
            let hi = min(size, end + 64)
            if let last = windows.last, lo <= last.end {
                windows[windows.count - 1].end = max(last.end, hi)
                windows[windows.count - 1].limit = windows[windows.count - 1].end
            } else {
                windows.append(Span(start: lo, limit: hi, end: hi))
            }
        }
        return windows + whole.value.map { blocks[$0] }
    }

    /// Runs libyara over each span (both cores), keeping matches that start before its limit.
    func yaraScan(
        _ compiled: OpaquePointer, file: FileBlocks, spans: [Span], name: String, cancel: Cancellation?,
        overflows: inout Set<String>, step: ((Int) -> Void)?
    ) throws -> [RawMatch] {
        let perSpan = SharedBox([[RawMatch]](repeating: [], count: spans.count))
        let overflowed = SharedBox<Set<String>>([])
        let failure = SharedBox<String?>(nil)
        let rules = self.rules
        let cap = maxFindingsPerRule
        DispatchQueue.concurrentPerform(iterations: spans.count) { i in
            if cancel?.isCancelled == true || failure.value != nil { return }
            let b = spans[i]
            let sink = MatchSink(limit: b.limit - b.start, capPerRule: cap + 1, cancel: cancel)
            let ctx = Unmanaged.passUnretained(sink).toOpaque()
            let code: Int32
            do {
                code = try file.withBytes(b.start..<b.end) { p, n in
                    sparc_yara_scan(
                        compiled, p, n, 0,
                        { ctx, rule, _, offset, length in
                            let sink = Unmanaged<MatchSink>.fromOpaque(ctx!).takeUnretainedValue()
                            return sink.add(rule: UInt(bitPattern: rule), offset: Int(offset), length: Int(length)) ? 1 : 0
                        },
                        { ctx, rule, stringID in
                            let sink = Unmanaged<MatchSink>.fromOpaque(ctx!).takeUnretainedValue()
                            sink.overflowed.append((UInt(bitPattern: rule), stringID.map { String(cString: $0) } ?? "$"))
                        }, ctx)
                }
            } catch {
                failure.value = "\(error)"
                return
            }
            // A callback that asked to stop (cancelled) is not a failure of the scan.
            if code != 0 && !(cancel?.isCancelled ?? false) {
                failure.value = "\(name): the rule engine failed (\(String(cString: sparc_yara_error_text(code))))"
                return
            }
            let shifted = sink.matches.map { RawMatch(rule: $0.rule, offset: $0.offset + b.start, length: $0.length) }
            perSpan.mutate { $0[i] = shifted }
            for (rule, string) in sink.overflowed {
                let id = rules.facts(UnsafeRawPointer(bitPattern: rule)).rule.id
                overflowed.mutate { _ = $0.insert("\(id) (string \(string))") }
            }
            step?(b.limit - b.start)
        }
        if let message = failure.value { throw SparcError(message) }
        overflows.formUnion(overflowed.value)
        return perSpan.value.flatMap { $0 }
    }

    struct RawMatch {
        var rule: UInt
        var offset: Int
        var length: Int
    }

    /// Collects one block's matches (one thread), dropping those that start in the overlap
    /// (the next block reports them) and counting past the cap.
    final class MatchSink {
        let limit: Int
        let capPerRule: Int
        let cancel: Cancellation?
        var matches: [RawMatch] = []
        var perRule: [UInt: Int] = [:]
        var overflowed: [(UInt, String)] = []

        init(limit: Int, capPerRule: Int, cancel: Cancellation?) {
            self.limit = limit
            self.capPerRule = capPerRule
            self.cancel = cancel
        }

        /// Adds a match; true asks libyara to stop (cancelled).
        func add(rule: UInt, offset: Int, length: Int) -> Bool {
            guard offset < limit else { return false }
            let n = perRule[rule, default: 0] + 1
            perRule[rule] = n
            if n <= capPerRule { matches.append(RawMatch(rule: rule, offset: offset, length: length)) }
            return n % 4096 == 0 && cancel?.isCancelled == true
        }
    }

    /// Turns raw matches into findings: whole blocks for rules that extend to an end marker,
    /// one finding where overlapping blocks or regex suffixes reported the same text twice,
    /// the cap per rule, and redacted previews.
    func assemble(_ raw: [RawMatch], file: FileBlocks, size: Int, name: String, overflows: Set<String>) throws -> FileResult {
        var findings: [SecretFinding] = []
        var perRule: [String: Int] = [:]
        var lastEnd: [UInt: Int] = [:]
        for m in raw.sorted(by: { ($0.offset, -$0.length) < ($1.offset, -$1.length) }) {
            let facts = rules.facts(UnsafeRawPointer(bitPattern: m.rule))
            // The match and what may follow it (a key block's end): read once, the offsets relative to it.
            let reach = facts.extendTo == nil ? m.length : m.length + Self.longestBlock + 80
            let finding: SecretFinding? = try file.withBytes(m.offset..<m.offset + reach) { base, n in
                let wide = Self.isWide(base, length: min(m.length, n))
                var length = min(m.length, n)
                if let end = facts.extendTo, !wide { length = Self.extend(base, size: n, offset: 0, length: length, to: end) }
                // A match inside one already reported for the same rule (the tail of a token the
                // previous block saw whole, or a second regex start within it) is the same secret.
                if let e = lastEnd[m.rule], m.offset + length <= e { return nil }
                lastEnd[m.rule] = max(lastEnd[m.rule] ?? 0, m.offset + length)
                let text = Self.text(base, length: length, wide: wide)
                if facts.rule.namespace == BuiltinRules.namespace && Self.isPlaceholder(text, facts: facts) { return nil }
                return SecretFinding(
                    rule: facts.rule, file: name, offset: UInt64(m.offset), length: length, encoding: wide ? "utf16le" : "ascii",
                    address: nil, owner: nil, preview: reveal ? text : Self.redact(text, facts: facts), revealed: reveal,
                    fingerprint: Self.fingerprint(base, length: length))
            }
            guard let finding else { continue }
            let key = facts.rule.namespace + ":" + facts.rule.id
            perRule[key, default: 0] += 1
            guard perRule[key]! <= maxFindingsPerRule else { continue }
            findings.append(finding)
        }
        var capped: [String: Int] = [:]
        for (key, n) in perRule where n > maxFindingsPerRule { capped[String(key.split(separator: ":").last!)] = n }
        let notes = overflows.sorted().map {
            "rule \($0) matched more than libyara keeps in one 32 MiB block of \(name): it matches almost everywhere, and its further matches there were dropped"
        }
        return FileResult(findings: findings, capped: capped, notes: notes)
    }

    /// `sha256:` and 16 hex digits of the bytes' SHA-256.
    static func fingerprint(_ p: UnsafePointer<UInt8>, length: Int) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var size: UInt32 = 0
        EVP_Digest(p, length, &digest, &size, EVP_sha256(), nil)
        return "sha256:" + digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether a match is UTF-16LE text (every second byte zero).
    static func isWide(_ p: UnsafePointer<UInt8>, length: Int) -> Bool {
        length >= 4 && p[1] == 0 && p[3] == 0 && p[0] != 0
    }

    /// The match as text: UTF-16LE read as its low bytes, anything unprintable as '.'.
    static func text(_ p: UnsafePointer<UInt8>, length: Int, wide: Bool) -> String {
        let step = wide ? 2 : 1
        return String(stride(from: 0, to: length, by: step).map { i -> Character in
            let c = p[i]
            return c >= 0x20 && c < 0x7f ? Character(Unicode.Scalar(c)) : (c == 0x0a ? "⏎" : ".")
        })
    }

    /// The longest key block a match grows to (an 8192-bit RSA key in PEM is under 7 KiB).
    static let longestBlock = 16 << 10

    /// Grows a match to the end of the block it opens: through `marker` (and, when the marker
    /// is only the start of the end line, through its closing dashes), found within
    /// `longestBlock`; the match alone when the marker is not there, or when another block
    /// begins first (a copy whose end was overwritten never swallows the copies after it).
    static func extend(_ base: UnsafePointer<UInt8>, size: Int, offset: Int, length: Int, to marker: String) -> Int {
        func find(_ needle: [UInt8], from start: Int, before limit: Int) -> Int? {
            var i = start
            while i + needle.count <= limit {
                if base[i] == needle[0] && (1..<needle.count).allSatisfy({ base[i + $0] == needle[$0] }) { return i }
                i += 1
            }
            return nil
        }
        let needle = Array(marker.utf8)
        guard let at = find(needle, from: offset + length, before: min(size, offset + longestBlock)) else { return length }
        if find(Array("-----BEGIN ".utf8), from: offset + length, before: at) != nil { return length }
        var end = at + needle.count
        if !marker.hasSuffix("-----"), let dashes = find(Array("-----".utf8), from: end, before: min(size, end + 80)) {
            end = dashes + 5
        }
        return end - offset
    }

    /// Hides the secret: shows the rule's harmless lead (a PEM header, an assignment's name,
    /// a token's prefix), then how much is hidden.
    static func redact(_ text: String, facts: SecretRules.RuleFacts) -> String {
        let chars = Array(text)
        let shown = shownLead(chars, facts: facts)
        let hidden = chars.count - shown
        return String(chars[..<shown]) + (hidden > 0 ? "…[\(hidden) hidden]" : "")
    }

    /// Whether a built-in finding is a placeholder, not a secret: its secret part (what the
    /// preview hides) of 12 or more characters uses fewer than 5 different ones
    /// (`$2a$10$xxxx…`, `password=********`), as secret scanners filter by entropy.
    static func isPlaceholder(_ text: String, facts: SecretRules.RuleFacts) -> Bool {
        let chars = Array(text)
        let secret = chars[shownLead(chars, facts: facts)...]
        return secret.count >= 12 && Set(secret).count < 5
    }

    /// How many leading characters of a match are harmless to show.
    static func shownLead(_ chars: [Character], facts: SecretRules.RuleFacts) -> Int {
        let text = String(chars)
        var shown: Int
        if let through = facts.revealThrough {
            if through.count > 1 && !through.allSatisfy({ "=:".contains($0) }), let r = text.range(of: through) {
                shown = text.distance(from: text.startIndex, to: r.upperBound)
            } else if let i = chars.firstIndex(where: { through.contains($0) }) {
                // An assignment: its name and delimiter (and a quote or spaces after it).
                shown = i + 1
                while shown < chars.count && " \t\"'".contains(chars[shown]) { shown += 1 }
                // A crypt hash: the scheme and salt ($6$salt$) are not the secret.
                if through == "$" { shown = chars.lastIndex(of: "$").map { $0 + 1 } ?? shown }
            } else {
                shown = min(4, chars.count / 4)
            }
        } else {
            shown = min(facts.reveal, chars.count / 4)
        }
        return min(shown, chars.count)
    }
}

extension Array where Element == String {
    /// Calls `body` with the strings as a C array of C strings.
    func withCStrings<R>(_ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) })
    }
}

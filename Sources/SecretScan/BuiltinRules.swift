import Foundation

/// One built-in credential rule: an id, what it finds, how bad it is, how to show it
/// redacted, and its patterns (YARA's regular-expression syntax, which Hyperscan also reads).
public struct BuiltinRule: Sendable {
    public struct Pattern: Sendable {
        public var name: String
        /// A regular expression, or the text itself when `literal`.
        public var expression: String
        public var literal = false
        public var nocase = false
    }

    public var id: String
    public var description: String
    /// critical, high, medium or low.
    public var severity: String
    /// Leading characters a redacted preview may show.
    public var reveal: Int?
    /// Show up to and including this text instead (a PEM header), or through the first of
    /// these delimiters (an assignment's `=`/`:`), or through the last `$` (a crypt hash).
    public var revealThrough: String?
    /// Grow a match to the end of its block: through this marker.
    public var extendTo: String?
    public var patterns: [Pattern]
}

/// The built-in credential rules, as a secret scanner's rule set has them.
///
/// They are written once: as YARA rules (the exact matcher, and what `sparc scan
/// --print-rules` prints) and as Hyperscan expressions that find every candidate at memory
/// speed first (in prefilter mode, so they may only over-match; YARA confirms each one).
public enum BuiltinRules {
    /// The namespace the built-in rules are compiled in (user rules go in `default`).
    public static let namespace = "sparc"

    /// libyara stops matching a regular expression after this many bytes (YR_RE_SCAN_LIMIT);
    /// no built-in pattern matches more.
    public static let longestMatch = 4096

    public static let all: [BuiltinRule] = [
        BuiltinRule(
            id: "openssh_private_key", description: "OpenSSH private key block", severity: "critical", revealThrough: "KEY-----",
            extendTo: "-----END OPENSSH PRIVATE KEY-----",
            patterns: [.init(name: "begin", expression: #"-----BEGIN OPENSSH PRIVATE KEY-----\r?\n[A-Za-z0-9+\/]{16}"#)]),
        BuiltinRule(
            id: "pem_private_key", description: "PEM private key block (RSA, EC, DSA, PKCS#8)", severity: "critical",
            revealThrough: "KEY-----", extendTo: "-----END ",
            patterns: [
                .init(
                    name: "begin",
                    expression: #"-----BEGIN (RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----\r?\n([A-Za-z\-]{4,20}: [^\r\n]{1,80}\r?\n){0,2}(\r?\n)?[A-Za-z0-9+\/]{16}"#)
            ]),
        BuiltinRule(
            id: "aws_access_key_id", description: "AWS access key id", severity: "high", reveal: 4,
            patterns: [.init(name: "id", expression: #"\b(AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"#)]),
        BuiltinRule(
            id: "aws_secret_access_key", description: "AWS secret access key (in an assignment)", severity: "critical",
            revealThrough: "=:",
            patterns: [
                .init(name: "assign", expression: #"aws_?secret_?access_?key["']?[ \t]{0,4}[:=][ \t]{0,4}["']?[A-Za-z0-9\/+]{40}\b"#, nocase: true)
            ]),
        BuiltinRule(
            id: "github_token", description: "GitHub token (personal, OAuth, app or fine-grained)", severity: "high", reveal: 4,
            patterns: [
                .init(name: "classic", expression: #"\bgh[pousr]_[A-Za-z0-9]{36}\b"#),
                .init(name: "fine", expression: #"\bgithub_pat_[A-Za-z0-9_]{82}\b"#),
            ]),
        BuiltinRule(
            id: "gitlab_token", description: "GitLab personal access token", severity: "high", reveal: 6,
            patterns: [.init(name: "pat", expression: #"\bglpat-[A-Za-z0-9_\-]{20}\b"#)]),
        BuiltinRule(
            id: "slack_token", description: "Slack token or incoming webhook", severity: "high", reveal: 5,
            patterns: [
                .init(name: "token", expression: #"\bxox[baprs]-[0-9]{6,13}-[0-9A-Za-z\-]{10,64}\b"#),
                .init(name: "hook", expression: #"hooks\.slack\.com\/services\/T[A-Z0-9]{6,12}\/B[A-Z0-9]{6,12}\/[A-Za-z0-9]{24}"#),
            ]),
        BuiltinRule(
            id: "json_web_token", description: "JSON web token", severity: "medium", reveal: 4,
            patterns: [.init(name: "jwt", expression: #"\beyJ[A-Za-z0-9_\-]{8,1500}\.eyJ[A-Za-z0-9_\-]{8,1500}\.[A-Za-z0-9_\-]{16,1000}"#)]),
        BuiltinRule(
            id: "google_api_key", description: "Google API key", severity: "high", reveal: 4,
            patterns: [.init(name: "key", expression: #"\bAIza[0-9A-Za-z_\-]{35}\b"#)]),
        BuiltinRule(
            id: "password_assignment", description: "password assignment (password=, passwd:, pwd=)", severity: "medium",
            revealThrough: "=:",
            patterns: [
                .init(name: "assign", expression: #"\b(password|passwd|pwd)["']?[ \t]{0,4}[:=][ \t]{0,4}["']?[\x21\x23-\x26\x28-\x7e]{6,64}"#, nocase: true)
            ]),
        BuiltinRule(
            id: "shadow_hash", description: "crypt(3) password hash (shadow style: MD5, SHA-256/512, bcrypt, yescrypt)", severity: "high",
            revealThrough: "$",
            patterns: [
                .init(name: "md5", expression: #"\$1\$[.\/A-Za-z0-9]{1,8}\$[.\/A-Za-z0-9]{22}"#),
                .init(name: "sha256", expression: #"\$5\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{43}"#),
                .init(name: "sha512", expression: #"\$6\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{86}"#),
                .init(name: "bcrypt", expression: #"\$2[abxy]\$[0-9]{2}\$[.\/A-Za-z0-9]{53}"#),
                .init(name: "yescrypt", expression: #"\$y\$[.\/A-Za-z0-9]{1,20}\$[.\/A-Za-z0-9]{1,86}\$[.\/A-Za-z0-9]{43}"#),
            ]),
    ]

    /// The rules in YARA syntax for these encodings (`ascii`, `wide` or both).
    public static func source(ascii: Bool = true, wide: Bool = true) -> String {
        let modifiers = [ascii ? "ascii" : nil, wide ? "wide" : nil].compactMap { $0 }.joined(separator: " ")
        return all.map { rule in
            var meta = ["description = \"\(rule.description)\"", "severity = \"\(rule.severity)\""]
            if let r = rule.reveal { meta.append("reveal = \(r)") }
            if let r = rule.revealThrough { meta.append("reveal_through = \"\(r)\"") }
            if let e = rule.extendTo { meta.append("extend_to = \"\(e)\"") }
            let strings = rule.patterns.map { p in
                let body = p.literal ? "\"\(p.expression)\"" : "/\(p.expression)/"
                return "$\(p.name) = \(body)\(p.nocase ? " nocase" : "") \(modifiers)"
            }
            return """
                rule \(rule.id) {
                    meta:
                \(meta.map { "        " + $0 }.joined(separator: "\n"))
                    strings:
                \(strings.map { "        " + $0 }.joined(separator: "\n"))
                    condition:
                        any of them
                }
                """
        }.joined(separator: "\n\n") + "\n"
    }
}

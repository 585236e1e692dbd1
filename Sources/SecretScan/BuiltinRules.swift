import Foundation

/// The built-in credential rules, in YARA syntax, as a secret scanner's rule set has them.
///
/// Each rule has an id (its identifier), a `description` and a `severity` (critical, high,
/// medium, low); `reveal` says how many leading characters a redacted preview may show,
/// `reveal_through` shows up to and including that text instead (a PEM header, the name
/// of an assignment), `extend_to` grows a match to the end marker of its block. `ENCODINGS`
/// stands for the encodings asked for (`ascii wide` by default).
public enum BuiltinRules {
    /// The namespace the built-in rules are compiled in (user rules go in `default`).
    public static let namespace = "sparc"

    static let template = #"""
        rule openssh_private_key {
            meta:
                description = "OpenSSH private key block"
                severity = "critical"
                reveal_through = "KEY-----"
                extend_to = "-----END OPENSSH PRIVATE KEY-----"
            strings:
                $begin = "-----BEGIN OPENSSH PRIVATE KEY-----" ENCODINGS
            condition:
                any of them
        }

        rule pem_private_key {
            meta:
                description = "PEM private key block (RSA, EC, DSA, PKCS#8)"
                severity = "critical"
                reveal_through = "KEY-----"
                extend_to = "-----END "
            strings:
                $begin = /-----BEGIN (RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----/ ENCODINGS
            condition:
                any of them
        }

        rule aws_access_key_id {
            meta:
                description = "AWS access key id"
                severity = "high"
                reveal = 4
            strings:
                $id = /\b(AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b/ ENCODINGS
            condition:
                any of them
        }

        rule aws_secret_access_key {
            meta:
                description = "AWS secret access key (in an assignment)"
                severity = "critical"
                reveal_through = "="
            strings:
                $assign = /aws_?secret_?access_?key["']?[ \t]{0,4}[:=][ \t]{0,4}["']?[A-Za-z0-9\/+]{40}\b/ nocase ENCODINGS
            condition:
                any of them
        }

        rule github_token {
            meta:
                description = "GitHub token (personal, OAuth, app or fine-grained)"
                severity = "high"
                reveal = 4
            strings:
                $classic = /\bgh[pousr]_[A-Za-z0-9]{36}\b/ ENCODINGS
                $fine = /\bgithub_pat_[A-Za-z0-9_]{82}\b/ ENCODINGS
            condition:
                any of them
        }

        rule gitlab_token {
            meta:
                description = "GitLab personal access token"
                severity = "high"
                reveal = 6
            strings:
                $pat = /\bglpat-[A-Za-z0-9_\-]{20}\b/ ENCODINGS
            condition:
                any of them
        }

        rule slack_token {
            meta:
                description = "Slack token or incoming webhook"
                severity = "high"
                reveal = 5
            strings:
                $token = /\bxox[baprs]-[0-9]{6,13}-[0-9A-Za-z\-]{10,64}\b/ ENCODINGS
                $hook = /hooks\.slack\.com\/services\/T[A-Z0-9]{6,12}\/B[A-Z0-9]{6,12}\/[A-Za-z0-9]{24}/ ENCODINGS
            condition:
                any of them
        }

        rule json_web_token {
            meta:
                description = "JSON web token"
                severity = "medium"
                reveal = 4
            strings:
                $jwt = /\beyJ[A-Za-z0-9_\-]{8,2000}\.eyJ[A-Za-z0-9_\-]{8,2000}\.[A-Za-z0-9_\-]{16,1000}/ ENCODINGS
            condition:
                any of them
        }

        rule google_api_key {
            meta:
                description = "Google API key"
                severity = "high"
                reveal = 4
            strings:
                $key = /\bAIza[0-9A-Za-z_\-]{35}\b/ ENCODINGS
            condition:
                any of them
        }

        rule password_assignment {
            meta:
                description = "password assignment (password=, passwd:, pwd=)"
                severity = "medium"
                reveal_through = "=:"
            strings:
                $assign = /\b(password|passwd|pwd)["']?[ \t]{0,4}[:=][ \t]{0,4}["']?[\x21\x23-\x26\x28-\x7e]{6,64}/ nocase ENCODINGS
            condition:
                any of them
        }

        rule shadow_hash {
            meta:
                description = "crypt(3) password hash (shadow style: MD5, SHA-256/512, bcrypt, yescrypt)"
                severity = "high"
                reveal_through = "$"
            strings:
                $md5 = /\$1\$[.\/A-Za-z0-9]{1,8}\$[.\/A-Za-z0-9]{22}/ ENCODINGS
                $sha256 = /\$5\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{43}/ ENCODINGS
                $sha512 = /\$6\$[.\/A-Za-z0-9]{1,16}\$[.\/A-Za-z0-9]{86}/ ENCODINGS
                $bcrypt = /\$2[abxy]\$[0-9]{2}\$[.\/A-Za-z0-9]{53}/ ENCODINGS
                $yescrypt = /\$y\$[.\/A-Za-z0-9]{1,20}\$[.\/A-Za-z0-9]{1,86}\$[.\/A-Za-z0-9]{43}/ ENCODINGS
            condition:
                any of them
        }
        """#

    /// The rule source for these encodings (`ascii`, `wide` or both).
    public static func source(ascii: Bool = true, wide: Bool = true) -> String {
        let modifiers = [ascii ? "ascii" : nil, wide ? "wide" : nil].compactMap { $0 }.joined(separator: " ")
        return template.replacingOccurrences(of: "ENCODINGS", with: modifiers)
    }
}

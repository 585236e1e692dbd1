import CHyperscan
import Foundation
import HexView
import SparcSupport

/// The built-in rules' candidates: every place one of their patterns (ASCII or UTF-16LE)
/// may end, found in one pass; the exact matcher then looks only there.
final class BuiltinPrefilter: @unchecked Sendable {
    let database: HyperscanDatabase

    init(ascii: Bool, wide: Bool) throws {
        var expressions: [String] = []
        var flags: [UInt32] = []
        for rule in BuiltinRules.all {
            for p in rule.patterns {
                let regex = p.literal ? NSRegularExpression.escapedPattern(for: p.expression) : p.expression
                let f = UInt32(HS_FLAG_PREFILTER) | (p.nocase ? UInt32(HS_FLAG_CASELESS) : 0)
                if ascii {
                    expressions.append(Self.relaxRepeats(regex))
                    flags.append(f)
                }
                if wide {
                    expressions.append(Self.relaxRepeats(try WideRegex.transform(regex)))
                    flags.append(f)
                }
            }
        }
        database = try HyperscanDatabase(expressions: expressions, flags: flags)
    }

    /// Turns every counted repeat `{n,m}` into `{min(n,8),}`: it matches everything the
    /// original did (and more, which the exact matcher sorts out), and Hyperscan builds an
    /// unbounded repeat in milliseconds where a wide `{8,1500}` takes seconds.
    static func relaxRepeats(_ expression: String) -> String {
        let re = try! NSRegularExpression(pattern: #"\{([0-9]+)(,[0-9]*)?\}"#)
        var out = expression
        for m in re.matches(in: expression, range: NSRange(expression.startIndex..., in: expression)).reversed() {
            let n = Int((expression as NSString).substring(with: m.range(at: 1)))!
            out = (out as NSString).replacingCharacters(in: m.range, with: "{\(min(n, 8)),}")
        }
        return out
    }
}

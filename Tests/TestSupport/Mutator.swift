import Foundation

/// Deterministic mutations of valid inputs, for fuzzing readers with what a hostile bundle
/// or a confused peer could hand them: flipped, dropped and inserted bytes, truncation, and
/// JSON-aware edits (a value swapped for a hostile one, a key removed, a value nested deep).
///
/// Seeded, so a failing case is found again by its iteration number.
public struct Mutator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// splitmix64.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    /// Values that have broken readers before: out-of-range numbers, wrong types, paths out of
    /// a directory, terminal escapes, a long string, an empty container.
    public static let hostileValues: [Any] = [
        -1, 0, Int64.max, Int64.min, NSNumber(value: UInt64.max), 1e308, -1e308, 0.5, true, NSNull(),
        "", "-1", "18446744073709551615", "../../sparc-canary/x", "/nonexistent/sparc-canary/x", "a/b", "\u{1b}]0;owned\u{7}\u{1b}[2J",
        String(repeating: "A", count: 70_000), "00 53", "\u{0}", [Any](), [String: Any](), [1, 2, 3], [-1, -1],
        [NSNumber(value: UInt64.max), NSNumber(value: UInt64.max)], ["x": 1],
    ]

    /// One byte-level mutation of `data`.
    public mutating func bytes(_ data: Data) -> Data {
        var d = data
        guard !d.isEmpty else { return Data([UInt8(truncatingIfNeeded: next())]) }
        switch below(5) {
        case 0:
            let i = below(d.count)
            d[d.startIndex + i] ^= UInt8(1 << below(8))
        case 1: d = d.prefix(below(d.count))
        case 2:
            let i = below(d.count)
            d.insert(contentsOf: Array("{[\"\\\u{0}9-e".utf8)[below(8)...].prefix(1 + below(3)), at: d.startIndex + i)
        case 3:
            let i = below(d.count)
            d.removeSubrange(d.startIndex + i..<d.startIndex + min(d.count, i + 1 + below(16)))
        default:
            // A run of digits made huge: numbers past every integer type.
            if let i = d.firstIndex(where: { $0 >= 0x30 && $0 <= 0x39 }) { d.insert(contentsOf: Array(repeating: 0x39, count: 25), at: i) }
        }
        return d
    }

    /// One JSON-aware mutation of a parsed JSON value.
    public mutating func json(_ value: Any) -> Any {
        if var object = value as? [String: Any], !object.isEmpty {
            let keys = object.keys.sorted()
            let key = keys[below(keys.count)]
            switch below(6) {
            case 0: object.removeValue(forKey: key)
            case 1, 2: object[key] = Self.hostileValues[below(Self.hostileValues.count)]
            case 3: object[key] = [object[key] as Any]  // one level deeper than expected
            default: object[key] = json(object[key] as Any)
            }
            return object
        }
        if var array = value as? [Any], !array.isEmpty {
            let i = below(array.count)
            switch below(4) {
            case 0: array.remove(at: i)
            case 1: array.append(array[i])
            case 2: array[i] = Self.hostileValues[below(Self.hostileValues.count)]
            default: array[i] = json(array[i])
            }
            return array
        }
        return Self.hostileValues[below(Self.hostileValues.count)]
    }

    /// `rounds` JSON-aware mutations of a JSON document, serialised again (nil when the
    /// result cannot be serialised, such as a bare NSNull at the top).
    public mutating func jsonDocument(_ data: Data, rounds: Int = 1) -> Data? {
        guard var value = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
        for _ in 0..<max(1, rounds) { value = json(value) }
        return try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed])
    }
}

/// How many cases each fuzzer runs: 10,000 in `make test` (the CI gate), fewer in the inner
/// loop (`make check` sets `SPARC_FUZZ_CASES`).
public enum FuzzBudget {
    public static var cases: Int {
        ProcessInfo.processInfo.environment["SPARC_FUZZ_CASES"].flatMap(Int.init).map { max(1, $0) } ?? 10_000
    }
}

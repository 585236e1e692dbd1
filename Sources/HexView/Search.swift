import CHyperscan
import CHexScan
import Dispatch
import Foundation
import SnapshotModel
import SparcSupport

/// The text encodings a pattern is searched in.
public enum SearchEncoding: String, CaseIterable, Codable, Sendable {
    case ascii, utf8, utf16le, utf16be

    func encode(_ text: String) -> [UInt8]? {
        switch self {
        case .ascii: return text.unicodeScalars.allSatisfy(\.isASCII) ? Array(text.utf8) : nil
        case .utf8: return Array(text.utf8)
        case .utf16le: return text.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        case .utf16be: return text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
        }
    }

    /// Parses `ascii`, `utf16le,ascii`, `all`.
    public static func parse(_ text: String) throws -> [SearchEncoding] {
        if text == "all" { return allCases }
        guard !text.trimmed.isEmpty else { throw SparcError("no encoding given: use ascii, utf8, utf16le, utf16be or all") }
        return try text.split(separator: ",").map {
            guard let e = SearchEncoding(rawValue: $0.trimmed.lowercased()) else {
                throw SparcError("unknown encoding '\($0)': use ascii, utf8, utf16le, utf16be or all")
            }
            return e
        }
    }
}

/// What to look for: byte patterns (a text in several encodings, or hex bytes) or a regex.
public struct SearchQuery: Sendable {
    public struct Pattern: Sendable, Equatable {
        public var bytes: [UInt8]
        /// "ascii", "utf16le", … or "hex".
        public var label: String
        public var ignoreCase: Bool
    }

    public var patterns: [Pattern]
    public var regex: String?
    /// The regular expression compiled (Hyperscan), one expression per encoding.
    public var regexDatabase: HyperscanDatabase?
    /// The encoding label of each compiled expression ("ascii", "utf16le").
    public var regexLabels: [String] = []
    public var ignoreCase: Bool
    public var display: String

    /// A text searched in each encoding (byte-identical encodings are searched once).
    public static func text(_ text: String, encodings: [SearchEncoding], ignoreCase: Bool) throws -> SearchQuery {
        guard !text.isEmpty else { throw SparcError("empty pattern") }
        var patterns: [Pattern] = []
        for e in encodings {
            guard let bytes = e.encode(text) else { throw SparcError("pattern is not ASCII; search it as utf8 or utf16") }
            if !patterns.contains(where: { $0.bytes == bytes }) {
                patterns.append(Pattern(bytes: bytes, label: e.rawValue, ignoreCase: ignoreCase))
            }
        }
        return SearchQuery(patterns: patterns, regex: nil, ignoreCase: ignoreCase, display: text)
    }

    /// Bytes written as hex: `de ad be ef`, `deadbeef`, `0xde,0xad`.
    public static func hex(_ text: String) throws -> SearchQuery {
        var digits = text.lowercased().replacingOccurrences(of: "0x", with: "")
        digits.removeAll { " ,:\t".contains($0) }
        guard !digits.isEmpty, digits.count % 2 == 0, digits.allSatisfy(\.isHexDigit) else {
            throw SparcError("'\(text)' is not a hex byte pattern (example: 'de ad be ef')")
        }
        var bytes: [UInt8] = []
        var i = digits.startIndex
        while i < digits.endIndex {
            let j = digits.index(i, offsetBy: 2)
            bytes.append(UInt8(digits[i..<j], radix: 16)!)
            i = j
        }
        guard bytes.contains(where: { $0 != 0 }) else {
            throw SparcError("'\(text)' is all zero bytes, which every hole and zero page matches; give at least one non-zero byte")
        }
        return SearchQuery(patterns: [Pattern(bytes: bytes, label: "hex", ignoreCase: false)], regex: nil, ignoreCase: false, display: text)
    }

    /// A regular expression over bytes (PCRE syntax, as Hyperscan reads it; `.` is any byte
    /// but a newline), in ASCII and, rewritten for it, UTF-16LE text.
    public static func regex(_ pattern: String, ignoreCase: Bool, encodings: [SearchEncoding] = [.ascii, .utf16le]) throws -> SearchQuery {
        guard !pattern.isEmpty else { throw SparcError("empty regular expression") }
        var expressions: [String] = []
        var labels: [String] = []
        for e in encodings {
            switch e {
            case .ascii, .utf8:
                if !labels.contains("ascii") {
                    expressions.append(pattern)
                    labels.append("ascii")
                }
            case .utf16le:
                do { expressions.append(try WideRegex.transform(pattern)) } catch { throw SparcError("invalid regular expression '\(pattern)': \(error)") }
                labels.append("utf16le")
            case .utf16be:
                throw SparcError("a regular expression is searched as ascii and utf16le only (not utf16be)")
            }
        }
        let flags = UInt32(HS_FLAG_SOM_LEFTMOST) | (ignoreCase ? UInt32(HS_FLAG_CASELESS) : 0)
        let database: HyperscanDatabase
        do {
            database = try HyperscanDatabase(expressions: expressions, flags: Array(repeating: flags, count: expressions.count))
        } catch {
            throw SparcError("invalid regular expression '\(pattern)': \(error)")
        }
        var query = SearchQuery(patterns: [], regex: pattern, ignoreCase: ignoreCase, display: pattern)
        query.regexDatabase = database
        query.regexLabels = labels
        return query
    }

    var longest: Int { patterns.map(\.bytes.count).max() ?? 0 }
}

/// One place a pattern was found.
public struct SearchHit: Codable, Equatable, Sendable {
    public var file: String
    public var offset: UInt64
    public var length: Int
    public var encoding: String
    /// Guest-physical address, for a bundle's memory image.
    public var address: UInt64?
    /// Printable bytes around the hit (non-printable shown as '.').
    public var context: String
    /// Whose memory holds the hit, when the bundle has an owner map.
    public var owner: PageOwner?

    public init(file: String, offset: UInt64, length: Int, encoding: String, address: UInt64?, context: String, owner: PageOwner?) {
        self.file = file
        self.offset = offset
        self.length = length
        self.encoding = encoding
        self.address = address
        self.context = context
        self.owner = owner
    }
}

/// Cancels a running search from another thread.
public typealias SearchCancellation = Cancellation

/// Streams files through the scanner: read block by block (never mapped), holes skipped (a hole is zeros),
/// blocks overlapped by the longest pattern so hits across block edges are found, both
/// cores busy.
public struct FileSearcher {
    public static let blockSize = 32 << 20
    public var query: SearchQuery
    public var contextBytes: Int
    public var maxHits: Int

    /// Hits kept per file: past this many the search of a file stops (and says so).
    public static let defaultMaxHits = 100_000

    public init(query: SearchQuery, contextBytes: Int = 16, maxHits: Int = FileSearcher.defaultMaxHits) {
        self.query = query
        self.contextBytes = contextBytes
        self.maxHits = maxHits
    }

    /// Searches one file by path (following symlinks; FIFOs and devices are refused).
    public func search(
        file path: String, displayName: String? = nil, progress: ((Int64, Int64) -> Void)? = nil,
        cancel: SearchCancellation? = nil
    ) throws -> [SearchHit] {
        try search(file: OpenedFile(regular: path, followSymlinks: true), displayName: displayName, progress: progress, cancel: cancel)
    }

    /// Searches one opened file or other source; `progress` receives (bytes done, bytes to do).
    public func search(
        file opened: ByteSource, displayName: String? = nil, progress: ((Int64, Int64) -> Void)? = nil,
        cancel: SearchCancellation? = nil
    ) throws -> [SearchHit] {
        let file = FileBlocks(opened)
        let name = displayName ?? opened.path
        let size = file.size
        guard size > 0 else { return [] }
        let overlap = max(query.longest, query.regex != nil ? 4096 : 0)
        // A pattern that starts with zeros can start in the hole before a data extent.
        // A regular expression gets a page of hole on both sides; it never scans a hole alone.
        let leadingZeros = query.regex != nil ? overlap : query.patterns.map { p in p.bytes.prefix { $0 == 0 }.count }.max() ?? 0
        let regions = file.dataRegions(before: leadingZeros, after: overlap)
        var blocks: [(start: Int, limit: Int, end: Int)] = []
        for r in regions {
            var s = r.lowerBound
            while s < r.upperBound {
                let limit = min(r.upperBound, s + Self.blockSize)
                blocks.append((s, limit, min(size, limit + overlap)))
                s = limit
            }
        }
        let total = Int64(blocks.reduce(0) { $0 + ($1.limit - $1.start) })
        let done = SharedBox<Int64>(0)
        let results = SharedBox([[(Int, Int, Int)]](repeating: [], count: blocks.count))
        let query = self.query
        let maxHits = self.maxHits
        // Hits over every block: once the cap is reached the blocks not yet scanned are skipped
        // (a pattern that matches everywhere must not cost minutes and gigabytes).
        let found = SharedBox(0)
        let failure = SharedBox<String?>(nil)
        DispatchQueue.concurrentPerform(iterations: blocks.count) { i in
            if cancel?.isCancelled == true || failure.value != nil || found.value >= maxHits { return }
            let b = blocks[i]
            let hits: [(Int, Int, Int)]
            do {
                hits = try file.withBytes(b.start..<b.end) { p, n in
                    try Self.scan(p, length: n, limit: b.limit - b.start, query: query, maxHits: maxHits)
                }
            } catch {
                failure.value = "\(error)"
                return
            }
            found.mutate { $0 += hits.count }
            let shifted = hits.map { ($0.0 + b.start, $0.1, $0.2) }
            results.mutate { $0[i] = shifted }
            let sofar = done.mutate { d -> Int64 in
                d += Int64(b.limit - b.start)
                return d
            }
            progress?(sofar, total)
        }
        if cancel?.isCancelled == true { throw SparcError("search cancelled") }
        // A block that was not searched must never read as "not found".
        if let why = failure.value { throw SparcError("searching \(name) failed: \(why)") }
        // Overlapping regions (a data extent extended into the next) can report a hit twice.
        var seen = Set<Int>()
        var hits: [SearchHit] = []
        for (offset, pattern, length) in results.value.flatMap({ $0 }).sorted(by: { $0.0 < $1.0 }) {
            guard seen.insert(offset &* 31 &+ pattern).inserted else { continue }
            let lo = max(0, offset - contextBytes)
            let hi = min(size, offset + length + contextBytes)
            let context = String(try file.bytes(lo..<hi).map { c -> Character in
                c >= 0x20 && c < 0x7f ? Character(Unicode.Scalar(c)) : "."
            })
            let label = pattern >= 0 ? query.patterns[pattern].label : "regex " + query.regexLabels[-pattern - 1]
            hits.append(SearchHit(file: name, offset: UInt64(offset), length: length, encoding: label, address: nil, context: context, owner: nil))
            if hits.count >= maxHits { break }
        }
        return hits
    }

    /// Finds hits in one block: (offset in block, pattern index or -1 for regex, length).
    static func scan(_ p: UnsafePointer<UInt8>, length: Int, limit: Int, query: SearchQuery, maxHits: Int) throws -> [(Int, Int, Int)] {
        if let database = query.regexDatabase {
            return try scanRegex(p, length: length, limit: limit, database: database, maxHits: maxHits)
        }
        final class Sink {
            var hits: [(Int, Int, Int)] = []
            var lengths: [Int] = []
            var max = 0
        }
        let sink = Sink()
        sink.lengths = query.patterns.map(\.bytes.count)
        sink.max = maxHits
        let storage = query.patterns.map(\.bytes)
        return try storage.withUnsafeBufferPointers { pointers in
            var needles = zip(pointers, query.patterns).map { ptr, q in
                sparc_needle(bytes: ptr, length: q.bytes.count, fold_case: q.ignoreCase ? 1 : 0)
            }
            let ctx = Unmanaged.passUnretained(sink).toOpaque()
            let found = sparc_scan(p, length, limit, &needles, Int32(needles.count), { ctx, needle, offset in
                let sink = Unmanaged<Sink>.fromOpaque(ctx!).takeUnretainedValue()
                sink.hits.append((Int(offset), Int(needle), sink.lengths[Int(needle)]))
                return sink.hits.count >= sink.max ? 1 : 0
            }, ctx)
            if found == SPARC_SCAN_FAILED { throw SparcError("out of memory preparing \(needles.count) search patterns") }
            return sink.hits
        }
    }

    /// Hits of a compiled regular expression in one block: (offset, -(expression + 1), length),
    /// leftmost-longest and not overlapping, as a regex search reads them (Hyperscan reports
    /// every end of every match).
    static func scanRegex(_ p: UnsafePointer<UInt8>, length: Int, limit: Int, database: HyperscanDatabase, maxHits: Int) throws -> [(Int, Int, Int)] {
        var longest: [Int: [Int: Int]] = [:]  // expression -> start -> longest end
        var count = 0
        let scratch = try database.threadScratch()
        defer { HyperscanDatabase.freeScratch(scratch) }
        try database.scan(p, length: length, scratch: scratch) { id, from, to in
            let start = Int(from)
            guard start < limit, to > from else { return false }
            if longest[Int(id), default: [:]][start] == nil { count += 1 }
            longest[Int(id), default: [:]][start] = max(longest[Int(id)]?[start] ?? 0, Int(to))
            return count > maxHits
        }
        var hits: [(Int, Int, Int)] = []
        for (id, starts) in longest {
            var reached = -1
            for start in starts.keys.sorted() where start >= reached {
                let end = starts[start]!
                hits.append((start, -(id + 1), end - start))
                reached = end
            }
        }
        return Array(hits.sorted { $0.0 < $1.0 }.prefix(maxHits))
    }
}

extension Array where Element == [UInt8] {
    /// Runs `body` with stable pointers to every inner array.
    func withUnsafeBufferPointers<R>(_ body: ([UnsafePointer<UInt8>]) throws -> R) rethrows -> R {
        var pointers: [UnsafeMutablePointer<UInt8>] = []
        for a in self {
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: Swift.max(1, a.count))
            p.initialize(from: a, count: a.count)
            pointers.append(p)
        }
        defer { pointers.forEach { $0.deallocate() } }
        return try body(pointers.map { UnsafePointer($0) })
    }
}

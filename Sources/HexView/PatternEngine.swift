import CHyperscan
import Foundation
import SparcSupport

/// Regular expressions as UTF-16LE text: each character followed by a zero byte.
public enum WideRegex {
    /// Rewrites `expression` to match its text in UTF-16LE (ASCII characters only, as YARA's
    /// `wide`): every atom (a character, an escape, a class, `.`) becomes `(?:atom\x00)`;
    /// groups, alternation, quantifiers and anchors stay. Word boundaries (`\b`, `\B`) are
    /// dropped: between a letter and its zero byte they mean nothing, so the result may
    /// match a little more (fine for a prefilter; the exact matcher decides).
    public static func transform(_ expression: String) throws -> String {
        let c = Array(expression)
        var out = ""
        var i = 0
        func atom(_ a: String) { out += "(?:" + a + "\\x00)" }
        while i < c.count {
            let ch = c[i]
            switch ch {
            case "\\":
                guard i + 1 < c.count else { throw SparcError("the regular expression ends in a lone backslash: \(expression)") }
                let next = c[i + 1]
                if next == "b" || next == "B" {
                    i += 2
                    continue
                }
                if next == "x" {
                    guard i + 3 < c.count else { throw SparcError("an incomplete \\x escape in \(expression)") }
                    atom(String(c[i...i + 3]))
                    i += 4
                    continue
                }
                if "AZzG".contains(next) || next.isNumber {
                    throw SparcError("\\\(next) cannot be searched as UTF-16LE (in \(expression))")
                }
                atom(String(c[i...i + 1]))
                i += 2
            case "[":
                var j = i + 1
                if j < c.count && c[j] == "^" { j += 1 }
                if j < c.count && c[j] == "]" { j += 1 }
                while j < c.count && c[j] != "]" { j += c[j] == "\\" ? 2 : 1 }
                guard j < c.count else { throw SparcError("an unclosed character class in \(expression)") }
                atom(String(c[i...j]))
                i = j + 1
            case "(":
                if i + 1 < c.count && c[i + 1] == "?" {
                    guard i + 2 < c.count && c[i + 2] == ":" else {
                        throw SparcError("lookaround and named groups cannot be searched as UTF-16LE (in \(expression))")
                    }
                    i += 3
                } else {
                    i += 1
                }
                out += "(?:"
            case ")", "|", "^", "$", "?", "*", "+":
                out.append(ch)
                i += 1
            case "{":
                // A quantifier: copied whole ({n}, {n,}, {n,m}).
                var j = i
                while j < c.count && c[j] != "}" { j += 1 }
                guard j < c.count else { throw SparcError("an unclosed {…} quantifier in \(expression)") }
                out += String(c[i...j])
                i = j + 1
            default:
                atom(String(ch))
                i += 1
            }
        }
        return out
    }
}

/// A Hyperscan database of regular expressions, scanned in block mode.
public final class HyperscanDatabase: @unchecked Sendable {
    let database: OpaquePointer
    let scratch: OpaquePointer

    /// Compiles `expressions` (ids are their indices) with per-expression flags.
    public init(expressions: [String], flags: [UInt32]) throws {
        var db: OpaquePointer?
        var error: UnsafeMutablePointer<hs_compile_error_t>?
        let ids = (0..<expressions.count).map(UInt32.init)
        let copies = expressions.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) }
        let status = hs_compile_multi(pointers, flags, ids, UInt32(expressions.count), UInt32(HS_MODE_BLOCK), nil, &db, &error)
        guard status == HS_SUCCESS, let db else {
            let message = error.map { e -> String in
                let text = e.pointee.message.map { String(cString: $0) } ?? "unknown error"
                let which = e.pointee.expression >= 0 && Int(e.pointee.expression) < expressions.count ? " in \(expressions[Int(e.pointee.expression)])" : ""
                return text + which
            } ?? "error \(status)"
            if let error { hs_free_compile_error(error) }
            throw SparcError("the pattern engine (Hyperscan) refused a pattern: \(message)")
        }
        var s: OpaquePointer?
        guard hs_alloc_scratch(db, &s) == HS_SUCCESS, let s else {
            hs_free_database(db)
            throw SparcError("the pattern engine (Hyperscan) could not allocate its scratch space (this CPU needs SSSE3)")
        }
        database = db
        scratch = s
    }

    deinit {
        hs_free_scratch(scratch)
        hs_free_database(database)
    }

    /// Scratch space for one scanning thread.
    public func threadScratch() throws -> OpaquePointer {
        var s: OpaquePointer?
        guard hs_clone_scratch(scratch, &s) == HS_SUCCESS, let s else { throw SparcError("out of memory for the pattern engine's scratch space") }
        return s
    }

    public static func freeScratch(_ s: OpaquePointer) { hs_free_scratch(s) }

    /// Scans a buffer; `onMatch(id, from, to)` returns true to stop. False when stopped.
    @discardableResult
    public func scan(
        _ buffer: UnsafePointer<UInt8>, length: Int, scratch: OpaquePointer, onMatch: (UInt32, UInt64, UInt64) -> Bool
    ) throws -> Bool {
        try withoutActuallyEscaping(onMatch) { handler in
            var box = handler
            let status = withUnsafeMutablePointer(to: &box) { ctx in
                hs_scan(
                    database, UnsafeRawPointer(buffer).assumingMemoryBound(to: CChar.self), UInt32(length), 0, scratch,
                    { id, from, to, _, ctx in
                        let handler = ctx!.assumingMemoryBound(to: ((UInt32, UInt64, UInt64) -> Bool).self).pointee
                        return handler(id, from, to) ? 1 : 0
                    }, ctx)
            }
            if status == HS_SCAN_TERMINATED { return false }
            guard status == HS_SUCCESS else { throw SparcError("the pattern engine (Hyperscan) failed to scan (error \(status))") }
            return true
        }
    }
}

import Foundation
import SparcSupport
import XCTest

@testable import HexView

final class SearchTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-search-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    /// A sparse file of `size` bytes with `plants` written at their offsets.
    func file(_ name: String, size: Int64, _ plants: [(Int64, [UInt8])], filler: UInt8? = nil) throws -> String {
        let path = dir + "/" + name
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        XCTAssertEqual(ftruncate(fd, off_t(size)), 0)
        if let filler {
            let block = [UInt8](repeating: filler, count: Int(size))
            _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
        for (off, bytes) in plants { _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(off)) } }
        return path
    }

    func offsets(_ query: SearchQuery, _ path: String) throws -> [UInt64] {
        try FileSearcher(query: query).search(file: path).map(\.offset)
    }

    func text(_ s: String, _ e: [SearchEncoding] = [.ascii], ignoreCase: Bool = false) throws -> SearchQuery {
        try .text(s, encodings: e, ignoreCase: ignoreCase)
    }

    func testFindsPatternsAcrossBlockEdgesAndHoleEdges() throws {
        let edge = Int64(FileSearcher.blockSize)
        let path = try file("edges", size: 3 * edge, [(edge - 3, Array("secret".utf8)), (0, Array("secret".utf8)), (3 * edge - 6, Array("secret".utf8))])
        XCTAssertEqual(try offsets(try text("secret"), path), [0, UInt64(edge - 3), UInt64(3 * edge - 6)])
    }

    func testOverlappingMatchesAreAllReported() throws {
        let path = try file("overlap", size: 100, [(10, Array("aaaaa".utf8))])
        XCTAssertEqual(try offsets(try text("aaa"), path), [10, 11, 12])
    }

    func testIgnoreCaseAndEncodings() throws {
        let le = Array("Hunter2".utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] })
        let be = Array("Hunter2".utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] })
        // Filled with 'A' so that no zero byte next to a UTF-16 plant makes the other byte order match too.
        let path = try file("enc", size: 1 << 16, [(100, Array("HUNTER2".utf8)), (300, le), (600, be), (900, Array("hunter2".utf8))], filler: 0x41)
        XCTAssertEqual(try offsets(try text("hunter2"), path), [900])
        XCTAssertEqual(try offsets(try text("hunter2", ignoreCase: true), path), [100, 900])
        let all = try FileSearcher(query: try text("Hunter2", SearchEncoding.allCases)).search(file: path)
        XCTAssertEqual(all.map(\.offset), [300, 600])
        XCTAssertEqual(all.map(\.encoding), ["utf16le", "utf16be"])
        XCTAssertEqual(try text("x", [.ascii, .utf8]).patterns.count, 1, "identical encodings are searched once")
        XCTAssertThrowsError(try text("façade", [.ascii]))
    }

    func testHexAndRegex() throws {
        let path = try file("hex", size: 4096, [(40, [0xde, 0xad, 0xbe, 0xef]), (200, Array("key=AB12cd".utf8))])
        XCTAssertEqual(try offsets(try .hex("de ad be ef"), path), [40])
        XCTAssertEqual(try offsets(try .hex("0xDEAD,0xBEEF"), path), [40])
        XCTAssertThrowsError(try SearchQuery.hex("xyz"))
        XCTAssertThrowsError(try SearchQuery.hex("abc"))
        let hits = try FileSearcher(query: try .regex("key=[A-Za-z0-9]+", ignoreCase: false)).search(file: path)
        XCTAssertEqual(hits.map(\.offset), [200])
        XCTAssertEqual(hits.first?.length, 10)
        XCTAssertThrowsError(try SearchQuery.regex("(", ignoreCase: false))
    }

    /// Regular expressions run on Hyperscan in ASCII and UTF-16LE: leftmost-longest hits that
    /// do not overlap, each with its encoding; a block edge does not split a hit.
    func testRegexInBothEncodingsAcrossBlocks() throws {
        let wide = Array("token=Zq9Zq9".utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] })
        let edge = Int64(FileSearcher.blockSize)
        let path = try file(
            "regex", size: edge + 8192,
            [(100, Array("token=abc123 token=XYZ ".utf8)), (5000, wide), (edge - 4, Array("token=edge77".utf8))])
        let hits = try FileSearcher(query: try .regex("token=[A-Za-z0-9]+", ignoreCase: false)).search(file: path)
        XCTAssertEqual(hits.map(\.offset), [100, 113, 5000, UInt64(edge - 4)])
        XCTAssertEqual(hits.map(\.length), [12, 9, 24, 12])
        XCTAssertEqual(hits.map(\.encoding), ["regex ascii", "regex ascii", "regex utf16le", "regex ascii"])
        let caseless = try FileSearcher(query: try .regex("TOKEN=x", ignoreCase: true, encodings: [.ascii])).search(file: path)
        XCTAssertEqual(caseless.map(\.offset), [113])
        XCTAssertThrowsError(try SearchQuery.regex("a", ignoreCase: false, encodings: [.utf16be]))
    }

    func testWideRegexRewrite() throws {
        XCTAssertEqual(try WideRegex.transform("a[0-9]{2}"), "(?:a\\x00)(?:[0-9]\\x00){2}")
        XCTAssertEqual(try WideRegex.transform("\\bx(y|z)?$"), "(?:x\\x00)(?:(?:y\\x00)|(?:z\\x00))?$")
        XCTAssertEqual(try WideRegex.transform("\\x41\\."), "(?:\\x41\\x00)(?:\\.\\x00)")
        XCTAssertThrowsError(try WideRegex.transform("(?=a)"))
        XCTAssertThrowsError(try WideRegex.transform("[abc"))
    }

    /// Any number of patterns in one pass, each hit reported under its own pattern: 40 of
    /// them (the scanner once took 16 and dropped the rest), one empty in the middle (which
    /// once shifted the indices of those after it).
    func testManyPatternsKeepTheirOwnIndex() throws {
        var patterns: [SearchQuery.Pattern] = []
        var plants: [(Int64, [UInt8])] = []
        for i in 0..<40 {
            let bytes = i == 7 ? [] : Array("needle-\(i)-\(String(repeating: "x", count: i % 5))!".utf8)
            patterns.append(.init(bytes: bytes, label: "p\(i)", ignoreCase: false))
            if !bytes.isEmpty { plants.append((Int64(i) * 5000 + 3, bytes)) }
        }
        let path = try file("many", size: 1 << 20, plants)
        let hits = try FileSearcher(query: SearchQuery(patterns: patterns, regex: nil, ignoreCase: false, display: "many")).search(file: path)
        XCTAssertEqual(hits.count, 39)
        for hit in hits {
            let i = Int((hit.offset - 3) / 5000)
            XCTAssertEqual(hit.encoding, "p\(i)", "hit at \(hit.offset)")
            XCTAssertEqual(hit.length, plants.first { $0.0 == Int64(hit.offset) }?.1.count)
        }
    }

    func testEmptyTinyAndPatternOfZeros() throws {
        XCTAssertEqual(try offsets(try text("abc"), try file("empty", size: 0, [])), [])
        XCTAssertEqual(try offsets(try text("abc"), try file("tiny", size: 2, [(0, Array("ab".utf8))])), [])
        XCTAssertEqual(try offsets(try text("ab"), try file("exact", size: 2, [(0, Array("ab".utf8))])), [0])
        // A pattern starting with zeros must be found inside holes too.
        let zeros = try file("zeros", size: 1 << 20, [(4096, [1])])
        XCTAssertEqual(try offsets(try .hex("00 01"), zeros), [4095])
    }

    func testSparseFileLargerThan4GiB() throws {
        let far: Int64 = (5 << 30) + 123
        let path = try file("big", size: 6 << 30, [(far, Array("beyond4g".utf8))])
        // What the searcher says it scanned (its progress total): the data and its overlap, not 6 GiB of holes.
        let scanned = SharedBox<Int64>(0)
        let hits = try FileSearcher(query: try text("beyond4g")).search(file: path, progress: { _, total in scanned.value = total })
        XCTAssertEqual(hits.map(\.offset), [UInt64(far)])
        XCTAssertLessThan(scanned.value, 1 << 20, "holes are skipped")
    }

    func testContextIsPrintable() throws {
        let path = try file("ctx", size: 64, [(10, Array("ab\u{1}SECRETxy".utf8))])
        let hit = try FileSearcher(query: try text("SECRET"), contextBytes: 3).search(file: path).first
        XCTAssertEqual(hit?.context, "ab.SECRETxy.")
    }

    func testUnreadableAndCancelled() throws {
        XCTAssertThrowsError(try FileSearcher(query: try text("a")).search(file: dir + "/missing"))
        mkfifo(dir + "/fifo", 0o600)
        XCTAssertThrowsError(try FileSearcher(query: try text("a")).search(file: dir + "/fifo")) {
            XCTAssertTrue("\($0)".contains("not a regular file"))
        }
        let cancel = SearchCancellation()
        cancel.cancel()
        let path = try file("c", size: 1 << 20, [(5, Array("abc".utf8))])
        XCTAssertThrowsError(try FileSearcher(query: try text("abc")).search(file: path, cancel: cancel)) {
            XCTAssertTrue("\($0)".contains("cancelled"))
        }
    }

    func testProgressReachesTotal() throws {
        let path = try file("p", size: 3 << 20, [], filler: 0x41)
        let last = SharedBox<(Int64, Int64)>((0, 0))
        _ = try FileSearcher(query: try text("zz")).search(file: path, progress: { last.value = ($0, $1) })
        XCTAssertEqual(last.value.0, last.value.1)
        XCTAssertEqual(last.value.1, 3 << 20)
    }
}

final class StringsTests: XCTestCase {
    func testASCIIAndUTF16Runs() throws {
        let path = NSTemporaryDirectory() + "sparc-strings-\(getpid())"
        defer { unlink(path) }
        var data = Data(count: 64)
        data.replaceSubrange(4..<12, with: Array("abcdefgh".utf8))
        data.replaceSubrange(20..<22, with: Array("xy".utf8))
        data.replaceSubrange(30..<40, with: Array("hello".utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }))
        try data.write(to: URL(fileURLWithPath: path))
        var found: [String] = []
        try StringsExtractor.scan(file: path, minimum: 4, encodings: [.ascii, .utf16le]) { off, text, enc in
            found.append("\(off):\(enc.rawValue):\(text)")
        }
        XCTAssertEqual(found, ["4:ascii:abcdefgh", "30:utf16le:hello"])
    }
}

final class HexPrinterTests: XCTestCase {
    func testPlainAndColouredRowsWithAddressAndHighlight() {
        let p = HexPrinter(color: false, address: { $0 + 0x1000 }, highlight: 1..<3)
        let line = p.line(HexRow.rows(Array("ab\0".utf8), offset: 0)[0])
        XCTAssertTrue(line.hasPrefix("00000000  000001000  61 62 00"), line)
        XCTAssertTrue(line.contains("00000000  000001000  61 62 00"), "highlighted bytes are upper-case without colour: \(line)")
        XCTAssertTrue(line.hasSuffix("|ab⋄|"))
        let c = HexPrinter(color: true).line(HexRow.rows([0x41], offset: 0)[0])
        XCTAssertNotNil(c.range(of: HexPrinter.ansi(.printable) + "41"), c.debugDescription)
    }
}

/// A file another user truncates while it is searched: one clear error, never SIGBUS (a
/// mapped file's pages past its new end would kill the process).
final class ShrinkingFileTests: XCTestCase {
    func testAFileTruncatedDuringTheSearchIsAnErrorNotACrash() throws {
        let path = NSTemporaryDirectory() + "shrinking-\(getpid())"
        defer { unlink(path) }
        // Four blocks of data, so the search reads after the truncation.
        var data = Data(repeating: 0x41, count: 4 * FileSearcher.blockSize)
        data.replaceSubrange(100..<106, with: Data("needle".utf8))
        try data.write(to: URL(fileURLWithPath: path))
        let searcher = FileSearcher(query: try SearchQuery.text("needle", encodings: [.ascii], ignoreCase: false))
        let truncated = SharedBox(false)
        XCTAssertThrowsError(
            try searcher.search(file: path, progress: { _, _ in
                // The other user, after the first block: the file is now much shorter.
                if !truncated.value {
                    truncated.value = true
                    _ = truncate(path, 4096)
                }
            })
        ) { error in
            XCTAssertTrue("\(error)".contains("changed while it was read"), "\(error)")
        }
        XCTAssertTrue(truncated.value)
    }

    func testStringsOfATruncatedFileIsAnError() throws {
        let path = NSTemporaryDirectory() + "shrinking-strings-\(getpid())"
        defer { unlink(path) }
        // Words of text between NULs, 20 MiB of them: strings reads it in several chunks.
        var data = Data()
        while data.count < 20 << 20 { data.append(Data("word\0".utf8)) }
        try data.write(to: URL(fileURLWithPath: path))
        let file = try OpenedFile(regular: path)
        var truncated = false
        XCTAssertThrowsError(
            try StringsExtractor.scan(file: file) { _, _, _ in
                if !truncated {
                    truncated = true
                    _ = truncate(path, 100)
                }
            }
        ) { XCTAssertTrue($0 is FileBlocks.Changed, "\($0)") }
    }
}

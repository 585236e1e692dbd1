import Foundation
import XCTest

@testable import SparcSupport

final class LineBufferTests: XCTestCase {
    func testSplitsLinesAcrossChunks() {
        var b = LineBuffer(maxLine: 100)
        XCTAssertEqual(b.append(Data("ab".utf8)), [])
        XCTAssertEqual(b.append(Data("c\nde\nf".utf8)), [.line(Data("abc".utf8)), .line(Data("de".utf8))])
        XCTAssertEqual(b.append(Data("\n".utf8)), [.line(Data("f".utf8))])
    }

    func testEmptyLinesAreFrames() {
        var b = LineBuffer(maxLine: 10)
        XCTAssertEqual(b.append(Data("\n\n".utf8)), [.line(Data()), .line(Data())])
    }

    func testOversizedLineIsDroppedAndStreamRecovers() {
        var b = LineBuffer(maxLine: 4)
        XCTAssertEqual(b.append(Data("0123456789".utf8)), [])
        XCTAssertEqual(b.append(Data("more\nok\n".utf8)), [.oversized(head: Data("0123456789".utf8)), .line(Data("ok".utf8))])
    }

    func testOversizedCompleteLine() {
        var b = LineBuffer(maxLine: 3)
        XCTAssertEqual(b.append(Data("abcd\nxy\n".utf8)), [.oversized(head: Data("abcd".utf8)), .line(Data("xy".utf8))])
    }
}

final class PathTests: XCTestCase {
    func testNormalize() {
        XCTAssertEqual(Path.normalize("/a/./b/../c//d/"), "/a/c/d")
        XCTAssertEqual(Path.normalize("a/../../b"), "b")
        XCTAssertEqual(Path.directory(of: "/x/y.sparc"), "/x")
        XCTAssertEqual(Path.directory(of: "/y"), "/")
        XCTAssertEqual(Path.directory(of: "y"), ".")
        XCTAssertEqual(Path.base(of: "/x/y.sparc/"), "y.sparc")
    }

    func testTrimmed() {
        XCTAssertEqual("  a b\t\n".trimmed, "a b")
        XCTAssertEqual(" \n".trimmed, "")
    }
}

final class FileSystemTests: XCTestCase {
    func testWriteAtomicallyReplacesContent() throws {
        let dir = NSTemporaryDirectory() + "sparc-fs-\(getpid())"
        try FileSystem.makeDirectories(dir)
        defer { FileSystem.removeTree(dir) }
        let p = dir + "/f"
        try FileSystem.writeAtomically(Data("one".utf8), to: p)
        try FileSystem.writeAtomically(Data("two".utf8), to: p)
        XCTAssertEqual(try FileSystem.readFile(p), Data("two".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["f"])
    }
}

final class SharedBoxTests: XCTestCase {
    func testConcurrentMutationsAreNotLost() {
        let box = SharedBox([Int](repeating: 0, count: 64))
        DispatchQueue.concurrentPerform(iterations: 64 * 50) { i in box.mutate { $0[i % 64] += 1 } }
        XCTAssertEqual(box.value, [Int](repeating: 50, count: 64))
    }
}

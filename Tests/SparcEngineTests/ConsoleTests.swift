import Foundation
import XCTest

@testable import SparcEngine

final class ConsoleTests: XCTestCase {
    func testUnescape() {
        XCTAssertEqual(SerialConsole.unescape("a\\nb\\t\\\\\\x41\\e"), Data("a\nb\t\\A\u{1B}".utf8))
        XCTAssertEqual(SerialConsole.unescape("\\q\\x4"), Data("\\q\\x4".utf8))
        XCTAssertEqual(SerialConsole.unescape("plain"), Data("plain".utf8))
    }

    func testShellQuoteSurvivesQuotes() throws {
        let odd = "/tmp/it's a \"bundle\"/$x"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "printf %s \(shellQuote(odd))"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), odd)
        XCTAssertEqual(shellQuote("a'b"), "'a'\\''b'")
    }
}

import Foundation
import XCTest

@testable import SparcEngine

final class ConsoleTests: XCTestCase {
    func testUnescape() {
        XCTAssertEqual(SerialConsole.unescape("a\\nb\\t\\\\\\x41\\e"), Data("a\nb\t\\A\u{1B}".utf8))
        XCTAssertEqual(SerialConsole.unescape("\\q\\x4"), Data("\\q\\x4".utf8))
        XCTAssertEqual(SerialConsole.unescape("plain"), Data("plain".utf8))
    }
}

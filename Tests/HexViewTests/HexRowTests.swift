import XCTest

@testable import HexView

final class HexRowTests: XCTestCase {
    func testCategories() {
        XCTAssertEqual(ByteCategory(0), .null)
        XCTAssertEqual(ByteCategory(0x41), .printable)
        XCTAssertEqual(ByteCategory(0x0A), .whitespace)
        XCTAssertEqual(ByteCategory(0x07), .otherASCII)
        XCTAssertEqual(ByteCategory(0xC3), .nonASCII)
    }

    func testRowTextAndSqueezing() {
        let data = Array("sparc!".utf8) + [UInt8](repeating: 0, count: 58)
        let rows = HexRow.rows(data, offset: 0x1000)
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[0].text, "00001000  73 70 61 72 63 21 00 00  00 00 00 00 00 00 00 00  |sparc!⋄⋄⋄⋄⋄⋄⋄⋄⋄⋄|")
        XCTAssertEqual(rows[1], .bytes(offset: 0x1010, data: [UInt8](repeating: 0, count: 16)))
        XCTAssertEqual(rows[2], .squeezed)
        XCTAssertEqual(HexRow.rows(data, squeeze: false).count, 4)
    }

    func testShortLastRowIsPadded() {
        let row = HexRow.rows([0x41, 0x0A])[0]
        XCTAssertEqual(row.text, "00000000  41 0a" + String(repeating: " ", count: 14 * 3 + 3) + "|A_|")
    }
}

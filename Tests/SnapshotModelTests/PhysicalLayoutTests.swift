import XCTest

@testable import SnapshotModel

final class PhysicalLayoutTests: XCTestCase {
    func testSmallGuestIsIdentityAndDropsBeyondRAM() {
        let l = PhysicalLayout(ramBytes: 256 << 20)
        XCTAssertEqual(l.fileRanges(physical: 0x1000, length: 0x2000), [0x1000..<0x3000])
        XCTAssertEqual(l.fileRanges(physical: (256 << 20) - 10, length: 100), [(256 << 20) - 10..<(256 << 20)])
        XCTAssertEqual(l.fileRanges(physical: 300 << 20, length: 4096), [])
        XCTAssertEqual(l.fileRanges(physical: 0xFEE0_0000, length: 4096), [])
    }

    func testLargeGuestSplitsAtTwoGiBAndResumesAtFourGiB() {
        let l = PhysicalLayout(ramBytes: 4 << 30)
        XCTAssertEqual(l.lowMemory, 0x8000_0000)
        XCTAssertEqual(l.fileRanges(physical: 0x7FFF_F000, length: 0x2000), [0x7FFF_F000..<0x8000_0000])
        XCTAssertEqual(l.fileRanges(physical: 0x1_0000_0000, length: 0x1000), [0x8000_0000..<0x8000_1000])
        XCTAssertEqual(l.fileRanges(physical: 0x1_0000_0000 + (2 << 30) - 0x1000, length: 0x3000), [(4 << 30) - 0x1000..<(4 << 30)])
        XCTAssertEqual(l.fileRanges(physical: 0xC000_0000, length: 0x1000), [], "PCI hole holds no RAM")
    }
}

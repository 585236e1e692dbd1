import GuestQuery
import XCTest

@testable import GuestMemory

/// A guest's RAM as a byte array, with the kernel's records written into it as Linux 6.1 lays them out.
final class FakeGuest: GuestPhysicalMemory {
    var ram: [UInt8]
    static let pageSize = 64
    /// Struct pages of all frames from this physical address on (one run).
    let memmapBase: UInt64
    let frames: UInt64
    static let vmemmap: UInt64 = 0xffff_ea00_0000_0000

    init(frames: UInt64) {
        self.frames = frames
        ram = [UInt8](repeating: 0, count: Int(frames) * 4096)
        // The memmap lives in the last sixty-fourth of RAM.
        memmapBase = frames * 4096 - frames * UInt64(Self.pageSize)
        for pfn in 0..<frames { setType(pfn, 0xffff_ffff) }
        for pfn in 0..<frames { setRefcount(pfn, 1) }
    }

    func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard address <= UInt64(ram.count), UInt64(buffer.count) <= UInt64(ram.count) - address else { return false }
        ram.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(address)..<(Int(address) + buffer.count)])) }
        return true
    }

    func put<T: FixedWidthInteger>(_ value: T, at address: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes in
            for (i, b) in bytes.enumerated() { ram[Int(address) + i] = b }
        }
    }

    func record(_ pfn: UInt64) -> UInt64 { memmapBase + pfn * UInt64(Self.pageSize) }
    func setType(_ pfn: UInt64, _ type: UInt32) { put(type, at: record(pfn) + 48) }
    func setRefcount(_ pfn: UInt64, _ count: UInt32) { put(count, at: record(pfn) + 52) }
    func markBuddy(_ pfn: UInt64, order: UInt64) {
        setType(pfn, 0xffff_ffff & ~0x80)
        put(order, at: record(pfn) + 40)
        for p in pfn..<min(frames, pfn + (1 << min(order, 20))) { setRefcount(p, 0) }
    }
    func virtualList(_ pfn: UInt64) -> UInt64 { Self.vmemmap + pfn * UInt64(Self.pageSize) + 8 }

    /// A per-CPU list with its head at physical `head` (virtual `headVirtual`) holding `pfns`.
    func perCPUList(head: UInt64, headVirtual: UInt64, pfns: [UInt64]) {
        var previous = head
        for pfn in pfns {
            put(virtualList(pfn), at: previous)
            setRefcount(pfn, 0)
            previous = record(pfn) + 8
        }
        put(headVirtual, at: previous)
    }

    var layout: GuestMemoryLayout {
        GuestMemoryLayout(
            page: .init(size: Self.pageSize, flagsOffset: 0, privateOffset: 40, typeOffset: 48, refcountOffset: 52, listOffset: 8),
            buddyTypeBase: 0xf000_0000, buddyFlag: 0x80, maxOrder: 10, swapCacheBit: 10, swapBackedBit: 19, headBit: 16,
            vmemmap: Self.vmemmap, memmap: [.init(pfn: 0, count: frames, physical: memmapBase)])
    }
}

final class FreeMemoryScanTests: XCTestCase {
    func testBuddyBlocksOfEveryOrderAreFree() {
        let guest = FakeGuest(frames: 4096)
        guest.markBuddy(16, order: 4)
        guest.markBuddy(1024, order: 10)
        guest.markBuddy(33, order: 0)
        let result = FreeMemoryScan.scan(memory: guest, layout: guest.layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [16..<32, 33..<34, 1024..<2048])
        XCTAssertEqual(result.buddyFrames, 16 + 1 + 1024)
        XCTAssertEqual(result.notes, [])
    }

    func testRecordsThatCannotBeABlockAreIgnored() {
        let guest = FakeGuest(frames: 4096)
        guest.markBuddy(17, order: 4)  // not aligned to its order
        guest.markBuddy(2048, order: 30)  // beyond the largest order
        guest.markBuddy(4000, order: 9)  // would run past the end: cut at the frame limit... but misaligned too
        let result = FreeMemoryScan.scan(memory: guest, layout: guest.layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [])
    }

    func testABlockIsCutAtTheFrameLimit() {
        let guest = FakeGuest(frames: 4096)
        guest.markBuddy(3072, order: 10)
        let result = FreeMemoryScan.scan(memory: guest, layout: guest.layout, frameLimit: 3500)
        XCTAssertEqual(result.freeFrames, [3072..<3500])
    }

    func testPerCPUListsThatCloseAreFree() {
        let guest = FakeGuest(frames: 4096)
        let head: UInt64 = 100 * 4096
        let headVirtual: UInt64 = 0xffff_8880_0000_0000 + head
        guest.perCPUList(head: head, headVirtual: headVirtual, pfns: [200, 201, 305])
        var layout = guest.layout
        layout.freeLists = [.init(order: 0, headVirtual: headVirtual, headPhysical: head)]
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [200..<202, 305..<306])
        XCTAssertEqual(result.perCPUFrames, 3)
    }

    func testAListThatDoesNotCloseIsNotUsed() {
        let guest = FakeGuest(frames: 4096)
        let head: UInt64 = 100 * 4096
        let headVirtual: UInt64 = 0xffff_8880_0000_0000 + head
        guest.perCPUList(head: head, headVirtual: headVirtual, pfns: [200, 201, 202])
        // A cycle: 202 links back to 201, never to the head.
        guest.put(guest.virtualList(201), at: guest.record(202) + 8)
        var layout = guest.layout
        layout.freeLists = [.init(order: 0, headVirtual: headVirtual, headPhysical: head)]
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [])
        XCTAssertEqual(result.notes.count, 1)
    }

    func testAListThroughAPageInUseIsNotUsed() {
        let guest = FakeGuest(frames: 4096)
        let head: UInt64 = 100 * 4096
        let headVirtual: UInt64 = 0xffff_8880_0000_0000 + head
        guest.perCPUList(head: head, headVirtual: headVirtual, pfns: [200, 210])
        guest.setRefcount(210, 2)
        var layout = guest.layout
        layout.freeLists = [.init(order: 0, headVirtual: headVirtual, headPhysical: head)]
        XCTAssertEqual(FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096).freeFrames, [])
    }

    func testPoisonedGuestsKeepTheirFreePages() {
        let guest = FakeGuest(frames: 4096)
        guest.markBuddy(16, order: 4)
        var layout = guest.layout
        layout.poisonsFreePages = true
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [16..<32])
        XCTAssertEqual(result.framesToLeaveOut, [])
        XCTAssertTrue(result.poisoned)
    }

    func testAnUnknownRecordShapeSavesEverything() {
        let guest = FakeGuest(frames: 4096)
        guest.markBuddy(16, order: 4)
        var layout = guest.layout
        layout.page.typeOffset = 4000
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        XCTAssertEqual(result.freeFrames, [])
        XCTAssertFalse(result.notes.isEmpty)
    }

    func testFreeSlotsAndSlotsOnlyTheSwapCacheHoldsForUnusedOrExcludedPagesAreZeroed() {
        let guest = FakeGuest(frames: 4096)
        // Swap map of 16 slots at physical 50 * 4096: slot 0 bad (header), 1-3 used, 4-7 free,
        // 8 cached for an excluded page, 9 cached for a bystander's page, 10 cached for a page
        // nobody maps, 11 used by a page table and cached (count 1), 12 freed into a per-CPU
        // batch (no page), 13 cached for a compound page's subpage, 14-15 free.
        let map: UInt64 = 50 * 4096
        let bytes: [UInt8] = [0x3f, 1, 2, 1, 0, 0, 0, 0, 0x40, 0x40, 0x40, 0x41, 0x40, 0x40, 0, 0]
        for (i, b) in bytes.enumerated() { guest.ram[Int(map) + i] = b }
        // (frame, slot, mapped): 300 excluded, 301 a bystander's, 302 nobody's, 303 nobody's but its slot is referenced.
        for (pfn, slot, mapped) in [(UInt64(300), UInt64(8), true), (301, 9, true), (302, 10, false), (303, 11, false)] {
            guest.put(UInt64(1 << 10 | 1 << 19), at: guest.record(pfn))
            guest.put(slot, at: guest.record(pfn) + 40)
            guest.setType(pfn, mapped ? 0 : 0xffff_ffff)
        }
        // A compound page (head flag) in the swap cache from slot 13 on, mapped by nobody as far as its head says.
        guest.put(UInt64(1 << 10 | 1 << 19 | 1 << 16), at: guest.record(512))
        guest.put(UInt64(13), at: guest.record(512) + 40)
        var layout = guest.layout
        layout.swapAreas = [
            .init(
                type: 0, disk: "vda", startSector: 2048, slots: 16, extents: [.init(firstSlot: 0, slots: 16, block: 0)],
                map: [.init(firstSlot: 0, physical: map, length: 16)])
        ]
        let word: UInt64 = guest.ram.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(map), as: UInt64.self) }
        layout.checks = [GuestMemoryLayout.Check(physical: map, value: UInt64(littleEndian: word))]
        // Byte ranges within a page (a socket's payload) are no whole page: they change nothing.
        let result = FreeMemoryScan.scan(
            memory: guest, layout: layout, frameLimit: 4096, excludedPhysical: [300 * 4096..<301 * 4096, 301 * 4096 + 16..<301 * 4096 + 48])
        let base: UInt64 = 2048 * 512
        let expected: [DiskByteRange] = [
            DiskByteRange(offset: base + 4 * 4096, length: 5 * 4096), DiskByteRange(offset: base + 10 * 4096, length: 4096),
            DiskByteRange(offset: base + 12 * 4096, length: 4096), DiskByteRange(offset: base + 14 * 4096, length: 2 * 4096),
        ]
        XCTAssertEqual(result.swapRanges, expected)
        XCTAssertEqual(result.freeSlots, 6)
        XCTAssertEqual(result.cachedSlots, 3)
        // The cached page nobody maps is never read again: left out of memory too.
        XCTAssertEqual(result.freeFrames, [302..<303])
        XCTAssertEqual(result.unusedSwapCacheFrames, 1)
    }

    func testSwapFileExtentsPlaceSlots() {
        let guest = FakeGuest(frames: 4096)
        let map: UInt64 = 50 * 4096
        let bytes: [UInt8] = [0x3f, 0, 1, 0]
        for (i, b) in bytes.enumerated() { guest.ram[Int(map) + i] = b }
        var layout = guest.layout
        layout.swapAreas = [
            .init(
                type: 0, disk: "vda", startSector: 8, slots: 4,
                extents: [.init(firstSlot: 0, slots: 2, block: 100), .init(firstSlot: 2, slots: 2, block: 500)],
                map: [.init(firstSlot: 0, physical: map, length: 4)])
        ]
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        let expected: [DiskByteRange] = [DiskByteRange(offset: 4096 + 101 * 4096, length: 4096), DiskByteRange(offset: 4096 + 501 * 4096, length: 4096)]
        XCTAssertEqual(result.swapRanges, expected)
    }

    func testSwapIsLeftAloneWhenAnAreaChangedOrLiesElsewhere() {
        let guest = FakeGuest(frames: 4096)
        let map: UInt64 = 50 * 4096
        var layout = guest.layout
        layout.swapAreas = [
            .init(type: 0, disk: "vda", startSector: 0, slots: 4, extents: [.init(firstSlot: 0, slots: 4, block: 0)], map: [.init(firstSlot: 0, physical: map, length: 4)])
        ]
        layout.checks = [.init(physical: map + 64, value: 0xdead)]
        XCTAssertEqual(FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096).swapRanges, [])
        layout.checks = []
        layout.swapAreas[0].disk = "vdb"
        let elsewhere = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 4096)
        XCTAssertEqual(elsewhere.swapRanges, [])
        XCTAssertEqual(elsewhere.notes.count, 1)
    }

    func testHugeClaimsStayBounded() {
        let guest = FakeGuest(frames: 256)
        var layout = guest.layout
        layout.memmap = [.init(pfn: 0, count: UInt64.max, physical: guest.memmapBase)]
        layout.swapAreas = [
            .init(
                type: 0, disk: "vda", startSector: UInt64.max, slots: UInt64.max, extents: [.init(firstSlot: 0, slots: UInt64.max, block: UInt64.max)],
                map: [.init(firstSlot: 0, physical: 0, length: UInt64.max)])
        ]
        let result = FreeMemoryScan.scan(memory: guest, layout: layout, frameLimit: 256)
        XCTAssertEqual(result.swapRanges, [])
    }
}

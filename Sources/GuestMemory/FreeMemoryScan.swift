import GuestQuery
import SparcSupport

/// Finds, in a paused guest's RAM, the memory and the swap slots its kernel holds as free.
///
/// The records read are the allocator's own (`struct page` of every frame, the per-CPU free
/// lists, each swap area's usage map), read at the pause, so what is left out is exactly what
/// the restored kernel will believe free: nothing the guest still uses is touched, whatever it
/// did between the agent's answer and the pause. The guest's records are data, not truth:
/// every count, offset and link is bounded, and a list that does not close is not used.
public enum FreeMemoryScan {
    /// What the scan found.
    public struct Result: Equatable, Sendable {
        /// Free frames (page frame numbers), sorted and merged.
        public var freeFrames: [Range<UInt64>] = []
        /// The guest poisons freed pages: they must keep its pattern (see `framesToLeaveOut`).
        public var poisoned = false
        /// The free frames the image may leave out (read back as zeros).
        public var framesToLeaveOut: [Range<UInt64>] { poisoned ? [] : freeFrames }
        /// Frames on the buddy allocator's free lists.
        public var buddyFrames: UInt64 = 0
        /// Frames on the per-CPU free lists.
        public var perCPUFrames: UInt64 = 0
        /// Swap-cache pages nobody maps or will read again (their slot is referenced by no one).
        public var unusedSwapCacheFrames: UInt64 = 0
        /// Byte ranges of the VM's disk (swap slots) to zero in the bundle's copy.
        public var swapRanges: [DiskByteRange] = []
        /// Free swap slots among them.
        public var freeSlots: UInt64 = 0
        /// Slots no page table refers to but the swap cache holds (or a per-CPU batch), for pages
        /// nobody maps or only excluded processes do.
        public var cachedSlots: UInt64 = 0
        /// What was not done, and why.
        public var notes: [String] = []
    }

    /// `SWAP_HAS_CACHE` in a swap map byte: the slot is in the swap cache.
    static let swapHasCache: UInt8 = 0x40
    /// Pages per read of the memmap.
    static let structsPerRead = 4096
    /// Links followed in one per-CPU list, and in all of them.
    static let maxListLength = 1 << 16
    static let maxListSteps = 1 << 22

    /// Scans `memory` as `layout` describes it. `frameLimit` bounds every frame number;
    /// `excludedPhysical` are the guest-physical ranges the exclusion leaves out (their
    /// swap-cache slots are zeroed too); `swapDisk` is the guest's name of the VM's disk.
    public static func scan(
        memory: GuestPhysicalMemory, layout: GuestMemoryLayout, frameLimit: UInt64, excludedPhysical: [Range<UInt64>] = [],
        swapDisk: String = "vda", cancel: Cancellation? = nil
    ) -> Result {
        var result = Result()
        guard let memmap = Memmap(layout, frameLimit: frameLimit) else {
            result.notes.append("the guest kernel's page records are of a shape sparc does not know: free memory is saved")
            return result
        }
        var swapCache: [UInt64: SwapCachePage] = [:]
        var frames = scanBuddy(memory, memmap, layout: layout, frameLimit: frameLimit, swapCache: &swapCache, into: &result, cancel: cancel)
        frames += scanPerCPULists(memory, memmap, layout: layout, frameLimit: frameLimit, into: &result)
        if cancel?.isCancelled == true { return Result(notes: ["cancelled"]) }
        // Whole pages only: a partly excluded page (a socket's few bytes) is still in use by others.
        let excluded = merged(excludedPhysical.compactMap { r -> Range<UInt64>? in
            let first = r.lowerBound / 4096 + (r.lowerBound % 4096 == 0 ? 0 : 1)
            let end = r.upperBound / 4096
            return first < end ? first..<end : nil
        })
        frames += scanSwap(memory, layout: layout, swapCache: swapCache, excludedFrames: excluded, swapDisk: swapDisk, into: &result)
        result.freeFrames = merged(frames)
        if layout.poisonsFreePages {
            // The guest checks the pattern it wrote into a freed page when it hands it out again:
            // zeros would read as corruption. The pattern is all a poisoned free page holds.
            result.poisoned = true
        }
        return result
    }

    /// Where each frame's struct page lies, and how to read one.
    struct Memmap {
        let runs: [GuestMemoryLayout.MemmapRun]
        let page: GuestMemoryLayout.PageStruct
        let size: UInt64

        init?(_ layout: GuestMemoryLayout, frameLimit: UInt64) {
            let p = layout.page
            let fields = [p.flagsOffset + 8, p.privateOffset + 8, p.typeOffset + 4, p.refcountOffset + 4, p.listOffset + 16]
            guard (32...256).contains(p.size), fields.allSatisfy({ $0 <= p.size }),
                [p.flagsOffset, p.privateOffset, p.typeOffset, p.refcountOffset, p.listOffset].allSatisfy({ $0 >= 0 }),
                (0...20).contains(layout.maxOrder)
            else { return nil }
            page = p
            size = UInt64(p.size)
            // Runs inside the frame limit, sorted, no two claiming a frame.
            var out: [GuestMemoryLayout.MemmapRun] = []
            for r in layout.memmap.sorted(by: { $0.pfn < $1.pfn }) where r.pfn < frameLimit && r.count > 0 {
                var r = r
                r.count = min(r.count, frameLimit - r.pfn)
                if let last = out.last, r.pfn < last.pfn + last.count { continue }
                out.append(r)
            }
            runs = out
        }

        /// The guest-physical address of frame `pfn`'s struct page.
        func address(of pfn: UInt64) -> UInt64? {
            var lo = 0
            var hi = runs.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if runs[mid].pfn + runs[mid].count <= pfn { lo = mid + 1 } else { hi = mid }
            }
            guard lo < runs.count, runs[lo].pfn <= pfn else { return nil }
            let (offset, overflow) = runs[lo].physical.addingReportingOverflow((pfn - runs[lo].pfn) * size)
            return overflow ? nil : offset
        }
    }

    static func field<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, _ at: Int, _: T.Type) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: T.self))
    }

    static func isBuddy(_ type: UInt32, _ layout: GuestMemoryLayout) -> Bool {
        type & (layout.buddyTypeBase | layout.buddyFlag) == layout.buddyTypeBase
    }

    /// Free blocks of the buddy allocator: a head page marked PageBuddy, its order in `private`.
    /// A page in the swap cache: its frame, and whether any page table maps it (a compound
    /// page counts as mapped: its mappings are not read).
    struct SwapCachePage: Equatable {
        var pfn: UInt64
        var mapped: Bool
    }

    /// Subpages of the largest compound page the swap cache holds (a PMD-sized THP).
    static let compoundSlots: UInt64 = 512

    /// The swap entry (type << 48 | offset) of a page in the swap cache, if the record is one
    /// (swap-backed and in the swap cache), and whether it heads a compound page, whose
    /// subpages take the entries after it. Tail pages (bit 0 of the word after the flags)
    /// are their head's.
    static func swapCacheSlot(_ bytes: UnsafeRawBufferPointer, at base: Int, _ layout: GuestMemoryLayout) -> (slot: UInt64, compound: Bool)? {
        let page = layout.page
        let want: UInt64 = 1 << UInt64(layout.swapCacheBit & 63) | 1 << UInt64(layout.swapBackedBit & 63)
        let flags = field(bytes, base + page.flagsOffset, UInt64.self)
        guard flags & want == want, field(bytes, base + page.listOffset, UInt64.self) & 1 == 0, (1...63).contains(layout.swapShift) else { return nil }
        let entry = field(bytes, base + page.privateOffset, UInt64.self)
        let type = entry >> UInt64(layout.swapShift)
        let offset = entry & ((1 << UInt64(layout.swapShift)) - 1)
        guard type < 32, offset < 1 << 48 else { return nil }
        return (type << 48 | offset, flags & (1 << UInt64(layout.headBit & 63)) != 0)
    }

    static func scanBuddy(
        _ memory: GuestPhysicalMemory, _ memmap: Memmap, layout: GuestMemoryLayout, frameLimit: UInt64,
        swapCache: inout [UInt64: SwapCachePage], into result: inout Result, cancel: Cancellation?
    ) -> [Range<UInt64>] {
        var frames: [Range<UInt64>] = []
        var skipUntil: UInt64 = 0
        var unread: UInt64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: structsPerRead * memmap.page.size, alignment: 8)
        defer { buffer.deallocate() }
        for run in memmap.runs {
            var pfn = max(run.pfn, skipUntil)
            while pfn < run.pfn + run.count {
                if cancel?.isCancelled == true { return [] }
                let n = Int(min(UInt64(structsPerRead), run.pfn + run.count - pfn))
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(n * memmap.page.size)])
                guard memory.read(run.physical + (pfn - run.pfn) * memmap.size, into: chunk) else {
                    unread += UInt64(n)
                    pfn += UInt64(n)
                    continue
                }
                var i = 0
                while i < n {
                    let here = pfn + UInt64(i)
                    let base = i * memmap.page.size
                    let type: UInt32 = field(UnsafeRawBufferPointer(chunk), base + memmap.page.typeOffset, UInt32.self)
                    if isBuddy(type, layout) {
                        let order = field(UnsafeRawBufferPointer(chunk), base + memmap.page.privateOffset, UInt64.self)
                        if order <= UInt64(layout.maxOrder), here % (1 << order) == 0 {
                            let end = min(here + (1 << order), frameLimit)
                            frames.append(here..<end)
                            result.buddyFrames += end - here
                            skipUntil = end
                            if end - pfn >= UInt64(n) { break }
                            i = Int(end - pfn)
                            continue
                        }
                    } else if !layout.swapAreas.isEmpty, let cached = swapCacheSlot(UnsafeRawBufferPointer(chunk), at: base, layout) {
                        if cached.compound {
                            for k in 0..<compoundSlots { swapCache[cached.slot + k] = SwapCachePage(pfn: here + k, mapped: true) }
                        } else {
                            // _mapcount shares the type's place: -1 when no page table maps the page.
                            swapCache[cached.slot] = SwapCachePage(pfn: here, mapped: Int32(bitPattern: type) >= 0)
                        }
                    }
                    i += 1
                }
                pfn = max(pfn + UInt64(n), skipUntil)
            }
        }
        if unread > 0 { result.notes.append("the page records of \(unread) frame(s) could not be read: those frames are saved") }
        return frames
    }

    /// Pages on the per-CPU free lists: followed link by link from each list head; a list that
    /// does not lead back to its head (it was being changed at the pause) is not used.
    static func scanPerCPULists(
        _ memory: GuestPhysicalMemory, _ memmap: Memmap, layout: GuestMemoryLayout, frameLimit: UInt64, into result: inout Result
    ) -> [Range<UInt64>] {
        var frames: [Range<UInt64>] = []
        var steps = 0
        var broken = 0
        let page = memmap.page
        let recordBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: page.size, alignment: 8)
        defer { recordBytes.deallocate() }
        for list in layout.freeLists where (0...layout.maxOrder).contains(list.order) {
            var found: [Range<UInt64>] = []
            var next = memory.word(list.headPhysical)
            var closed = false
            var length = 0
            while let link = next, length < maxListLength, steps < maxListSteps {
                if link == list.headVirtual {
                    closed = true
                    break
                }
                length += 1
                steps += 1
                let (offset, under) = link.subtractingReportingOverflow(layout.vmemmap &+ UInt64(page.listOffset))
                guard !under, offset % memmap.size == 0 else { break }
                let pfn = offset / memmap.size
                let order = UInt64(list.order)
                guard pfn < frameLimit, pfn % (1 << order) == 0, let record = memmap.address(of: pfn),
                    memory.read(record, into: recordBytes)
                else { break }
                let bytes = UnsafeRawBufferPointer(recordBytes)
                // A free page on a per-CPU list: nobody holds a reference, and it is not the buddy's.
                guard field(bytes, page.refcountOffset, UInt32.self) == 0, !isBuddy(field(bytes, page.typeOffset, UInt32.self), layout) else { break }
                found.append(pfn..<min(pfn + (1 << order), frameLimit))
                next = field(bytes, page.listOffset, UInt64.self)
            }
            if closed {
                frames += found
                result.perCPUFrames += found.reduce(0) { $0 + UInt64($1.count) }
            } else {
                broken += 1
            }
        }
        if broken > 0 { result.notes.append("\(broken) per-CPU free list(s) were being changed at the pause: their pages are saved") }
        return frames
    }

    /// Swap slots the restored kernel will never read: free ones, and those only the swap cache
    /// holds (no page table or shmem file refers to the slot) for a page that nobody maps or
    /// only excluded processes do (killed before they run again). Returns the frames of such
    /// cached pages nobody maps: their contents are never read again either.
    static func scanSwap(
        _ memory: GuestPhysicalMemory, layout: GuestMemoryLayout, swapCache: [UInt64: SwapCachePage], excludedFrames: [Range<UInt64>],
        swapDisk: String, into result: inout Result
    ) -> [Range<UInt64>] {
        if let why = layout.swapUnavailable {
            result.notes.append("swap areas are not described (\(why)): their free slots are saved")
            return []
        }
        guard !layout.swapAreas.isEmpty else { return [] }
        for check in layout.checks where memory.word(check.physical) != check.value {
            result.notes.append("a swap area changed during the checkpoint: its free slots are saved")
            return []
        }
        func isExcluded(_ pfn: UInt64) -> Bool {
            var lo = 0
            var hi = excludedFrames.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if excludedFrames[mid].upperBound <= pfn { lo = mid + 1 } else { hi = mid }
            }
            return lo < excludedFrames.count && excludedFrames[lo].contains(pfn)
        }
        var ranges: [DiskByteRange] = []
        var unusedPages: [Range<UInt64>] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for area in layout.swapAreas {
            guard area.disk == swapDisk else {
                result.notes.append("swap area \(area.type) is on the guest's disk \(area.disk), not the VM's disk \(swapDisk): its free slots are not in the bundle")
                continue
            }
            let extents = area.extents.filter { $0.slots > 0 && $0.firstSlot < area.slots }.sorted { $0.firstSlot < $1.firstSlot }
            func diskOffset(_ slot: UInt64) -> UInt64? {
                guard let e = extents.last(where: { $0.firstSlot <= slot }), slot - e.firstSlot < e.slots else { return nil }
                let (block, o1) = e.block.addingReportingOverflow(slot - e.firstSlot)
                let (bytes, o2) = block.multipliedReportingOverflow(by: 4096)
                let (offset, o3) = bytes.addingReportingOverflow(area.startSector &* 512)
                return o1 || o2 || o3 || area.startSector > UInt64.max / 512 ? nil : offset
            }
            for piece in area.map where piece.length > 0 && piece.length <= 4096 && piece.firstSlot < area.slots {
                let length = Int(min(piece.length, area.slots - piece.firstSlot))
                let ok = buffer.withUnsafeMutableBytes { memory.read(piece.physical, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<length])) }
                guard ok else { continue }
                for i in 0..<length {
                    let slot = piece.firstSlot + UInt64(i)
                    // Slot 0 is the area's header (the kernel marks it bad; never touched regardless).
                    guard slot > 0, buffer[i] == 0 || buffer[i] == swapHasCache, let offset = diskOffset(slot) else { continue }
                    if buffer[i] == swapHasCache {
                        // No page table refers to the slot. A page in the swap cache for it that
                        // someone maps may be dropped clean and read back from the slot: kept,
                        // unless only excluded processes map it. Without such a page the slot is
                        // freed or reserved in a per-CPU batch and is written before it is read.
                        if let page = area.type < 32 ? swapCache[UInt64(area.type) << 48 | slot] : nil {
                            if !page.mapped {
                                unusedPages.append(page.pfn..<page.pfn + 1)
                                result.unusedSwapCacheFrames += 1
                            } else if !isExcluded(page.pfn) {
                                continue
                            }
                        }
                        result.cachedSlots += 1
                    } else {
                        result.freeSlots += 1
                    }
                    if let last = ranges.last, last.offset + last.length == offset {
                        ranges[ranges.count - 1].length += 4096
                    } else {
                        ranges.append(DiskByteRange(offset: offset, length: 4096))
                    }
                }
            }
        }
        result.swapRanges = DiskByteRange.merged(ranges)
        return unusedPages
    }

    /// Sorted, touching and overlapping ranges joined.
    public static func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }
}

import SparcSupport

/// Where the guest kernel records which memory and which swap slots are free.
///
/// The agent sends it just before the pause; the host reads the records themselves out of the
/// paused guest's RAM (see `FreeMemoryScan`), so what is left out is exactly what the
/// restored kernel will hold as free. Every address is a guest-physical one from the kernel's
/// page tables; nothing here is trusted beyond the guest's own RAM and disk.
public struct GuestMemoryLayout: Codable, Equatable, Sendable {
    /// `struct page`: its size and the offsets of the fields read.
    public struct PageStruct: Codable, Equatable, Sendable {
        public var size: Int
        public var flagsOffset: Int
        public var privateOffset: Int
        public var typeOffset: Int
        public var refcountOffset: Int
        /// `lru` / `pcp_list`: links a page into a per-CPU free list.
        public var listOffset: Int
        public init(size: Int, flagsOffset: Int, privateOffset: Int, typeOffset: Int, refcountOffset: Int, listOffset: Int) {
            self.size = size
            self.flagsOffset = flagsOffset
            self.privateOffset = privateOffset
            self.typeOffset = typeOffset
            self.refcountOffset = refcountOffset
            self.listOffset = listOffset
        }
    }

    /// The struct pages of `count` frames from `pfn` lie from guest-physical `physical` on.
    public struct MemmapRun: Codable, Equatable, Sendable {
        public var pfn: UInt64
        public var count: UInt64
        public var physical: UInt64
        public init(pfn: UInt64, count: UInt64, physical: UInt64) {
            self.pfn = pfn
            self.count = count
            self.physical = physical
        }
    }

    /// A per-CPU list of free pages of one order: its head's virtual and physical address.
    public struct FreeList: Codable, Equatable, Sendable {
        public var order: Int
        public var headVirtual: UInt64
        public var headPhysical: UInt64
        public init(order: Int, headVirtual: UInt64, headPhysical: UInt64) {
            self.order = order
            self.headVirtual = headVirtual
            self.headPhysical = headPhysical
        }
    }

    /// An active swap area on the VM's disk.
    public struct SwapArea: Codable, Equatable, Sendable {
        /// Slots `firstSlot..<firstSlot+slots` lie at page `block` on of the area's partition.
        public struct Extent: Codable, Equatable, Sendable {
            public var firstSlot: UInt64
            public var slots: UInt64
            public var block: UInt64
            public init(firstSlot: UInt64, slots: UInt64, block: UInt64) {
                self.firstSlot = firstSlot
                self.slots = slots
                self.block = block
            }
        }
        /// The usage bytes of `length` slots from `firstSlot` lie from guest-physical `physical` on.
        public struct MapPiece: Codable, Equatable, Sendable {
            public var firstSlot: UInt64
            public var physical: UInt64
            public var length: UInt64
            public init(firstSlot: UInt64, physical: UInt64, length: UInt64) {
                self.firstSlot = firstSlot
                self.physical = physical
                self.length = length
            }
        }
        public var type: Int
        /// The whole disk the area lies on, as the guest names it (the VM's disk is `vda`).
        public var disk: String
        /// Where the area's partition starts on that disk, in 512-byte sectors.
        public var startSector: UInt64
        public var slots: UInt64
        public var extents: [Extent]
        public var map: [MapPiece]
        public init(type: Int, disk: String, startSector: UInt64, slots: UInt64, extents: [Extent] = [], map: [MapPiece] = []) {
            self.type = type
            self.disk = disk
            self.startSector = startSector
            self.slots = slots
            self.extents = extents
            self.map = map
        }
    }

    /// Eight bytes at `physical` that must still read `value` at the pause for the swap maps to be trusted.
    public struct Check: Codable, Equatable, Sendable {
        public var physical: UInt64
        public var value: UInt64
        public init(physical: UInt64, value: UInt64) {
            self.physical = physical
            self.value = value
        }
    }

    public var page: PageStruct
    /// PageBuddy: `(page_type & (typeBase | buddyFlag)) == typeBase`.
    public var buddyTypeBase: UInt32
    public var buddyFlag: UInt32
    public var maxOrder: Int
    /// Bit numbers in `page->flags`.
    public var swapCacheBit: Int
    public var swapBackedBit: Int
    public var headBit: Int
    /// The virtual address of pfn 0's struct page: list links point into this array.
    public var vmemmap: UInt64
    public var memmap: [MemmapRun]
    public var freeLists: [FreeList]
    /// The guest poisons freed pages (`page_poison=1`): it checks the pattern when it hands them out again.
    public var poisonsFreePages: Bool
    /// The guest zeroes what it frees, pages and slab objects (`init_on_free=1`).
    public var zeroesOnFree: Bool
    /// `swp_entry_t`: type << swapShift | offset.
    public var swapShift: Int
    public var swapAreas: [SwapArea]
    public var checks: [Check]
    /// Why swap areas are not described (nil: they are, or there are none).
    public var swapUnavailable: GuestText?

    public init(
        page: PageStruct, buddyTypeBase: UInt32, buddyFlag: UInt32, maxOrder: Int, swapCacheBit: Int, swapBackedBit: Int,
        headBit: Int, vmemmap: UInt64, memmap: [MemmapRun] = [], freeLists: [FreeList] = [], poisonsFreePages: Bool = false,
        zeroesOnFree: Bool = false, swapShift: Int = 58, swapAreas: [SwapArea] = [], checks: [Check] = [], swapUnavailable: GuestText? = nil
    ) {
        self.page = page
        self.buddyTypeBase = buddyTypeBase
        self.buddyFlag = buddyFlag
        self.maxOrder = maxOrder
        self.swapCacheBit = swapCacheBit
        self.swapBackedBit = swapBackedBit
        self.headBit = headBit
        self.vmemmap = vmemmap
        self.memmap = memmap
        self.freeLists = freeLists
        self.poisonsFreePages = poisonsFreePages
        self.zeroesOnFree = zeroesOnFree
        self.swapShift = swapShift
        self.swapAreas = swapAreas
        self.checks = checks
        self.swapUnavailable = swapUnavailable
    }
}

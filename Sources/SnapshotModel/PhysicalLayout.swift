/// Maps guest-physical addresses to offsets in the RAM file of a q35 machine.
///
/// q35 puts RAM below 4 GiB up to the low-memory split (all of it when RAM is under
/// 2.75 GiB, else 2 GiB) and the rest from 4 GiB up; the RAM file holds both parts
/// back to back.
public struct PhysicalLayout: Equatable, Sendable {
    public let ramBytes: UInt64
    public let lowMemory: UInt64
    static let fourGiB: UInt64 = 1 << 32

    public init(ramBytes: UInt64) {
        self.ramBytes = ramBytes
        lowMemory = ramBytes >= 0xB000_0000 ? 0x8000_0000 : ramBytes
    }

    /// The RAM-file byte ranges behind a guest-physical range (empty in the PCI hole or beyond RAM).
    public func fileRanges(physical start: UInt64, length: UInt64) -> [Range<Int64>] {
        // A range running past the top of the address space is cut there (addresses come from bundles and operators).
        let (sum, overflow) = start.addingReportingOverflow(length)
        let end = overflow ? UInt64.max : sum
        var out: [Range<Int64>] = []
        if start < lowMemory {
            out.append(Int64(start)..<Int64(min(end, lowMemory)))
        }
        let highEnd = Self.fourGiB + (ramBytes - lowMemory)
        let highStart = max(start, Self.fourGiB)
        let highStop = min(end, highEnd)
        if highStart < highStop {
            let shift = Self.fourGiB - lowMemory
            out.append(Int64(highStart - shift)..<Int64(highStop - shift))
        }
        return out
    }

    /// One past the highest guest-physical frame number that can hold RAM (the owner map of a
    /// bundle may name no frame above it, give or take the firmware's reserved frames).
    public var frameLimit: UInt64 {
        let top = ramBytes > lowMemory ? Self.fourGiB + (ramBytes - lowMemory) : ramBytes
        return (top + 4095) / 4096 + (1 << 16)
    }

    /// The guest-physical address of a RAM-file offset.
    public func physicalAddress(fileOffset: UInt64) -> UInt64 {
        fileOffset < lowMemory ? fileOffset : fileOffset - lowMemory + Self.fourGiB
    }
}

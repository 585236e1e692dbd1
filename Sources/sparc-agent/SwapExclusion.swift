#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestQuery
import GuestProcfs
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Swapped-out pages of excluded processes.
///
/// Their only copy may be a slot in a swap file or partition on the VM's disk, which the
/// bundle's disk state would carry. Each such page is read back into memory (a read through
/// /proc/PID/mem faults it in, also from the swap cache), so the memory pass finds it present
/// and leaves it out; the slot keeps its data on the disk, so the slot's place on the VM's disk
/// is named for the host to zero in the bundle's copy. The guest, restored, never reads those
/// slots: the processes that own them are killed before they run.
struct SwapExclusion {
    struct Area {
        var path: String
        var isPartition: Bool
    }

    struct Slot: Hashable {
        var type: UInt64
        var offset: UInt64
    }

    static let pageSize = UInt64(ExclusionCollector.pageSize)
    /// Page map entries read at once: a reservation of a terabyte costs no more memory than this.
    static let chunkEntries = 1 << 16

    var warnings: [String] = []

    /// Active swap areas, in /proc/swaps order.
    static func activeAreas() -> [Area] {
        (GuestSystem.readText("/proc/swaps") ?? "").split(separator: "\n").dropFirst().compactMap { line -> Area? in
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 2 else { return nil }
            // /proc/swaps escapes spaces in names as \040.
            return Area(path: String(f[0]).replacing("\\040", with: " "), isPartition: f[1] == "partition")
        }
    }

    /// Calls `body(address, entry)` for every page-map entry of the process's user mappings,
    /// reading the page map in bounded chunks.
    static func forEachEntry(pid: Int32, _ body: (UInt64, UInt64) -> Void) -> Bool {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: chunkEntries)
        for m in ExclusionCollector.mappings(pid) where m.start < 0x8000_0000_0000 {
            var page = m.start / pageSize
            let end = m.end / pageSize
            while page < end {
                let n = Int(min(UInt64(chunkEntries), end - page))
                let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n * 8, off_t(page * 8)) }
                guard got > 0 else { break }
                for i in 0..<(got / 8) { body((page + UInt64(i)) * pageSize, entries[i]) }
                page += UInt64(got / 8)
            }
        }
        return true
    }

    /// The swap slot of a page-map entry that is swapped out (not present, not a file page).
    static func slot(_ entry: UInt64) -> Slot? {
        guard entry & (1 << 63) == 0, entry & (1 << 62) != 0, entry & (1 << 61) == 0 else { return nil }
        return Slot(type: entry & 0x1f, offset: (entry >> 5) & ((1 << 50) - 1))
    }

    /// Brings the excluded processes' swapped pages back and returns the byte ranges of their
    /// slots on the VM's disk. Refuses (throws) where it cannot name the slots' place.
    mutating func collect(_ processes: [ExcludedProcess]) throws -> [DiskByteRange] {
        let areas = Self.activeAreas()
        guard !areas.isEmpty else { return [] }
        var slots: [Slot: [(pid: Int32, address: UInt64)]] = [:]
        for p in processes {
            _ = Self.forEachEntry(pid: p.pid) { address, entry in
                if let s = Self.slot(entry) { slots[s, default: []].append((p.pid, address)) }
            }
        }
        guard !slots.isEmpty else { return [] }
        let owners = Set(processes.map(\.pid))
        let holders = Set(slots.values.flatMap { $0.map(\.pid) }).sorted()
        guard areas.count == 1 else {
            throw AgentFailure(
                .failed,
                "pid \(holders.map(String.init).joined(separator: ", ")) has \(slots.count) page(s) in swap and \(areas.count) swap areas are active: sparc cannot tell which area holds them; leave one swap area active ('swapoff') and checkpoint again"
            )
        }
        let area = areas[0]
        // A slot another process refers to too (memory shared since a fork) is that process's data as well: kept.
        var shared = Set<Slot>()
        for pid in GuestSystem.stats().map(\.pid) where !owners.contains(pid) && pid != getpid() {
            _ = Self.forEachEntry(pid: pid) { _, entry in
                if let s = Self.slot(entry), slots[s] != nil { shared.insert(s) }
            }
        }
        if !shared.isEmpty {
            warnings.append("\(shared.count) swapped page(s) of excluded processes are shared with other processes: kept in swap")
        }
        // Read back: the pages become present again, where the memory pass leaves them out.
        for (pid, addresses) in Dictionary(grouping: slots.filter { !shared.contains($0.key) }.values.flatMap { $0 }, by: \.pid) {
            let fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw AgentFailure(.failed, "pid \(pid): cannot read its memory back from swap") }
            defer { close(fd) }
            var byte: UInt8 = 0
            for a in addresses {
                guard pread(fd, &byte, 1, off_t(Int64(bitPattern: a.address))) == 1 else {
                    throw AgentFailure(.failed, "pid \(pid): cannot read a swapped page back (\(String(cString: strerror(errno))))")
                }
            }
        }
        let place = try DiskPlace(area)
        var ranges: [DiskByteRange] = []
        for s in slots.keys where !shared.contains(s) {
            ranges.append(DiskByteRange(offset: try place.diskOffset(ofSlot: s.offset), length: Self.pageSize))
        }
        return DiskByteRange.merged(ranges)
    }

    /// Where a swap area's slots lie on the VM's disk (the virtio disk `vda`).
    struct DiskPlace {
        /// Byte offset of the partition (or 0 for the whole disk) that holds the area or its file.
        var partitionStart: UInt64
        /// For a swap file: its extents on that partition.
        var extents: [sparc_extent]?

        init(_ area: Area) throws {
            var st = stat()
            guard stat(area.path, &st) == 0 else { throw AgentFailure(.failed, "swap area \(area.path): \(String(cString: strerror(errno)))") }
            let device = area.isPartition ? st.st_rdev : st.st_dev
            let (major, minor) = FileKey.split(device: UInt64(device))
            let sys = "/sys/dev/block/\(major):\(minor)"
            let name = (try? FileManager.default.destinationOfSymbolicLink(atPath: sys)).map { Path.base(of: $0) } ?? "?"
            guard name == "vda" || (name.hasPrefix("vda") && Int(name.dropFirst(3)) != nil) else {
                throw AgentFailure(
                    .failed,
                    "swap area \(area.path) is on /dev/\(name), not on the VM's disk: the excluded pages swapped there cannot be left out; swapoff it and checkpoint again"
                )
            }
            partitionStart = (UInt64(GuestSystem.readText(sys + "/start")?.trimmed ?? "0") ?? 0) * 512
            if !area.isPartition {
                let fd = open(area.path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw AgentFailure(.failed, "cannot open swap file \(area.path)") }
                defer { close(fd) }
                var out = [sparc_extent](repeating: sparc_extent(), count: 65536)
                let n = sparc_file_extents(fd, &out, Int32(out.count))
                guard n >= 0 else {
                    throw AgentFailure(.failed, "cannot map swap file \(area.path) to the disk: \(String(cString: strerror(-n)))")
                }
                extents = Array(out[0..<Int(n)])
            }
        }

        func diskOffset(ofSlot slot: UInt64) throws -> UInt64 {
            let logical = slot * SwapExclusion.pageSize
            guard let extents else { return partitionStart + logical }
            for e in extents where e.logical <= logical && logical + SwapExclusion.pageSize <= e.logical + e.length {
                return partitionStart + e.physical + (logical - e.logical)
            }
            throw AgentFailure(.failed, "swap slot \(slot) lies outside the swap file's extents")
        }
    }
}

/// Swapped-out pages of the excluded processes: read back into memory (where the page-table
/// pass finds them) and their slots named for zeroing in the bundle's disk copy.
struct SwapChannel: ExclusionChannel {
    let phase = "swap"
    let kernelScopeOnly = false
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws {
        var swap = SwapExclusion()
        collector.diskRanges += try swap.collect(processes)
        collector.warnings += swap.warnings
    }
}

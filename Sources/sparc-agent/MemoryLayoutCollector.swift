#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Asks the kernel helper where free memory and swap are recorded (its "layout" request).
///
/// Nothing is decided here: which pages and slots are free is read by the host from the paused
/// RAM. The agent only finds `swap_info` and `nr_swapfiles` in /proc/kallsyms (they are not
/// exported to modules; the helper checks that the kernel names these addresses so).
enum MemoryLayoutCollector {
    static func collect() throws -> GuestMemoryLayout {
        do {
            try ExclusionCollector.loadHelper()
        } catch let f as AgentFailure {
            throw AgentFailure(.failed, "free memory cannot be found without the kernel helper: \(f.message)")
        }
        let symbols = kernelSymbols(["swap_info", "nr_swapfiles"])
        let request = "layout \(String(symbols["swap_info"] ?? 0, radix: 16)) \(String(symbols["nr_swapfiles"] ?? 0, radix: 16))"
        let text = try ExclusionCollector.askHelper(request, [])
        return try parse(text)
    }

    /// Addresses of data symbols of the kernel proper (not of modules), from /proc/kallsyms.
    static func kernelSymbols(_ names: Set<String>) -> [String: UInt64] {
        var found: [String: UInt64] = [:]
        guard let file = fopen("/proc/kallsyms", "re") else { return found }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while found.count < names.count, fgets(&line, Int32(line.count), file) != nil {
            let fields = String(cString: line).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            guard fields.count == 3, names.contains(String(fields[2])), let address = UInt64(fields[0], radix: 16), address != 0 else { continue }
            found[String(fields[2])] = address
        }
        return found
    }

    /// Parses the helper's answer (see memory.c); a line of an unknown shape is an error, not skipped.
    static func parse(_ text: String) throws -> GuestMemoryLayout {
        var layout: GuestMemoryLayout?
        var page: GuestMemoryLayout.PageStruct?
        var areas: [Int: GuestMemoryLayout.SwapArea] = [:]
        var deferred: [(String, [UInt64])] = []
        func bad(_ line: Substring) -> AgentFailure { AgentFailure(.failed, "the kernel helper's layout has a line sparc does not know: \(line.prefix(80))") }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard let kind = f.first.map(String.init) else { continue }
            if kind == "noswap" {
                layout?.swapUnavailable = GuestText(String(f.dropFirst().joined(separator: " ")))
                continue
            }
            if kind == "swaparea" {
                guard f.count == 5, let type = Int(f[1], radix: 16), let start = UInt64(f[3], radix: 16), let slots = UInt64(f[4], radix: 16) else { throw bad(line) }
                let disk = String(f[2])
                let plain = disk.utf8.count <= 31 && disk.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
                areas[type] = .init(type: type, disk: plain ? disk : "?", startSector: start, slots: slots)
                continue
            }
            let numbers = f.dropFirst().compactMap { UInt64($0, radix: 16) }
            guard numbers.count == f.count - 1 else { throw bad(line) }
            switch (kind, numbers.count) {
            case ("page", 6):
                page = .init(
                    size: Int(numbers[0]), flagsOffset: Int(numbers[1]), privateOffset: Int(numbers[2]), typeOffset: Int(numbers[3]),
                    refcountOffset: Int(numbers[4]), listOffset: Int(numbers[5]))
            case ("buddy", 3):
                guard let page else { throw bad(line) }
                layout = GuestMemoryLayout(
                    page: page, buddyTypeBase: UInt32(truncatingIfNeeded: numbers[0]), buddyFlag: UInt32(truncatingIfNeeded: numbers[1]),
                    maxOrder: Int(numbers[2]), swapCacheBit: 0, swapBackedBit: 0, headBit: 0, vmemmap: 0)
            default:
                guard layout != nil else { throw bad(line) }
                deferred.append((kind, numbers))
            }
        }
        guard var layout else { throw AgentFailure(.failed, "the kernel helper did not describe struct page") }
        for (kind, n) in deferred {
            switch (kind, n.count) {
            case ("pageflags", 3): (layout.swapCacheBit, layout.swapBackedBit, layout.headBit) = (Int(n[0]), Int(n[1]), Int(n[2]))
            case ("vmemmap", 1): layout.vmemmap = n[0]
            case ("memmap", 3): layout.memmap.append(.init(pfn: n[0], count: n[1], physical: n[2]))
            case ("pcp", 3): layout.freeLists.append(.init(order: Int(n[0]), headVirtual: n[1], headPhysical: n[2]))
            case ("poison", 1): layout.poisonsFreePages = n[0] != 0
            case ("initonfree", 1): layout.zeroesOnFree = n[0] != 0
            case ("swapshift", 1): layout.swapShift = Int(n[0])
            case ("swapextent", 4): areas[Int(n[0])]?.extents.append(.init(firstSlot: n[1], slots: n[2], block: n[3]))
            case ("swapmap", 4): areas[Int(n[0])]?.map.append(.init(firstSlot: n[1], physical: n[2], length: n[3]))
            case ("check", 2): layout.checks.append(.init(physical: n[0], value: n[1]))
            default: throw AgentFailure(.failed, "the kernel helper's layout has a line sparc does not know: \(kind)")
            }
        }
        layout.swapAreas = areas.keys.sorted().compactMap { areas[$0] }
        return layout
    }
}

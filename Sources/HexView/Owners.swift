import GuestQuery

/// Whose memory a byte is in: a process mapping, or a kind of kernel memory, or free.
public struct PageOwner: Codable, Equatable, Sendable {
    public var pid: Int32?
    public var command: String?
    /// "[heap]", "[stack]", "[anon]", a file path; or the frame's kind when no process maps it.
    public var mapping: String
    /// Other processes that map the same page.
    public var alsoMappedBy: [Int32]

    public init(pid: Int32?, command: String?, mapping: String, alsoMappedBy: [Int32] = []) {
        self.pid = pid
        self.command = command
        self.mapping = mapping
        self.alsoMappedBy = alsoMappedBy
    }

    public var description: String {
        guard let pid else { return mapping }
        let others = alsoMappedBy.isEmpty ? "" : " (also pid \(alsoMappedBy.map(String.init).joined(separator: ",")))"
        return "pid \(pid) \(command ?? "?") \(mapping)" + others
    }
}

/// Looks up the owner of a frame in an owner map.
public struct OwnerIndex: Sendable {
    struct Entry {
        var first: UInt64
        var count: UInt64
        var process: Int
        var mapping: Int
    }

    let map: OwnerMap
    let entries: [Entry]

    public init(_ map: OwnerMap) {
        self.map = map
        var entries: [Entry] = []
        for (p, process) in map.processes.enumerated() {
            for (m, mapping) in process.mappings.enumerated() {
                // Runs come from a bundle: one that is empty or wraps around is dropped.
                for run in mapping.runs where run.count == 2 && run[1] > 0 && run[1] <= 1 << 40 && run[0] <= UInt64.max - run[1] {
                    entries.append(Entry(first: run[0], count: run[1], process: p, mapping: m))
                }
            }
        }
        self.entries = entries.sorted { $0.first < $1.first }
    }

    public func owner(ofFrame pfn: UInt64) -> PageOwner {
        // Entries sorted by first frame: scan back from the last one starting at or before pfn.
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].first <= pfn { lo = mid + 1 } else { hi = mid }
        }
        var owners: [Entry] = []
        var i = lo - 1
        while i >= 0 && owners.count < 64 {
            let e = entries[i]
            if e.first + e.count > pfn { owners.append(e) }
            if pfn - e.first > 1 << 20 { break }  // no run is that long in practice
            i -= 1
        }
        if let first = owners.last {
            let process = map.processes[first.process]
            let others = Array(Set(owners.dropLast().map { map.processes[$0.process].pid }).subtracting([process.pid])).sorted()
            return PageOwner(pid: process.pid, command: process.command, mapping: process.mappings[first.mapping].name, alsoMappedBy: others)
        }
        let cls = pfn < map.frameClasses.count
            ? OwnerMap.FrameClass(rawValue: map.frameClasses[map.frameClasses.startIndex + Int(pfn)]) ?? .kernel : .kernel
        return PageOwner(pid: nil, command: nil, mapping: cls.label, alsoMappedBy: [])
    }
}

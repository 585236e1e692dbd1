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

/// Records which process mapping (or which kind of kernel memory) each frame belongs to.
enum OwnerMapCollector {
    static func frameClass(_ flags: UInt64) -> OwnerMap.FrameClass {
        func bit(_ n: UInt64) -> Bool { flags & (1 << n) != 0 }
        if bit(20) { return .hole }  // NOPAGE
        if bit(10) { return .free }  // BUDDY
        if bit(24) { return .zeroPage }
        if bit(7) { return .slab }
        if bit(26) { return .pageTable }
        if bit(12) { return .anonymous }
        if bit(5) || bit(11) { return .pageCache }  // LRU or MMAP, not anonymous
        if bit(32) { return .reserved }
        return .kernel
    }

    static func collect() throws -> OwnerMap {
        let frames = ExclusionCollector.frameCount()
        let flags = try ExclusionCollector.readFrameTable("/proc/kpageflags", count: frames, chunks: Set(0...(frames / ExclusionCollector.chunkFrames)))
        let classes = Data(flags.map { frameClass($0).rawValue })
        var processes: [OwnerMap.Process] = []
        for st in GuestSystem.stats() where st.flags & GuestSystem.pfKthread == 0 {
            let fd = open("/proc/\(st.pid)/pagemap", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var byName: [String: [(first: UInt64, count: UInt64)]] = [:]
            var order: [String] = []
            for m in ExclusionCollector.mappings(st.pid) where m.start < 0x8000_0000_0000 {
                let name = m.path.isEmpty ? "[anon]" : m.path
                var runs = byName[name] ?? []
                if byName[name] == nil { order.append(name) }
                ExclusionCollector.forEachFrame(pagemapFD: fd, start: m.start, end: m.end) { _, pfn in
                    if let last = runs.last, last.first + last.count == pfn {
                        runs[runs.count - 1].count += 1
                    } else {
                        runs.append((pfn, 1))
                    }
                }
                byName[name] = runs
            }
            let mappings = order.compactMap { name in byName[name].flatMap { $0.isEmpty ? nil : OwnerMap.Mapping(name: name, runs: $0) } }
            processes.append(OwnerMap.Process(pid: st.pid, command: st.comm, mappings: mappings))
        }
        return OwnerMap(pageSize: 4096, processes: processes, frameClasses: classes)
    }
}

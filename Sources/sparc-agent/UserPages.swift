#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestProcfs
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The pages the excluded processes map (at every scope).
struct UserPagesChannel: ExclusionChannel {
    let phase = "user"
    let kernelScopeOnly = false
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws { try collector.collectUserPages(processes) }
}

/// Process pages: what the excluded processes map, found through their page tables.
extension ExclusionCollector {
    /// Frames per chunk of a /proc/kpage* file read at once.
    static let chunkFrames = 8192

    /// Reads the chunks of a /proc/kpage* file that hold `chunks`, into a table of `count`
    /// frames (others stay 0): under TCG every entry costs, and most frames are not ours.
    static func readFrameTable(_ path: String, count: Int, chunks: Set<Int>) throws -> [UInt64] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AgentFailure(.failed, "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var table = [UInt64](repeating: 0, count: count)
        // A short read would leave counts at 0 and make shared pages look private: all or nothing.
        let complete = table.withUnsafeMutableBytes { raw in
            chunks.sorted().allSatisfy { chunk in
                let first = chunk * chunkFrames
                guard first < count else { return true }
                let bytes = min(chunkFrames, count - first) * 8
                return pread(fd, raw.baseAddress! + first * 8, bytes, off_t(first * 8)) == bytes
            }
        }
        guard complete else { throw AgentFailure(.failed, "\(path) could not be read in full") }
        return table
    }

    /// One past the highest frame number: the end of the last zone in /proc/zoneinfo.
    static func frameCount() -> Int {
        var end = 0
        var spanned = 0
        // Each zone lists "spanned N" before its "start_pfn: M".
        for line in (GuestSystem.readText("/proc/zoneinfo") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2 && f[0] == "spanned" { spanned = Int(f[1]) ?? 0 }
            if f.count == 2 && f[0] == "start_pfn:" { end = max(end, (Int(f[1]) ?? 0) + spanned) }
        }
        return end
    }

    typealias Mapping = ProcMapping

    /// The mappings of a process. Large ones that hold no page, resident or swapped (address
    /// space reserved and never touched, as a JVM's heap), are left out: their page map
    /// would be gigabytes of empty entries.
    static func mappings(_ pid: Int32) -> [Mapping] {
        let all = allMappings(pid)
        guard all.contains(where: { $0.end - $0.start >= largeMapping }) else { return all }
        let empty = untouchedMappings(pid)
        return all.filter { $0.end - $0.start < largeMapping || !empty.contains($0.start) }
    }

    static let largeMapping = ProcMaps.largeMapping

    /// Starts of the large mappings that hold no page (see `ProcMaps.untouchedLarge`).
    static func untouchedMappings(_ pid: Int32) -> Set<UInt64> {
        ProcMaps.untouchedLarge(smaps: GuestSystem.readText("/proc/\(pid)/smaps") ?? "")
    }

    static func allMappings(_ pid: Int32) -> [Mapping] {
        ProcMaps.parse(GuestSystem.readText("/proc/\(pid)/maps") ?? "")
    }

    /// Entries of a page map read at a time: a process may reserve terabytes of address
    /// space (a JVM does) and touch little of it.
    static let pagemapChunk = 1 << 16

    /// Calls `body(pageIndex, pfn)` for the present pages of [start, end) in a page map, read
    /// in bounded chunks. False when the page map could not be read to the end.
    @discardableResult
    static func forEachFrame(pagemapFD fd: Int32, start: UInt64, end: UInt64, _ body: (Int, UInt64) -> Void) -> Bool {
        let pages = Int((end - start) / UInt64(pageSize))
        guard pages > 0 else { return true }
        let first = Int(start / UInt64(pageSize))
        var entries = [UInt64](repeating: 0, count: min(pages, pagemapChunk))
        var done = 0
        while done < pages {
            let n = min(pagemapChunk, pages - done)
            let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n * 8, off_t(first + done) * 8) }
            guard got == n * 8 else { return false }
            for i in 0..<n where entries[i] & (1 << 63) != 0 { body(done + i, entries[i] & ((1 << 55) - 1)) }
            done += n
        }
        return true
    }
    enum FileClass { case disk, memoryOnly, privateShared }

    /// Where a mapped or open file lives: on a disk (page cache can be evicted and
    /// re-read), in a memory-only file system (its pages are its only copy), or shared
    /// memory private to its processes (memfd, SysV, shared anonymous).
    static func classify(path: String, statPath: String) -> FileClass {
        if path.hasPrefix("/memfd:") || path.hasPrefix("/SYSV") || path.hasPrefix("/dev/zero") { return .privateShared }
        let magic = sparc_fs_type(statPath)
        guard magic != -1 else { return .memoryOnly }
        return magic == tmpfsMagic || magic == ramfsMagic ? .memoryOnly : .disk
    }

    /// Pages that excluded processes map: anonymous and COW pages, shared memory, and
    /// page cache of mapped files, unless another process maps the page too.
    func collectUserPages(_ processes: [ExcludedProcess]) throws {
        struct Source {
            var file: String?
            var cls: FileClass?
            var key: FileKey?
            /// The mapping may be executed, or the file is an executable or library (any
            /// mapping of it: text, read-only data).
            var executable = false
        }
        struct FileFacts {
            var cls: FileClass
            var executableFile: Bool
        }
        var factsByFile: [FileKey: FileFacts] = [:]
        var sources: [Source] = []
        var frames: [UInt64] = []
        var owners: [Int32] = []
        let frameCount = excludedMaps.count
        for p in processes {
            let fd = open("/proc/\(p.pid)/pagemap", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let why = String(cString: strerror(errno))
                // Gone since it was resolved: nothing of it is left to save.
                if !FileSystem.exists("/proc/\(p.pid)") { warnings.append("pid \(p.pid) exited during collection"); continue }
                try gap("pid \(p.pid): its page map cannot be read (\(why)), so its pages are not known")
                continue
            }
            defer { close(fd) }
            for m in Self.mappings(p.pid) where m.start < 0x8000_0000_0000 {
                let isFile = m.path.hasPrefix("/") && m.inode != 0
                // A file is classified once, however many mappings of it (a library has four or five).
                let facts: FileFacts?
                if !isFile {
                    facts = nil
                } else if let key = m.file, let known = factsByFile[key] {
                    facts = known
                } else {
                    let statPath = "/proc/\(p.pid)/map_files/\(String(m.start, radix: 16))-\(String(m.end, radix: 16))"
                    let cls = Self.classify(path: m.path, statPath: statPath)
                    let executableFile = cls != .privateShared && Self.isProgramFile(name: m.path, statPath: statPath)
                    facts = FileFacts(cls: cls, executableFile: executableFile)
                    if let key = m.file { factsByFile[key] = facts }
                }
                sources.append(
                    Source(file: isFile ? m.path : nil, cls: facts?.cls, key: m.file, executable: m.executable || facts?.executableFile == true))
                let owner = Int32(sources.count - 1)
                let complete = Self.forEachFrame(pagemapFD: fd, start: m.start, end: m.end) { _, pfn in
                    guard pfn < frameCount else { return }
                    excludedMaps[Int(pfn)] &+= 1
                    frames.append(pfn)
                    owners.append(owner)
                }
                if !complete && FileSystem.exists("/proc/\(p.pid)") {
                    try gap("pid \(p.pid): the page map of \(String(m.start, radix: 16))-\(String(m.end, radix: 16)) could not be read to its end")
                }
            }
        }
        let chunks = Set(frames.map { Int($0) / Self.chunkFrames })
        do {
            pageCounts = try Self.readFrameTable("/proc/kpagecount", count: frameCount, chunks: chunks)
            pageFlags = try Self.readFrameTable("/proc/kpageflags", count: frameCount, chunks: chunks)
        } catch {
            // Without the frame counts a shared page cannot be told from a private one.
            try gap("the guest's frame tables cannot be read (\((error as? AgentFailure)?.message ?? "\(error)")), so no page of the excluded processes was left out")
            return
        }
        var skippedMemoryFiles: [String: Int] = [:]
        for (i, pfn64) in frames.enumerated() {
            let pfn = Int(pfn64)
            guard marks[pfn] == Mark.none.rawValue else { continue }
            let flags = pageFlags[pfn]
            let source = sources[Int(owners[i])]
            if flags & Self.kpfZeroPage != 0 {
                marks[pfn] = Mark.kept.rawValue
            } else if pageCounts[pfn] > UInt64(excludedMaps[pfn]) {
                marks[pfn] = Mark.keptShared.rawValue
            } else if flags & Self.kpfAnon != 0 || source.file == nil || source.cls == .privateShared {
                marks[pfn] = Mark.user.rawValue
            } else if source.cls == .disk {
                if source.executable {
                    // Code and libraries: the file's own contents, which the guest runs from —
                    // the agent first, which is not frozen when a restored guest resumes and
                    // would fault a zeroed page in before the restore could evict it.
                    marks[pfn] = Mark.kept.rawValue
                } else if flags & Self.kpfDirty != 0 {
                    marks[pfn] = Mark.kept.rawValue
                    warnings.append("a dirty page of \(source.file!) was kept (it could not be written back)")
                } else {
                    marks[pfn] = Mark.pagecache.rawValue
                    evictFiles.insert(source.file!)
                }
            } else {
                // A memory-only file: its pages are its only copy. Left out only when the excluded processes alone hold it.
                switch memoryFileVerdict(name: source.file!, key: source.key, mappedExecutable: source.executable) {
                case .private(let anonymous) where anonymous || request.excludeMemoryFiles:
                    marks[pfn] = Mark.pagecache.rawValue
                    if !anonymous { removeFiles.insert(source.file!) }
                case .private:
                    marks[pfn] = Mark.kept.rawValue
                    skippedMemoryFiles[source.file!, default: 0] += 1
                case .kept(let why):
                    marks[pfn] = Mark.kept.rawValue
                    keptMemoryFiles[source.file!] = why
                }
            }
        }
        for (file, pages) in skippedMemoryFiles.sorted(by: { $0.key < $1.key }) {
            warnings.append("\(file) is on a memory-only file system: \(pages) mapped page(s) kept (--exclude-memory-files leaves them out and removes the file at restore)")
        }
    }
}

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

/// The page cache of the files they used, and memory-only files only they hold.
struct PageCacheChannel: ExclusionChannel {
    let phase = "pagecache"
    let kernelScopeOnly = true
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws { collector.collectPageCache(processes) }
}

/// Files and page cache: what the excluded processes read, wrote or mapped through files.
extension ExclusionCollector {
    /// Frames holding the resident page cache of an open file, found by mapping the file
    /// and reading our own page map: only resident pages are mapped, none is read.
    static func cachedFrames(ofOpenFile path: String) -> [UInt64] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 else { return [] }
        let length = (Int(st.st_size) + pageSize - 1) / pageSize * pageSize
        guard let base = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else { return [] }
        defer { munmap(base, length) }
        return residentFrames(base: base, length: length)
    }

    /// Frames of the resident pages of a shared mapping of ours, found by mapping them in
    /// (MADV_POPULATE_READ maps what is resident, copies nothing) and reading our page map.
    static func residentFrames(base: UnsafeMutableRawPointer, length: Int) -> [UInt64] {
        let pages = length / pageSize
        var resident = [UInt8](repeating: 0, count: pages)
        guard mincore(base, length, &resident) == 0 else { return [] }
        var i = 0
        while i < pages {
            guard resident[i] & 1 != 0 else {
                i += 1
                continue
            }
            var j = i
            while j < pages && resident[j] & 1 != 0 { j += 1 }
            _ = madvise(base + i * pageSize, (j - i) * pageSize, 22)  // MADV_POPULATE_READ: map, do not copy
            i = j
        }
        let self_ = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard self_ >= 0 else { return [] }
        defer { close(self_) }
        let start = UInt64(UInt(bitPattern: base))
        var frames: [UInt64] = []
        forEachFrame(pagemapFD: self_, start: start, end: start + UInt64(length)) { i, pfn in
            if resident[i] & 1 != 0 { frames.append(pfn) }
        }
        return frames
    }

    func collectPageCache(_ processes: [ExcludedProcess]) {
        var files: [String: String] = [:]  // "dev:inode" -> /proc/PID/fd/N
        var names: [String: String] = [:]
        for p in processes {
            let dir = "/proc/\(p.pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                let link = "\(dir)/\(fd)"
                var st = stat()
                guard stat(link, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                let key = "\(st.st_dev):\(st.st_ino)"
                if files[key] == nil {
                    files[key] = link
                    names[key] = (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? link
                }
            }
        }
        for (key, link) in files.sorted(by: { $0.key < $1.key }) {
            let name = names[key]!
            // memfds and SysV segments are memory-only too: their pages are their only copy.
            var cls = Self.classify(path: name, statPath: link)
            if cls == .privateShared { cls = .memoryOnly }
            if cls == .disk, Self.isProgramFile(name: name, statPath: link) {
                // An executable or library opened as a file: its pages are its own contents (as when mapped).
                continue
            }
            var removable = false
            if cls == .memoryOnly {
                var st = stat()
                let fileKey = stat(link, &st) == 0 ? FileKey(st) : nil
                switch memoryFileVerdict(name: name, key: fileKey, mappedExecutable: false, mode: st.st_mode) {
                case .kept(let why):
                    keptMemoryFiles[name] = why
                    continue
                case .private(let anonymous):
                    // A memfd or deleted file dies with its holders: always left out. A named one only on request.
                    if !anonymous && !request.excludeMemoryFiles {
                        warnings.append("\(name) is on a memory-only file system: its pages were kept (--exclude-memory-files leaves them out and removes the file at restore)")
                        continue
                    }
                    removable = !anonymous
                }
            }
            var kept = 0
            for pfn64 in Self.cachedFrames(ofOpenFile: link) where pfn64 < pageCounts.count {
                let pfn = Int(pfn64)
                guard marks[pfn] == Mark.none.rawValue else { continue }
                // Our own temporary mapping counted once; anything beyond the excluded processes' is another's.
                let count = Self.readFrameEntry("/proc/kpagecount", pfn64) ?? 0
                let flags = Self.readFrameEntry("/proc/kpageflags", pfn64) ?? 0
                if count > UInt64(1) + UInt64(excludedMaps[pfn]) {
                    marks[pfn] = Mark.keptShared.rawValue
                } else if flags & Self.kpfDirty != 0 && cls != .memoryOnly {
                    // A disk file's dirty page has no clean copy to come back from; a memory-only file's pages are always dirty.
                    kept += 1
                } else {
                    marks[pfn] = Mark.pagecache.rawValue
                }
            }
            if kept > 0 { warnings.append("\(kept) dirty page(s) of \(name) kept (not yet written back)") }
            if cls == .memoryOnly {
                if removable { removeFiles.insert(name) }
            } else if !name.hasSuffix(" (deleted)") {
                evictFiles.insert(name)
            }
        }
    }

    enum MemoryFileVerdict {
        /// Only excluded processes hold it; `anonymous` for a memfd or deleted file (gone with its holders).
        case `private`(anonymous: Bool)
        /// Kept, with the reason.
        case kept(String)
    }

    /// Whether a memory-only file may be left out (and, if named, removed at restore): never an
    /// executable or library, never a file another process has open or mapped.
    func memoryFileVerdict(name: String, key: FileKey?, mappedExecutable: Bool, mode: mode_t = 0) -> MemoryFileVerdict {
        let anonymous = Self.isAnonymousFile(name)
        let program = !anonymous && (mode & 0o111 != 0 || (mode == 0 && Self.isProgramFile(name: name, statPath: name)))
        if mappedExecutable || program { return .kept("an executable or library, never left out or removed") }
        guard let key else { return .kept("its identity could not be read") }
        let others = (fileHolders.holders[key] ?? []).subtracting(excludedPids).subtracting([agentPid]).sorted()
        if !others.isEmpty {
            return .kept("also open or mapped by pid \(others.prefix(5).map(String.init).joined(separator: ", "))")
        }
        return .private(anonymous: anonymous)
    }

    /// Whether `name` is an executable or library: any execute bit on the file behind
    /// `statPath`. Its pages are the file's own contents, so they are never left out.
    static func isProgramFile(name: String, statPath: String) -> Bool {
        guard !isAnonymousFile(name) else { return false }
        var st = stat()
        return stat(statPath, &st) == 0 && st.st_mode & 0o111 != 0
    }

    /// memfds (mode 0777) and deleted files are the excluded processes' own memory, never a program's file.
    static func isAnonymousFile(_ name: String) -> Bool { name.hasPrefix("/memfd:") || name.hasSuffix(" (deleted)") }

    static func readFrameEntry(_ path: String, _ pfn: UInt64) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var v: UInt64 = 0
        return pread(fd, &v, 8, off_t(pfn * 8)) == 8 ? v : nil
    }
}

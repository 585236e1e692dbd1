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

/// Resolves an exclusion request to processes and collects the guest-physical ranges
/// that hold their data. Never reads page contents: only page tables (pagemap), page
/// flags and counts, and the kernel helper's addresses.
final class ExclusionCollector {
    static let pageSize = 4096
    static let helperPath = "/proc/sparc_helper"
    static let helperModule = "/lib/modules/sparc/sparc_helper.ko"
    // /proc/kpageflags bits
    static let kpfDirty: UInt64 = 1 << 4
    static let kpfAnon: UInt64 = 1 << 12
    static let kpfZeroPage: UInt64 = 1 << 24
    static let tmpfsMagic = 0x0102_1994
    static let ramfsMagic = 0x8584_58f6

    let request: ExclusionRequest
    let agentPid = getpid()
    var warnings: [String] = []
    /// Steps that could not complete, recorded under --best-effort (see `gap`).
    var gaps: [String] = []
    /// Byte-level ranges from the kernel helper, per kind.
    var byteRanges: [ExcludedKind: [Range<UInt64>]] = [:]
    var evictFiles = Set<String>()
    var removeFiles = Set<String>()
    /// Memory-only files whose pages were kept, and why (reported once each).
    var keptMemoryFiles: [String: String] = [:]
    /// Who holds which file (open or mapped), built on first need.
    lazy var fileHolders = FileHolders.scan()
    var excludedPids = Set<Int32>()
    /// Their descendants that have exited (see `ForkLineage.exitedDescendants`).
    var exitedPids: [Int32] = []
    /// Where their data may still be that sparc cannot leave out (`ExclusionPlan.possibleCopies`).
    var possibleCopies: [String] = []
    /// Who the kernel helper saw at the other end of their sockets and pipes.
    var talks = Set<Conversations.Talk>()
    var pageCounts: [UInt64] = []
    var pageFlags: [UInt64] = []
    /// Per frame: how many times excluded processes map it (to tell shared pages).
    var excludedMaps: [UInt16] = []
    /// Per frame: what became of it (see `Mark`).
    var marks: [UInt8] = []

    enum Mark: UInt8 { case none = 0, user = 1, pagecache = 2, keptShared = 3, kept = 4 }

    init(_ request: ExclusionRequest) { self.request = request }

    // MARK: - Resolving targets

    struct Resolved {
        var processes: [ExcludedProcess]
        var ttys: [String]
        var ttySessions: [TTYSession] = []
    }

    static func startTime(_ pid: Int32) -> UInt64? {
        GuestSystem.stat(of: pid)?.startTime
    }

    static func normalizeTTY(_ name: String) -> String { TTYNames.normalize(name) }

    func resolve() throws -> Resolved {
        let all = GuestSystem.stats()
        let byPid = Dictionary(all.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        let isKernel = { (p: GuestSystem.Stat) in p.flags & GuestSystem.pfKthread != 0 }
        var children: [Int32: [Int32]] = [:]
        for p in all { children[p.ppid, default: []].append(p.pid) }
        var reasons: [Int32: String] = [:]
        var order: [Int32] = []
        func add(_ pid: Int32, _ reason: String) {
            if reasons[pid] == nil {
                reasons[pid] = reason
                order.append(pid)
            }
        }
        for pid in request.pids {
            guard let p = byPid[pid] else { throw AgentFailure(.notFound, "no process with pid \(pid) in the guest") }
            if isKernel(p) { throw AgentFailure(.invalidArgument, "pid \(pid) is a kernel thread, which has no user memory to exclude") }
            add(pid, "pid \(pid)")
        }
        for name in request.names {
            let matches = all.filter { p in
                guard !isKernel(p) else { return false }
                if p.comm == name { return true }
                let argv0 = GuestSystem.commandLine(p.pid, comm: p.comm).split(separator: " ").first.map(String.init) ?? ""
                let base = argv0.split(separator: "/").last.map(String.init) ?? argv0
                return base == name || base == "-" + name
            }
            if matches.isEmpty { throw AgentFailure(.notFound, "no process named '\(name)' in the guest") }
            for p in matches { add(p.pid, "name \(name)") }
        }
        var ttys: [String] = []
        var holders: [Int: [Int32]]?
        let known = Set(GuestSystem.ttys().map(\.name.unescaped))
        let sessions = GuestSystem.ttySessions(all)
        // A terminal tagged by its session: that session, or nothing (pty numbers are reused).
        for pinned in request.ttySessions ?? [] {
            let now = sessions[Self.normalizeTTY(pinned.tty)]
            guard now == TTYSession(tty: Self.normalizeTTY(pinned.tty), leader: pinned.leader, leaderStart: pinned.leaderStart) else {
                let other = now.map { "it belongs to the session of pid \($0.leader) now" } ?? "it has no session now"
                throw AgentFailure(
                    .notFound, "the session of pid \(pinned.leader) on \(pinned.tty) has ended (\(other)): tag the terminal again")
            }
        }
        for raw in request.ttys + (request.ttySessions ?? []).map(\.tty) {
            let tty = Self.normalizeTTY(raw)
            guard known.contains(tty) else {
                throw AgentFailure(.notFound, "no terminal '\(raw)' in the guest (known: \(known.sorted().joined(separator: ", ")))")
            }
            guard !ttys.contains(tty) else { continue }
            ttys.append(tty)
            for p in all where TTYNames.name(ttyNr: p.ttyNr) == tty && !isKernel(p) { add(p.pid, "on \(tty)") }
            if tty.hasPrefix("pts/"), let index = Int(tty.dropFirst(4)) {
                if holders == nil { holders = GuestSystem.ptyMasterHolders() }
                for holder in holders?[index] ?? [] { add(holder, "holds the master of \(tty)") }
            }
        }
        let lineage = ForkLineage.shared
        // Processes bring along what they started, and only that: their children, what they
        // forked (the kernel's fork events, kept across reparenting: a daemon that
        // double-forked and left its session), and the members of a session or process group
        // they lead (a `(cmd &)` orphan, reparented to init, stays in both). Never a process
        // for where it lives (a cgroup): on a guest without logind every SSH session shares
        // ssh.service's cgroup with the listener and other users' daemons. Repeated until
        // nothing more joins.
        var bySession: [Int32: [Int32]] = [:]
        var byGroup: [Int32: [Int32]] = [:]
        for p in all where !isKernel(p) {
            bySession[p.session, default: []].append(p.pid)
            byGroup[p.pgrp, default: []].append(p.pid)
        }
        var i = 0
        while i < order.count {
            let parent = order[i]
            let p = byPid[parent]
            for child in children[parent] ?? [] where byPid[child].map(isKernel) == false { add(child, "child of \(parent)") }
            // Forked by it, whatever became of the parent link since (a daemon that double-forked).
            for child in lineage.descendants(of: parent).sorted()
            where byPid[child].map({ !isKernel($0) && $0.startTime >= (p?.startTime ?? 0) }) == true {
                add(child, "forked by \(parent)")
            }
            if p?.session == parent {
                for member in bySession[parent] ?? [] { add(member, "in the session of \(parent)") }
            }
            if p?.pgrp == parent {
                for member in byGroup[parent] ?? [] { add(member, "in the process group of \(parent)") }
            }
            i += 1
        }
        if reasons[1] != nil {
            throw AgentFailure(.invalidArgument, "pid 1 (init) cannot be excluded: the guest cannot run on without it (\(reasons[1]!))")
        }
        if let r = reasons[agentPid] {
            throw AgentFailure(.invalidArgument, "the sparc agent (pid \(agentPid)) cannot be excluded: it carries out the restore (\(r))")
        }
        // Its keeper (and, on busybox, its wrapper) share its cgroup, which is never frozen: they stay too.
        if let own = Freezer.cgroup(of: String(agentPid)), own != "/" {
            for pid in order where Freezer.cgroup(of: String(pid)) == own {
                throw AgentFailure(.invalidArgument, "pid \(pid) is part of the sparc agent (its cgroup \(own)) and cannot be excluded (\(reasons[pid]!))")
            }
        }
        let processes = order.compactMap { pid -> ExcludedProcess? in
            guard let p = byPid[pid], let start = Optional(p.startTime) else {
                warnings.append("pid \(pid) exited during collection")
                return nil
            }
            // The command name only: arguments live in the excluded memory and may be the secret.
            return ExcludedProcess(pid: pid, command: p.comm, reason: reasons[pid]!, startTime: start)
        }
        return Resolved(processes: processes, ttys: ttys, ttySessions: ttys.compactMap { sessions[$0] })
    }

    // MARK: - Page tables

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

    /// A step of the collection that could not complete: the checkpoint refuses, or under
    /// --best-effort the gap is recorded and the collection goes on.
    func gap(_ what: String) throws {
        guard request.bestEffort == true else {
            throw AgentFailure(.failed, "\(what); the checkpoint refuses rather than save what it was asked to leave out (--best-effort saves and records the gap)")
        }
        gaps.append(what)
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

    // MARK: - Page cache of open files

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

    // MARK: - SysV shared memory

    struct SysVSegment {
        var id: Int32
        var size: Int
        var creator: Int32
        var attached: Int
    }

    /// The SysV shared memory segments (/proc/sysvipc/shm).
    static func sysvSegments() -> [SysVSegment] {
        // key shmid perms size cpid lpid nattch …
        (GuestSystem.readText("/proc/sysvipc/shm") ?? "").split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 7, let id = Int32(f[1]), let size = Int(f[3]), let cpid = Int32(f[4]), let n = Int(f[6]) else { return nil }
            return SysVSegment(id: id, size: size, creator: cpid, attached: n)
        }
    }

    /// Detached SysV segments the excluded processes created: no page table leads to them
    /// any more, yet they outlive a detach and hold what was written. Attached here
    /// read-only, their resident pages are found as a file's are. (A segment still attached
    /// is in its processes' page tables: mapped by excluded processes alone it is left out
    /// with their pages, mapped by another process it is that process's memory too.)
    func collectSysVSegments(_ processes: [ExcludedProcess]) {
        let pids = Set(processes.map(\.pid))
        for segment in Self.sysvSegments() where pids.contains(segment.creator) && segment.attached == 0 {
            guard let base = shmat(segment.id, nil, SHM_RDONLY), base != UnsafeMutableRawPointer(bitPattern: -1) else {
                warnings.append("SysV segment \(segment.id) of pid \(segment.creator) could not be attached, its pages were kept: \(String(cString: strerror(errno)))")
                continue
            }
            defer { shmdt(base) }
            let length = (segment.size + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            for pfn in Self.residentFrames(base: base, length: length) {
                let start = pfn * UInt64(Self.pageSize)
                byteRanges[.shm, default: []].append(start..<start + UInt64(Self.pageSize))
            }
        }
    }

    // MARK: - Kinds not covered

    /// Warns by name about kernel copies sparc cannot attribute to a process: key payloads
    /// in the kernel keyring, and POSIX shared memory files nobody holds open any more.
    func warnAboutUncoveredCopies(_ processes: [ExcludedProcess]) {
        let uids = Set(processes.compactMap { GuestSystem.uid(of: $0.pid) })
        // /proc/keys: ID FLAGS USAGE TIMEOUT PERM UID GID TYPE DESCRIPTION: SUMMARY
        var keys = 0
        for line in (GuestSystem.readText("/proc/keys") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 8, let uid = UInt32(f[5]), uids.contains(uid), ["user", "logon", "big_key", "encrypted", "trusted"].contains(String(f[7])) else { continue }
            // systemd's bookkeeping (each service's "invocation_id" key, under sshd's privileged process too) holds no one's data.
            if f[8].hasPrefix("invocation_id") { continue }
            keys += 1
        }
        if keys > 0 {
            possibleCopies.append("kernel keyring: \(keys) key(s) of the excluded processes' users are not left out (the kernel does not say which process added a key; payloads stay in the bundle)")
        }
        // A file on a memory-only file system written since the first excluded process started
        // and open by none of them: one of them may have written it and closed it. The whole
        // tree counts (/dev/shm/d/inner as /dev/shm/note).
        let earliest = processes.compactMap { Self.startTime($0.pid) }.min() ?? 0
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let uptime = GuestSystem.uptime()
        let since = Date().timeIntervalSince1970 - uptime + Double(earliest) / max(ticks, 1)
        let held = removeFiles.union(evictFiles).union(keptMemoryFiles.keys)
        for path in Self.recentMemoryFiles(owners: uids, since: since - 1) where !held.contains(path) {
            possibleCopies.append(
                "\(path.terminalSafe) (on a memory-only file system, written since the excluded processes started, open by none of them) is not left out: remove it, or exclude a process that holds it open")
        }
    }

    /// Directories whose trees hold users' memory-only files: /dev/shm, and /tmp and the
    /// users' runtime directories where they are memory-only.
    static func memoryFileRoots(owners: Set<UInt32>) -> [String] {
        var roots = ["/dev/shm"]
        for dir in ["/tmp"] + owners.sorted().map({ "/run/user/\($0)" }) {
            let magic = sparc_fs_type(dir)
            if magic == tmpfsMagic || magic == ramfsMagic { roots.append(dir) }
        }
        return roots
    }

    /// Regular files under the memory-file roots owned by `owners` and modified since `since`
    /// (seconds since the epoch); walked without following links, 16 levels and 20,000 entries at most.
    static func recentMemoryFiles(owners: Set<UInt32>, since: Double) -> [String] {
        var found: [String] = []
        var budget = 20_000
        func walk(_ dir: String, depth: Int) {
            guard depth < 16, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names.sorted() {
                budget -= 1
                guard budget > 0 else { return }
                let path = dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: walk(path, depth: depth + 1)
                case S_IFREG where owners.contains(st.st_uid) && Double(st.st_mtim.tv_sec) >= since && st.st_size > 0: found.append(path)
                default: break
                }
            }
        }
        for root in memoryFileRoots(owners: owners) { walk(root, depth: 0) }
        return found
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

    // MARK: - Kernel buffers

    /// Loads the kernel helper: the default guest's copy (insmod), or the one DKMS built for
    /// the running kernel from the sparc-guest package (modprobe).
    static func loadHelper() throws {
        if FileSystem.exists(helperPath) { return }
        var params: [String] = []
        if let btf = try? BTF(), let off = btf.memberOffsets(of: "n_tty_data", members: ["read_buf", "echo_buf"]),
            let read = off["read_buf"], let echo = off["echo_buf"]
        {
            params = ["n_tty_read_buf_offset=\(read)", "n_tty_echo_buf_offset=\(echo)"]
        } else {
            throw AgentFailure(.failed, "struct n_tty_data is not described in the guest kernel's BTF")
        }
        let r: ProcessResult
        if FileSystem.exists(helperModule) {
            r = try Subprocess.run(["insmod", helperModule] + params)
        } else {
            r = try Subprocess.run(["modprobe", "sparc_helper"] + params)
        }
        guard r.status == 0, FileSystem.exists(helperPath) else {
            var uts = utsname()
            uname(&uts)
            let release = withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if !FileSystem.exists(helperModule) && r.stderrText.contains("not found") {
                throw AgentFailure(
                    .failed,
                    "the kernel helper is not built for the guest's kernel \(release) (install linux-headers-\(release) in the guest, then run 'dkms autoinstall')")
            }
            throw AgentFailure(.failed, "the kernel helper could not be loaded: \(r.stderrSummary)")
        }
    }

    /// Sends the kernel helper one request ("pids" to collect, "drain" to drop, with the
    /// descendants that have exited after "exited") and returns its answer.
    static func askHelper(_ verb: String, _ pids: [Int32], exited: [Int32] = []) throws -> String {
        let fd = open(helperPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw AgentFailure(.failed, "cannot open \(helperPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // The helper takes one write of at most 64 KiB: the oldest exited descendants go first.
        var command = verb + " " + pids.map(String.init).joined(separator: " ")
        var tail = exited.isEmpty ? "" : " exited " + exited.map(String.init).joined(separator: " ")
        if command.utf8.count + tail.utf8.count > 60_000 {
            let room = max(0, 60_000 - command.utf8.count) / 8
            tail = " exited " + exited.suffix(room).map(String.init).joined(separator: " ")
        }
        command += tail + "\n"
        let wrote = command.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard wrote == command.utf8.count else {
            throw AgentFailure(.failed, "kernel helper refused the request: \(String(cString: strerror(errno)))")
        }
        var text = Data()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            text.append(buf, count: n)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// What a queue someone else holds that the excluded processes wrote into became.
    static func peerQueueNote(kind: String, holder: Int32, bytes: UInt64) -> String {
        let who = describe(holder)
        switch kind {
        case "pipe": return "\(who) holds a pipe the excluded processes wrote into: its \(bytes) unread byte(s) are left out, and the pipe is emptied at restore (its reader finds no more data)"
        case "tcp": return "\(who) has \(bytes) unread byte(s) the excluded processes sent on a loopback TCP connection: left out; at restore the connection is reset"
        case "udp": return "\(who) has \(bytes) byte(s) of datagrams the excluded processes sent: left out, and dropped at restore"
        default: return "\(who) has \(bytes) unread byte(s) the excluded processes sent on a unix socket: left out, and dropped at restore"
        }
    }

    /// "pid 300 (cat)".
    static func describe(_ pid: Int32) -> String {
        "pid \(pid) (\(GuestSystem.stat(of: pid)?.comm ?? "?"))"
    }

    func collectKernelBuffers(_ processes: [ExcludedProcess]) throws {
        do {
            try Self.loadHelper()
        } catch let f as AgentFailure {
            throw AgentFailure(.failed, "\(f.message); --scope all needs it (use --scope user to save without kernel buffers)")
        }
        let text = try Self.askHelper("pids", processes.map(\.pid), exited: exitedPids)
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 4 else { continue }
            switch f[0] {
            case "gone": warnings.append("pid \(f[1]) exited during collection")
            case "overflow": try gap("the kernel helper's answer overflowed its 8 MiB: kernel buffers past that point were not collected")
            case "talked":
                guard let holder = Int32(f[2]) else { continue }
                talks.insert(Conversations.Talk(holder: holder, kind: String(f[1])))
            case "peer":
                guard let holder = Int32(f[2]), let bytes = UInt64(f[3], radix: 16) else { continue }
                warnings.append(Self.peerQueueNote(kind: String(f[1]), holder: holder, bytes: bytes))
            case "unattributed":
                guard let holder = Int32(f[2]), let bytes = UInt64(f[3], radix: 16) else { continue }
                possibleCopies.append(
                    "\(Self.describe(holder)) has \(bytes) unread byte(s) on a loopback \(f[1] == "tcp" ? "TCP connection" : "UDP socket") from a sender sparc cannot name (gone, and sent before the kernel helper began to record or its record was lost): kept; end that reader, or restore knowing it may hold the excluded processes' data")
            case "ledger":
                guard let probes = UInt32(f[1], radix: 16), let lost = UInt64(f[2], radix: 16) else { continue }
                // Bit 0: pipe_write, 1-2: tcp_sendmsg/tcp_sendpage, 3-4: udp_sendmsg/udpv6_sendmsg,
                // 5-7: unix_stream_sendmsg/unix_stream_sendpage/unix_dgram_sendmsg (ledger.c).
                if probes & 1 == 0 {
                    possibleCopies.append("the kernel helper cannot watch pipe writes here: what the excluded processes wrote into pipes others hold cannot be found")
                }
                if probes & 0b1010_0000 != 0b1010_0000 {
                    possibleCopies.append("the kernel helper cannot watch unix socket sends here: what the excluded processes sent on sockets they closed cannot be found")
                }
                if probes & 0b110 == 0 || probes & 0b1_1000 == 0 {
                    possibleCopies.append("the kernel helper cannot watch TCP or UDP sends here: what the excluded processes sent to local receivers cannot be found")
                }
                if lost > 0 {
                    possibleCopies.append("the kernel helper's write ledger lost \(lost) older record(s): data written long ago into others' queues may not be attributed")
                }
            default:
                guard let kind = ExcludedKind(rawValue: String(f[0])), let start = UInt64(f[2], radix: 16),
                    let len = UInt64(f[3], radix: 16)
                else { continue }
                byteRanges[kind, default: []].append(start..<start + len)
            }
        }
    }

    // MARK: -

    func run(frozen: Bool) throws -> ExclusionPlan {
        let began = Date()
        guard !request.isEmpty else { throw AgentFailure(.invalidArgument, "nothing to exclude") }
        guard frozen else { throw AgentFailure(.failed, "guest processes could not be frozen before collecting") }
        var phases: [String: Double] = [:]
        var mark = Date()
        func phase(_ name: String) {
            phases[name] = Date().timeIntervalSince(mark) * 1000
            mark = Date()
        }
        let resolved = try resolve()
        phase("resolve")
        // Write dirty page cache back so file pages are clean copies of the disk.
        sync()
        // Frame numbers run to the end of the highest memory zone; kpagecount ends there too.
        let frames = Self.frameCount()
        guard frames > 0 else { throw AgentFailure(.failed, "cannot read the guest's frame count") }
        excludedMaps = [UInt16](repeating: 0, count: frames)
        marks = [UInt8](repeating: 0, count: frames)
        phase("sync")
        // Swapped pages first: read back, they are present for the memory pass.
        var swap = SwapExclusion()
        let diskRanges = try swap.collect(resolved.processes)
        warnings += swap.warnings
        phase("swap")
        excludedPids = Set(resolved.processes.map(\.pid))
        exitedPids = ForkLineage.shared.exitedDescendants(of: Dictionary(resolved.processes.map { ($0.pid, $0.startTime) }, uniquingKeysWith: { a, _ in a }))
        try collectUserPages(resolved.processes)
        phase("user")
        if request.scope == .all {
            collectPageCache(resolved.processes)
            phase("pagecache")
            try collectKernelBuffers(resolved.processes)
            collectSysVSegments(resolved.processes)
            warnAboutUncoveredCopies(resolved.processes)
            possibleCopies += Conversations.possibleCopies(
                talks: talks, excluded: resolved.processes, exited: exitedPids,
                ownCgroup: Freezer.cgroup(of: String(agentPid)).flatMap { $0 == "/" ? nil : $0 })
            phase("kernel")
        }
        var out: [ExcludedRange] = []
        var bytes: [String: UInt64] = [:]
        // Page kinds: one pass over the marks turns runs of frames into ranges.
        for (kind, mark) in [(ExcludedKind.user, Mark.user), (.pagecache, .pagecache)] {
            let runs = FrameRuns.ranges(in: marks, equal: mark.rawValue, pageSize: Self.pageSize)
            out += runs.map { ExcludedRange(start: $0.lowerBound, length: $0.upperBound - $0.lowerBound, kind: kind) }
            bytes[kind.rawValue] = runs.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) }
        }
        for kind in [ExcludedKind.pipe, .socket, .tty, .kstack, .shm] {
            let merged = mergedRanges(byteRanges[kind] ?? [])
            bytes[kind.rawValue] = merged.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) }
            out += merged.map { ExcludedRange(start: $0.lowerBound, length: $0.upperBound - $0.lowerBound, kind: kind) }
        }
        for (file, why) in keptMemoryFiles.sorted(by: { $0.key < $1.key }) {
            warnings.append("\(file) is on a memory-only file system and \(why): its pages were kept")
        }
        phase("ranges")
        var plan = ExclusionPlan(
            ranges: out, processes: resolved.processes, ttys: resolved.ttys, bytes: bytes,
            keptSharedPages: marks.reduce(0) { $0 + ($1 == Mark.keptShared.rawValue ? 1 : 0) },
            evictFiles: evictFiles.sorted(), removeFiles: removeFiles.sorted(), warnings: warnings,
            milliseconds: Date().timeIntervalSince(began) * 1000)
        plan.phases = phases
        if !resolved.ttySessions.isEmpty { plan.ttySessions = resolved.ttySessions }
        if !gaps.isEmpty { plan.gaps = [GuestText](gaps) }
        if !exitedPids.isEmpty { plan.exitedPids = exitedPids }
        if !possibleCopies.isEmpty {
            if request.strict == true {
                throw AgentFailure(
                    .failed,
                    "--strict: the excluded processes' data may still be where sparc cannot leave it out: " + possibleCopies.joined(separator: "; "))
            }
            plan.possibleCopies = [GuestText](possibleCopies)
        }
        if !diskRanges.isEmpty {
            plan.diskRanges = diskRanges
            plan.bytes["swap"] = diskRanges.reduce(0) { $0 + $1.length }
        }
        return plan
    }
}

/// After a restore, with the guest still frozen: kill what was excluded, drop its page cache.
enum Cleanup {
    static func run(_ request: CleanupRequest) -> CleanupResult {
        var result = CleanupResult()
        // Before any kill: a killed writer's reader must find its pipe empty, not zeroed.
        let drain = (request.drain ?? []).filter { ExclusionCollector.startTime($0.pid) == $0.startTime }
        let exited = request.drainExited ?? []
        if !drain.isEmpty || !exited.isEmpty {
            do {
                try ExclusionCollector.loadHelper()
                let answer = try ExclusionCollector.askHelper("drain", drain.map(\.pid), exited: exited)
                for line in answer.split(separator: "\n") where line.hasPrefix("dropped ") {
                    result.droppedBuffers = Int(line.split(separator: " ").last ?? "", radix: 16)
                }
            } catch {
                result.warnings.append("unread data of the excluded processes' pipes and sockets could not be dropped (readers may see zeros): \((error as? AgentFailure)?.message ?? "\(error)")")
            }
        }
        for p in request.kill {
            guard ExclusionCollector.startTime(p.pid) == p.startTime else {
                result.missing.append(p.pid)
                continue
            }
            // Frozen tasks still die of SIGKILL (cgroup v2 freezer).
            if kill(p.pid, SIGKILL) == 0 { result.killed.append(p.pid) } else { result.missing.append(p.pid) }
        }
        let deadline = Date().addingTimeInterval(10)
        for pid in result.killed {
            while Date() < deadline {
                let state = GuestSystem.stat(of: pid)?.state
                if state == nil || state == "Z" || state == "X" { break }
                usleep(5000)
            }
            if let s = GuestSystem.stat(of: pid), s.state != "Z" && s.state != "X" {
                result.warnings.append("pid \(pid) did not die after SIGKILL (state \(s.state))")
            }
        }
        // Their detached SysV segments were zeroed: gone with their creators, nobody attaches zeros.
        let drained = Set(drain.map(\.pid)), ended = Set(result.killed)
        for segment in ExclusionCollector.sysvSegments() where segment.attached == 0 && drained.contains(segment.creator) && ended.contains(segment.creator) {
            if shmctl(segment.id, IPC_RMID, nil) != 0 {
                result.warnings.append("cannot remove SysV segment \(segment.id): \(String(cString: strerror(errno)))")
            }
        }
        for file in request.evictFiles.map(\.unescaped) {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                result.warnings.append("cannot open \(file) to evict its cache: \(String(cString: strerror(errno)))")
                continue
            }
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            close(fd)
            // Pages a running process maps cannot be dropped; they were shared at the checkpoint, so saved as they were.
            // A page nobody maps that stays is the one to worry about: it may be a zeroed one.
            let left = ExclusionCollector.cachedFrames(ofOpenFile: file)
            let unmapped = left.filter { (ExclusionCollector.readFrameEntry("/proc/kpagecount", $0) ?? 0) == 0 }.count
            if unmapped > 0 {
                result.warnings.append("\(unmapped) page(s) of \(file) that no process maps stayed in the page cache after eviction")
            }
            if left.count > unmapped { result.stillMapped = (result.stillMapped ?? [:]).merging([GuestText(file): left.count - unmapped]) { $0 + $1 } }
            if left.isEmpty { result.evicted.append(GuestText(file)) }
        }
        for file in request.removeFiles.map(\.unescaped) {
            if unlink(file) == 0 { result.removed.append(GuestText(file)) } else {
                result.warnings.append("cannot remove \(file): \(String(cString: strerror(errno)))")
            }
        }
        return result
    }
}

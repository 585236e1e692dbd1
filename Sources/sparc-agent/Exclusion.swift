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

/// One kind of memory the exclusion reaches (process pages, swap, files and page cache,
/// kernel buffers, SysV memory, copies it can only name): one file each, with its collector.
/// Adding a kind adds a file and an entry in `ExclusionCollector.channels`.
protocol ExclusionChannel {
    /// Its name in the collection's phase timings.
    var phase: String { get }
    /// Only at --scope all (kernel memory), or at every scope (the processes' own pages).
    var kernelScopeOnly: Bool { get }
    /// Adds what the excluded processes hold in this kind of memory to the collector's
    /// frame marks, byte ranges, warnings and possible copies.
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws
}

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
    /// Swap slots of their swapped-out pages, on the VM's disk (see `SwapExclusion`).
    var diskRanges: [DiskByteRange] = []

    enum Mark: UInt8 { case none = 0, user = 1, pagecache = 2, keptShared = 3, kept = 4 }

    init(_ request: ExclusionRequest) { self.request = request }

    /// A step of the collection that could not complete: the checkpoint refuses, or under
    /// --best-effort the gap is recorded and the collection goes on.
    func gap(_ what: String) throws {
        guard request.bestEffort == true else {
            throw AgentFailure(.failed, "\(what); the checkpoint refuses rather than save what it was asked to leave out (--best-effort saves and records the gap)")
        }
        gaps.append(what)
    }

    /// Every kind of memory the exclusion reaches, in the order collected: swapped pages
    /// first (read back, they are present for the page-table pass).
    static let channels: [any ExclusionChannel] = [
        SwapChannel(), UserPagesChannel(), PageCacheChannel(), KernelBuffersChannel(), SysVMemoryChannel(), PossibleCopiesChannel(),
    ]

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
        excludedPids = Set(resolved.processes.map(\.pid))
        exitedPids = ForkLineage.shared.exitedDescendants(of: Dictionary(resolved.processes.map { ($0.pid, $0.startTime) }, uniquingKeysWith: { a, _ in a }))
        for channel in Self.channels where request.scope == .all || !channel.kernelScopeOnly {
            try channel.collect(resolved.processes, into: self)
            phase(channel.phase)
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

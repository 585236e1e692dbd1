import Foundation
import GuestMemory
import GuestQuery
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What the agent handed over while the guest was frozen and still running: the exclusion's
/// plan, who owns each page, and where the kernel records free memory.
struct CollectedGuestState {
    var plan: ExclusionPlan?
    /// The plan's ranges as offsets in the RAM file.
    var excludedFileRanges: [Range<Int64>]
    var owners: OwnerMap
    /// Nil: free memory is saved, `freeMemoryNotes` says why.
    var memoryLayout: GuestMemoryLayout?
    var freeMemoryNotes: [GuestText] = []
    var saveFreeMemory = false
}

/// The memory image of a paused guest, and what was left out of it as free.
struct SavedMemory {
    var stats: SparseCopyStats
    var free: Manifest.FreeMemory
    /// Disk byte ranges of swap slots the restored kernel never reads.
    var swapRanges: [DiskByteRange]
}

extension VMManager {
    /// Where the guest records free memory, asked for just before the pause; a guest that cannot
    /// say (no kernel helper, an older agent) gets its free memory saved, and the bundle says why.
    /// Asked for with --save-free-memory too: the owner map then still labels free memory as such.
    static func askMemoryLayout(_ agent: AgentClient, saveFreeMemory: Bool) -> (GuestMemoryLayout?, [GuestText]) {
        do {
            return (try agent.memoryLayout(), [])
        } catch let failure as AgentFailure where failure.code == .unknownOperation {
            return (nil, saveFreeMemory ? [] : ["the guest agent is older than this sparc and cannot say where free memory is: it is saved (install the new sparc-guest package)"])
        } catch let failure as AgentFailure {
            return (nil, saveFreeMemory ? [] : ["free memory is saved: \(failure.message)"])
        } catch {
            return (nil, saveFreeMemory ? [] : ["free memory is saved: \(error)"])
        }
    }

    /// Copies the paused guest's RAM (open as `ramFD`) into the bundle's memory image, leaving
    /// out what the exclusion names and what the guest's kernel holds free at this moment, and
    /// writes the owner map (free frames labelled free, excluded processes left out).
    func saveMemory(
        ramFD: Int32, ramPath: String, ramBytes: UInt64, collected: CollectedGuestState, writer: BundleWriter, progress: Progress?,
        cancel: Cancellation?
    ) throws -> SavedMemory {
        let physical = PhysicalLayout(ramBytes: ramBytes)
        var free = Manifest.FreeMemory(savedOnRequest: collected.saveFreeMemory, notes: collected.freeMemoryNotes)
        var freeFileRanges: [Range<Int64>] = []
        var swapRanges: [DiskByteRange] = []
        var owners = collected.owners
        if let layout = collected.memoryLayout {
            progress?(.init(.copyingMemory, "finding free memory"))
            let excluded = (collected.plan?.ranges ?? []).map { $0.start..<($0.start &+ $0.length) }
            let result = FreeMemoryScan.scan(
                memory: RAMFileMemory(fd: ramFD, layout: physical), layout: layout, frameLimit: physical.frameLimit, excludedPhysical: excluded,
                cancel: cancel)
            if cancel?.isCancelled == true { throw Self.cancelled("the VM runs on, no bundle was written") }
            freeFileRanges = collected.saveFreeMemory ? [] : result.framesToLeaveOut.flatMap { physical.fileRanges(physical: $0.lowerBound * 4096, length: UInt64($0.count) * 4096) }
            free.perCPUBytes = result.poisoned || collected.saveFreeMemory ? 0 : Int64(result.perCPUFrames) * 4096
            free.guestZeroesOnFree = layout.zeroesOnFree
            free.guestPoisonsFreePages = layout.poisonsFreePages
            free.notes += result.notes.map { GuestText($0) }
            swapRanges = collected.saveFreeMemory ? [] : result.swapRanges
            free.swapBytes = Int64(swapRanges.reduce(0) { $0 + $1.length })
            owners.frameClasses = Self.labelFree(owners.frameClasses, free: result.freeFrames)
        }
        try Self.writeOwnerMap(owners, excluding: Set(collected.plan?.processes.map(\.pid) ?? []), to: writer.file(Manifest.ownersFile))
        progress?(.init(.copyingMemory, "copying memory"))
        let stats = try SparseImage.save(
            fromDescriptor: ramFD, path: ramPath, to: writer.file(Manifest.memoryFile), excluding: collected.excludedFileRanges, free: freeFileRanges,
            progress: { done, total in progress?(.init(.copyingMemory, "copying memory \(done * 100 / max(total, 1))%")) }, cancel: cancel)
        free.bytes = stats.freeBytes
        return SavedMemory(stats: stats, free: free, swapRanges: swapRanges)
    }

    /// The owner map's frame kinds with exactly the frames free at the pause labelled free (the
    /// agent's view, from before the pause, knows only the first page of each free block).
    static func labelFree(_ classes: Data, free: [Range<UInt64>]) -> Data {
        var out = classes
        let freeKind = OwnerMap.FrameClass.free.rawValue
        out.withUnsafeMutableBytes { bytes in
            for i in bytes.indices where bytes[i] == freeKind { bytes[i] = OwnerMap.FrameClass.kernel.rawValue }
            for r in free {
                let lo = Int(min(r.lowerBound, UInt64(bytes.count)))
                let hi = Int(min(r.upperBound, UInt64(bytes.count)))
                for i in lo..<hi { bytes[i] = freeKind }
            }
        }
        return out
    }
}

extension Manifest.FreeMemory {
    /// The record as the CLI prints it.
    public var summaryLines: [String] {
        var lines: [String] = []
        if savedOnRequest {
            lines.append("  free memory saved (--save-free-memory): whatever exited processes left in it is in the bundle")
        } else if guestPoisonsFreePages == true {
            // The guest checks its pattern when it hands a page out again: zeros would read as corruption.
            lines.append("  free: saved as the guest's poison pattern (page_poison=1 overwrites every freed page: no data in them)")
        } else {
            lines.append("  free: \(formatBytes(bytes)) not saved" + (perCPUBytes > 0 ? " (\(formatBytes(perCPUBytes)) of it on per-CPU lists)" : ""))
        }
        if swapBytes > 0 { lines.append("  swap: \(formatBytes(swapBytes)) of unused slots zeroed in the disk state (the VM's own disk is untouched)") }
        for n in notes { lines.append("    note: \(n)") }
        if let warning { lines.append("    warning: \(warning)") }
        return lines
    }

    /// Said when the guest frees without zeroing: what a freed page held is left out, but not
    /// what the kernel freed into its own object caches.
    public var warning: String? {
        guard guestZeroesOnFree == false, !savedOnRequest else { return nil }
        return "the guest runs without init_on_free=1: objects its kernel freed into its own caches (slab) keep old data, which no one can tell from live data; boot it with init_on_free=1"
    }
}

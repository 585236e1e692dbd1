import CheckpointStore
import Foundation
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport

/// `sparc-bench store`: what checkpoints cost through the store, side by side with QEMU's own
/// save and restore of the same VM in one run: the first checkpoint, a second after the guest
/// idled, a third after it wrote to its disk, a restore of the newest into the same VM, zstd
/// on and off, and a series of checkpoints of a busy guest against as many bundles.
struct StoreBenchmark {
    let options: BenchOptions
    var home: String { work + "/home" }

    /// One checkpoint into the store: its time (checkpoint, storing) and what it added.
    struct Stored {
        var seconds: Double
        var checkpointSeconds: Double
        var storeSeconds: Double
        var added: Int64
        var bundleBytes: Int64
        var logical: Int64
        var paused: Double
        var name: String
        /// Of `added`: the disk's new chunks (the rest is memory, devices and the manifest).
        var diskAdded: Int64 = 0
    }

    /// Runs `script` in the guest (the agent serves one client at a time: closed after).
    func guestRun(_ script: String) throws {
        let agent = try manager.agentClient(name, timeout: 1800)
        defer { agent.close() }
        let r = try agent.exec(ExecRequest(argv: ["sh", "-c", script]), timeout: 1800)
        guard r.status == 0 else { throw SparcError("in the guest: \(script): \(String(decoding: r.stderr, as: UTF8.self))") }
    }

    /// A checkpoint staged beside the store and stored, as `sparc checkpoint` does without -o.
    func checkpoint(into store: CheckpointStore) throws -> Stored {
        let staging = try StoreStaging(home: home, memoryBytes: manager.memoryStagingBytes(of: name))
        defer { staging.remove() }
        var destination = staging.destination(vm: name, store: store)
        // Names are by the second: two checkpoints within one would collide.
        while (try store.names()).contains(destination.name) {
            usleep(200_000)
            destination = staging.destination(vm: name, store: store)
        }
        let path = destination.bundlePath
        let t0 = now()
        let report = try manager.checkpoint(name: name, output: path, store: destination)
        let t1 = now()
        let stored = try staging.store(destination)
        syncAll()
        let t2 = now()
        return Stored(
            seconds: t2 - t0, checkpointSeconds: t1 - t0, storeSeconds: t2 - t1, added: stored.storedBytes, bundleBytes: du(path),
            logical: stored.logicalBytes, paused: report.downtime, name: stored.name, diskAdded: destination.prestoredReport?.storedBytes ?? 0)
    }

    func run() throws {
        var start = StartOptions()
        start.name = name
        start.memoryMiB = options.memory
        start.guest = options.guest
        start.agentTimeout = 300
        print("booting a \(options.memory) MiB \(options.guest.rawValue) guest…")
        try manager.start(start)
        let files = options.guest == .debian ? "/var/lib/sparc-bench" : "/data/sparc-bench"
        print("filling \(options.fill) MiB of tmpfs and writing \(options.diskFill) MiB of files to the disk (random data)…")
        // Files of up to 64 MiB each.
        let sizes = stride(from: 0, to: options.diskFill, by: 64).map { min(64, options.diskFill - $0) }
        let writes = sizes.enumerated().map { "dd if=/dev/urandom of=\(files)/f\($0.offset) bs=1M count=\($0.element) 2>/dev/null" }
        try guestRun(
            (["mount -o remount,size=\(options.fill + 64)m /dev/shm", "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=\(options.fill) 2>/dev/null", "mkdir -p \(files)"]
                + writes + ["sync"]).joined(separator: " && "))
        try FileSystem.makeDirectories(home)
        let store = try manager.openStore(home: home)
        let storeDir = home + "/store"

        print("QEMU's own save…")
        let qemuFile = work + "/qemu.save"
        let qemuSave = try QEMUBaseline.save(layout: manager.layout(name), to: qemuFile)
        let qemuSize = du(qemuFile)

        print("first checkpoint into the store…")
        let first = try checkpoint(into: store)
        print("  \(fmt(first.seconds)) s, \(mib(first.added)) added")
        print("idling \(options.idle) s…")
        sleep(UInt32(options.idle))
        let second = try checkpoint(into: store)
        print("  second: \(fmt(second.seconds)) s, \(mib(second.added)) added")
        print("writing \(options.writes) MiB to the disk…")
        try guestRun("dd if=/dev/urandom of=\(files)/written bs=1M count=\(options.writes) 2>/dev/null && sync")
        let third = try checkpoint(into: store)
        print("  third: \(fmt(third.seconds)) s, \(mib(third.added)) added")

        print("restoring the newest into the same VM…")
        // As `sparc restore NAME` does: the small files written out, memory and disk read from the store.
        func restoreFromStore() throws {
            let written = WrittenOutCheckpoints(manager: manager, home: home)
            defer { written.remove() }
            let (path, external) = try written.forRestore(third.name)
            _ = try manager.restore(bundle: path, name: name, external: external, storedName: third.name)
        }
        try manager.stop(name: name, force: true)
        let restoreSeconds = try time { try restoreFromStore() }
        try manager.stop(name: name, force: true)
        // QEMU's -incoming on the same disk state, as a qcow2 (made outside the timing).
        let exported = work + "/newest.sparc"
        try store.export(third.name, to: exported)
        var baselineDisk = exported + "/disk.qcow2"
        if FileSystem.exists(exported + "/disk.img") {
            baselineDisk = work + "/newest-disk.qcow2"
            _ = try Subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", exported + "/disk.img", baselineDisk])
        }
        let spec = try manager.machineSpec(BundleReader(path: exported).manifest)
        let qemuRestore = try QEMUBaseline.restore(disk: baselineDisk, saved: qemuFile, spec: spec)
        FileSystem.removeTree(exported)
        unlink(baselineDisk)
        try restoreFromStore()
        unlink(qemuFile)

        print("zstd on and off, and a plain copy of the same bundle…")
        let plainBundle = work + "/plain.sparc"
        // The same VM checkpointed both ways side by side: a plain bundle (-o: no compression,
        // no encryption, the whole disk) and into the store (encrypted, compressed, incremental).
        let plainSeconds = try time {
            _ = try manager.checkpoint(name: name, output: plainBundle)
            syncAll()
        }
        let intoStore = try checkpoint(into: store)
        var zstd: [Bool: (seconds: Double, bytes: Int64)] = [:]
        for compress in [true, false] {
            let dir = work + "/zstd-\(compress)"
            let s = try CheckpointStore(directory: dir, stateDirectory: work + "/state")
            let seconds = try time {
                _ = try s.importBundle(try BundleReader(path: plainBundle), as: "one", compress: compress)
                syncAll()
            }
            zstd[compress] = (seconds, du(dir))
            FileSystem.removeTree(dir)
        }
        let copySeconds = try time {
            let r = try Subprocess.run(["cp", "-r", "--sparse=always", plainBundle, work + "/copy.sparc"])
            guard r.status == 0 else { throw SparcError("cp failed: \(r.stderrSummary)") }
            syncAll()
        }
        let bundleBytes = du(plainBundle)
        FileSystem.removeTree(work + "/copy.sparc")
        FileSystem.removeTree(plainBundle)

        print("a series of \(options.series) checkpoints of a busy guest (16 MiB written to disk and tmpfs before each)…")
        let before = du(storeDir)
        var seriesBundles: Int64 = 0
        var seriesSeconds: [Double] = []
        for i in 0..<options.series {
            try guestRun(
                "dd if=/dev/urandom of=\(files)/busy-\(i) bs=1M count=16 2>/dev/null && dd if=/dev/urandom of=/dev/shm/busy bs=1M count=16 2>/dev/null && sync")
            let s = try checkpoint(into: store)
            // As a self-contained bundle (-o) each would be about the plain bundle of this VM (its
            // staged part no longer holds the disk, which goes straight into the store).
            seriesBundles += bundleBytes
            seriesSeconds.append(s.seconds)
        }
        let seriesStore = du(storeDir) - before

        print("")
        print(
            "Guest: \(options.guest.rawValue), \(options.memory) MiB RAM, \(options.fill) MiB of tmpfs and \(options.diskFill) MiB of files on its disk (random data); TCG; one run; every save followed by sync; release build.")
        print("")
        print("| step | time (s) | bytes added to the store | vs |")
        print("|---|---:|---:|---|")
        print("| QEMU save (RAM and devices, no disk) | \(fmt(qemuSave)) | \(mib(qemuSize)) (file) | |")
        print(
            "| first checkpoint into the store (\(mib(first.logical)) logical) | \(fmt(first.seconds)) (checkpoint \(fmt(first.checkpointSeconds)), storing \(fmt(first.storeSeconds))) | \(mib(first.added)) | \(fmt(first.seconds / qemuSave))× QEMU's time, \(fmt(Double(first.added) / Double(qemuSize)))× its bytes |"
        )
        print(
            "| second, after \(options.idle) s idle | \(fmt(second.seconds)) | \(mib(second.added)) | \(fmt(100 * Double(second.added) / Double(first.added)))% of the first's bytes, \(fmt(100 * second.seconds / first.seconds))% of its time |"
        )
        print(
            "| third, after \(options.writes) MiB written to the disk | \(fmt(third.seconds)) | \(mib(third.added)) (disk \(mib(third.diskAdded)), memory and the rest \(mib(third.added - third.diskAdded))) | \(fmt(Double(third.added) / Double(options.writes << 20)))× what was written; the disk's part \(fmt(Double(third.diskAdded) / Double(options.writes << 20)))× |"
        )
        print(
            "| restore of the newest into the same VM, read from the store as it goes | \(fmt(restoreSeconds)) | | \(fmt(restoreSeconds / qemuRestore))× QEMU's -incoming (\(fmt(qemuRestore)) s) |"
        )
        print("")
        print("| storing one bundle (\(mib(bundleBytes))) | time (s) | store bytes |")
        print("|---|---:|---:|")
        print("| zstd on (chunks encrypted either way) | \(fmt(zstd[true]!.seconds)) | \(mib(zstd[true]!.bytes)) |")
        print("| zstd off | \(fmt(zstd[false]!.seconds)) | \(mib(zstd[false]!.bytes)) |")
        print("| plain copy of the bundle (cp --sparse, no encryption) | \(fmt(copySeconds)) | \(mib(bundleBytes)) |")
        print(
            "zstd vs off: \(fmt(zstd[true]!.seconds / zstd[false]!.seconds))× the time, \(fmt(Double(zstd[true]!.bytes) / Double(zstd[false]!.bytes)))× the bytes; storing vs a plain copy: \(fmt(zstd[true]!.seconds / copySeconds))× the time."
        )
        print(
            "The same VM checkpointed both ways: into the store (encrypted, compressed, incremental) \(fmt(intoStore.seconds)) s vs a plain bundle (-o, neither, the whole disk) \(fmt(plainSeconds)) s: \(fmt(intoStore.seconds / plainSeconds))× the time."
        )
        print("")
        print(
            "Series: \(options.series) checkpoints of the busy guest (median \(fmt(median(seriesSeconds))) s each) added \(mib(seriesStore)) to the store; as bundles (-o, about \(mib(bundleBytes)) each) they would be \(mib(seriesBundles)) (\(fmt(Double(seriesStore) / Double(max(seriesBundles, 1))))×)."
        )
    }
}

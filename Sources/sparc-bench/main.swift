import ArgumentParser
import Foundation
import GuestQuery
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport

/// sparc-bench: measures sparc's checkpoint and restore side by side with QEMU's own
/// save (`migrate` of the whole RAM to a file, as `virsh save` does) and a plain copy
/// of the RAM file, in one run on one VM. Prints a markdown table with ratios.

func now() -> Double { Date().timeIntervalSince1970 }

func syncAll() { sync() }

func time(_ body: () throws -> Void) rethrows -> Double {
    let t = now()
    try body()
    return now() - t
}

func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
func mib(_ bytes: Int64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

func du(_ path: String) -> Int64 {
    var total: Int64 = 0
    if FileSystem.isDirectory(path) {
        for f in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { total += du(path + "/" + f) }
    } else {
        total += FileSystem.allocatedBytes(path) ?? 0
    }
    return total
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The command line: `sparc-bench checkpoint [--guest busybox|debian] [--memory MIB] …`.
struct BenchOptions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparc-bench",
        abstract: "Checkpoint and restore side by side with QEMU's own save and restore (make bench).")
    @Argument(help: "The benchmark to run: checkpoint, or store (the checkpoint store: first, idle, after writes, restore, zstd, a series).")
    var benchmark: String = "checkpoint"
    @Option(help: "busybox or debian: the built guest to boot.") var guest: GuestKind = .busybox
    @Option(help: "Guest RAM in MiB.") var memory: Int = 1024
    @Option(help: "MiB of random data written into the guest's tmpfs.") var fill: Int = 400
    @Option(help: "MiB held by the process that is excluded.") var hold: Int = 200
    @Option(help: "Rounds; medians are reported.") var rounds: Int = 3
    @Option(help: "store: MiB of files written to the guest's disk before the first checkpoint.") var diskFill: Int = 2048
    @Option(help: "store: seconds the guest idles before the second checkpoint.") var idle: Int = 60
    @Option(help: "store: MiB written to the guest's disk before the third checkpoint.") var writes: Int = 100
    @Option(help: "store: checkpoints in the series of a busy guest.") var series: Int = 10

    func validate() throws {
        guard ["checkpoint", "store"].contains(benchmark) else { throw ValidationError("unknown benchmark '\(benchmark)' (there are: checkpoint, store)") }
        guard rounds >= 1, memory >= 256, fill >= 0, hold >= 0, fill + hold + 128 < memory else {
            throw ValidationError("need rounds >= 1 and fill + hold + 128 < memory")
        }
    }
}

extension GuestKind: ExpressibleByArgument {}

let options = BenchOptions.parseOrExit()
let memoryMiB = options.memory
let fillMiB = options.fill
let holdMiB = options.hold
let rounds = options.rounds
let work = "/var/tmp/sparc-bench-\(getpid())"
let root = work + "/runtime"
try FileSystem.makeDirectories(root)
try FileSystem.makeDirectories(work + "/state")
let manager = try VMManager(root: root, stateDirectory: work + "/state", agentTimeout: 60)
let name = "bench"
defer {
    _ = try? manager.stop(name: name, force: true)
    FileSystem.removeTree(work)
}
func cleanupAndExit(_ code: Int32) -> Never {
    _ = try? manager.stop(name: name, force: true)
    FileSystem.removeTree(work)
    exit(code)
}

if options.benchmark == "store" {
    do { try StoreBenchmark(options: options).run() } catch {
        printError("sparc-bench: \(error)")
        cleanupAndExit(2)
    }
    cleanupAndExit(0)
}

do {
    var start = StartOptions()
    start.name = name
    start.memoryMiB = memoryMiB
    start.guest = options.guest
    start.agentTimeout = 300
    print("booting a \(memoryMiB) MiB \(options.guest.rawValue) guest…")
    let bootTime = try time { try manager.start(start) }
    print("boot to agent: \(fmt(bootTime, 1)) s")
    let agent = try manager.agentClient(name, timeout: 600)
    print("starting a process holding \(holdMiB) MiB, filling \(fillMiB) MiB of tmpfs with random data…")
    let holder = try agent.exec(ExecRequest(argv: ["sparc-probe", "hold", String(holdMiB)], detach: true)).pid
    let fill = try agent.exec(
        ExecRequest(argv: [
            "sh", "-c",
            "mount -o remount,size=\(fillMiB + 64)m /dev/shm && dd if=/dev/urandom of=/dev/shm/fill bs=1M count=\(fillMiB) 2>/dev/null && sync && echo ok",
        ]), timeout: 900)
    guard fill.status == 0 else { throw SparcError("filling guest memory failed: \(String(decoding: fill.stderr, as: UTF8.self))") }
    // The holder reads /dev/urandom under TCG: wait until its memory is all there.
    while (try agent.processes().first { $0.pid == holder }?.rssKiB ?? 0) < Int64(holdMiB) << 10 { usleep(200_000) }
    agent.close()

    let layout = manager.layout(name)
    var ours: [Double] = []
    var qemuSave: [Double] = []
    var plainCopy: [Double] = []
    var ourSize: Int64 = 0
    var qemuSize: Int64 = 0
    var ramData: Int64 = 0
    let bundle = work + "/ours.sparc"
    let qemuFile = work + "/qemu.save"
    for round in 1...rounds {
        FileSystem.removeTree(bundle)
        unlink(qemuFile)
        unlink(work + "/copy.ram")
        // Alternate the order so neither side always runs on a warmer cache.
        let order = round % 2 == 1 ? [0, 1, 2] : [2, 1, 0]
        for which in order {
            switch which {
            case 0:
                ours.append(
                    try time {
                        let r = try manager.checkpoint(name: name, output: bundle)
                        ramData = r.memoryDataBytes
                        syncAll()
                    })
                ourSize = du(bundle)
            case 1:
                qemuSave.append(try QEMUBaseline.save(layout: layout, to: qemuFile))
                qemuSize = du(qemuFile)
            default:
                plainCopy.append(
                    try time {
                        let r = try Subprocess.run(["cp", try manager.running(name).ramPath, work + "/copy.ram"])
                        guard r.status == 0 else { throw SparcError("cp failed: \(r.stderrSummary)") }
                        syncAll()
                    })
            }
        }
        print("round \(round): ours \(fmt(ours.last!)) s, QEMU save \(fmt(qemuSave.last!)) s, copy \(fmt(plainCopy.last!)) s")
    }
    unlink(work + "/copy.ram")

    // Restore: ours (verify + sparse load + incoming + thaw) against QEMU's -incoming of its own save.
    var ourRestore: [Double] = []
    var qemuRestore: [Double] = []
    let spec = try manager.machineSpec(BundleReader(path: bundle).manifest)
    for _ in 1...rounds {
        try manager.stop(name: name, force: true)
        ourRestore.append(try time { _ = try manager.restore(bundle: bundle, name: name) })
        try manager.stop(name: name, force: true)

        qemuRestore.append(try QEMUBaseline.restore(disk: bundle + "/disk.qcow2", saved: qemuFile, spec: spec))
        _ = try manager.restore(bundle: bundle, name: name)
    }

    // Exclusion: the same checkpoint with the holder left out (scope all), side by side.
    var plain: [Double] = []
    var excluding: [Double] = []
    var collect: [Double] = []
    // The guest's pause (QEMU stop to cont): what the guest's users feel.
    var plainPause: [Double] = []
    var excludingPause: [Double] = []
    var excludedSize: Int64 = 0
    var excludedBytes: Int64 = 0
    let bundleX = work + "/excluded.sparc"
    let restoredHolder = try manager.agentClient(name).processes().first { $0.command.unescaped.hasPrefix("sparc-probe hold") }?.pid ?? holder
    for round in 1...rounds {
        for which in round % 2 == 1 ? [0, 1] : [1, 0] {
            FileSystem.removeTree(bundle)
            FileSystem.removeTree(bundleX)
            if which == 0 {
                var report: CheckpointReport?
                plain.append(try time {
                    report = try manager.checkpoint(name: name, output: bundle)
                    syncAll()
                })
                plainPause.append(report!.downtime)
            } else {
                var report: CheckpointReport?
                excluding.append(try time {
                    report = try manager.checkpoint(
                        name: name, output: bundleX, exclusion: ExclusionRequest(pids: [restoredHolder], scope: .all))
                    syncAll()
                })
                collect.append(report!.exclusion.collectMilliseconds / 1000)
                excludingPause.append(report!.downtime)
                excludedSize = du(bundleX)
                excludedBytes = report!.exclusion.bytes
            }
        }
    }

    let o = median(ours)
    let q = median(qemuSave)
    let c = median(plainCopy)
    print("")
    print("Guest: \(options.guest.rawValue), \(memoryMiB) MiB RAM, \(mib(ramData)) non-zero pages saved; boot to agent \(fmt(bootTime, 1)) s; TCG; median of \(rounds) rounds; every save followed by sync.")
    print("")
    print("| operation | time (s) | on disk | time vs QEMU | size vs QEMU |")
    print("|---|---:|---:|---:|---:|")
    print("| sparc checkpoint | \(fmt(o)) | \(mib(ourSize)) | \(fmt(o / q))× | \(fmt(Double(ourSize) / Double(qemuSize)))× |")
    print("| QEMU save (migrate to file) | \(fmt(q)) | \(mib(qemuSize)) | 1.00× | 1.00× |")
    print("| plain copy of the RAM file | \(fmt(c)) | \(mib(Int64(memoryMiB) << 20)) | \(fmt(c / q))× | \(fmt(Double(Int64(memoryMiB) << 20) / Double(qemuSize)))× |")
    print("| sparc restore (verify + load + resume) | \(fmt(median(ourRestore))) | | \(fmt(median(ourRestore) / median(qemuRestore)))× | |")
    print("| QEMU restore (-incoming) | \(fmt(median(qemuRestore))) | | 1.00× | |")
    // The last exclusion round left one of the two bundles; both hold the same disk state.
    let lastBundle = FileSystem.exists(bundle + "/disk.qcow2") ? bundle : bundleX
    let diskState = FileSystem.exists(lastBundle + "/disk.qcow2") ? du(lastBundle + "/disk.qcow2") : 0
    if diskState > 0 {
        print("")
        print(
            "sparc's bundle also holds the VM's disk state (disk.qcow2, \(mib(diskState))), which a restore copies back; QEMU's save file holds RAM and devices only. Without the disk the bundle is \(mib(ourSize - diskState)) (\(fmt(Double(ourSize - diskState) / Double(qemuSize)))× QEMU's)."
        )
    }
    print("")
    print("Exclusion (\(holdMiB) MiB process left out with --scope all; \(mib(excludedBytes)) excluded), same VM, alternating:")
    print("")
    print("| checkpoint | time (s) | guest paused (s) | on disk | time vs without exclusion |")
    print("|---|---:|---:|---:|---:|")
    print("| sparc checkpoint, nothing excluded | \(fmt(median(plain))) | \(fmt(median(plainPause))) | \(mib(ourSize)) | 1.00× |")
    print(
        "| sparc checkpoint, \(holdMiB) MiB process excluded | \(fmt(median(excluding))) | \(fmt(median(excludingPause))) | \(mib(excludedSize)) | \(fmt(median(excluding) / median(plain)))× |"
    )
    print("| of which: collecting ranges in the guest (processes frozen, guest running) | \(fmt(median(collect))) | | | |")
} catch {
    printError("sparc-bench: \(error)")
    cleanupAndExit(2)
}
cleanupAndExit(0)

import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// Free memory is never saved: the default guest booted without `init_on_free=1` (as users'
/// own VMs usually are), so that what a process leaves behind when it exits stays in free pages.
final class FreeMemoryTests: GuestTestCase {
    override class var vmName: String { "free" }
    static var guestDirectory: String { ProcessInfo.processInfo.environment["SPARC_GUEST_DIR"] ?? FileSystem.absolute("build/guest") }
    override class var startArguments: [String] {
        ["--kernel", guestDirectory + "/vmlinuz", "--initrd", guestDirectory + "/initrd.img", "--append", "console=ttyS0 quiet", "--memory", "512"]
    }

    func manifest(_ bundle: String) throws -> Manifest { try BundleReader(path: bundle).manifest }

    /// A bystander that checks its own memory every half second against the digest it took
    /// at the start; returns its pid (its verdict is in /run/NAME.state: "ok N" or "BAD").
    func startBystander(_ name: String) throws -> Int32 {
        try detach(
            "B=$(head -c 200000 /dev/urandom | base64); S=$(printf %s \"$B\" | md5sum); n=0; while :; do n=$((n+1)); if [ \"$(printf %s \"$B\" | md5sum)\" = \"$S\" ]; then echo ok $n > /run/\(name).state; else echo BAD > /run/\(name).state; fi; sleep 0.5; done"
        )
    }

    /// The bystander ran on and found its memory intact: its count went past what it was.
    func assertBystanderHealthy(_ name: String, pid: Int32, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertTrue(try livePids().contains(pid), "bystander \(pid) survived", file: file, line: line)
        let first = try guest("cat /run/\(name).state")
        var now = first
        for _ in 0..<600 where now == first {
            usleep(100_000)
            now = try guest("cat /run/\(name).state")
        }
        XCTAssertTrue(now.hasPrefix("ok "), "bystander \(name) checked its memory: \(now)", file: file, line: line)
        XCTAssertNotEqual(now, first, "bystander \(name) runs on", file: file, line: line)
    }

    /// 200 MiB sprayed with a secret by a process that then exits, and a deleted tmpfs file
    /// (freed page cache: a case of our own): the baseline (--save-free-memory) holds every
    /// copy, the default checkpoint none, and is smaller by the free memory; the restored guest
    /// hands all that memory out again without complaint, and a bystander runs on intact.
    func testMemoryThatExitedProcessesLeftIsNeverSaved() throws {
        let bystander = try startBystander("free-bystander")
        let sprayed = Self.randomSecret("SPRAY")
        let sprayOut = try sparc.ok(["exec", "--name", vm, "--", "sparc-probe", "spray", "200"], stdin: Data(sprayed.utf8)).trimmed
        XCTAssertEqual(sprayOut, "sprayed 51200")
        // The deleted file's secret is made in the guest (8 MiB of its lines): it never passes the agent's input channel.
        let deleted = try guest("S=FILE\(Self.generate); yes \"$S\" | head -c 8388608 > /dev/shm/note; rm /dev/shm/note; echo \"$S\"")
        XCTAssertEqual(deleted.count, 36)

        let baseline = work + "/free-baseline.sparc"
        let saidBaseline = try sparc.ok(["checkpoint", "--name", vm, "-o", baseline, "--save-free-memory"])
        XCTAssertTrue(saidBaseline.contains("free memory saved (--save-free-memory)"), saidBaseline)
        let sprayHits = try SecretScan.hits(sprayed, inBundle: baseline)
        XCTAssertGreaterThan(sprayHits["memory.img"] ?? 0, 25_000, "the baseline holds what the exited process left: \(sprayHits)")
        print("effectiveness: free memory an exited process left (200 MiB sprayed): baseline \(sprayHits["memory.img"] ?? 0) hit(s)")
        XCTAssertGreaterThan(try SecretScan.hits(deleted, inBundle: baseline)["memory.img"] ?? 0, 0, "the baseline holds the deleted file")
        // One label for free memory, read from the guest's records at the pause: every hit is "[free]".
        let attributed = try sparc.run(["search", sprayed, baseline]).stdout.split(separator: "\n").filter { $0.contains("memory.img:") }
        XCTAssertEqual(attributed.count, sprayHits["memory.img"] ?? -1)
        XCTAssertEqual(attributed.filter { !$0.contains("[free]") }, [], "every copy the exited process left is labelled free")

        let bundle = work + "/free.sparc"
        let said = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        XCTAssertTrue(said.contains("free: "), said)
        XCTAssertTrue(said.contains("init_on_free"), "the guest runs without init_on_free: a warning says so: \(said)")
        for secret in [sprayed, deleted] {
            XCTAssertEqual(try SecretScan.hits(secret, inBundle: bundle).values.reduce(0, +), 0, "no copy in any file of the bundle")
        }
        let free = try XCTUnwrap(try manifest(bundle).freeMemory)
        print("effectiveness: free memory left out: \(free.bytes >> 20) MiB; memory data \((try manifest(baseline).memory.dataBytes) >> 20) MiB -> \((try manifest(bundle).memory.dataBytes) >> 20) MiB")
        XCTAssertGreaterThan(free.bytes, 200 << 20, "the sprayed memory is counted as free")
        XCTAssertEqual(free.guestZeroesOnFree, false)
        let smaller = (try manifest(baseline).memory.dataBytes) - (try manifest(bundle).memory.dataBytes)
        XCTAssertGreaterThan(smaller, 190 << 20, "the bundle is smaller by the free memory it left out")
        XCTAssertEqual(try manifest(bundle).memory.freeBytes, free.bytes)

        // The restored guest believes those pages free and hands them out again: all of it, twice.
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        try assertBystanderHealthy("free-bystander", pid: bystander)
        for _ in 0..<2 {
            XCTAssertEqual(try sparc.ok(["exec", "--name", vm, "--", "sparc-probe", "spray", "300"], stdin: Data("AFTER".utf8)).trimmed, "sprayed 76800")
        }
        XCTAssertFalse(try guest("dmesg").contains("Bad page"), "no bad page reports")
        try assertNoKernelComplaint()
        try assertBystanderHealthy("free-bystander", pid: bystander)
        try guest("kill \(bystander)")
    }

    /// A guest that poisons freed pages checks the pattern when it hands a page out: sparc
    /// keeps its free pages as they are (they hold no data) and says so, and the restored
    /// guest reports no corruption.
    func testGuestThatPoisonsFreedPagesKeepsItsPattern() throws {
        let name = "poison"
        try sparc.ok(
            ["vm", "start", "--name", name, "--kernel", Self.guestDirectory + "/vmlinuz", "--initrd", Self.guestDirectory + "/initrd.img",
             "--append", "console=ttyS0 quiet page_poison=1", "--memory", "384"])
        defer { _ = try? sparc.run(["vm", "stop", "--name", name, "--force"]) }
        let sprayed = Self.randomSecret("POISON")
        XCTAssertEqual(try sparc.ok(["exec", "--name", name, "--", "sparc-probe", "spray", "64"], stdin: Data(sprayed.utf8)).trimmed, "sprayed 16384")
        let bundle = work + "/poison.sparc"
        let said = try sparc.ok(["checkpoint", "--name", name, "-o", bundle])
        XCTAssertTrue(said.contains("page_poison=1"), said)
        XCTAssertEqual(try manifest(bundle).freeMemory?.guestPoisonsFreePages, true)
        // The guest overwrote what the process left when it freed it.
        XCTAssertEqual(try SecretScan.hits(sprayed, inBundle: bundle).values.reduce(0, +), 0)
        try sparc.ok(["restore", bundle, "--name", name, "--replace"])
        // Most of what the restored guest holds free is handed out again (and checked against the
        // pattern): 150 MiB of a 384 MiB guest (at 256 MiB the guest's own use after the agent's
        // work left 146 MiB, and the spray met the OOM killer).
        XCTAssertEqual(try sparc.ok(["exec", "--name", name, "--", "sparc-probe", "spray", "150"], stdin: Data("AFTER".utf8)).trimmed, "sprayed 38400")
        let log = try sparc.ok(["exec", "--name", name, "--", "dmesg"])
        for bad in ["pagealloc: memory corruption", "Bad page", "BUG:"] { XCTAssertFalse(log.contains(bad), "guest logged '\(bad)':\n\(log)") }
    }
}

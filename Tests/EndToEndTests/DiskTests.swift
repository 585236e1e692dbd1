import Foundation
import SparcSupport
import XCTest

/// A VM on the operator's own disk file (the busybox guest with `--disk FILE`, cheap to boot):
/// writes persist, checkpoints and restores still hold the disk of their moment, crashes
/// leave the file clean, and a file another QEMU uses is refused.
final class DiskTests: GuestTestCase {
    override class var vmName: String { "disks" }
    override class var bootsVM: Bool { false }

    /// A fresh copy of the default guest's data disk, owned by the "operator".
    func userDisk(_ name: String) throws -> String {
        let path = work + "/\(name).qcow2"
        let source = (ProcessInfo.processInfo.environment["SPARC_GUEST_DIR"] ?? FileSystem.absolute("build/guest")) + "/data.qcow2"
        let r = try Subprocess.run(["qemu-img", "convert", "-O", "qcow2", source, path])
        XCTAssertEqual(r.status, 0, r.stderrText)
        return path
    }

    func exec(_ vm: String, _ script: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try sparc.ok(["exec", "--name", vm, "--", "sh", "-c", script], file: file, line: line).trimmed
    }

    func assertClean(_ disk: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try Subprocess.run(["qemu-img", "check", disk])
        XCTAssertEqual(r.status, 0, "qemu-img check \(disk): \(r.stdoutText)\(r.stderrText)", file: file, line: line)
    }

    func testOwnDiskKeepsWritesAndRestoreRollsItBack() throws {
        let disk = try userDisk("own")
        try sparc.ok(["vm", "start", "--name", "own", "--disk", disk])
        try exec("own", "echo one > /data/f; sync")
        let bundle = work + "/own.sparc"
        try sparc.ok(["checkpoint", "--name", "own", "-o", bundle])
        try exec("own", "echo two > /data/f; sync")
        try sparc.ok(["vm", "stop", "--name", "own"])
        try assertClean(disk)
        try sparc.ok(["vm", "start", "--name", "own", "--disk", disk])
        XCTAssertEqual(try exec("own", "cat /data/f"), "two", "the write survived stop and start")
        try sparc.ok(["restore", bundle, "--name", "own", "--replace"])
        XCTAssertEqual(try exec("own", "cat /data/f"), "one", "restore took the disk back")
        try exec("own", "echo three > /data/f; sync")
        try sparc.ok(["vm", "stop", "--name", "own"])
        try assertClean(disk)
        try sparc.ok(["vm", "start", "--name", "own", "--disk", disk])
        XCTAssertEqual(try exec("own", "cat /data/f"), "three", "the restored VM writes to the operator's file")
        try sparc.ok(["vm", "stop", "--name", "own"])
        // --ephemeral discards the writes.
        try sparc.ok(["vm", "start", "--name", "own", "--disk", disk, "--ephemeral"])
        try exec("own", "echo four > /data/f; sync")
        try sparc.ok(["vm", "stop", "--name", "own"])
        try sparc.ok(["vm", "start", "--name", "own", "--disk", disk])
        XCTAssertEqual(try exec("own", "cat /data/f"), "three")
        try sparc.ok(["vm", "stop", "--name", "own"])
    }

    /// QEMU killed while the guest writes, and sparc killed between the disk snapshot and the
    /// commit: the file is clean and holds what was written.
    func testCrashesLeaveTheDiskClean() throws {
        let disk = try userDisk("crash")
        try sparc.ok(["vm", "start", "--name", "crash", "--disk", disk])
        try exec("crash", "echo kept > /data/kept; sync")
        _ = try sparc.ok(["exec", "--name", "crash", "--detach", "--", "sh", "-c", "while :; do dd if=/dev/urandom of=/data/churn bs=64k count=16 2>/dev/null; done"])
        sleep(1)
        let status = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["vm", "status", "--name", "crash", "--json"]).utf8)) as! [String: Any]
        kill(Int32(status["pid"] as! Int), SIGKILL)
        sleep(1)
        try sparc.ok(["vm", "start", "--name", "crash", "--disk", disk])
        XCTAssertEqual(try exec("crash", "cat /data/kept"), "kept")
        try sparc.ok(["vm", "stop", "--name", "crash"])
        try assertClean(disk)

        try sparc.ok(["vm", "start", "--name", "crash", "--disk", disk])
        try exec("crash", "echo before-fault > /data/kept; sync")
        let killed = try sparc.run(["checkpoint", "--name", "crash", "-o", work + "/fault.sparc"], environment: ["SPARC_FAULT": "checkpoint-after-disk-snapshot"])
        XCTAssertEqual(killed.status, 128 + SIGKILL)
        XCTAssertFalse(FileSystem.exists(work + "/fault.sparc"))
        try sparc.ok(["vm", "stop", "--name", "crash"])
        try assertClean(disk)
        let overlays = try FileManager.default.contentsOfDirectory(atPath: runtime).filter { $0 == "crash" }
        XCTAssertEqual(overlays, [], "no runtime files left")
        try sparc.ok(["vm", "start", "--name", "crash", "--disk", disk])
        XCTAssertEqual(try exec("crash", "cat /data/kept"), "before-fault", "the overlay was written back into the file")
        try sparc.ok(["vm", "stop", "--name", "crash"])
        try assertClean(disk)
    }

    /// A disk another QEMU has open is refused (and not touched); a disk a sparc VM runs on
    /// is refused to other QEMUs and to qemu-img.
    func testDiskInUseIsRefused() throws {
        let disk = try userDisk("busy")
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        let other = try Subprocess.spawn([
            "qemu-system-x86_64", "-machine", "q35", "-nodefaults", "-display", "none", "-S", "-monitor", "none", "-drive",
            "file=\(disk),if=none,id=d,format=qcow2", "-device", "virtio-blk-pci,drive=d",
        ])
        defer {
            kill(other, SIGKILL)
            _ = Subprocess.wait(other)
        }
        var held = false
        for _ in 0..<100 where !held {
            held = try Subprocess.run(["qemu-img", "info", disk]).status != 0
            if !held { usleep(100_000) }
        }
        XCTAssertTrue(held, "the other QEMU holds the disk")
        try sparc.fails(["vm", "start", "--name", "busy", "--disk", disk], message: "in use by another process")
        try assertNoVM("busy")
        kill(other, SIGKILL)
        _ = Subprocess.wait(other)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: disk)), before, "the refused start did not touch the disk")

        try sparc.ok(["vm", "start", "--name", "busy", "--disk", disk])
        let intruder = try Subprocess.run([
            "timeout", "20", "qemu-system-x86_64", "-machine", "q35", "-nodefaults", "-display", "none", "-S", "-drive",
            "file=\(disk),if=none,id=d,format=qcow2", "-device", "virtio-blk-pci,drive=d", "-monitor", "none",
        ])
        XCTAssertNotEqual(intruder.status, 0)
        XCTAssertTrue(intruder.stderrText.contains("lock"), intruder.stderrText)
        XCTAssertNotEqual(try Subprocess.run(["qemu-img", "check", disk]).status, 0, "qemu-img sees the disk in use")
        try sparc.ok(["vm", "stop", "--name", "busy"])
        try assertClean(disk)
    }

    /// A guest without the agent: a bounded wait, then one line that names the package.
    func testGuestWithoutTheAgentNamesThePackage() throws {
        let guest = ProcessInfo.processInfo.environment["SPARC_GUEST_DIR"] ?? FileSystem.absolute("build/guest")
        // Bounded by --agent-timeout; a wait without end would be killed by the runner's limit and fail.
        try sparc.fails(
            [
                "vm", "start", "--name", "noagent", "--kernel", guest + "/vmlinuz", "--initrd", guest + "/initrd.img", "--append",
                "console=ttyS0 rdinit=/bin/sh", "--agent-timeout", "8",
            ], message: "sparc-guest package")
        // Without an agent the stop presses the ACPI power button; a shell as PID 1 ignores it, so after --timeout QEMU quits.
        let stop = try sparc.run(["vm", "stop", "--name", "noagent", "--timeout", "5"])
        XCTAssertEqual(stop.status, 0, stop.stderr)
        XCTAssertTrue(stop.stdout.contains("QEMU quit"), stop.stdout)
        XCTAssertTrue(stop.stderr.contains("did not power off within 5 s (ACPI power button)"), stop.stderr)
    }
}

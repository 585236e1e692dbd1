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

    @discardableResult
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

    /// A checkpoint into the store as `sparc checkpoint --json` reports it.
    func storedCheckpoint(_ vm: String, env: [String: String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let r = try sparc.run(["checkpoint", "--name", vm, "--json"], environment: env)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], file: file, line: line)
        return try XCTUnwrap(report["checkpoint"] as? [String: Any], file: file, line: line)
    }

    /// Into the store, a VM on its own qcow2 keeps a dirty bitmap from one checkpoint to the
    /// next: the second reads only what the guest wrote since the first, and restores byte for
    /// byte. The bitmap survives a clean stop and start; after QEMU was killed, after a restore
    /// and after a checkpoint that failed, everything is read again (and the result is right).
    func testStoredCheckpointsReadOnlyWhatTheDiskWroteSince() throws {
        let disk = try userDisk("inc")
        let env = ["SPARC_BUNDLES": work + "/inc-home"]
        try sparc.ok(["vm", "start", "--name", "inc", "--disk", disk])
        try exec("inc", "head -c 6000000 /dev/urandom > /data/a; sync")
        let first = try storedCheckpoint("inc", env: env)
        let firstName = try XCTUnwrap(first["bundle"] as? String)
        let firstRead = try XCTUnwrap(first["diskReadBytes"] as? Int)
        XCTAssertNil(first["diskChangedSince"], "nothing to compare the first with")
        XCTAssertGreaterThan(firstRead, 6_000_000, "the whole disk's data was read")

        try exec("inc", "head -c 1000000 /dev/urandom > /data/b; sync")
        let sums = try exec("inc", "md5sum /data/a /data/b")
        let second = try storedCheckpoint("inc", env: env)
        let secondName = try XCTUnwrap(second["bundle"] as? String)
        XCTAssertEqual(second["diskChangedSince"] as? String, firstName)
        let secondRead = try XCTUnwrap(second["diskReadBytes"] as? Int)
        XCTAssertGreaterThanOrEqual(secondRead, 1_000_000, "the new file was read")
        XCTAssertLessThan(secondRead, firstRead / 3, "and little else")
        print("disk read into the store: first \(firstRead) bytes, second \(secondRead) (\(second["diskNote"] ?? ""))")
        try sparc.ok(["verify", secondName], environment: env)

        // Restored into the same VM: only the chunks written since are written back.
        try exec("inc", "echo later > /data/c; sync")
        let restored = try sparc.ok(["restore", secondName, "--replace"], environment: env)
        XCTAssertTrue(restored.contains("that differed from the VM's disk since \(secondName)"), restored)
        print("restore into the same VM: \(restored.split(separator: "\n").last ?? "")")
        XCTAssertEqual(try exec("inc", "md5sum /data/a /data/b"), sums, "restored byte for byte")
        XCTAssertEqual(try exec("inc", "test -e /data/c && echo present || echo absent"), "absent")
        try sparc.ok(["vm", "stop", "--name", "inc"])
        try assertClean(disk)
        try sparc.ok(["vm", "start", "--name", "inc", "--disk", disk])
        XCTAssertEqual(try exec("inc", "md5sum /data/a /data/b"), sums, "the restored state is in the VM's own file")
        // My own case: a restore's differences land in an overlay committed into the file;
        // the next checkpoint counts from the restored checkpoint, not from scratch.
        try exec("inc", "echo after-restore > /data/r; sync")
        let afterIncrementalRestore = try storedCheckpoint("inc", env: env)
        XCTAssertEqual(afterIncrementalRestore["diskChangedSince"] as? String, secondName, "the restore's bitmap counted from the restored checkpoint")
        try sparc.ok(["restore", secondName, "--replace", "--allow-rollback"], environment: env)

        // A restore from a bundle directory (not the store) makes a new disk file: no bitmap,
        // everything read, and said so.
        let exported = work + "/inc-second.sparc"
        try sparc.ok(["export", secondName, "-o", exported], environment: env)
        try sparc.ok(["restore", exported, "--replace", "--allow-rollback"], environment: env)
        let afterRestore = try storedCheckpoint("inc", env: env)
        XCTAssertNil(afterRestore["diskChangedSince"])
        XCTAssertTrue((afterRestore["diskNote"] as? String ?? "").contains("read all"), "\(afterRestore["diskNote"] ?? "")")
        // A clean stop keeps the bitmap in the image; the next start takes it back.
        try sparc.ok(["vm", "stop", "--name", "inc"])
        try assertClean(disk)
        try sparc.ok(["vm", "start", "--name", "inc", "--disk", disk])
        try exec("inc", "echo after-start > /data/d; sync")
        let afterStart = try storedCheckpoint("inc", env: env)
        XCTAssertEqual(afterStart["diskChangedSince"] as? String, afterRestore["bundle"] as? String, "the bitmap survived a clean stop")

        // My own case: a checkpoint that fails after its disk was stored leaves no bitmap that
        // could skip a write: the next one is whole and right.
        try exec("inc", "echo e1 > /data/e; sync")
        let failed = try sparc.run(["checkpoint", "--name", "inc"], environment: env.merging(["SPARC_FAULT": "checkpoint-before-commit"]) { $1 })
        XCTAssertNotEqual(failed.status, 0)
        try exec("inc", "echo e2 > /data/e; sync")
        let afterFailure = try storedCheckpoint("inc", env: env)
        if let since = afterFailure["diskChangedSince"] as? String {
            XCTAssertEqual(since, afterStart["bundle"] as? String, "only a stored checkpoint's bitmap is used")
        }
        try exec("inc", "echo e3 > /data/e; sync")
        try sparc.ok(["restore", try XCTUnwrap(afterFailure["bundle"] as? String), "--replace"], environment: env)
        XCTAssertEqual(try exec("inc", "cat /data/e /data/d"), "e2\nafter-start")

        // QEMU killed: the bitmap lived only in QEMU, so none is trusted after the next start.
        _ = try storedCheckpoint("inc", env: env)
        let status = try JSONSerialization.jsonObject(with: Data(try sparc.ok(["vm", "status", "--name", "inc", "--json"]).utf8)) as! [String: Any]
        kill(Int32(status["pid"] as! Int), SIGKILL)
        sleep(1)
        try sparc.ok(["vm", "start", "--name", "inc", "--disk", disk])
        try exec("inc", "echo after-kill > /data/f; sync")
        let afterKill = try storedCheckpoint("inc", env: env)
        XCTAssertNil(afterKill["diskChangedSince"], "no bitmap is trusted after QEMU died")
        XCTAssertTrue((afterKill["diskNote"] as? String ?? "").contains("read all"))
        // sparc killed while it reads the disk through QEMU's export (the bitmap it read from is
        // disabled then): the guest runs on, and the next checkpoint ends the export, trusts no
        // bitmap and reads everything.
        try exec("inc", "head -c 3000000 /dev/urandom > /data/g; sync")
        let killed = try sparc.run(["checkpoint", "--name", "inc"], environment: env.merging(["SPARC_FAULT": "store-after-chunk#1"]) { $1 })
        XCTAssertEqual(killed.status, 128 + SIGKILL)
        try exec("inc", "echo g2 > /data/g; sync")
        let afterKilledSparc = try storedCheckpoint("inc", env: env)
        XCTAssertNil(afterKilledSparc["diskChangedSince"], "a bitmap that stopped recording is not used")
        try exec("inc", "echo g3 > /data/g; sync")
        try sparc.ok(["restore", try XCTUnwrap(afterKilledSparc["bundle"] as? String), "--replace"], environment: env)
        XCTAssertEqual(try exec("inc", "cat /data/g /data/f"), "g2\nafter-kill")
        let check = try sparc.ok(["store", "check", "--read-data"], environment: env)
        XCTAssertTrue(check.contains("intact"), check)
        try sparc.ok(["vm", "stop", "--name", "inc"])
        try assertClean(disk)
    }

    /// A restore over a running VM stores it first as its undo point; `sparc undo` brings back
    /// what the restore replaced (its files and its processes) and is no rollback; a VM keeps
    /// one undo point, retention leaves it alone, and `--no-undo` makes none.
    func testUndoBringsBackWhatARestoreReplaced() throws {
        let disk = try userDisk("undo")
        let env = ["SPARC_BUNDLES": work + "/undo-home", "SPARC_TEST_UNDO": "1"]
        try sparc.ok(["vm", "start", "--name", "undo", "--disk", disk])
        try exec("undo", "echo before > /data/f; sync")
        let checkpoint = try XCTUnwrap(try storedCheckpoint("undo", env: env)["bundle"] as? String)
        try exec("undo", "echo after > /data/f; sync")
        let sleeper = try sparc.ok(["exec", "--name", "undo", "--detach", "--", "sleep", "3600"], environment: env).trimmed
        let sleeperPid = try XCTUnwrap(sleeper.split(separator: " ").last.flatMap { Int($0) }, sleeper)

        let restored = try sparc.ok(["restore", checkpoint, "--replace"], environment: env)
        XCTAssertTrue(restored.contains("'sparc undo --name undo' goes back to it"), restored)
        XCTAssertEqual(try exec("undo", "cat /data/f"), "before", "the restore took the VM back")
        XCTAssertEqual(try exec("undo", "kill -0 \(sleeperPid) 2>/dev/null && echo alive || echo gone"), "gone")
        func undoPoints() throws -> [String] {
            let list = JSONOutput.list(try sparc.ok(["bundles", "--json"], environment: env), "bundles") ?? []
            return list.filter { $0["undoPoint"] as? Bool == true }.compactMap { $0["name"] as? String }
        }
        let points = try undoPoints()
        XCTAssertEqual(points.count, 1)
        XCTAssertTrue(points[0].hasSuffix("-undo"), "\(points)")
        // Retention leaves it alone.
        try sparc.ok(["prune", "--vm", "undo", "--keep-last", "1"], environment: env)
        XCTAssertEqual(try undoPoints(), points)

        try sparc.ok(["undo", "--name", "undo"], environment: env)
        XCTAssertEqual(try exec("undo", "cat /data/f"), "after", "undo brought back what the restore replaced")
        XCTAssertEqual(try exec("undo", "kill -0 \(sleeperPid) 2>/dev/null && echo alive || echo gone"), "alive", "and its processes")
        let log = try sparc.ok(["log", "--name", "undo"], environment: env)
        XCTAssertTrue(log.contains("undoPoint"), log)
        XCTAssertFalse(log.contains("rollback"), "undoing a restore is no rollback:\n\(log)")

        // --no-undo: the undo point stays the one there was.
        let quiet = try sparc.ok(["restore", checkpoint, "--replace", "--no-undo", "--allow-rollback", "--json"], environment: env)
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(quiet.utf8)) as? [String: Any], quiet)
        XCTAssertEqual(record["schemaVersion"] as? Int, 1)
        let report = try XCTUnwrap(record["restore"] as? [String: Any])
        XCTAssertEqual(report["name"] as? String, "undo")
        XCTAssertNil(report["undoPoint"], "no undo point was taken")
        XCTAssertEqual(report["rollback"] as? Bool, false, "the undo points since do not make the newest checkpoint older")
        XCTAssertEqual(try undoPoints(), points)
        try sparc.ok(["vm", "stop", "--name", "undo"])
        // Without a running VM there is nothing to undo into; a VM without one says so.
        try sparc.fails(["undo", "--name", "nothing"], status: 2, message: "has no undo point", environment: env)
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

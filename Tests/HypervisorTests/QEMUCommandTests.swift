import Foundation
import XCTest

@testable import Hypervisor
@testable import SparcSupport

final class QEMUCommandTests: XCTestCase {
    let layout = RuntimeLayout(name: "vm1", root: "/run/sparc")
    let ram = "/dev/shm/sparc-vm1-abc123/ram"

    func value(after flag: String, in argv: [String]) -> [String] {
        argv.indices.filter { argv[$0] == flag && $0 + 1 < argv.count }.map { argv[$0 + 1] }
    }

    func testRAMIsASharedFileAndNothingElseHoldsGuestMemory() {
        let spec = MachineSpec(memoryMiB: 512, accel: .tcg, kernel: "/k", initrd: "/i", append: "console=ttyS0")
        let argv = QEMUCommand(spec: spec, layout: layout, ramPath: ram).arguments
        XCTAssertEqual(argv.first, "qemu-system-x86_64")
        // The RAM file is inherited as a descriptor sparc opened and checked, never opened by path.
        XCTAssertTrue(value(after: "-object", in: argv).contains("memory-backend-file,id=ram0,size=524288k,mem-path=/proc/self/fd/64,share=on"))
        XCTAssertEqual(value(after: "-machine", in: argv), ["q35,memory-backend=ram0"])
        XCTAssertEqual(value(after: "-m", in: argv), ["524288k"])
        XCTAssertTrue(argv.contains("-nodefaults"))
        XCTAssertEqual(value(after: "-vga", in: argv), ["none"])
        XCTAssertEqual(value(after: "-display", in: argv), ["none"])
        XCTAssertEqual(value(after: "-append", in: argv), ["console=ttyS0"])
        XCTAssertTrue(value(after: "-device", in: argv).contains("virtserialport,bus=vser0.0,chardev=agent,name=org.sparc.agent.0"))
        XCTAssertTrue(value(after: "-device", in: argv).contains("vmgenid,guid=auto"))
        XCTAssertFalse(argv.contains("-incoming"))
        XCTAssertFalse(argv.contains("-drive") || argv.contains("-blockdev"))
        XCTAssertFalse(argv.contains("-daemonize"), "sparc spawns QEMU itself to keep its error output")
    }

    /// The 8 KiB beyond whole MiB reach QEMU in the backend and `-m` alike (they must match),
    /// and a spec saved before they existed (no key) has none.
    func testExtraRAMBytesReachQEMUAndOldSpecsHaveNone() throws {
        var spec = MachineSpec(memoryMiB: 256, accel: .tcg, kernel: "/k", initrd: "/i")
        spec.extraRAMBytes = MachineSpec.unalignedTailBytes
        XCTAssertEqual(spec.memoryBytes, (256 << 20) + 8192)
        XCTAssertNotEqual(spec.memoryBytes % (64 * 4096), 0, "not a multiple of 64 pages: QEMU logs the RAM's writes page by page")
        let argv = QEMUCommand(spec: spec, layout: layout, ramPath: ram).arguments
        XCTAssertEqual(value(after: "-m", in: argv), ["262152k"])
        XCTAssertTrue(value(after: "-object", in: argv).contains("memory-backend-file,id=ram0,size=262152k,mem-path=/proc/self/fd/64,share=on"))
        var saved = try JSONSerialization.jsonObject(with: JSONEncoder().encode(spec)) as! [String: Any]
        saved["extraRAMBytes"] = nil
        let old = try JSONDecoder().decode(MachineSpec.self, from: JSONSerialization.data(withJSONObject: saved))
        XCTAssertNil(old.extraRAMBytes)
        XCTAssertEqual(old.memoryBytes, 256 << 20)
    }

    /// QEMU may never spawn a program (no `exec:` migration) and drops privileges when told.
    func testQEMUIsAlwaysSandboxed() {
        let plain = QEMUCommand(spec: MachineSpec(), layout: layout, ramPath: ram).arguments
        XCTAssertEqual(value(after: "-sandbox", in: plain), ["on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"])
        XCTAssertFalse(plain.contains("-runas"))
        let dropped = QEMUCommand(spec: MachineSpec(), layout: layout, ramPath: ram, sandbox: QEMUSandbox(user: "sparc-qemu")).arguments
        XCTAssertEqual(value(after: "-sandbox", in: dropped), ["on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"])
        XCTAssertEqual(value(after: "-runas", in: dropped), ["sparc-qemu"])
        XCTAssertEqual(QEMUSandbox.detect(environment: ["SPARC_QEMU_USER": ""]).user, nil)
        XCTAssertEqual(QEMUSandbox.detect(environment: ["SPARC_QEMU_USER": "qemu-x"]).user, "qemu-x")
    }

    /// Disks reach QEMU only as descriptors; an image from a bundle never follows its own backing.
    func testDisksArePassedAsDescriptors() {
        let spec = MachineSpec(memoryMiB: 256, hasDisk: true)
        let disk = [
            DiskLayer(path: "/r/disk-base.qcow2", format: "qcow2", writable: false),
            DiskLayer(path: "/r/disk-1.qcow2", format: "qcow2", writable: true, serial: 1),
        ]
        let command = QEMUCommand(spec: spec, layout: layout, ramPath: ram, disk: disk)
        let argv = command.arguments
        XCTAssertEqual(command.descriptors.map(\.fd), [3, 4, 5])
        XCTAssertEqual(command.descriptors.map(\.writable), [false, false, true])
        XCTAssertEqual(value(after: "-add-fd", in: argv), ["fd=3,set=1,opaque=ro", "fd=4,set=2,opaque=ro", "fd=5,set=2,opaque=rw"])
        let nodes = value(after: "-blockdev", in: argv).map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(nodes.count, 2)
        XCTAssertEqual(nodes[0]["node-name"] as? String, "disk0-l0")
        XCTAssertTrue(nodes[0]["backing"] is NSNull, "a bundle's image never opens the backing file its header names")
        XCTAssertEqual(nodes[0]["read-only"] as? Bool, true)
        let file0 = nodes[0]["file"] as! [String: Any]
        XCTAssertEqual(file0["filename"] as? String, "/dev/fdset/1")
        XCTAssertEqual(file0["locking"] as? String, "off")
        XCTAssertEqual(nodes[1]["backing"] as? String, "disk0-l0")
        XCTAssertEqual(nodes[1]["read-only"] as? Bool, false)
        XCTAssertEqual((nodes[1]["file"] as! [String: Any])["filename"] as? String, "/dev/fdset/2")
        XCTAssertTrue(value(after: "-device", in: argv).contains("virtio-blk-pci,drive=disk0-l1,id=vblk0"))
        XCTAssertFalse(argv.joined(separator: " ").contains("/r/disk"), "no disk path on the command line")
        let own = QEMUCommand(spec: spec, layout: layout, ramPath: ram, disk: [DiskLayer(path: "/img", format: "qcow2", writable: false, followsOwnBacking: true)])
        let ownNode = try! JSONSerialization.jsonObject(with: Data(value(after: "-blockdev", in: own.arguments)[0].utf8)) as! [String: Any]
        XCTAssertNil(ownNode["backing"], "an operator's own image keeps its backing chain")
    }

    func testRestoreAddsOnlyPausedIncoming() {
        let spec = MachineSpec(memoryMiB: 256, hasDisk: true)
        let disk = [DiskLayer(path: "/d/disk-1.qcow2", format: "qcow2", writable: true)]
        let start = QEMUCommand(spec: spec, layout: layout, ramPath: ram, disk: disk).arguments
        let restore = QEMUCommand(spec: spec, layout: layout, ramPath: ram, disk: disk, incoming: true).arguments
        XCTAssertEqual(restore.filter { !["-S", "-incoming", "defer"].contains($0) }, start, "device sets must match exactly")
        XCTAssertEqual(value(after: "-incoming", in: restore), ["defer"])
        XCTAssertTrue(restore.contains("-S"))
    }

    func testCommasInPathsAreEscaped() {
        let odd = RuntimeLayout(name: "vm", root: "/tmp/a,b")
        let argv = QEMUCommand(spec: MachineSpec(), layout: odd, ramPath: "/dev/shm/x,y/ram").arguments
        XCTAssertTrue(value(after: "-chardev", in: argv).contains("socket,id=qmp,path=/tmp/a,,b/vm/qmp.sock,server=on,wait=off"))
    }

    func testKVMUsesHostCPU() {
        let argv = QEMUCommand(spec: MachineSpec(accel: .kvm), layout: layout, ramPath: ram).arguments
        XCTAssertEqual(value(after: "-accel", in: argv), ["kvm"])
        XCTAssertEqual(value(after: "-cpu", in: argv), ["host"])
    }

    func testSpecValidation() {
        XCTAssertThrowsError(try MachineSpec(memoryMiB: 16).validate()) { XCTAssertTrue("\($0)".contains("at least 64")) }
        XCTAssertThrowsError(try MachineSpec(kernel: "/nonexistent/vmlinuz").validate()) { XCTAssertTrue("\($0)".contains("does not exist")) }
        XCTAssertNoThrow(try MachineSpec().validate())
    }

    func testNameValidation() {
        for bad in ["", "-x", "../etc", "a/b", "a b", ".hidden", "x\u{1B}[2J", "ünï", String(repeating: "a", count: 65)] {
            XCTAssertThrowsError(try RuntimeLayout.validate(name: bad), bad)
        }
        for good in ["default", "web-1", "db_2.test"] { XCTAssertNoThrow(try RuntimeLayout.validate(name: good)) }
    }

    /// There is no fallback into a shared directory: without a private root, sparc says so.
    func testRuntimeRootPreference() {
        XCTAssertEqual(RuntimeLayout.defaultRoot(environment: ["SPARC_RUNTIME_DIR": "/x", "XDG_RUNTIME_DIR": "/y"]), "/x")
        XCTAssertEqual(RuntimeLayout.defaultRoot(environment: ["XDG_RUNTIME_DIR": "/y"]), "/y/sparc")
        if geteuid() != 0 { XCTAssertNil(RuntimeLayout.defaultRoot(environment: [:])) }
    }

    /// Guest RAM lives in a fresh private directory, in a file nobody else could have placed.
    func testGuestRAMIsPrivate() throws {
        let base = "/dev/shm/ram-test-\(getpid())"  // RAM directories must be in memory (tmpfs)
        try FileSystem.makeDirectories(base)
        defer { FileSystem.removeTree(base) }
        let a = try GuestRAM.create(vm: "v", bytes: 1 << 20, base: base)
        let b = try GuestRAM.create(vm: "v", bytes: 1 << 20, base: base)
        XCTAssertNotEqual(a, b, "every RAM file gets its own unpredictable directory")
        var st = stat()
        XCTAssertEqual(lstat(a, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(st.st_size, 1 << 20)
        XCTAssertEqual(lstat(Path.directory(of: a), &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        XCTAssertEqual(st.st_uid, geteuid())
        GuestRAM.remove(a)
        XCTAssertFalse(FileSystem.exists(Path.directory(of: a)))
    }
}

/// A scripted QMP server on a Unix socket.
final class FakeQMP {
    let path = NSTemporaryDirectory() + "fake-qmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let listener: Int32
    init(script: @escaping (String) -> [String]) throws {
        listener = try UnixSocket.listen(at: path, backlog: 1)
        let fd = listener
        Thread.detachNewThread {
            let c = accept(fd, nil, nil)
            func send(_ s: String) { _ = (s + "\r\n").withCString { write(c, $0, strlen($0)) } }
            send(#"{"QMP": {"version": {"qemu": {"micro": 3, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#)
            var buffer = Data()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(c, &chunk, chunk.count)
                if n <= 0 { break }
                buffer.append(chunk, count: n)
                while let nl = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                    buffer = Data(buffer[(nl + 1)...])
                    for reply in script(line) { send(reply) }
                }
            }
            close(c)
        }
    }
    deinit {
        close(listener)
        unlink(path)
    }
}

final class QMPClientTests: XCTestCase {
    func testHandshakeEventsAndErrors() throws {
        let server = try FakeQMP { line in
            if line.contains("qmp_capabilities") { return [#"{"return": {}}"#] }
            if line.contains("query-status") {
                return [#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#, #"{"return": {"status": "paused", "running": false}}"#]
            }
            return [#"{"error": {"class": "GenericError", "desc": "Device 'disk9' not found"}}"#]
        }
        let qmp = try QMPClient(socketPath: server.path, timeout: 3)
        XCTAssertEqual(qmp.qemuVersion, "7.2.3")
        XCTAssertEqual(try qmp.status(), "paused")
        XCTAssertEqual(qmp.events.first?["event"] as? String, "STOP")
        XCTAssertThrowsError(try qmp.execute("blockdev-snapshot-sync", ["device": "disk9"])) {
            XCTAssertEqual("\($0)", "QEMU refused blockdev-snapshot-sync: Device 'disk9' not found")
        }
    }

    func testMigrationFailureCarriesQEMUsReason() throws {
        var polls = 0
        let server = try FakeQMP { line in
            if line.contains("qmp_capabilities") { return [#"{"return": {}}"#] }
            polls += 1
            return polls < 3 ? [#"{"return": {"status": "active"}}"#] : [#"{"return": {"status": "failed", "error-desc": "Unable to write to command"}}"#]
        }
        let qmp = try QMPClient(socketPath: server.path, timeout: 3)
        XCTAssertThrowsError(try qmp.waitForMigration(timeout: 5)) {
            XCTAssertEqual("\($0)", "QEMU migration failed: Unable to write to command")
        }
    }

    func testParseRejectsGarbage() {
        XCTAssertThrowsError(try QMPClient.parse(Data("{oops".utf8)))
        XCTAssertEqual(try QMPClient.parse(Data(#"{"return": {}}"#.utf8)).keys.sorted(), ["return"])
    }
}

import Foundation
import XCTest

@testable import Hypervisor
@testable import SparcSupport

final class QEMUCommandTests: XCTestCase {
    let layout = RuntimeLayout(name: "vm1", root: "/run/sparc", ramTag: "0")

    func value(after flag: String, in argv: [String]) -> [String] {
        argv.indices.filter { argv[$0] == flag && $0 + 1 < argv.count }.map { argv[$0 + 1] }
    }

    func testRAMIsASharedFileAndNothingElseHoldsGuestMemory() {
        let spec = MachineSpec(memoryMiB: 512, accel: .tcg, kernel: "/k", initrd: "/i", append: "console=ttyS0")
        let argv = QEMUCommand(spec: spec, layout: layout, diskPath: nil).arguments
        XCTAssertEqual(argv.first, "qemu-system-x86_64")
        XCTAssertTrue(value(after: "-object", in: argv).contains("memory-backend-file,id=ram0,size=512M,mem-path=/dev/shm/sparc-0-vm1.ram,share=on"))
        XCTAssertEqual(value(after: "-machine", in: argv), ["q35,memory-backend=ram0"])
        XCTAssertEqual(value(after: "-m", in: argv), ["512M"])
        XCTAssertTrue(argv.contains("-nodefaults"))
        XCTAssertEqual(value(after: "-vga", in: argv), ["none"])
        XCTAssertEqual(value(after: "-display", in: argv), ["none"])
        XCTAssertEqual(value(after: "-append", in: argv), ["console=ttyS0"])
        XCTAssertTrue(value(after: "-device", in: argv).contains("virtserialport,bus=vser0.0,chardev=agent,name=org.sparc.agent.0"))
        XCTAssertTrue(value(after: "-device", in: argv).contains("vmgenid,guid=auto"))
        XCTAssertFalse(argv.contains("-incoming"))
        XCTAssertFalse(argv.contains("-drive"))
        XCTAssertFalse(argv.contains("-daemonize"), "sparc spawns QEMU itself to keep its error output")
    }

    func testRestoreAddsOnlyPausedIncoming() {
        let spec = MachineSpec(memoryMiB: 256, hasDisk: true)
        let start = QEMUCommand(spec: spec, layout: layout, diskPath: "/d/disk-1.qcow2").arguments
        let restore = QEMUCommand(spec: spec, layout: layout, diskPath: "/d/disk-1.qcow2", incoming: true).arguments
        XCTAssertEqual(restore.filter { !["-S", "-incoming", "defer"].contains($0) }, start, "device sets must match exactly")
        XCTAssertEqual(value(after: "-incoming", in: restore), ["defer"])
        XCTAssertTrue(restore.contains("-S"))
        XCTAssertEqual(value(after: "-drive", in: start), ["file=/d/disk-1.qcow2,if=none,id=disk0,format=qcow2,cache=writeback"])
    }

    func testCommasInPathsAreEscaped() {
        let odd = RuntimeLayout(name: "vm", root: "/tmp/a,b", ramTag: "0")
        let argv = QEMUCommand(spec: MachineSpec(hasDisk: true), layout: odd, diskPath: "/x,y.qcow2").arguments
        XCTAssertTrue(value(after: "-chardev", in: argv).contains("socket,id=qmp,path=/tmp/a,,b/vm/qmp.sock,server=on,wait=off"))
        XCTAssertTrue(value(after: "-drive", in: argv)[0].hasPrefix("file=/x,,y.qcow2,"))
    }

    func testKVMUsesHostCPU() {
        let argv = QEMUCommand(spec: MachineSpec(accel: .kvm), layout: layout, diskPath: nil).arguments
        XCTAssertEqual(value(after: "-accel", in: argv), ["kvm"])
        XCTAssertEqual(value(after: "-cpu", in: argv), ["host"])
    }

    func testSpecValidation() {
        XCTAssertThrowsError(try MachineSpec(memoryMiB: 16).validate()) { XCTAssertTrue("\($0)".contains("at least 64")) }
        XCTAssertThrowsError(try MachineSpec(kernel: "/nonexistent/vmlinuz").validate()) { XCTAssertTrue("\($0)".contains("does not exist")) }
        XCTAssertNoThrow(try MachineSpec().validate())
    }

    func testNameValidation() {
        for bad in ["", "-x", "../etc", "a/b", "a b", ".hidden", String(repeating: "a", count: 65)] {
            XCTAssertThrowsError(try RuntimeLayout.validate(name: bad), bad)
        }
        for good in ["default", "web-1", "db_2.test"] { XCTAssertNoThrow(try RuntimeLayout.validate(name: good)) }
    }

    func testRuntimeRootPreference() {
        XCTAssertEqual(RuntimeLayout.defaultRoot(environment: ["SPARC_RUNTIME_DIR": "/x", "XDG_RUNTIME_DIR": "/y"]), "/x")
        XCTAssertEqual(RuntimeLayout.defaultRoot(environment: ["XDG_RUNTIME_DIR": "/y"]), "/y/sparc")
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

import Foundation
import Libvirt
import SparcSupport
import XCTest

@testable import SparcEngine

/// Which disks a libvirt domain's checkpoint can save and roll back.
final class LibvirtCheckpointTests: XCTestCase {
    func domain(_ disks: String) throws -> DomainPreparation {
        try DomainPreparation(
            xml: """
                <domain type='qemu'><name>web</name><memory unit='MiB'>256</memory>
                  <os><type arch='x86_64' machine='pc'>hvm</type></os><devices>\(disks)</devices></domain>
                """)
    }

    func testTheOneWritableImageIsSavedAndReadOnlyDisksAreNot() throws {
        let d = try domain(
            """
            <disk type='file' device='disk'><driver type='qcow2'/><source file='/img/a.qcow2'/><target dev='vda'/></disk>
            <disk type='file' device='disk'><driver type='raw'/><source file='/img/b.img'/><target dev='vdb'/><readonly/></disk>
            <disk type='file' device='cdrom'><driver type='raw'/><source file='/img/c.iso'/><target dev='sda'/></disk>
            """)
        let saved = try XCTUnwrap(try VMManager.savedDisk(of: d, domain: "web"))
        XCTAssertEqual(saved.target, "vda")
        XCTAssertEqual(saved.file, "/img/a.qcow2")
        XCTAssertNil(try VMManager.savedDisk(of: try domain(""), domain: "web"), "no disk, nothing to save")
    }

    func testWhatCannotBeRolledBackIsRefusedWithTheReason() throws {
        let cases: [(String, String)] = [
            (
                "<disk type='file' device='disk'><driver type='qcow2'/><source file='/a'/><target dev='vda'/></disk><disk type='file' device='disk'><driver type='raw'/><source file='/b'/><target dev='vdb'/></disk>",
                "2 writable disks (vda, vdb)"
            ),
            ("<disk type='block' device='disk'><driver type='raw'/><source dev='/dev/sdz'/><target dev='vda'/></disk>", "not an image file"),
            ("<disk type='file' device='disk'><driver type='vmdk'/><source file='/a.vmdk'/><target dev='vda'/></disk>", "format vmdk"),
        ]
        for (disks, expected) in cases {
            XCTAssertThrowsError(try VMManager.savedDisk(of: try domain(disks), domain: "web"), expected) {
                XCTAssertTrue("\($0)".contains(expected), "\(expected): \($0)")
            }
        }
    }
}

/// The RAM file a domain's QEMU names is opened only when it is what libvirt would have made:
/// a compromised QEMU could name any file root can write.
final class DomainRAMTests: XCTestCase {
    var base = ""
    override func setUpWithError() throws {
        base = NSTemporaryDirectory() + "libvirt-ram-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(base + "/1-web")
    }
    override func tearDown() { FileSystem.removeTree(base) }

    func ramFile(_ name: String = "pc.ram", size: Int64 = 1 << 20) throws -> String {
        let path = base + "/1-web/" + name
        FileManager.default.createFile(atPath: path, contents: nil)
        XCTAssertEqual(truncate(path, off_t(size)), 0)
        return path
    }

    func open(_ path: String, bytes: Int64 = 1 << 20, owner: uid_t? = geteuid()) throws -> Int32 {
        try DomainRAM.openChecked(path, bytes: bytes, owner: owner, writable: false, domain: "web", under: base)
    }

    func testTheFileLibvirtMadeOpens() throws {
        let fd = try open(try ramFile())
        XCTAssertGreaterThanOrEqual(fd, 0)
        close(fd)
    }

    func testAnythingElseIsRefused() throws {
        let good = try ramFile()
        let canary = NSTemporaryDirectory() + "libvirt-ram-canary-\(getpid())"
        FileManager.default.createFile(atPath: canary, contents: Data(count: 1 << 20))
        defer { unlink(canary) }
        // Outside libvirt's RAM directory, or reaching out of it.
        XCTAssertThrowsError(try open(canary))
        XCTAssertThrowsError(try open(base + "/1-web/../../" + Path.base(of: canary)))
        // A link as the file, or as a directory on the way.
        XCTAssertEqual(symlink(canary, base + "/1-web/link.ram"), 0)
        XCTAssertThrowsError(try open(base + "/1-web/link.ram"))
        XCTAssertEqual(symlink(base + "/1-web", base + "/2-linked"), 0)
        XCTAssertThrowsError(try open(base + "/2-linked/pc.ram"))
        // Another size than the domain's RAM, another owner, a second name, not a regular file.
        XCTAssertThrowsError(try open(good, bytes: 2 << 20))
        XCTAssertThrowsError(try open(good, owner: geteuid() + 1))
        XCTAssertEqual(link(good, base + "/1-web/second"), 0)
        XCTAssertThrowsError(try open(good))
        unlink(base + "/1-web/second")
        XCTAssertEqual(mkfifo(base + "/1-web/fifo.ram", 0o600), 0)
        XCTAssertThrowsError(try open(base + "/1-web/fifo.ram"))
        XCTAssertEqual(try FileSystem.readFile(canary).count, 1 << 20, "the canary is untouched")
    }
}

import Libvirt
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

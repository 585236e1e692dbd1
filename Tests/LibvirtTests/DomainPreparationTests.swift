import SparcSupport
import XCTest

@testable import Libvirt

final class DomainPreparationTests: XCTestCase {
    static let plain = """
        <domain type='qemu'>
          <name>web</name>
          <uuid>6f1c2b51-8a3e-4b0a-9d52-4f3e2a1b0c9d</uuid>
          <memory unit='KiB'>262144</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type><kernel>/k</kernel><initrd>/i</initrd></os>
          <devices>
            <serial type='pty'><target port='0'/></serial>
          </devices>
        </domain>
        """

    func testPlainDomainLacksEverythingAndPrepareAddsItOnce() throws {
        var d = try DomainPreparation(xml: Self.plain)
        XCTAssertEqual(d.name, "web")
        XCTAssertEqual(d.missing.count, 5, "\(d.missing)")
        XCTAssertNil(d.refusal)
        let changes = try d.prepare()
        XCTAssertEqual(changes.count, 5)
        XCTAssertEqual(d.missing, [])
        let xml = d.xml
        XCTAssertTrue(xml.contains("<source type=\"file\""), xml)
        XCTAssertTrue(xml.contains("<access mode=\"shared\""), xml)
        XCTAssertTrue(xml.contains("name=\"\(VirtioPortName.agent)\""), xml)
        XCTAssertTrue(xml.contains("name=\"\(VirtioPortName.rsdm)\""), xml)
        XCTAssertTrue(xml.contains("sparc-web-terminal.sock"), xml)
        // <genid/> right after <uuid>, where libvirt writes it.
        let uuid = try XCTUnwrap(xml.range(of: "</uuid>"))
        XCTAssertTrue(xml[uuid.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("<genid"), xml)
        var again = try DomainPreparation(xml: xml)
        XCTAssertEqual(try again.prepare(), [], "a prepared domain needs nothing more")
    }

    func testAnonymousOrMemfdBackingBecomesASharedFile() throws {
        let memfd = Self.plain.replacingOccurrences(of: "<vcpu>", with: "<memoryBacking><source type='memfd'/><access mode='private'/></memoryBacking><vcpu>")
        var d = try DomainPreparation(xml: memfd)
        XCTAssertTrue(d.missing.contains("shared file-backed memory"))
        _ = try d.prepare()
        XCTAssertTrue(d.hasSharedFileMemory)
        XCTAssertFalse(d.xml.contains("memfd"), d.xml)
        XCTAssertEqual(d.xml.components(separatedBy: "<memoryBacking").count, 2, "one memoryBacking")
    }

    func testHugepagesAndMemoryHotplugAreRefused() throws {
        let huge = Self.plain.replacingOccurrences(of: "<vcpu>", with: "<memoryBacking><hugepages/></memoryBacking><vcpu>")
        var d = try DomainPreparation(xml: huge)
        XCTAssertThrowsError(try d.prepare()) { XCTAssertTrue("\($0)".contains("hugepages"), "\($0)") }
        let hotplug = Self.plain.replacingOccurrences(of: "<vcpu>", with: "<maxMemory slots='4' unit='KiB'>1048576</maxMemory><vcpu>")
        var h = try DomainPreparation(xml: hotplug)
        XCTAssertThrowsError(try h.prepare()) { XCTAssertTrue("\($0)".contains("hot-plug"), "\($0)") }
        XCTAssertThrowsError(try DomainPreparation(xml: "<network/>"))
        XCTAssertThrowsError(try DomainPreparation(xml: "not xml"))
    }
}

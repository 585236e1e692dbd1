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

    func testIncomingDefinitionWaitsForStateAndGetsANewGenerationID() throws {
        var d = try DomainPreparation(xml: Self.plain)
        _ = try d.prepare()
        let live = d.xml.replacingOccurrences(of: "<genid/>", with: "<genid>0f8c5e6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a</genid>")
        let incoming = try DomainPreparation(xml: live).forIncomingState()
        XCTAssertFalse(incoming.contains("0f8c5e6a"), "libvirt makes a new generation id: \(incoming)")
        XCTAssertTrue(incoming.contains("xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\""), incoming)
        XCTAssertTrue(incoming.contains("<qemu:arg value=\"-incoming\"/>") && incoming.contains("<qemu:arg value=\"defer\"/>"), incoming)
        let again = try DomainPreparation(xml: incoming)
        XCTAssertEqual(again.missing, [], "still prepared")
        XCTAssertEqual(again.name, "web")
        let twice = try again.forIncomingState()
        XCTAssertEqual(twice.components(separatedBy: "-incoming").count, 2, "a restored domain's definition gets -incoming once: \(twice)")

        // A definition that passes its own QEMU arguments keeps them, under its own prefix.
        let own = Self.plain.replacingOccurrences(of: "<domain type='qemu'>", with: "<domain type='qemu' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>")
            .replacingOccurrences(of: "</devices>", with: "</devices><q:commandline><q:arg value='-no-hpet'/></q:commandline>")
        let merged = try DomainPreparation(xml: own).forIncomingState()
        XCTAssertEqual(merged.components(separatedBy: "commandline>").count, 3, "one commandline element: \(merged)")
        XCTAssertTrue(merged.contains("<q:arg value=\"-no-hpet\"/>") && merged.contains("<q:arg value=\"-incoming\"/>"), merged)
    }

    func testMachineFactsAndWritableDisks() throws {
        let xml = Self.plain.replacingOccurrences(
            of: "</devices>",
            with: """
                <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda'/></disk>
                <disk type='file' device='disk'><source file='/b.iso'/><target dev='vdb'/><readonly/></disk>
                <disk type='file' device='cdrom'><source file='/c.iso'/><target dev='sda'/></disk></devices>
                """)
        let d = try DomainPreparation(xml: xml)
        XCTAssertEqual(d.writableDisks, ["vda"])
        XCTAssertEqual(d.machine, "pc")
        XCTAssertEqual(d.vcpus, 1)
        XCTAssertEqual(d.type, "qemu")
    }
}

final class QEMUUserTests: XCTestCase {
    func testTheDACLabelOfARunningDomainNamesItsQEMUUser() throws {
        let live = try DomainPreparation(xml: """
            <domain type='qemu'><name>web</name><seclabel type='dynamic' model='apparmor'><label>libvirt-x</label></seclabel>
            <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+994</label><imagelabel>+64055:+994</imagelabel></seclabel></domain>
            """)
        XCTAssertEqual(live.qemuUser?.uid, 64055)
        XCTAssertEqual(live.qemuUser?.gid, 994)
        XCTAssertNil(try DomainPreparation(xml: "<domain type='qemu'><name>web</name></domain>").qemuUser)
    }
}

import Foundation
import FoundationXML
import SparcSupport

/// What sparc needs in a libvirt domain's definition, and the edit that adds it.
///
/// sparc reads the guest's RAM from a shared file (so memory must be file-backed and shared),
/// talks to its agent over a virtio-serial port (and keeps rollback-sensitive data over a
/// second one), reaches `sparc terminal` through a second serial port, and gives a restored
/// guest fresh randomness through a VM generation id.
public struct DomainPreparation {
    let document: XMLDocument
    let root: XMLElement

    public init(xml: String) throws {
        do {
            document = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw SparcError("the domain definition is not XML libvirt would write: \(error)")
        }
        guard let root = document.rootElement(), root.name == "domain" else { throw SparcError("the definition has no <domain> element") }
        self.root = root
    }

    public var name: String { root.elements(forName: "name").first?.stringValue ?? "?" }

    /// The definition as it is now, pretty-printed (the form diffs compare).
    public var xml: String { document.xmlString(options: [.nodePrettyPrint, .nodeCompactEmptyElement]) + "\n" }

    /// What sparc needs and the definition lacks, one phrase each (empty: prepared).
    public var missing: [String] {
        var out: [String] = []
        if !hasSharedFileMemory { out.append("shared file-backed memory") }
        if channel(VirtioPortName.agent) == nil { out.append("the agent's channel \(VirtioPortName.agent)") }
        if channel(VirtioPortName.rsdm) == nil { out.append("the RSDM channel \(VirtioPortName.rsdm)") }
        if terminalSerial == nil { out.append("the terminal port (a second serial port, ttyS1)") }
        if root.elements(forName: "genid").isEmpty { out.append("a VM generation id (<genid/>)") }
        return out
    }

    /// The user and group the domain's QEMU runs as, from the DAC label libvirt gives a running
    /// domain (`<seclabel model='dac'><label>+64055:+64055</label>`); nil when the definition
    /// names none (an inactive definition, or a driver without DAC labels).
    public var qemuUser: (uid: uid_t, gid: gid_t)? {
        for seclabel in root.elements(forName: "seclabel") where seclabel.attribute(forName: "model")?.stringValue == "dac" {
            guard let label = seclabel.elements(forName: "label").first?.stringValue else { continue }
            let parts = label.split(separator: ":").map { $0.hasPrefix("+") ? $0.dropFirst() : $0 }
            if parts.count == 2, let uid = uid_t(parts[0]), let gid = gid_t(parts[1]) { return (uid, gid) }
        }
        return nil
    }

    /// Why sparc cannot work with this domain, if it cannot.
    public var refusal: String? {
        let backing = root.elements(forName: "memoryBacking").first
        if backing?.elements(forName: "hugepages").isEmpty == false {
            return "domain '\(name)' uses hugepages: sparc needs its RAM in a shared file it can read; remove <hugepages/> first"
        }
        if !root.elements(forName: "maxMemory").isEmpty {
            return "domain '\(name)' has memory hot-plug (<maxMemory>): sparc handles one memory backend; remove <maxMemory> and its DIMMs first"
        }
        if let devices = root.elements(forName: "devices").first, !devices.elements(forName: "memory").isEmpty {
            return "domain '\(name)' has hot-plugged memory devices: sparc handles one memory backend"
        }
        return nil
    }

    var hasSharedFileMemory: Bool {
        guard let backing = root.elements(forName: "memoryBacking").first else { return false }
        let source = backing.elements(forName: "source").first?.attribute(forName: "type")?.stringValue
        let access = backing.elements(forName: "access").first?.attribute(forName: "mode")?.stringValue
        return source == "file" && access == "shared"
    }

    func channel(_ port: String) -> XMLElement? {
        devices?.elements(forName: "channel").first { c in
            c.elements(forName: "target").first?.attribute(forName: "name")?.stringValue == port
        }
    }

    var terminalSerial: XMLElement? {
        devices?.elements(forName: "serial").first { s in
            s.attribute(forName: "type")?.stringValue == "unix" && s.elements(forName: "target").first?.attribute(forName: "port")?.stringValue == "1"
        }
    }

    var devices: XMLElement? { root.elements(forName: "devices").first }

    /// The domain's virtualisation type: `kvm` or `qemu` (TCG).
    public var type: String { root.attribute(forName: "type")?.stringValue ?? "qemu" }

    /// The machine type (`pc-i440fx-7.2`, `pc-q35-7.2`, …).
    public var machine: String { root.elements(forName: "os").first?.elements(forName: "type").first?.attribute(forName: "machine")?.stringValue ?? "" }

    /// The number of virtual CPUs.
    public var vcpus: Int { Int(root.elements(forName: "vcpu").first?.stringValue?.trimmingCharacters(in: .whitespaces) ?? "") ?? 1 }

    /// A disk of the domain, as its definition gives it.
    public struct Disk: Equatable, Sendable {
        /// The guest-side name (`vda`, `sdb`).
        public var target: String
        /// The image file (nil for a block device, a network disk or an empty drive).
        public var file: String?
        /// The image format (`qcow2`, `raw`).
        public var format: String?
        /// Whether the guest can write it: its state must be saved and rolled back with the memory.
        public var writable: Bool
    }

    public var disks: [Disk] {
        (devices?.elements(forName: "disk") ?? []).map { disk in
            let isDisk = disk.attribute(forName: "device")?.stringValue ?? "disk" == "disk"
            let file =
                disk.attribute(forName: "type")?.stringValue == "file"
                ? disk.elements(forName: "source").first?.attribute(forName: "file")?.stringValue : nil
            return Disk(
                target: disk.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue ?? "?", file: file,
                format: disk.elements(forName: "driver").first?.attribute(forName: "type")?.stringValue,
                writable: isDisk && disk.elements(forName: "readonly").isEmpty && disk.elements(forName: "shareable").isEmpty)
        }
    }

    /// The targets (`vda`, `sdb`) of disks the guest can write.
    public var writableDisks: [String] { disks.filter(\.writable).map(\.target) }

    static let qemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0"

    /// The definition to start a restored domain from: QEMU waits for incoming state
    /// (`-incoming defer`, libvirt's own way of restoring) and gets a new generation id, so
    /// the guest learns it was restored and reseeds its randomness.
    /// `diskOverlay` starts the disk named by its target on an overlay file instead of its
    /// image (the overlay's own header names the image as its backing file).
    public func forIncomingState(diskOverlay: (target: String, file: String)? = nil) throws -> String {
        guard let copy = try? XMLDocument(xmlString: document.xmlString, options: []), let root = copy.rootElement() else {
            throw SparcError("cannot copy the domain definition")
        }
        if let diskOverlay {
            let devices = root.elements(forName: "devices").first
            guard
                let disk = devices?.elements(forName: "disk").first(where: {
                    $0.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue == diskOverlay.target
                }), let source = disk.elements(forName: "source").first, let driver = disk.elements(forName: "driver").first
            else { throw SparcError("the domain definition has no disk \(diskOverlay.target) to start on an overlay") }
            source.attribute(forName: "file")?.stringValue = diskOverlay.file
            driver.attribute(forName: "type")?.stringValue = "qcow2"
            for b in disk.elements(forName: "backingStore") { b.detach() }
        }
        for genid in root.elements(forName: "genid") {
            genid.setChildren(nil)
        }
        let prefix: String
        if let existing = root.namespaces?.first(where: { $0.stringValue == Self.qemuNamespace }), let name = existing.name {
            prefix = name
        } else {
            prefix = "qemu"
            root.addNamespace(XMLNode.namespace(withName: prefix, stringValue: Self.qemuNamespace) as! XMLNode)
        }
        let commandline =
            root.children?.compactMap { $0 as? XMLElement }.first { $0.localName == "commandline" && $0.uri == Self.qemuNamespace }
            ?? {
                let c = XMLElement(name: "\(prefix):commandline")
                root.addChild(c)
                return c
            }()
        // A domain sparc restored before runs with these arguments: its saved definition has them once already.
        let args = commandline.children?.compactMap { $0 as? XMLElement } ?? []
        for (i, arg) in args.enumerated() where arg.attribute(forName: "value")?.stringValue == "-incoming" {
            arg.detach()
            if i + 1 < args.count { args[i + 1].detach() }
        }
        for value in ["-incoming", "defer"] {
            let arg = XMLElement(name: "\(prefix):arg")
            arg.addAttribute(XMLNode.attribute(withName: "value", stringValue: value) as! XMLNode)
            commandline.addChild(arg)
        }
        return copy.xmlString(options: [.nodePrettyPrint, .nodeCompactEmptyElement]) + "\n"
    }

    /// Where libvirt's QEMU makes the terminal port's socket for domain `name`.
    public static func terminalSocket(domain: String) -> String { "/var/lib/libvirt/qemu/sparc-\(domain)-terminal.sock" }

    /// Adds what is missing; returns one line per change. Throws the refusal, if any.
    public mutating func prepare() throws -> [String] {
        if let refusal { throw SparcError(refusal) }
        var changes: [String] = []
        func element(_ name: String, _ attributes: [String: String] = [:], _ children: [XMLElement] = []) -> XMLElement {
            let e = XMLElement(name: name)
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { e.addAttribute(XMLNode.attribute(withName: k, stringValue: v) as! XMLNode) }
            for c in children { e.addChild(c) }
            return e
        }
        if !hasSharedFileMemory {
            let backing = root.elements(forName: "memoryBacking").first ?? {
                let b = element("memoryBacking")
                root.addChild(b)
                return b
            }()
            for old in backing.elements(forName: "source") + backing.elements(forName: "access") { old.detach() }
            backing.addChild(element("source", ["type": "file"]))
            backing.addChild(element("access", ["mode": "shared"]))
            changes.append("memory: file-backed and shared (<memoryBacking><source type='file'/><access mode='shared'/>)")
        }
        let devices = self.devices ?? {
            let d = element("devices")
            root.addChild(d)
            return d
        }()
        for (port, what) in [(VirtioPortName.agent, "the agent's channel"), (VirtioPortName.rsdm, "the RSDM channel")] where channel(port) == nil {
            devices.addChild(element("channel", ["type": "unix"], [element("source", ["mode": "bind"]), element("target", ["type": "virtio", "name": port])]))
            changes.append("\(what): a virtio-serial port named \(port)")
        }
        if terminalSerial == nil {
            let path = Self.terminalSocket(domain: name)
            devices.addChild(
                element("serial", ["type": "unix"], [element("source", ["mode": "bind", "path": path]), element("target", ["port": "1"])]))
            changes.append("the terminal port: a second serial port (ttyS1) on \(path)")
        }
        if root.elements(forName: "genid").isEmpty {
            // libvirt fills in the id; right after <uuid> is where it writes it.
            let genid = element("genid")
            if let uuid = root.elements(forName: "uuid").first, let index = root.children?.firstIndex(where: { $0 === uuid }) {
                root.insertChild(genid, at: index + 1)
            } else {
                root.addChild(genid)
            }
            changes.append("a VM generation id (<genid/>): the guest learns of each restore and reseeds its randomness")
        }
        return changes
    }
}

import CLibvirt
import Foundation
import FoundationXML
import SparcSupport

/// A connection to a libvirt daemon through its C library (never hand-written RPC).
public final class LibvirtConnection {
    let connection: OpaquePointer
    public let uri: String

    /// A domain as `vm list --connect` shows it.
    public struct Domain: Codable, Equatable, Sendable {
        public var name: String
        /// running, paused, shut off, …
        public var state: String
        /// Whether its persistent definition has what sparc needs (`sparc libvirt prepare`).
        public var prepared: Bool
        /// What is missing when it is not prepared.
        public var missing: [String]
    }

    /// Opens `uri` (`qemu:///system`); a daemon that is not running or an unknown URI is one clear line.
    public init(uri: String) throws {
        Self.silenceDefaultErrorPrinting
        guard let c = virConnectOpen(uri) else {
            throw SparcError("cannot connect to libvirt at \(uri): \(Self.lastError()) (is libvirtd running? 'libvirtd -d' as root starts it)")
        }
        connection = c
        self.uri = uri
    }

    deinit { virConnectClose(connection) }

    /// libvirt prints every error to stderr unless told otherwise; sparc reports them itself.
    static let silenceDefaultErrorPrinting: Void = { virSetErrorFunc(nil) { _, _ in } }()

    static func lastError() -> String {
        guard let message = virGetLastErrorMessage() else { return "unknown error" }
        return String(cString: message)
    }

    /// Every domain the daemon knows, running or not, with whether each is prepared.
    public func domains() throws -> [Domain] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let n = virConnectListAllDomains(connection, &list, 0)
        guard n >= 0, let list else { throw SparcError("libvirt at \(uri) could not list domains: \(Self.lastError())") }
        defer { free(list) }
        var out: [Domain] = []
        for i in 0..<Int(n) {
            guard let d = list[i] else { continue }
            defer { virDomainFree(d) }
            let name = String(cString: virDomainGetName(d))
            let xml = try Self.xml(of: d, inactive: true, name: name)
            let missing = (try? DomainPreparation(xml: xml).missing) ?? ["a readable definition"]
            out.append(Domain(name: name, state: Self.state(of: d), prepared: missing.isEmpty, missing: missing))
        }
        return out.sorted { $0.name < $1.name }
    }

    /// The persistent (inactive) definition of a domain.
    public func definition(of name: String) throws -> String {
        let d = try domain(name)
        defer { virDomainFree(d) }
        return try Self.xml(of: d, inactive: true, name: name)
    }

    /// The live definition of a running domain (libvirt fills in the socket paths it made).
    public func liveDefinition(of name: String) throws -> String {
        let d = try domain(name)
        defer { virDomainFree(d) }
        return try Self.xml(of: d, inactive: false, name: name)
    }

    /// The definition of a running domain as libvirt itself saves it for a later restore
    /// (`VIR_DOMAIN_XML_MIGRATABLE`): the same devices, without what libvirt fills in at start.
    public func migratableDefinition(of name: String) throws -> String {
        let d = try domain(name)
        defer { virDomainFree(d) }
        guard let text = virDomainGetXMLDesc(d, UInt32(VIR_DOMAIN_XML_MIGRATABLE.rawValue)) else {
            throw SparcError("cannot read the definition of domain '\(name)': \(Self.lastError())")
        }
        defer { free(text) }
        return String(cString: text)
    }

    /// The domain's UUID, in lower case.
    public func uuid(of name: String) throws -> String {
        let d = try domain(name)
        defer { virDomainFree(d) }
        var buffer = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(d, &buffer) == 0 else { throw SparcError("cannot read the UUID of domain '\(name)': \(Self.lastError())") }
        return String(cString: buffer).lowercased()
    }

    /// The most RAM the domain may have, in bytes (what its RAM file holds).
    public func maximumMemory(of name: String) throws -> Int64 {
        let d = try domain(name)
        defer { virDomainFree(d) }
        let kib = virDomainGetMaxMemory(d)
        guard kib > 0 else { throw SparcError("cannot read the memory size of domain '\(name)': \(Self.lastError())") }
        return Int64(kib) * 1024
    }

    /// Whether libvirt knows a domain of this name (running or not).
    public func exists(_ name: String) -> Bool {
        guard let d = virDomainLookupByName(connection, name) else { return false }
        virDomainFree(d)
        return true
    }

    /// QMP on the running domain's QEMU, through libvirt.
    public func monitor(of name: String) throws -> LibvirtMonitor {
        LibvirtMonitor(connection: self, domain: try domain(name), name: name)
    }

    /// Pauses the domain's virtual CPUs (libvirt's state follows: paused).
    public func suspend(_ name: String) throws {
        try act(name, "pause") { virDomainSuspend($0) }
    }

    /// Lets the domain's virtual CPUs run again.
    public func resume(_ name: String) throws {
        try act(name, "resume") { virDomainResume($0) }
    }

    /// Ends the domain's QEMU at once (`virsh destroy`); its persistent definition stays.
    public func destroy(_ name: String) throws {
        try act(name, "destroy") { virDomainDestroy($0) }
    }

    /// Starts a domain from `xml` with its CPUs paused. A persistent domain of the same name
    /// and UUID stays defined as it was: the definition given is only its running one.
    public func startPaused(xml: String, name: String) throws {
        guard let d = virDomainCreateXML(connection, xml, UInt32(VIR_DOMAIN_START_PAUSED.rawValue)) else {
            throw SparcError("libvirt at \(uri) could not start domain '\(name)': \(Self.lastError())")
        }
        virDomainFree(d)
    }

    /// Switches a running domain's disk `target` onto a new overlay at `overlay` (libvirt's
    /// external disk-only snapshot, without snapshot metadata); its image becomes read-only to
    /// QEMU and holds the disk as it was at this moment. Every other disk is left as it is.
    public func divertDisk(_ name: String, target: String, to overlay: String, otherDisks: [String]) throws {
        func attr(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "'", with: "&apos;").replacingOccurrences(of: "<", with: "&lt;") }
        var xml = "<domainsnapshot><name>sparc-\(Int(Date().timeIntervalSince1970))</name><disks>"
        xml += "<disk name='\(attr(target))' snapshot='external'><driver type='qcow2'/><source file='\(attr(overlay))'/></disk>"
        for other in otherDisks { xml += "<disk name='\(attr(other))' snapshot='no'/>" }
        xml += "</disks></domainsnapshot>"
        let d = try domain(name)
        defer { virDomainFree(d) }
        let flags =
            VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY.rawValue | VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA.rawValue | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC.rawValue
        guard let snapshot = virDomainSnapshotCreateXML(d, xml, UInt32(flags)) else {
            throw SparcError("libvirt could not put domain '\(name)''s disk \(target) on an overlay: \(Self.lastError())")
        }
        virDomainSnapshotFree(snapshot)
    }

    /// Merges a disk's active overlay back into the image below it while the domain runs
    /// (libvirt's active block commit), switches QEMU back to that image and deletes the overlay.
    public func mergeDiskBack(_ name: String, target: String, timeout: TimeInterval = 600, progress: ((Int) -> Void)? = nil) throws {
        let d = try domain(name)
        defer { virDomainFree(d) }
        let flags = VIR_DOMAIN_BLOCK_COMMIT_ACTIVE.rawValue | VIR_DOMAIN_BLOCK_COMMIT_DELETE.rawValue | VIR_DOMAIN_BLOCK_COMMIT_SHALLOW.rawValue
        guard virDomainBlockCommit(d, target, nil, nil, 0, UInt32(flags)) == 0 else {
            throw SparcError("libvirt could not start merging domain '\(name)''s disk \(target) back: \(Self.lastError())")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            var info = virDomainBlockJobInfo()
            let r = virDomainGetBlockJobInfo(d, target, &info, 0)
            guard r >= 0 else { throw SparcError("libvirt lost the merge of domain '\(name)''s disk \(target): \(Self.lastError())") }
            if r == 1, info.end > 0 { progress?(Int(info.cur * 100 / info.end)) }
            // In sync: QEMU switches to the image below and libvirt deletes the overlay.
            if r == 1, info.cur == info.end, virDomainBlockJobAbort(d, target, UInt32(VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT.rawValue)) == 0 { return }
            if Date() > deadline {
                throw SparcError("merging domain '\(name)''s disk \(target) back did not finish in \(Int(timeout)) s (see 'virsh blockjob \(name) \(target)')")
            }
            usleep(50_000)
        }
    }

    func act(_ name: String, _ what: String, _ call: (OpaquePointer) -> Int32) throws {
        let d = try domain(name)
        defer { virDomainFree(d) }
        guard call(d) == 0 else { throw SparcError("libvirt could not \(what) domain '\(name)': \(Self.lastError())") }
    }

    /// The host socket of a running domain's virtio-serial channel named `port`.
    public func channelSocket(of name: String, port: String) throws -> String {
        guard try state(of: name) == "running" else {
            throw SparcError("domain '\(name)' is not running at \(uri) ('virsh start \(name)' starts it)")
        }
        let live = try DomainPreparation(xml: try liveDefinition(of: name))
        guard let channel = live.channel(port) else {
            throw SparcError("domain '\(name)' has no channel \(port): run 'sparc libvirt prepare \(name)', then restart the domain")
        }
        guard let path = channel.elements(forName: "source").first?.attribute(forName: "path")?.stringValue else {
            throw SparcError("libvirt gave domain '\(name)''s channel \(port) no socket path")
        }
        return path
    }

    /// The state of a domain: running, paused, shut off, …
    public func state(of name: String) throws -> String {
        let d = try domain(name)
        defer { virDomainFree(d) }
        return Self.state(of: d)
    }

    /// Replaces a domain's persistent definition (it takes effect at its next start).
    public func define(_ xml: String) throws {
        guard let d = virDomainDefineXML(connection, xml) else {
            throw SparcError("libvirt at \(uri) refused the definition: \(Self.lastError())")
        }
        virDomainFree(d)
    }

    func domain(_ name: String) throws -> OpaquePointer {
        guard let d = virDomainLookupByName(connection, name) else {
            throw SparcError("libvirt at \(uri) has no domain named '\(name)' (see 'sparc vm list --connect \(uri)')")
        }
        return d
    }

    static func xml(of d: OpaquePointer, inactive: Bool, name: String) throws -> String {
        guard let text = virDomainGetXMLDesc(d, inactive ? UInt32(VIR_DOMAIN_XML_INACTIVE.rawValue) : 0) else {
            throw SparcError("cannot read the definition of domain '\(name)': \(lastError())")
        }
        defer { free(text) }
        return String(cString: text)
    }

    static func state(of d: OpaquePointer) -> String {
        var state: Int32 = 0
        var reason: Int32 = 0
        guard virDomainGetState(d, &state, &reason, 0) == 0 else { return "unknown" }
        switch UInt32(state) {
        case VIR_DOMAIN_RUNNING.rawValue: return "running"
        case VIR_DOMAIN_BLOCKED.rawValue: return "blocked"
        case VIR_DOMAIN_PAUSED.rawValue: return "paused"
        case VIR_DOMAIN_SHUTDOWN.rawValue: return "shutting down"
        case VIR_DOMAIN_SHUTOFF.rawValue: return "shut off"
        case VIR_DOMAIN_CRASHED.rawValue: return "crashed"
        case VIR_DOMAIN_PMSUSPENDED.rawValue: return "suspended"
        default: return "unknown"
        }
    }
}

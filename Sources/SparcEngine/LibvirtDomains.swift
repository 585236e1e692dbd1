import Foundation
import GuestQuery
import Libvirt
import SparcSupport

/// sparc's work on libvirt-managed domains (`--connect URI`).
public enum LibvirtDomains {
    /// The URI from `--connect`, else `$SPARC_CONNECT`; nil for sparc's own VMs.
    public static func uri(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let option, !option.isEmpty { return option }
        if let env = environment["SPARC_CONNECT"], !env.isEmpty { return env }
        return nil
    }

    /// A client for the agent in a running libvirt domain, over the channel `prepare` added.
    public static func agentClient(uri: String, domain: String, timeout: TimeInterval) throws -> AgentClient {
        let socket = try LibvirtConnection(uri: uri).channelSocket(of: domain, port: VirtioPortName.agent)
        return AgentClient(socketPath: socket, timeout: timeout)
    }

    /// What `sparc libvirt prepare` did (or, with a dry run, would do).
    public struct PrepareReport: Codable, Sendable {
        public var domain: String
        /// One line per change; empty when the domain was already prepared.
        public var changes: [String]
        /// The definition before and after, as a unified diff.
        public var diff: String
        /// Where the definition before the change was saved (nil on a dry run or no change).
        public var backup: String?
        public var dryRun: Bool
        /// Whether the domain runs now (it must be restarted for the change to count).
        public var running: Bool
    }

    /// Adds what sparc needs to a domain's persistent definition, through libvirt, after
    /// saving the old definition in sparc's state directory.
    public static func prepare(uri: String, domain: String, dryRun: Bool, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> PrepareReport
    {
        let connection = try LibvirtConnection(uri: uri)
        let original = try connection.definition(of: domain)
        var edit = try DomainPreparation(xml: original)
        let before = edit.xml
        let changes = try edit.prepare()
        let after = edit.xml
        let diff = try unifiedDiff(before, after, label: domain)
        let running = (try? connection.state(of: domain)) == "running"
        var report = PrepareReport(domain: domain, changes: changes, diff: diff, backup: nil, dryRun: dryRun, running: running)
        guard !dryRun, !changes.isEmpty else { return report }
        let directory = try StateDirectory.checked(environment: environment) + "/libvirt-backups"
        try FileSystem.ensurePrivateDirectory(directory, what: "the libvirt backup directory")
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let backup = directory + "/\(domain)-\(stamp).xml"
        try FileSystem.writeAtomically(Data(original.utf8), to: backup)
        try connection.define(after)
        report.backup = backup
        return report
    }

    static func unifiedDiff(_ a: String, _ b: String, label: String) throws -> String {
        let dir = try FileSystem.makeUniqueDirectory(in: FileManager.default.temporaryDirectory.path, prefix: "sparc-diff-")
        defer { FileSystem.removeTree(dir) }
        try a.write(toFile: dir + "/before", atomically: false, encoding: .utf8)
        try b.write(toFile: dir + "/after", atomically: false, encoding: .utf8)
        let r = try Subprocess.run(["diff", "-u", "--label", "\(label) (now)", "--label", "\(label) (prepared)", dir + "/before", dir + "/after"])
        return r.stdoutText
    }
}

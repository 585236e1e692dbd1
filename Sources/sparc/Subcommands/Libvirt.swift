import ArgumentParser
import Foundation
import GuestQuery
import SparcEngine
import SparcSupport

/// `--connect URI`: the VM is a libvirt domain (also `$SPARC_CONNECT`).
struct ConnectOption: ParsableArguments {
    @Option(help: ArgumentHelp("A libvirt URI (qemu:///system): --name is then a libvirt domain. Default: $SPARC_CONNECT.", valueName: "uri"))
    var connect: String?

    var uri: String? { LibvirtDomains.uri(connect) }

    /// Refuses a command libvirt does for its domains itself, naming what to use instead.
    func refuseForDomains(_ command: String, instead: String) throws {
        guard let uri else { return }
        throw SparcError("'sparc \(command)' works on sparc's own VMs; for a domain of libvirt at \(uri) use \(instead) (unset $SPARC_CONNECT for sparc's VMs)")
    }

    /// The guest agent of the VM `vm` names: a libvirt domain's over its channel with --connect, else sparc's own VM's.
    func agent(_ vm: VMOptions) throws -> AgentClient {
        let manager = try vm.manager()
        manager.connect = uri
        return try manager.agentClient(vm.name)
    }
}

struct Libvirt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with VMs that libvirt manages.",
        discussion: """
            sparc reads a guest's RAM from a shared file, talks to its agent over a virtio-serial \
            port and gives a restored guest fresh randomness through a VM generation id. \
            'sparc libvirt prepare DOMAIN' adds these to a domain's definition; 'sparc vm list \
            --connect URI' shows which domains are prepared.
            """,
        subcommands: [Prepare.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add what sparc needs to a libvirt domain's definition (takes effect when it next starts).",
            discussion: """
                Adds, where missing: file-backed shared memory (<memoryBacking><source type='file'/>\
                <access mode='shared'/>), the agent's and the RSDM virtio-serial channels, a second \
                serial port for 'sparc terminal', and a VM generation id (<genid/>). The definition \
                before the change is saved in sparc's state directory (libvirt-backups/). It refuses \
                a domain with hugepages or memory hot-plug. The guest needs the sparc-guest package \
                (agent and kernel helper) inside.
                Examples:
                  sparc libvirt prepare web --connect qemu:///system --dry-run
                  SPARC_CONNECT=qemu:///system sparc libvirt prepare web
                """)
        @Argument(help: "The libvirt domain.") var domain: String
        @OptionGroup var connection: ConnectOption
        @Flag(help: "Print the change as a diff and change nothing.") var dryRun = false
        @Flag(help: "Print the report as JSON.") var json = false

        func run() throws {
            guard let uri = connection.uri else {
                throw ValidationError("say which libvirt to use: --connect URI (qemu:///system) or $SPARC_CONNECT")
            }
            let report = try LibvirtDomains.prepare(uri: uri, domain: domain, dryRun: dryRun)
            if json { return try printStampedJSON(report) }
            if report.changes.isEmpty {
                print("domain '\(domain)' is already prepared for sparc: nothing to change")
                return
            }
            if dryRun {
                print(report.diff, terminator: "")
                print("dry run: nothing changed; without --dry-run sparc makes \(report.changes.count) change(s):")
            } else {
                print("domain '\(domain)': \(report.changes.count) change(s) defined through libvirt:")
            }
            for change in report.changes { print("  - " + change) }
            if let backup = report.backup { print("the definition before: \(backup)") }
            if !dryRun {
                print(report.running
                    ? "domain '\(domain)' is running: shut it down and start it again ('virsh shutdown \(domain)', 'virsh start \(domain)') for the change to count"
                    : "the change counts from the domain's next start ('virsh start \(domain)')")
            }
        }
    }
}

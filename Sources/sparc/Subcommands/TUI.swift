import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Libvirt
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct TUI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui", abstract: "Open the terminal UI on a VM (the default with no subcommand on a terminal).",
        discussion: """
            With --connect URI the UI works on a libvirt domain: --name opens that domain, \
            without it the UI opens on the daemon's domains to pick one (running and prepared \
            with 'sparc libvirt prepare').
            Examples:
              sparc tui --name default
              sparc tui --connect qemu:///system
            """)
    @Option(help: "Name of the VM (default: default), or with --connect the domain (default: pick one from a list).") var name: String?
    @OptionGroup var connection: ConnectOption
    @Flag(help: "Draw without colours (NO_COLOR is honoured too).") var noColor = false
    @Flag(help: "Disable checkpoint (and, later, restore).") var readonly = false
    @Option(help: "The bundle home: its store takes the checkpoints, and it and the bundles in it are listed (default: $SPARC_BUNDLES, $XDG_DATA_HOME/sparc/bundles, /var/lib/sparc/bundles for root; a wrapped store key's passphrase from $SPARC_STORE_PASSPHRASE_FILE).")
    var bundles: String?

    @Flag(help: .hidden) var keysManual = false

    func run() throws {
        if keysManual { return print(TUIModel.keysManual(), terminator: "") }
        guard isatty(0) == 1 && isatty(1) == 1 else {
            throw SparcError("the terminal UI needs a terminal (standard input and output are not one); see 'sparc --help' for the commands")
        }
        let manager = try VMManager()
        manager.connect = connection.uri
        var picker: DomainPicker?
        if let uri = connection.uri, name == nil {
            // Listed before curses starts: a daemon that does not answer is one line on the terminal.
            let domains = try LibvirtConnection(uri: uri).domains()
            picker = DomainPicker(uri: uri, domains: domains.map { DomainChoice(name: $0.name, state: $0.state, missing: $0.missing) })
        }
        try TerminalUI(
            manager: manager, vmName: name ?? "default", color: !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil,
            bundleDirectory: FileSystem.absolute(try bundles ?? BundleHome.ensure()), readonly: readonly, picker: picker,
            passphrase: try readPassphrase(nil)
        ).run()
    }
}

import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct TUI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui", abstract: "Open the terminal UI on a VM (the default with no subcommand on a terminal).")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Flag(help: "Draw without colours (NO_COLOR is honoured too).") var noColor = false
    @Flag(help: "Disable checkpoint (and, later, restore).") var readonly = false
    @Option(help: "Where checkpoints go and bundles are listed (default: $SPARC_BUNDLES, $XDG_DATA_HOME/sparc/bundles, /var/lib/sparc/bundles for root).")
    var bundles: String?

    func run() throws {
        guard isatty(0) == 1 && isatty(1) == 1 else {
            throw SparcError("the terminal UI needs a terminal (standard input and output are not one); see 'sparc --help' for the commands")
        }
        try TerminalUI(
            manager: try VMManager(), vmName: name, color: !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil,
            bundleDirectory: FileSystem.absolute(try bundles ?? BundleHome.ensure()), readonly: readonly
        ).run()
    }
}

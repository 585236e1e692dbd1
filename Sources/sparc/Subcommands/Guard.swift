import ArgumentParser
import Foundation
import Hypervisor
import SparcEngine

/// The guardian of a checkpoint or restore (hidden): started by the command itself, it waits
/// for that command to end and undoes what it left should it have died holding the guest.
struct Guard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Undo a checkpoint or restore that dies holding its guest (started by them; not for use by hand).",
        shouldDisplay: false)
    @Option(help: "Name of the VM.") var name: String
    @Option(help: "The command watched (its pid).") var watch: Int32
    @Option(help: "The libvirt URI of a domain's checkpoint or restore.") var connect: String?

    func run() throws {
        try RuntimeLayout.validate(name: name)
        let manager = try VMManager()
        manager.connect = connect
        _ = Guardian.run(vm: name, watching: watch, manager: manager)
    }
}

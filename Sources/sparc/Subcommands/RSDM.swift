import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct RSDM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsdm",
        abstract: "Show or change a VM's rollback-sensitive data (kept by the host, never rolled back).",
        discussion: "In the guest: sparc-rsdm get|set|incr|del KEY [VALUE], sparc-rsdm epoch.")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Argument(help: "list (default), get KEY, set KEY VALUE, del KEY, epoch.") var words: [String] = []

    func run() throws {
        try RuntimeLayout.validate(name: name)
        let store = RSDMStore(vm: name)
        switch (words.first ?? "list", words.count) {
        case ("list", _):
            print("epoch \(try store.epoch())")
            for (k, v) in try store.all().sorted(by: { $0.key < $1.key }) { print("\(k)=\(v)") }
        case ("get", 2):
            guard let v = try store.get(words[1]) else { throw SparcError("no key '\(words[1])'", kind: .negative) }
            print(v)
        case ("set", 3): try store.set(words[1], words[2])
        case ("del", 2): try store.delete(words[1])
        case ("epoch", 1): print(try store.epoch())
        default: throw ValidationError("usage: sparc rsdm [list | get KEY | set KEY VALUE | del KEY | epoch]")
        }
    }
}

/// The host side of a VM's RSDM port; started in the background by vm start and restore.
struct RSDMServe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rsdm-serve", shouldDisplay: false)
    @Option var name: String = "default"
    func run() throws {
        try RSDMServer.run(socketPath: VMManager().layout(name).rsdmSocket, store: RSDMStore(vm: name))
    }
}

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
    @OptionGroup var connection: ConnectOption
    @Flag(help: "Print list, get and epoch as JSON ({\"schemaVersion\": 1, \"rsdm\": {epoch, values} or {key, value} or {epoch}}).") var json = false

    /// What `list`, `get` and `epoch` print under `--json`.
    struct Answer: Encodable {
        var epoch: Int?
        var values: [String: String]?
        var key: String?
        var value: String?
    }

    func run() throws {
        try RuntimeLayout.validate(name: name)
        let manager = try VMManager()
        manager.connect = connection.uri
        manager.recoverAbandoned(name)
        let store = try manager.rsdm(name: name)
        switch (words.first ?? "list", words.count) {
        case ("list", _):
            if json { return try printJSON(Versioned(result: Answer(epoch: try store.epoch(), values: try store.all()), key: "rsdm")) }
            print("epoch \(try store.epoch())")
            for (k, v) in try store.all().sorted(by: { $0.key < $1.key }) { print("\(k.terminalSafe)=\(v.terminalSafe)") }
        case ("get", 2):
            guard let v = try store.get(words[1]) else { throw SparcError("no key '\(words[1].terminalSafe)'", kind: .negative) }
            if json { return try printJSON(Versioned(result: Answer(key: words[1], value: v), key: "rsdm")) }
            print(v.terminalSafe)
        case ("set", 3): try store.set(words[1], words[2])
        case ("del", 2): try store.delete(words[1])
        case ("epoch", 1):
            if json { return try printJSON(Versioned(result: Answer(epoch: try store.epoch()), key: "rsdm")) }
            print(try store.epoch())
        default: throw ValidationError("usage: sparc rsdm [list | get KEY | set KEY VALUE | del KEY | epoch]")
        }
    }
}

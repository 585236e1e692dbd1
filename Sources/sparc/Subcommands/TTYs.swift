import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct TTYs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ttys", abstract: "List the guest's terminals and the processes on each.")
    @OptionGroup var vm: VMOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let agent = try vm.manager().agentClient(vm.name)
        defer { agent.close() }
        let ttys = try agent.ttys()
        if json { return try printJSON(ttys) }
        print(pad("TTY", 10) + pad("KIND", 17) + "PIDS")
        for t in ttys {
            print(pad(t.name, 10) + pad(t.kind.rawValue, 17) + (t.pids.isEmpty ? "-" : t.pids.map(String.init).joined(separator: ",")))
        }
    }
}

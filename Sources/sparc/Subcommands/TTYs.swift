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
    @OptionGroup var connection: ConnectOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let agent = try connection.agent(vm)
        defer { agent.close() }
        let ttys = try agent.ttys()
        if json { return try printJSON(ttys, key: "ttys") }
        // Who holds a pty's master side says what the terminal is: an SSH session, a terminal program.
        let commands = Dictionary(try agent.processes().map { ($0.pid, $0.command) }, uniquingKeysWith: { a, _ in a })
        print(pad("TTY", 10) + pad("KIND", 17) + pad("PIDS", 24) + "HELD BY")
        for t in ttys {
            let held = t.holders.map { "\($0) \(commands[$0] ?? "?")" }.joined(separator: ", ")
            print(
                pad(t.name, 10) + pad(t.kind.rawValue, 17) + pad(t.pids.isEmpty ? "-" : t.pids.map(String.init).joined(separator: ","), 24)
                    + (held.isEmpty ? "-" : held.terminalSafe))
        }
    }
}

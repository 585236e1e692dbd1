import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct PS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the guest's processes.")
    @OptionGroup var vm: VMOptions
    @OptionGroup var connection: ConnectOption
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("kernel"), help: "Include kernel threads.") var includeKernel = false

    func run() throws {
        let agent = try connection.agent(vm)
        defer { agent.close() }
        let list = try agent.processes().filter { includeKernel || !$0.kernelThread }
        if json { return try printJSON(list, key: "processes") }
        print(pad("PID", 7, right: true) + pad("PPID", 7, right: true) + pad("USER", 9) + "S " + pad("TTY", 8) + pad("RSS", 9, right: true) + "COMMAND")
        for p in list {
            print(
                pad(String(p.pid), 7, right: true) + pad(String(p.ppid), 7, right: true) + pad(p.user, 9) + p.state.terminalSafe + " "
                    + pad(p.tty ?? "?", 8) + pad("\(p.rssKiB)K", 9, right: true) + p.command.terminalSafe)
        }
    }
}

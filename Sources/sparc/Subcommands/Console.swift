import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Console: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach to the guest's serial console (Ctrl-] detaches), or type text into it.",
        discussion: "Example: sparc console --send 'export SECRET=hunter2\\n'  (\\n, \\r, \\t, \\e, \\xHH are expanded)")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Option(help: "Type TEXT into the console and exit instead of attaching.") var send: String?
    @OptionGroup var connection: ConnectOption

    func run() throws {
        try connection.refuseForDomains("console", instead: "'virsh console \(name)' (libvirt owns the serial console), or 'sparc terminal --connect URI --name \(name)'")
        let manager = try VMManager()
        manager.recoverAbandoned(name)
        let console = try manager.console(name)
        if let send {
            try console.send(SerialConsole.unescape(send))
            return
        }
        if isatty(0) == 1 { printError("connected to the serial console of '\(name)'; Ctrl-] detaches") }
        try console.attach()
        if isatty(0) == 1 { printError("\r\ndetached") }
    }
}

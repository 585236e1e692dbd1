import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Terminal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open an interactive shell on a new pty in the guest (Ctrl-] detaches; the shell runs on).",
        discussion: """
            A relay process in the guest holds the pty master, as a terminal program would, and \
            talks to this command over the VM's second serial port: typed text never passes the \
            agent. Exclude the whole session with --exclude-tty pts/N (see 'sparc ttys').
            Example: sparc terminal --send 'export TOKEN=abc\\n'
            """)
    @OptionGroup var vm: VMOptions
    @OptionGroup var connection: ConnectOption
    @Option(help: "Type TEXT into the terminal and exit instead of attaching.") var send: String?
    @Flag(help: "Print the relay's pid, the shell's pid and the pty as JSON, and exit.") var json = false

    func run() throws {
        let manager = try vm.manager()
        manager.connect = connection.uri
        let (info, console) = try manager.terminal(vm.name)
        if json { return try printStampedJSON(info) }
        if let send {
            if info.started { usleep(300_000) }  // let the new shell print its prompt first
            try console.send(SerialConsole.unescape(send))
            return
        }
        if isatty(0) == 1 { printError("shell on \(info.tty) in '\(vm.name)' (relay pid \(info.relayPid)); Ctrl-] detaches") }
        if !info.started { try console.send(Data("\n".utf8)) }
        try console.attach()
        if isatty(0) == 1 { printError("\r\ndetached; the shell on \(info.tty) runs on") }
    }
}

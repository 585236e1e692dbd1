import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in the guest.",
        discussion: """
            Without --detach, prints the command's output and exits with its status. With --detach, \
            starts it in a new session with no terminal and prints its pid.
            Example: sparc exec -- sh -c 'echo hello > /data/hello'
            """)
    @OptionGroup var vm: VMOptions
    @OptionGroup var connection: ConnectOption
    @Flag(help: "Start the command in the background and print its pid.") var detach = false
    @Option(parsing: .unconditional, help: "Kill the command after this many seconds (0 = no limit).") var limit: Double = 0
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).")
    var command: [String] = []

    func validate() throws {
        guard limit >= 0, limit <= 86400 * 7 else { throw ValidationError("--limit must be between 0 and 604800 seconds (got \(limit))") }
    }

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give the command after --, e.g. sparc exec -- uname -a") }
        let agent = try connection.agent(vm)
        defer { agent.close() }
        var stdin = Data()
        if !detach && isatty(0) == 0 { stdin = FileHandle.standardInput.readDataToEndOfFile() }
        let request = ExecRequest(argv: argv, detach: detach, stdin: stdin.isEmpty ? nil : stdin, timeoutMs: Int(limit * 1000))
        // The agent timeout bounds the answer; a running command may take as long as --limit allows.
        let wait = limit > 0 ? limit + vm.timeout : (detach ? vm.timeout : 24 * 3600)
        let result = try agent.exec(request, timeout: wait)
        if detach {
            print(result.pid)
            return
        }
        writeOut(result.stdout)
        FileHandle.standardError.write(result.stderr)
        if result.timedOut { printError("sparc: command killed after \(limit) s") }
        let status = result.status ?? 0
        if status != 0 { throw ExitCode(status) }
    }
}

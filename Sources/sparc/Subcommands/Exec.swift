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

    /// Standard input up to `limit` bytes, read as it comes; more is refused (never read whole).
    static func readInput(limit: Int) throws -> Data {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(0, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("cannot read standard input")
            }
            if n == 0 { return data }
            data.append(buffer, count: n)
            if data.count > limit {
                throw SparcError(
                    "standard input is more than \(limit >> 20) MiB: sparc exec passes at most that much to the guest command (copy larger files onto the VM's disk, or use 'sparc terminal')")
            }
        }
    }

    func validate() throws {
        guard limit >= 0, limit <= 86400 * 7 else { throw ValidationError("--limit must be a number of seconds from 0 (no limit) to 604800 (got \(limit))") }
    }

    /// The most standard input passed to the guest command: it travels in one frame to the agent.
    static let maxInput = 16 << 20

    func run() throws {
        var argv = command
        // Before `--`, --help is sparc's (the guest's own help is `sparc exec -- cmd --help`).
        if let first = argv.first, first == "--help" || first == "-h" {
            print(Sparc.helpMessage(for: Exec.self))
            return
        }
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give the command after --, e.g. sparc exec -- uname -a") }
        let agent = try connection.agent(vm)
        defer { agent.close() }
        // Within the agent timeout: a port held by another client or a hung guest is an error, not a wait as long as the command's.
        _ = try agent.hello()
        var stdin = Data()
        if !detach && isatty(0) == 0 { stdin = try Self.readInput(limit: Self.maxInput) }
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

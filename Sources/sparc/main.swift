import ArgumentParser
import Foundation
import SparcEngine
import SparcSupport

signal(SIGPIPE, SIG_IGN)
// Bundles hold guest memory: nothing sparc writes is for other users to read.
umask(0o077)
// A checkpoint or restore killed outright is undone by a guardian: sparc itself.
Guardian.executable = "/proc/self/exe"

/// The subcommand path the arguments name ("vm start"), for pointing at its help.
func commandPath(_ args: [String]) -> String {
    var path: [String] = []
    var commands: [ParsableCommand.Type] = Sparc.configuration.subcommands
    for a in args where !a.hasPrefix("-") {
        guard let c = commands.first(where: { $0._commandName == a }) else { break }
        path.append(a)
        commands = c.configuration.subcommands
    }
    return (["sparc"] + path).joined(separator: " ")
}

/// One line and exit 2, before anything runs.
func refuse(_ message: String) -> Never {
    printError("sparc: \(message.terminalSafe)")
    exit(2)
}

// Arguments are paths and names: one that is not UTF-8 would be read as another (U+FFFD in
// place of its bytes) and a bundle saved under a name nobody gave.
for i in 1..<Int(CommandLine.argc) {
    guard let raw = CommandLine.unsafeArgv[i] else { continue }
    let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: strlen(raw))
    if String(validating: bytes, as: UTF8.self) == nil {
        refuse("argument \(i) is not valid UTF-8 (\(String(decoding: bytes, as: UTF8.self))): sparc takes paths and names in UTF-8")
    }
}
do { try SparcEnvironment.check(ProcessInfo.processInfo.environment) } catch let e as SparcError { refuse(e.message) }

let arguments = Array(CommandLine.arguments.dropFirst())
// `tui` is the default subcommand: without this check a mistyped command would be taken as
// an argument of `tui` and answered with its usage.
if let first = arguments.first, !first.hasPrefix("-"), first != "help",
    !Sparc.configuration.subcommands.contains(where: { $0._commandName == first })
{
    let names = Sparc.configuration.subcommands.filter { $0.configuration.shouldDisplay }.map { $0._commandName }
    printError("sparc: unknown command '\(first.terminalSafe)' (commands: \(names.joined(separator: ", "))); see 'sparc --help'")
    exit(2)
}
/// Under `--json` (before any `--`), a failure is one JSON object on stderr, for scripts.
let wantsJSON = arguments.prefix(while: { $0 != "--" }).contains("--json")
/// Says why the command failed (one escaped line, or JSON under --json) and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
    endProgress()
    if wantsJSON {
        let record: [String: Any] = ["schemaVersion": JSONSchema.version, "error": ["message": message, "exitStatus": Int(status)]]
        let data = (try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        FileHandle.standardError.write(data + Data("\n".utf8))
    } else {
        printError("sparc: \(message.terminalSafe)")
    }
    exit(status)
}
do {
    var command = try Sparc.parseAsRoot(arguments)
    // A config file that cannot be read stops every command but help, with one line: a
    // checkpoint must not run without the exclusion rules the operator wrote.
    if String(describing: type(of: command)) != "HelpCommand", case .failure(let error) = SparcConfig.shared { throw error }
    try command.run()
} catch let error as SparcError {
    // Messages carry paths, names and agents' words: escaped here, so no error can drive the
    // operator's terminal or spill onto a second line, whatever it quotes.
    // Cancelled by a signal: the shell's status for it (130 for Ctrl-C), as if it had killed us.
    fail(error.message, status: error.posixCode == ECANCELED && Interruption.signal != 0 ? Interruption.exitStatus : error.exitCode)
} catch let error as UserFacingError {
    // The typed errors of the modules' edges (a refused restore, a damaged bundle, a busy VM,
    // an agent that does not answer): one escaped line and their exit status.
    fail(error.description, status: error.exitCode)
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    endProgress()
    let code = Sparc.exitCode(for: error)
    if code == .success {
        print(Sparc.fullMessage(for: error))
        exit(0)
    }
    // Argument errors in one line, pointing at the command's own help.
    let message = Sparc.message(for: error).split(separator: "\n").map { $0.trimmed }.filter { !$0.isEmpty }.joined(separator: "; ")
    fail("\(message) (see '\(commandPath(arguments)) --help')", status: 2)
}

import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

/// Options every command that talks to one VM shares.
struct VMOptions: ParsableArguments {
    @Option(name: .long, help: "The VM to act on.")
    var name: String = "default"

    @Option(name: .long, parsing: .unconditional, help: "Seconds to wait for the guest agent to answer.")
    var timeout: Double = 10

    func validate() throws {
        guard timeout > 0, timeout <= 86400 else { throw ValidationError("--timeout must be more than 0 and at most 86400 seconds (got \(timeout))") }
    }

    func manager() throws -> VMManager { try VMManager(agentTimeout: timeout) }
}

/// `--wait`, for the commands that change a VM (one at a time per VM).
struct LockOptions: ParsableArguments {
    @Flag(help: "If another sparc command is changing this VM, wait for it to finish instead of failing.")
    var wait = false

    func apply(_ manager: VMManager) -> VMManager {
        manager.waitForLock = wait
        return manager
    }
}

/// Prints progress on one line of stderr when stderr is a terminal; silent otherwise.
func progressPrinter() -> VMManager.Progress? {
    guard isatty(2) == 1 else { return nil }
    return { event in
        let line = "\r\u{1B}[K" + event.text
        FileHandle.standardError.write(Data(line.utf8))
    }
}

func endProgress() {
    if isatty(2) == 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly, as with other tools.
func writeOut(_ data: Data) {
    if !data.withUnsafeBytes({ FileSystem.writeAll(fd: 1, $0) }) { exit(errno == EPIPE ? 0 : 2) }
}

/// The version of what `--json` prints (`schemaVersion` in each object it prints); it goes up
/// when a field changes meaning or goes away, not when one is added.
enum JSONSchema {
    static let version = 1
}

/// A command's result under `--json`: `{"schemaVersion": 1, KEY: result}`.
struct Versioned<T: Encodable>: Encodable {
    var result: T
    var key: String
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(JSONSchema.version, forKey: Key(stringValue: "schemaVersion"))
        try c.encode(result, forKey: Key(stringValue: key))
    }
}

/// An object result under `--json` with `schemaVersion` beside its own top-level fields.
struct Stamped<T: Encodable>: Encodable {
    var result: T
    func encode(to encoder: Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: Versioned<T>.Key.self)
        try c.encode(JSONSchema.version, forKey: .init(stringValue: "schemaVersion"))
    }
}

/// Prints a list under `--json` as `{"schemaVersion": 1, KEY: [...]}`: every command prints
/// one JSON object, so a field can be added beside the list without breaking a reader.
func printJSON<T: Encodable>(_ list: [T], key: String) throws {
    try printJSON(Versioned(result: list, key: key))
}

/// Prints an object result under `--json` with its `schemaVersion`.
func printStampedJSON<T: Encodable>(_ value: T) throws {
    try printJSON(Stamped(result: value))
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A table cell: the text made safe for the terminal, padded to `width` columns.
func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let s = text.terminalSafe
    if s.count >= width { return s + " " }
    let fill = String(repeating: " ", count: width - s.count)
    return right ? fill + s + " " : s + fill
}

/// A table cell of guest text: escaped, padded to `width` columns.
func pad(_ text: GuestText, _ width: Int, right: Bool = false) -> String { pad(text.description, width, right: right) }

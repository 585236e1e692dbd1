import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Strings: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print printable strings of a file or bundle with their offsets (like strings -a -td).")
    @Argument(help: "A bundle, a stored checkpoint (by name) or any file.") var path: String
    @Option(parsing: .unconditional, help: "Minimum length.") var min: Int = 4
    @Option(help: "ascii, utf16le, utf16be or all, comma-separated.") var encoding: String = "ascii"

    func run() throws {
        let parsed = encoding == "all" ? [.ascii, .utf16le, .utf16be] : try SearchEncoding.parse(encoding)
        if parsed.contains(.utf8) {
            throw SparcError("strings lists ascii, utf16le and utf16be runs; utf8 is not one of them (its ASCII runs are what --encoding ascii lists)")
        }
        let encodings = parsed
        guard min >= 1 else { throw SparcError("--min must be at least 1 (got \(min))") }
        var out = ""
        for target in try ForensicSearch.targets(path, store: try StoredBundles().store(for: [path])) {
            try StringsExtractor.scan(file: target.file, minimum: min, encodings: encodings.isEmpty ? [.ascii] : encodings) { offset, text, enc in
                out += "\(target.display.terminalSafe) \(offset) \(enc == .ascii ? "" : enc.rawValue + " ")\(text)\n"
                if out.utf8.count > 1 << 16 {
                    writeOut(Data(out.utf8))
                    out = ""
                }
            }
        }
        writeOut(Data(out.utf8))
    }
}

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
    @Argument(help: "A bundle or any file.") var path: String
    @Option(help: "Minimum length.") var min: Int = 4
    @Option(help: "ascii, utf16le, utf16be or all, comma-separated.") var encoding: String = "ascii"

    func run() throws {
        let encodings = try SearchEncoding.parse(encoding).filter { $0 != .utf8 }
        guard min >= 1 else { throw SparcError("--min must be at least 1") }
        var out = ""
        for target in try ForensicSearch.targets(path) {
            try StringsExtractor.scan(file: target.path, minimum: min, encodings: encodings.isEmpty ? [.ascii] : encodings) { offset, text, enc in
                out += "\(target.display) \(offset) \(enc == .ascii ? "" : enc.rawValue + " ")\(text)\n"
                if out.utf8.count > 1 << 16 {
                    writeOut(Data(out.utf8))
                    out = ""
                }
            }
        }
        writeOut(Data(out.utf8))
    }
}

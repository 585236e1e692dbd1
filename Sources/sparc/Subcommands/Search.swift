import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search bundles (every file) or any files for a pattern, and say whose memory each hit is in.",
        discussion: """
            PATH is a bundle directory or any file (raw memory dump, VM save file, disk image). By \
            default a text is searched as ASCII and UTF-16LE. Hits in a bundle's memory image show \
            the guest-physical address and the owner recorded at checkpoint time (pid, command and \
            mapping, or the kind of kernel memory, or free).
            Exit status: 0 found, 1 not found, 2 error (as grep).
            Examples:
              sparc search hunter2 monday.sparc
              sparc search --hex 'de ad be ef' /var/lib/vm/dump.raw
              sparc search -i --encoding all --json TOKEN a.sparc b.sparc
            """)
    @Argument(help: "The text (or hex bytes with --hex, or a regular expression with --regex).") var pattern: String
    @Argument(help: "Bundles, stored checkpoints (by name) or files to search.") var paths: [String]
    @Flag(name: [.short, .customLong("ignore-case")], help: "Match ASCII letters in either case.") var ignoreCase = false
    @Option(help: "ascii, utf8, utf16le, utf16be or all, comma-separated (default ascii,utf16le).")
    var encoding: String = "ascii,utf16le"
    @Flag(help: "PATTERN is hex bytes, e.g. 'de ad be ef'.") var hex = false
    @Flag(help: "PATTERN is a regular expression (PCRE syntax, Hyperscan) over bytes, in each --encoding (ascii, utf16le).") var regex = false
    @Flag(help: "Print hits as JSON.") var json = false
    @Flag(help: "Print only the number of hits per file.") var count = false
    @Option(parsing: .unconditional, help: "Bytes of context around each hit.") var context: Int = 16

    func validate() throws {
        guard (0...4096).contains(context) else { throw ValidationError("--context must be between 0 and 4096 bytes (got \(context))") }
    }

    func run() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one bundle or file to search") }
        if hex && regex { throw SparcError("--hex and --regex exclude each other") }
        let query: SearchQuery
        if hex {
            query = try .hex(pattern)
        } else if regex {
            query = try .regex(pattern, ignoreCase: ignoreCase, encodings: try SearchEncoding.parse(encoding))
        } else {
            query = try .text(pattern, encodings: try SearchEncoding.parse(encoding), ignoreCase: ignoreCase)
        }
        // Stored checkpoints named here are searched in place, decrypted as they are read.
        let store = try StoredBundles().store(for: paths)
        let show = progressPrinter()
        let hits = try ForensicSearch.search(
            paths: paths, store: store, query: query, contextBytes: context,
            progress: show.map { p in { file, done, total in p("searching \(Path.base(of: file)) \(done * 100 / max(total, 1))%") } },
            note: { note in
                endProgress()
                printError("sparc: note: \(note.terminalSafe)")
            })
        endProgress()
        if json {
            try printJSON(hits, key: "hits")
        } else if count {
            var perFile: [String: Int] = [:]
            for h in hits { perFile[h.file, default: 0] += 1 }
            for path in paths {
                for t in try ForensicSearch.targets(path, store: store) { print("\(t.display): \(perFile[t.display] ?? 0)") }
            }
        } else {
            for h in hits {
                var line = "\(h.file.terminalSafe):0x\(String(h.offset, radix: 16))"
                if let a = h.address { line += " gpa 0x\(String(a, radix: 16))" }
                line += " \(h.encoding)"
                if let o = h.owner { line += " [\(o.description.terminalSafe)]" }
                print(line + "  \(h.context)")
            }
            if hits.isEmpty {
                for path in paths {
                    print(FileSystem.isDirectory(path) ? "not found in any file of the bundle \(path.terminalSafe)" : "not found in \(path.terminalSafe)")
                }
            } else {
                // A file whose hits reached the cap was not searched to its end: the count is a floor.
                let capped = Dictionary(grouping: hits, by: \.file).filter { $0.value.count >= FileSearcher.defaultMaxHits }.keys.sorted()
                if capped.isEmpty {
                    print("\(hits.count) hit(s)")
                } else {
                    print("at least \(hits.count) hit(s): the search of \(capped.map(\.terminalSafe).joined(separator: ", ")) stopped at \(FileSearcher.defaultMaxHits) hits; narrow the pattern")
                }
            }
        }
        if hits.isEmpty { throw ExitCode(1) }
    }
}

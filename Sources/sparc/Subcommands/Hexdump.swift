import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Hexdump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show bytes of a file or a bundle's memory image as hex rows, coloured by byte category.",
        discussion: """
            Rows are streamed, so any length can be shown; a run of identical rows prints as '*' \
            and long holes of a sparse image are skipped without reading them.
            Examples:
              sparc hexdump monday.sparc --address 0x1f000 --length 128
              sparc hexdump disk.raw --offset 0x100000 --length 4KiB
            """)
    @Argument(help: "A file, or a bundle or stored checkpoint (its memory image).") var path: String
    @Option(parsing: .unconditional, help: "File offset to start at (decimal or 0x hex).") var offset: String?
    @Option(parsing: .unconditional, help: "Guest-physical address to start at (bundles).") var address: String?
    @Option(parsing: .unconditional, help: "Bytes to show (decimal or 0x hex; a K, M or G suffix multiplies by 1024s).") var length: String = "256"
    @Flag(help: "Print repeated rows instead of '*'.") var noSqueeze = false
    @Option(help: "auto, always or never (NO_COLOR is honoured).") var color: ColorChoice = .auto

    /// A non-negative number: decimal, 0x hex, with an optional K/M/G (KiB/MiB/GiB) suffix.
    static func number(_ text: String, what: String) throws -> UInt64 {
        var s = text.lowercased()
        var scale: UInt64 = 1
        for (suffix, factor) in [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)]
        where s.hasSuffix(suffix) && !s.hasPrefix("0x") {
            s.removeLast(suffix.count)
            scale = UInt64(factor)
            break
        }
        if s.hasPrefix("-") { throw SparcError("\(what) '\(text.terminalSafe)' is negative: give a count of bytes from the start, 0 or more") }
        let v = s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
        guard let v else { throw SparcError("\(what) '\(text.terminalSafe)' is not a number (decimal or 0x hex)") }
        let (scaled, overflow) = v.multipliedReportingOverflow(by: scale)
        guard !overflow else { throw SparcError("\(what) '\(text.terminalSafe)' is too large") }
        return scaled
    }

    func run() throws {
        if offset != nil && address != nil { throw SparcError("--offset and --address exclude each other") }
        let target = try ForensicSearch.targets(path, store: try StoredBundles().store(for: [path]))[0]
        let size = UInt64(target.file.size)
        let display = target.display.terminalSafe
        guard size > 0 else { throw SparcError("\(display) is empty") }
        var start = try offset.map { try Self.number($0, what: "offset") } ?? 0
        if let address {
            guard let layout = target.layout else { throw SparcError("--address needs a bundle (its memory image has guest addresses)") }
            let gpa = try Self.number(address, what: "address")
            guard let r = layout.fileRanges(physical: gpa, length: 1).first else {
                throw SparcError("address 0x\(String(gpa, radix: 16)) is not guest RAM")
            }
            start = UInt64(r.lowerBound)
        }
        guard start < size else { throw SparcError("offset \(start) is past the end of \(display) (\(size) bytes)") }
        let count = min(try Self.number(length, what: "length"), size - start)
        let useColor = color.enabled(for: 1)
        let layout = target.layout
        let printer = HexPrinter(color: useColor, address: layout.map { l in { l.physicalAddress(fileOffset: $0) } })
        var squeezer = HexRowSqueezer(squeeze: !noSqueeze)
        let source = target.file
        let regions = source.dataRegions(before: 0, after: 0)
        let end = start + count
        let chunk = 64 << 10
        var buffer = [UInt8](repeating: 0, count: chunk)
        var pos = start
        while pos < end {
            // Inside a squeezed run of zeros a hole adds nothing: jump to the next data, keeping row alignment.
            if squeezer.inZeroRun {
                let next = regions.first { UInt64($0.upperBound) > pos }.map { max(pos, UInt64($0.lowerBound)) }
                let dataAt = min(end, next ?? end)
                if dataAt >= pos + 32 { pos += ((dataAt - pos) / 16 - 1) * 16 }
            }
            let want = Int(min(UInt64(chunk), end - pos))
            let got = try buffer.withUnsafeMutableBytes { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want]), at: Int64(pos)) }
            if got == 0 { break }
            var out = ""
            for row in squeezer.rows(Array(buffer[0..<got]), offset: pos) { out += printer.line(row) + "\n" }
            writeOut(Data(out.utf8))
            pos += UInt64(got)
        }
    }
}

/// `--color`: auto colours a terminal unless NO_COLOR is set.
enum ColorChoice: String, CaseIterable, ExpressibleByArgument {
    case auto, always, never

    func enabled(for fd: Int32) -> Bool {
        switch self {
        case .always: true
        case .never: false
        case .auto: isatty(fd) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        }
    }
}

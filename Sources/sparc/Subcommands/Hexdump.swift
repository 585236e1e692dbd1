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
        abstract: "Show bytes of a file or a bundle's memory image as hex rows, coloured by byte category.")
    @Argument(help: "A file, or a bundle (its memory image).") var path: String
    @Option(help: "File offset to start at (decimal or 0x hex).") var offset: String?
    @Option(help: "Guest-physical address to start at (bundles).") var address: String?
    @Option(help: "Bytes to show.") var length: String = "256"
    @Flag(help: "Print repeated rows instead of '*'.") var noSqueeze = false
    @Option(help: "auto, always or never (NO_COLOR is honoured).") var color: String = "auto"

    static func number(_ s: String) throws -> UInt64 {
        let v = s.lowercased().hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
        guard let v else { throw SparcError("'\(s)' is not a number") }
        return v
    }

    func run() throws {
        if offset != nil && address != nil { throw SparcError("--offset and --address exclude each other") }
        let target = try ForensicSearch.targets(path)[0]
        var start = try offset.map(Self.number) ?? 0
        if let address {
            guard let layout = target.layout else { throw SparcError("--address needs a bundle (its memory image has guest addresses)") }
            let gpa = try Self.number(address)
            guard let r = layout.fileRanges(physical: gpa, length: 1).first else { throw SparcError("address 0x\(String(gpa, radix: 16)) is not guest RAM") }
            start = UInt64(r.lowerBound)
        }
        let count = try Self.number(length)
        guard let size = FileSystem.size(target.path) else { throw SparcError.posix("cannot read", target.path) }
        guard start < UInt64(max(size, 0)) || size == 0 else { throw SparcError("offset \(start) is past the end (\(size) bytes)") }
        let fd = open(target.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read", target.path) }
        defer { close(fd) }
        let want = Int(min(count, UInt64(size) - start))
        var data = [UInt8](repeating: 0, count: want)
        let got = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(start)) }
        guard got >= 0 else { throw SparcError.posix("cannot read", target.path) }
        data.removeLast(want - got)
        let useColor: Bool
        switch color {
        case "always": useColor = true
        case "never": useColor = false
        case "auto": useColor = isatty(1) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        default: throw SparcError("--color must be auto, always or never")
        }
        let layout = target.layout
        let printer = HexPrinter(color: useColor, address: layout.map { l in { l.physicalAddress(fileOffset: $0) } })
        var out = ""
        printer.print(data, offset: start, squeeze: !noSqueeze, to: &out)
        print(out, terminator: "")
    }
}

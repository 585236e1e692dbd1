import Foundation
import SparcSupport

/// Printable runs in a file, like `strings -a -td` (and `-el` for UTF-16LE).
public enum StringsExtractor {
    static func printable(_ c: UInt8) -> Bool { (c >= 0x20 && c < 0x7f) || c == 0x09 }

    /// Calls `emit(offset, text, encoding)` for each run of at least `minimum` characters.
    public static func scan(
        file path: String, minimum: Int = 4, encodings: [SearchEncoding] = [.ascii],
        emit: (UInt64, String, SearchEncoding) -> Void
    ) throws {
        try scan(file: OpenedFile(regular: path, followSymlinks: true), minimum: minimum, encodings: encodings, emit: emit)
    }

    /// Calls `emit(offset, text, encoding)` for each run of at least `minimum` characters.
    public static func scan(
        file opened: ByteSource, minimum: Int = 4, encodings: [SearchEncoding] = [.ascii],
        emit: (UInt64, String, SearchEncoding) -> Void
    ) throws {
        let file = FileBlocks(opened)
        let size = file.size
        guard size > 0 else { return }
        // Read in chunks (never mapped: a file truncated meanwhile is an error, not SIGBUS); a
        // run that crosses a chunk edge goes on in the next chunk.
        let chunk = 8 << 20
        for region in file.dataRegions(after: 0) {
            for encoding in encodings {
                let step = (encoding == .utf16le || encoding == .utf16be) ? 2 : 1
                for phase in 0..<step {
                    var runStart = -1
                    var chars: [UInt8] = []
                    var i = region.lowerBound + phase
                    while i + step <= region.upperBound + (step - 1) && i < size - (step - 1) {
                        let lo = i
                        let hi = min(size, region.upperBound + (step - 1), lo + chunk + step)
                        try file.withBytes(lo..<hi) { p, n in
                            while i - lo + step <= n && i + step <= region.upperBound + (step - 1) {
                                let k = i - lo
                                let c: UInt8
                                let ok: Bool
                                switch encoding {
                                case .utf16le: c = p[k]; ok = p[k + 1] == 0 && printable(c)
                                case .utf16be: c = p[k + 1]; ok = p[k] == 0 && printable(c)
                                default: c = p[k]; ok = printable(c)
                                }
                                if ok {
                                    if runStart < 0 { runStart = i }
                                    chars.append(c)
                                } else {
                                    if chars.count >= minimum { emit(UInt64(runStart), String(decoding: chars, as: UTF8.self), encoding) }
                                    chars.removeAll(keepingCapacity: true)
                                    runStart = -1
                                }
                                i += step
                            }
                        }
                        if hi - lo < step { break }
                    }
                    if chars.count >= minimum { emit(UInt64(runStart), String(decoding: chars, as: UTF8.self), encoding) }
                }
            }
        }
    }
}

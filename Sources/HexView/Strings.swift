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
        file opened: OpenedFile, minimum: Int = 4, encodings: [SearchEncoding] = [.ascii],
        emit: (UInt64, String, SearchEncoding) -> Void
    ) throws {
        let file = try MappedFile(opened)
        let size = file.size
        guard let p = file.bytes else { return }
        for region in FileSearcher.dataRegions(fd: file.fd, size: size, skipHoles: true, after: 0) {
            for encoding in encodings {
                let step = (encoding == .utf16le || encoding == .utf16be) ? 2 : 1
                for phase in 0..<step {
                    var runStart = -1
                    var chars: [UInt8] = []
                    var i = region.lowerBound + phase
                    while i + step <= region.upperBound + (step - 1) && i < size - (step - 1) {
                        let c: UInt8
                        let ok: Bool
                        switch encoding {
                        case .utf16le: c = p[i]; ok = p[i + 1] == 0 && printable(c)
                        case .utf16be: c = p[i + 1]; ok = p[i] == 0 && printable(c)
                        default: c = p[i]; ok = printable(c)
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
                    if chars.count >= minimum { emit(UInt64(runStart), String(decoding: chars, as: UTF8.self), encoding) }
                }
            }
        }
    }
}

import Foundation
import HexView
import SparcSupport

/// Counts a secret's occurrences in every file of a bundle with the forensic search
/// (ASCII and UTF-16LE), leaving out the disk state, which holds files by design, unless
/// `disk` (the secret then must be nowhere on the disk either, as for swap).
enum SecretScan {
    static func hits(_ secret: String, inBundle bundle: String, disk: Bool = false) throws -> [String: Int] {
        let searcher = FileSearcher(query: try .text(secret, encodings: [.ascii, .utf16le], ignoreCase: false))
        var result: [String: Int] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: bundle).sorted() where disk || file != "disk.qcow2" {
            result[file] = try searcher.search(file: bundle + "/" + file).count
        }
        return result
    }
}

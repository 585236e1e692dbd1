import Foundation
import SparcSupport

/// Counts occurrences of secrets in files, as ASCII and as UTF-16LE (a plain scan; the
/// forensic search of HexView replaces it once it exists).
enum SecretScan {
    static func utf16le(_ s: String) -> [UInt8] { s.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] } }

    /// Occurrences of `pattern` in the file (memory-mapped; holes read as zeros).
    static func count(_ pattern: [UInt8], in path: String) throws -> Int {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SparcError.posix("cannot open", path) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        guard size >= pattern.count, !pattern.isEmpty else { return 0 }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw SparcError.posix("cannot map", path)
        }
        defer { munmap(map, size) }
        let base = map.assumingMemoryBound(to: UInt8.self)
        var hits = 0
        var offset = 0
        let first = Int32(pattern[0])
        pattern.withUnsafeBytes { p in
            while offset <= size - pattern.count {
                guard let found = memchr(base + offset, first, size - pattern.count + 1 - offset) else { break }
                let at = UnsafeRawPointer(found) - UnsafeRawPointer(base)
                if memcmp(found, p.baseAddress!, pattern.count) == 0 { hits += 1 }
                offset = at + 1
            }
        }
        return hits
    }

    /// Hits of a secret (ASCII + UTF-16LE) in every file of a bundle except the disk state.
    static func hits(_ secret: String, inBundle bundle: String) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: bundle).sorted() where file != "disk.qcow2" {
            let path = bundle + "/" + file
            result[file] = try count(Array(secret.utf8), in: path) + count(utf16le(secret), in: path)
        }
        return result
    }
}

import COpenSSL
import Dispatch
import Foundation
import SparcSupport

/// The digest sparc records for every file of a bundle: SHA-256 over the file's size and the
/// SHA-256 of each 2 MiB chunk of its content (format version 2).
///
/// A chunk that is all zeros has a known hash: a hole is never read, so a sparse image of any
/// size verifies in the time its data takes (a 1 TiB image of holes in milliseconds), and
/// chunks hash on every core. The same definition serves writing, verifying and loading.
public enum ChunkedDigest {
    public static let chunkSize = 2 << 20
    static let domain = Array("sparc-chunked-sha256-v1\0".utf8)

    /// SHA-256 of `count` bytes.
    static func sha256(_ p: UnsafeRawPointer, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_Digest(p, count, &out, &len, EVP_sha256(), nil)
        return out
    }

    /// The hash of a chunk of zeros of a given length (every chunk but maybe the last is full).
    static let zeroChunk: [UInt8] = zeroHash(chunkSize)
    static func zeroHash(_ length: Int) -> [UInt8] {
        let z = UnsafeMutableRawPointer.allocate(byteCount: max(1, length), alignment: 4096)
        defer { z.deallocate() }
        z.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, length))
        return sha256(z, count: length)
    }

    static func zeroHash(chunk: Int, size: Int64) -> [UInt8] {
        let length = chunkLength(chunk, size: size)
        return length == chunkSize ? zeroChunk : zeroHash(length)
    }

    static func chunkCount(_ size: Int64) -> Int { Int((size + Int64(chunkSize) - 1) / Int64(chunkSize)) }

    static func chunkLength(_ chunk: Int, size: Int64) -> Int {
        Int(min(Int64(chunkSize), size - Int64(chunk) * Int64(chunkSize)))
    }

    /// The hash of one chunk's bytes, zero chunks without hashing.
    static func hash(chunk p: UnsafeRawPointer, count: Int, index: Int, size: Int64) -> [UInt8] {
        isZero(p, count: count) ? zeroHash(chunk: index, size: size) : sha256(p, count: count)
    }

    static func isZero(_ p: UnsafeRawPointer, count: Int) -> Bool {
        var off = 0
        while off < count {
            let n = min(ZeroPage.size, count - off)
            if !ZeroPage.isZero(p + off, count: n) { return false }
            off += n
        }
        return true
    }

    /// Combines chunk hashes into the file digest (lower-case hex).
    public static func combine(size: Int64, chunks: [[UInt8]]) -> String {
        let h = SHA256Hasher()
        h.update(Data(domain))
        let header = [UInt64(size).littleEndian, UInt64(chunkSize).littleEndian]
        header.withUnsafeBytes { h.update($0.baseAddress!, count: $0.count) }
        for c in chunks { c.withUnsafeBytes { h.update($0.baseAddress!, count: 32) } }
        return h.finalize()
    }

    /// The hash of chunk `index` of a file of `size` bytes, its bytes at `p` (a chunk of zeros
    /// is not hashed): for building a digest out of chunks read in any order.
    public static func chunkHash(_ p: UnsafeRawPointer, count: Int, index: Int, size: Int64) -> [UInt8] {
        hash(chunk: p, count: count, index: index, size: size)
    }

    /// The hash of chunk `index` of a file of `size` bytes when it is all zeros.
    public static func zeroChunkHash(index: Int, size: Int64) -> [UInt8] { zeroHash(chunk: index, size: size) }

    /// The digest of bytes in memory.
    public static func of(_ data: Data) -> String {
        let size = Int64(data.count)
        return data.withUnsafeBytes { raw in
            combine(
                size: size,
                chunks: (0..<chunkCount(size)).map { i in
                    let n = chunkLength(i, size: size)
                    return n == 0 ? zeroHash(0) : hash(chunk: raw.baseAddress! + i * chunkSize, count: n, index: i, size: size)
                })
        }
    }

    /// Chunks of a file that hold data (others are holes): from SEEK_DATA/SEEK_HOLE.
    static func dataChunks(fd: Int32, size: Int64) -> IndexSet {
        var chunks = IndexSet()
        var pos: Int64 = 0
        while pos < size {
            let data = lseek(fd, off_t(pos), seekData)
            if data < 0 { break }
            var hole = Int64(lseek(fd, data, seekHole))
            if hole < 0 { hole = size }
            let first = Int(Int64(data) / Int64(chunkSize))
            let last = Int((min(hole, size) - 1) / Int64(chunkSize))
            if first <= last { chunks.insert(integersIn: first...last) }
            pos = hole
        }
        return chunks
    }

    /// The digest of an open regular file of `size` bytes (holes are not read). With
    /// `copyTo`, every data chunk is also written there at the same offset (zero chunks stay
    /// holes): what is hashed is exactly what is written, read once through this descriptor.
    public static func digest(
        fd: Int32, size: Int64, path: String, copyTo destination: Int32? = nil, workers: Int = 2,
        progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil
    ) throws -> String {
        let count = chunkCount(size)
        let data = dataChunks(fd: fd, size: size)
        let hashes = SharedBox([[UInt8]](repeating: [], count: count))
        let failure = SharedBox<SparcError?>(nil)
        let next = SharedBox(0)
        let done = SharedBox<Int64>(0)
        let batch = 16
        nonisolated(unsafe) let dataChunks = data
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, count))) { _ in
            let buf = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 4096)
            defer { buf.deallocate() }
            var local: [(Int, [UInt8])] = []
            while failure.value == nil && cancel?.isCancelled != true {
                let first = next.mutate { n -> Int in
                    defer { n += batch }
                    return n
                }
                if first >= count { break }
                for i in first..<min(count, first + batch) {
                    let length = chunkLength(i, size: size)
                    guard dataChunks.contains(i) else {
                        local.append((i, zeroHash(chunk: i, size: size)))
                        continue
                    }
                    var got = 0
                    while got < length {
                        let n = pread(fd, buf + got, length - got, off_t(Int64(i) * Int64(chunkSize) + Int64(got)))
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 {
                            failure.value = n < 0 ? SparcError.posix("cannot read", path) : SparcError("\(path) shrank while it was read")
                            return
                        }
                        got += n
                    }
                    let zero = isZero(buf, count: length)
                    local.append((i, zero ? zeroHash(chunk: i, size: size) : sha256(buf, count: length)))
                    if let destination, !zero {
                        var off = 0
                        while off < length {
                            let n = pwrite(destination, buf + off, length - off, off_t(Int64(i) * Int64(chunkSize) + Int64(off)))
                            if n < 0 && errno == EINTR { continue }
                            if n < 0 {
                                failure.value = SparcError.posix("cannot write a copy of", path)
                                return
                            }
                            off += n
                        }
                    }
                }
                let total = done.mutate { d -> Int64 in
                    d += Int64(min(count, first + batch) - first) * Int64(chunkSize)
                    return min(d, size)
                }
                progress?(total, size)
            }
            hashes.mutate { h in for (i, v) in local { h[i] = v } }
        }
        if let error = failure.value { throw error }
        if cancel?.isCancelled == true { throw SparcError("cancelled") }
        return combine(size: size, chunks: hashes.value)
    }

    /// The digest of any byte source (a stored checkpoint's member, decrypted as it is read),
    /// read front to back; chunks outside its data regions are not read. `write` gets every
    /// chunk that is not all zeros (its bytes and offset), for a copy made as it is hashed.
    public static func digest(
        source: ByteSource, progress: ((Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil,
        write: ((UnsafeRawBufferPointer, Int64) throws -> Void)? = nil
    ) throws -> String {
        let size = source.size
        let count = chunkCount(size)
        var data = IndexSet()
        for r in source.dataRegions(before: 0, after: 0) where !r.isEmpty {
            data.insert(integersIn: r.lowerBound / chunkSize...(r.upperBound - 1) / chunkSize)
        }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buf.deallocate() }
        var hashes: [[UInt8]] = []
        hashes.reserveCapacity(count)
        for i in 0..<count {
            if cancel?.isCancelled == true { throw SparcError("cancelled") }
            let length = chunkLength(i, size: size)
            guard data.contains(i) else {
                hashes.append(zeroHash(chunk: i, size: size))
                continue
            }
            let got = try source.read(into: UnsafeMutableRawBufferPointer(start: buf, count: length), at: Int64(i) * Int64(chunkSize))
            guard got == length else { throw SparcError("\(source.path) ended while it was read") }
            let zero = isZero(buf, count: length)
            hashes.append(zero ? zeroHash(chunk: i, size: size) : sha256(buf, count: length))
            if !zero, let write { try write(UnsafeRawBufferPointer(start: buf, count: length), Int64(i) * Int64(chunkSize)) }
            progress?(min(Int64(i + 1) * Int64(chunkSize), size), size)
        }
        return combine(size: size, chunks: hashes)
    }

    /// The digest of a regular file given by path (sparc's own files).
    public static func of(file path: String, workers: Int = 2, cancel: Cancellation? = nil) throws -> String {
        let file = try OpenedFile(regular: path, followSymlinks: true)
        return try digest(fd: file.fd, size: file.size, path: path, workers: workers, cancel: cancel)
    }
}

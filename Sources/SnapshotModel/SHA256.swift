import COpenSSL
import Foundation
import SparcSupport

/// Incremental SHA-256 (OpenSSL's libcrypto, which uses the CPU's SHA extensions).
public final class SHA256Hasher {
    private let ctx: OpaquePointer

    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ pointer: UnsafeRawPointer, count: Int) {
        if count > 0 { EVP_DigestUpdate(ctx, pointer, count) }
    }

    public func update(_ data: Data) {
        data.withUnsafeBytes { if let base = $0.baseAddress { update(base, count: $0.count) } }
    }

    /// Feeds `count` zero bytes (holes and excluded ranges hash as zeros).
    public func updateZeros(count: Int64) {
        var left = count
        ZeroPage.block.withUnsafeBytes { raw in
            while left > 0 {
                let n = Int(min(left, Int64(raw.count)))
                update(raw.baseAddress!, count: n)
                left -= Int64(n)
            }
        }
    }

    /// The digest as lower-case hex; the hasher cannot be used afterwards.
    public func finalize() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return out.map { String(format: "%02x", $0) }.joined()
    }

    public static func hex(of data: Data) -> String {
        let h = SHA256Hasher()
        h.update(data)
        return h.finalize()
    }

    /// Hashes a whole file with large sequential reads; `progress` gets bytes done.
    public static func hex(ofFile path: String, progress: ((Int64) -> Void)? = nil) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read", path) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let h = SHA256Hasher()
        let size = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        var done: Int64 = 0
        while true {
            let n = read(fd, buf, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("cannot read", path)
            }
            if n == 0 { break }
            h.update(buf, count: n)
            done += Int64(n)
            progress?(done)
        }
        return h.finalize()
    }
}

/// A block of zeros to compare pages against and to hash holes with.
enum ZeroPage {
    static let size = 4096
    static let block = Data(count: 1 << 20)
    static let page: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        return p
    }()

    static func isZero(_ p: UnsafeRawPointer, count: Int = size) -> Bool {
        memcmp(p, page, count) == 0
    }
}

/// HMAC-SHA256 (OpenSSL).
public enum HMACSHA256 {
    public static func hex(key: Data, message: Data) -> String { raw(key: key, message: message).map { String(format: "%02x", $0) }.joined() }

    public static func raw(key: Data, message: Data) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.bindMemory(to: UInt8.self).baseAddress, m.count, &out, &len)
            }
        }
        return out
    }
}

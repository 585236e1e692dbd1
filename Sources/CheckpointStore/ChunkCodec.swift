import COpenSSL
import CZstd
import Foundation
import SnapshotModel
import SparcSupport

/// The store's keys, derived from one random master key kept in the state directory (0600):
/// one names chunks (HMAC-SHA256 of the plain text, so equal data in two stores does not
/// correlate and a guess cannot be tested without the key), one encrypts them.
public struct StoreKeys: Sendable {
    let idKey: Data
    let cipherKey: [UInt8]

    /// Derives the keys from a 32-byte master key.
    /// The content chunker's gear table (256 values), derived from the key.
    let gear: [UInt64]

    public init(master: Data) throws {
        guard master.count == 32 else { throw SparcError("the store key must be 32 bytes") }
        idKey = Data(HMACSHA256.raw(key: master, message: Data("sparc store chunk id v1".utf8)))
        cipherKey = HMACSHA256.raw(key: master, message: Data("sparc store cipher v1".utf8))
        let gearKey = Data(HMACSHA256.raw(key: master, message: Data("sparc store chunker v1".utf8)))
        var table: [UInt64] = []
        for block in 0..<64 {
            let bytes = HMACSHA256.raw(key: gearKey, message: Data("gear \(block)".utf8))
            for i in 0..<4 { table.append(bytes[i * 8..<i * 8 + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
        }
        gear = table
    }

    /// The master key at `path`, made (32 random bytes, 0600) when missing and `create`. A key
    /// wrapped by a passphrase (`KeyWrap`) needs it; a plain one ignores it.
    public static func load(_ path: String, create: Bool, passphrase: Data? = nil) throws -> StoreKeys {
        try StoreKeys(master: try masterKey(path, create: create, passphrase: passphrase))
    }

    static func masterKey(_ path: String, create: Bool, passphrase: Data?) throws -> Data {
        if FileSystem.exists(path) {
            let file = try OpenedFile(regular: path, maxSize: 256).readAll()
            if file.count == 32 { return file }
            guard KeyWrap.isWrapped(file) else { throw SparcError("store key \(path) is damaged (neither a key nor a wrapped one)") }
            guard let passphrase else {
                throw SparcError("the store key is wrapped by a passphrase: pass --passphrase-file (or set $SPARC_STORE_PASSPHRASE_FILE)")
            }
            return try KeyWrap.unwrap(file, passphrase: passphrase)
        }
        guard create else { throw SparcError("store key \(path) is missing: the store cannot be read") }
        let key = Data(secureRandomBytes(32))
        try FileSystem.writeAtomically(passphrase.map { try KeyWrap.wrap(key, passphrase: $0) } ?? key, to: path, mode: 0o600)
        return key
    }

    /// Wraps the key at `path` by `passphrase` (nil: stores it plain again); `current` opens it
    /// when it is wrapped already. The file is replaced whole.
    public static func rewrap(_ path: String, current: Data?, new passphrase: Data?) throws {
        let key = try masterKey(path, create: false, passphrase: current)
        try FileSystem.writeAtomically(passphrase.map { try KeyWrap.wrap(key, passphrase: $0) } ?? key, to: path, mode: 0o600)
    }
}

/// The store key wrapped by a passphrase: scrypt (memory-hard: N 2^15, r 8, p 1, 32 MiB) turns
/// the passphrase and a random salt into a key that seals the store key with AES-256-GCM.
/// "SPKW", version 1, salt (16), log2 N, r, p, nonce (12), the sealed key (32), tag (16).
public enum KeyWrap {
    static let magic = Array("SPKW".utf8)

    static func isWrapped(_ data: Data) -> Bool { data.count == 4 + 1 + 16 + 3 + 12 + 32 + 16 && Array(data.prefix(4)) == magic }

    static func derive(_ passphrase: Data, salt: [UInt8], logN: UInt8, r: UInt8, p: UInt8) throws -> [UInt8] {
        guard (10...20).contains(logN), (1...16).contains(r), (1...4).contains(p) else { throw SparcError("the wrapped store key has unreasonable scrypt parameters") }
        var out = [UInt8](repeating: 0, count: 32)
        let ok = passphrase.withUnsafeBytes { pass in
            EVP_PBE_scrypt(
                pass.baseAddress?.assumingMemoryBound(to: CChar.self), pass.count, salt, salt.count, UInt64(1) << UInt64(logN), UInt64(r), UInt64(p),
                UInt64(256 << 20), &out, out.count)
        }
        guard ok == 1 else { throw SparcError("scrypt failed (OpenSSL)") }
        return out
    }

    public static func wrap(_ key: Data, passphrase: Data) throws -> Data {
        guard !passphrase.isEmpty else { throw SparcError("the passphrase is empty") }
        let salt = secureRandomBytes(16), nonce = secureRandomBytes(12)
        let (logN, r, p): (UInt8, UInt8, UInt8) = (15, 8, 1)
        let header = Data(magic + [1] + salt + [logN, r, p] + nonce)
        let (cipher, tag) = try ChunkCodec.aesGCM(encrypt: true, key, key: try derive(passphrase, salt: salt, logN: logN, r: r, p: p), nonce: nonce, aad: header, tag: nil)
        return header + cipher + Data(tag)
    }

    public static func unwrap(_ wrapped: Data, passphrase: Data) throws -> Data {
        let b = [UInt8](wrapped)
        guard isWrapped(wrapped), b[4] == 1 else { throw SparcError("the wrapped store key is damaged") }
        let salt = Array(b[5..<21]), (logN, r, p) = (b[21], b[22], b[23]), nonce = Array(b[24..<36])
        let header = Data(b[0..<36])
        guard
            let (key, _) = try? ChunkCodec.aesGCM(
                encrypt: false, Data(b[36..<68]), key: try derive(passphrase, salt: salt, logN: logN, r: r, p: p), nonce: nonce, aad: header,
                tag: Array(b[68..<84])), key.count == 32
        else { throw SparcError("wrong passphrase for the store key (or the wrapped key is damaged)", kind: .negative) }
        return key
    }
}

/// One chunk in and out of the store: named by its keyed digest, compressed with zstd when that
/// pays, sealed with AES-256-GCM (a random nonce per chunk, the name as associated data, so a
/// chunk cannot be passed off under another name). Reading checks the tag, bounds the
/// decompressed size, and checks the name against the plain text.
public enum ChunkCodec {
    /// The sealed form: "SPCK", version 1, flags (bit 0: zstd), 12-byte nonce, cipher text, 16-byte tag.
    static let magic: [UInt8] = Array("SPCK".utf8)
    static let headerBytes = 4 + 1 + 1 + 12
    static let tagBytes = 16
    /// No chunk is larger than this plain (a damaged or hostile object cannot make sparc allocate more).
    public static let maxChunkBytes = 16 << 20

    /// The chunk's name: its keyed digest, hex.
    public static func id(of plain: Data, keys: StoreKeys) -> String { HMACSHA256.hex(key: keys.idKey, message: plain) }

    /// Whether a chunk is all zero bytes (never stored: the list records it as a hole).
    public static func isZero(_ plain: Data) -> Bool {
        plain.withUnsafeBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for w in words where w != 0 { return false }
            for i in (words.count * 8)..<raw.count where raw[i] != 0 { return false }
            return true
        }
    }

    /// Seals `plain` under `id`; `compress` false stores it without trying zstd.
    public static func seal(_ plain: Data, id: String, keys: StoreKeys, compress: Bool = true, level: Int32 = 3) throws -> Data {
        var body = plain
        var flags: UInt8 = 0
        if compress, worthCompressing(plain, level: level), let packed = zstd(plain, level: level), packed.count < plain.count - plain.count / 16 {
            body = packed
            flags |= 1
        }
        return try sealed(body, flags: flags, name: Data(id.utf8), keys: keys)
    }

    /// The sealed form of `body`: the header (its flags) and `name` are authenticated with it.
    static func sealed(_ body: Data, flags: UInt8, name: Data, keys: StoreKeys) throws -> Data {
        let nonce = secureRandomBytes(12)
        var out = Data(magic + [1, flags] + nonce)
        let (cipher, tag) = try aesGCM(encrypt: true, body, key: keys.cipherKey, nonce: nonce, aad: out + name, tag: nil)
        out.append(cipher)
        out.append(contentsOf: tag)
        return out
    }

    /// The flags and body of a sealed form, when its tag holds for `name`; nil when not.
    static func unsealed(_ sealed: Data, name: Data, keys: StoreKeys) -> (flags: UInt8, body: Data)? {
        let bytes = [UInt8](sealed)
        guard bytes.count >= headerBytes + tagBytes, Array(bytes[0..<4]) == magic, bytes[4] == 1 else { return nil }
        guard
            let (body, _) = try? aesGCM(
                encrypt: false, Data(bytes[headerBytes..<(bytes.count - tagBytes)]), key: keys.cipherKey, nonce: Array(bytes[6..<18]),
                aad: Data(bytes[0..<headerBytes]) + name, tag: Array(bytes[(bytes.count - tagBytes)...]))
        else { return nil }
        return (bytes[5], body)
    }

    /// Opens a sealed chunk that claims to be `id`; throws when it is damaged, was sealed by
    /// another key or under another name, or is not what its name says.
    public static func open(_ sealed: Data, id: String, keys: StoreKeys) throws -> Data {
        guard let (flags, body) = unsealed(sealed, name: Data(id.utf8), keys: keys) else {
            throw StoreError.damagedObject(id, "its authentication tag does not match (damaged, or sealed by another key)")
        }
        let plain = flags & 1 != 0 ? try unzstd(body, id: id) : body
        guard plain.count <= maxChunkBytes, Self.id(of: plain, keys: keys) == id else {
            throw StoreError.damagedObject(id, "its content is not what its name says")
        }
        return plain
    }

    /// Whether zstd may pay on `plain`: a large chunk whose first 64 KiB do not shrink by a
    /// sixteenth (encrypted or already compressed data: a guest's random pages, a compressed
    /// file's clusters) is not compressed whole, which costs a sixteenth of the trying.
    static func worthCompressing(_ plain: Data, level: Int32) -> Bool {
        let probe = 64 << 10
        guard plain.count >= 4 * probe, let packed = zstd(plain.prefix(probe), level: level) else { return true }
        return packed.count < probe - probe / 16
    }

    static func zstd(_ plain: Data, level: Int32) -> Data? {
        let bound = ZSTD_compressBound(plain.count)
        var out = Data(count: bound)
        let n = out.withUnsafeMutableBytes { o in
            plain.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, bound, i.baseAddress, plain.count, level) }
        }
        guard ZSTD_isError(n) == 0 else { return nil }
        out.count = n
        return out
    }

    static func unzstd(_ packed: Data, id: String) throws -> Data {
        let size = packed.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, packed.count) }
        // Unknown or error sizes are huge values: the bound refuses them.
        guard size <= UInt64(maxChunkBytes) else { throw StoreError.damagedObject(id, "its compressed frame claims \(size) bytes") }
        var out = Data(count: Int(size))
        let n = out.withUnsafeMutableBytes { o in packed.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, Int(size), i.baseAddress, packed.count) } }
        guard ZSTD_isError(n) == 0, n == Int(size) else { throw StoreError.damagedObject(id, "its compressed frame does not decode") }
        return out
    }

    /// AES-256-GCM through OpenSSL's EVP interface (AES-NI where the CPU has it).
    static func aesGCM(encrypt: Bool, _ input: Data, key: [UInt8], nonce: [UInt8], aad: Data, tag: [UInt8]?) throws -> (Data, [UInt8]) {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw SparcError("OpenSSL: no cipher context") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let initialised =
            encrypt
            ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce)
        guard initialised == 1 else { throw SparcError("OpenSSL: AES-256-GCM did not start") }
        var len: Int32 = 0
        let aadBytes = [UInt8](aad)
        let update: (UnsafeMutablePointer<UInt8>?, UnsafePointer<UInt8>?, Int32) -> Int32 = { out, inp, n in
            encrypt ? EVP_EncryptUpdate(ctx, out, &len, inp, n) : EVP_DecryptUpdate(ctx, out, &len, inp, n)
        }
        guard update(nil, aadBytes, Int32(aadBytes.count)) == 1 else { throw SparcError("OpenSSL: AES-256-GCM refused the associated data") }
        var out = [UInt8](repeating: 0, count: input.count + 16)
        let inputBytes = [UInt8](input)
        guard update(&out, inputBytes, Int32(inputBytes.count)) == 1 else { throw SparcError("OpenSSL: AES-256-GCM failed") }
        var total = Int(len)
        var tagOut = [UInt8](repeating: 0, count: tagBytes)
        if encrypt {
            guard EVP_EncryptFinal_ex(ctx, &out[total], &len) == 1 else { throw SparcError("OpenSSL: AES-256-GCM failed") }
            total += Int(len)
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagBytes), &tagOut) == 1 else { throw SparcError("OpenSSL: no GCM tag") }
        } else {
            var expected = tag ?? []
            guard expected.count == tagBytes, EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagBytes), &expected) == 1,
                EVP_DecryptFinal_ex(ctx, &out[total], &len) == 1
            else { throw SparcError("authentication failed") }
            total += Int(len)
        }
        return (Data(out[0..<total]), tagOut)
    }
}

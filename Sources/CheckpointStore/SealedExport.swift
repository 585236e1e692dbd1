import COpenSSL
import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// An X25519 key pair for sealed exports (OpenSSL's X25519, PEM files as `openssl genpkey
/// -algorithm X25519` writes them).
public final class RecipientKey {
    let key: OpaquePointer

    init(_ key: OpaquePointer) { self.key = key }
    deinit { EVP_PKEY_free(key) }

    /// A new key pair.
    public static func generate() throws -> RecipientKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nil) else { throw SparcError("OpenSSL: no X25519") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else { throw SparcError("OpenSSL: X25519 key generation failed") }
        return RecipientKey(key)
    }

    /// A public key from its 32 raw bytes.
    public static func publicKey(raw: [UInt8]) throws -> RecipientKey {
        guard raw.count == 32, let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, raw, 32) else {
            throw SealedExportError.badKey("not an X25519 public key")
        }
        return RecipientKey(key)
    }

    /// A key read from a PEM file (a public key, or a private key when `private`), bounded.
    public static func read(pem path: String, private isPrivate: Bool) throws -> RecipientKey {
        let text = try OpenedFile(regular: path, followSymlinks: true, maxSize: 16 << 10).readAll()
        let key: OpaquePointer? = text.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return isPrivate ? PEM_read_bio_PrivateKey(bio, nil, nil, nil) : PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let key else {
            throw SealedExportError.badKey("\(path.terminalSafe) holds no \(isPrivate ? "private" : "public") key in PEM form")
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_X25519 else {
            EVP_PKEY_free(key)
            throw SealedExportError.badKey("\(path.terminalSafe) is not an X25519 key (make one with 'sparc keygen')")
        }
        return RecipientKey(key)
    }

    /// The 32 raw bytes of the public half.
    public func publicRaw() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == 32 else { throw SparcError("OpenSSL: no raw X25519 public key") }
        return out
    }

    /// The key as PEM: the private key (PKCS#8) or the public one.
    public func pem(private isPrivate: Bool) throws -> Data {
        guard let bio = BIO_new(BIO_s_mem()) else { throw SparcError("OpenSSL: no memory BIO") }
        defer { BIO_free(bio) }
        let ok = isPrivate ? PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) : PEM_write_bio_PUBKEY(bio, key)
        guard ok == 1 else { throw SparcError("OpenSSL: cannot write the key") }
        var pointer: UnsafeMutablePointer<CChar>?
        let n = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &pointer)
        guard n > 0, let pointer else { throw SparcError("OpenSSL: empty key") }
        return Data(bytes: pointer, count: n)
    }

    /// X25519 of this (private) key with `peer`; an all-zero result (a low-order point) is refused.
    func agree(with peer: RecipientKey) throws -> [UInt8] {
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw SparcError("OpenSSL: no key context") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peer.key) == 1, EVP_PKEY_derive(ctx, &out, &length) == 1, length == 32,
            out.contains(where: { $0 != 0 })
        else { throw SealedExportError.badKey("the key agreement failed") }
        return out
    }
}

/// Why a sealed export could not be written or opened.
public enum SealedExportError: UserFacingError, Equatable {
    case badKey(String)
    /// None of the file's recipients is the identity given.
    case notARecipient
    /// The file is damaged, cut short or not a sealed export (`why`).
    case damaged(String)

    public var description: String {
        switch self {
        case .badKey(let why): return "recipient key: \(why)"
        case .notARecipient: return "this sealed export is not addressed to the identity given (--identity)"
        case .damaged(let why): return "the sealed export is damaged or not one: \(why)"
        }
    }

    /// 1 (a "no": not addressed to this key, or damaged) except a key that cannot be read (2).
    public var exitCode: Int32 {
        if case .badKey = self { return 2 }
        return 1
    }
}

/// A bundle sealed to recipients' public keys, to hand to another host (age's design, built
/// from OpenSSL): a random file key encrypts the bundle as a stream of 1 MiB AES-256-GCM
/// segments (a counter and a last-segment flag in each nonce, so a segment cannot be moved,
/// dropped or the stream cut short unnoticed; the header's digest as associated data); for
/// each recipient the file key is wrapped under HKDF-SHA256 of an X25519 agreement with a new
/// ephemeral key. Only a holder of a recipient's private key opens it.
///
/// The plain stream is records: a file ('F', name, size), its bytes ('D'), runs of zeros
/// ('Z', never written out), and the end ('E'). A reader accepts only the bundle's own file
/// names, each once, each exactly its declared size, and writes a bundle that appears whole.
public enum SealedExport {
    static let magic = Data("sparc-sealed-export/v1\n".utf8)
    static let segmentBytes = 1 << 20
    static let tagBytes = 16
    static let maxHeaderBytes = 64 << 10

    struct Header: Codable {
        struct Recipient: Codable {
            var ephemeral: String
            var wrappedKey: String
        }
        var recipients: [Recipient]
    }

    /// Whether the file at `path` starts as a sealed export.
    public static func isSealed(_ path: String) -> Bool {
        guard let f = try? OpenedFile(regular: path, followSymlinks: true), let head = try? f.read(at: 0, count: magic.count) else { return false }
        return head == magic
    }

    static func fileKeyWrapKey(shared: [UInt8], ephemeral: [UInt8], recipient: [UInt8]) -> [UInt8] {
        // HKDF-SHA256: extract with both public keys as salt, expand one block.
        let prk = HMACSHA256.raw(key: Data(ephemeral + recipient), message: Data(shared))
        return HMACSHA256.raw(key: Data(prk), message: Data("sparc sealed export v1 file key".utf8) + Data([1]))
    }

    /// Writes the stored checkpoint `name` of `store` to `output` (a new file, appearing only
    /// when whole), sealed to `recipients`. Nothing decrypted touches the disk.
    public static func write(_ name: String, of store: CheckpointStore, to output: String, recipients: [RecipientKey]) throws {
        guard !recipients.isEmpty else { throw SealedExportError.badKey("no recipient") }
        let stored = try store.checkpoint(name)
        try write(to: output, recipients: recipients) { emit in
            try emit.file(Manifest.fileName, size: Int64(stored.bundleManifest.count))
            try emit.bytes(stored.bundleManifest)
            if let seal = stored.seal {
                try emit.file(Manifest.sealFile, size: Int64(seal.count))
                try emit.bytes(seal)
            }
            for m in stored.members {
                try emit.file(m.name, size: m.size)
                for (id, extent) in zip(m.chunks, m.extents() ?? []) {
                    if id.isEmpty {
                        try emit.zeros(Int64(extent.length))
                    } else {
                        let plain = try store.chunk(id)
                        guard plain.count == extent.length else { throw StoreError.damagedObject("chunks/" + id, "it is not \(extent.length) bytes") }
                        try emit.bytes(plain)
                    }
                }
            }
        }
    }

    /// The records a writer takes.
    final class Emitter {
        let stream: SealedStreamWriter
        init(_ stream: SealedStreamWriter) { self.stream = stream }
        func file(_ name: String, size: Int64) throws {
            var r = Data("F".utf8)
            r.append(UInt8(name.utf8.count))
            r.append(Data(name.utf8))
            r.append(bigEndian: UInt64(size))
            try stream.write(r)
        }
        func bytes(_ data: Data) throws {
            var offset = 0
            while offset < data.count {
                let n = min(data.count - offset, 1 << 20)
                var r = Data("D".utf8)
                r.append(bigEndian: UInt32(n))
                try stream.write(r)
                try stream.write(data[data.startIndex + offset..<data.startIndex + offset + n])
                offset += n
            }
        }
        func zeros(_ count: Int64) throws {
            var r = Data("Z".utf8)
            r.append(bigEndian: UInt64(count))
            try stream.write(r)
        }
    }

    /// Writes a sealed file of the records `body` emits (internal: tests craft hostile ones).
    static func write(to output: String, recipients: [RecipientKey], _ body: (Emitter) throws -> Void) throws {
        let target = FileSystem.absolute(output)
        guard !FileSystem.exists(target) else { throw BundleError.badOutput("\(output) already exists; choose a new name or remove it first") }
        let fileKey = secureRandomBytes(32)
        var header = Header(recipients: [])
        for r in recipients {
            let ephemeral = try RecipientKey.generate()
            let ephemeralRaw = try ephemeral.publicRaw()
            let wrapKey = fileKeyWrapKey(shared: try ephemeral.agree(with: r), ephemeral: ephemeralRaw, recipient: try r.publicRaw())
            // One wrap key per ephemeral key: a fixed nonce is never reused under it.
            let (wrapped, tag) = try ChunkCodec.aesGCM(encrypt: true, Data(fileKey), key: wrapKey, nonce: [UInt8](repeating: 0, count: 12), aad: Data(), tag: nil)
            header.recipients.append(.init(ephemeral: Data(ephemeralRaw).base64EncodedString(), wrappedKey: (wrapped + Data(tag)).base64EncodedString()))
        }
        let headerBytes = try JSONEncoder().encode(header)
        let (fd, temp) = try FileSystem.createUniqueFile(beside: target, tag: "sealing")
        var done = false
        defer {
            close(fd)
            if !done { unlink(temp) }
        }
        var prefix = magic
        prefix.append(bigEndian: UInt32(headerBytes.count))
        prefix.append(headerBytes)
        try FileSystem.writeAll(fd: fd, prefix, path: temp)
        let stream = SealedStreamWriter(fd: fd, path: temp, key: fileKey, aad: Data(SHA256Hasher.hex(of: prefix).utf8))
        try body(Emitter(stream))
        try stream.write(Data("E".utf8))
        try stream.finish()
        guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", temp) }
        try FileSystem.renameNoReplace(temp, to: target)
        done = true
        FileSystem.syncDirectory(containing: target)
    }

    /// Opens the sealed file at `path` with `identity` and writes the bundle it holds to
    /// `bundle` (a new directory, appearing only when whole and its digests check).
    public static func open(_ path: String, identity: RecipientKey, to bundle: String) throws {
        let file = try OpenedFile(regular: path, followSymlinks: true)
        var offset: Int64 = 0
        func read(_ n: Int) throws -> Data {
            let d = try file.read(at: offset, count: n)
            guard d.count == n else { throw SealedExportError.damaged("it ends early") }
            offset += Int64(n)
            return d
        }
        guard try read(magic.count) == magic else { throw SealedExportError.damaged("no sealed-export header") }
        let headerLength = Int(try read(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard headerLength <= maxHeaderBytes else { throw SealedExportError.damaged("a header of \(headerLength) bytes") }
        let headerBytes = try read(headerLength)
        guard let header = try? JSONDecoder().decode(Header.self, from: headerBytes), header.recipients.count <= 64 else {
            throw SealedExportError.damaged("the header does not decode")
        }
        var prefix = magic
        prefix.append(bigEndian: UInt32(headerLength))
        prefix.append(headerBytes)
        let mine = try identity.publicRaw()
        var fileKey: [UInt8]?
        for r in header.recipients {
            guard let e = Data(base64Encoded: r.ephemeral), e.count == 32, let w = Data(base64Encoded: r.wrappedKey), w.count == 32 + tagBytes,
                let ephemeral = try? RecipientKey.publicKey(raw: [UInt8](e)), let shared = try? identity.agree(with: ephemeral)
            else { continue }
            let wrapKey = fileKeyWrapKey(shared: shared, ephemeral: [UInt8](e), recipient: mine)
            if let (key, _) = try? ChunkCodec.aesGCM(
                encrypt: false, w.prefix(32), key: wrapKey, nonce: [UInt8](repeating: 0, count: 12), aad: Data(), tag: [UInt8](w.suffix(tagBytes)))
            {
                fileKey = [UInt8](key)
                break
            }
        }
        guard let fileKey else { throw SealedExportError.notARecipient }
        let stream = SealedStreamReader(file: file, offset: offset, key: fileKey, aad: Data(SHA256Hasher.hex(of: prefix).utf8))
        try BundleExtraction(stream: stream).write(to: bundle)
    }
}

/// Writes a plain stream as sealed segments: each full segment as it fills, the rest (maybe
/// empty) as the last one at `finish`.
final class SealedStreamWriter {
    let fd: Int32
    let path: String
    let key: [UInt8]
    let aad: Data
    var pending = Data()
    var counter: UInt64 = 0

    init(fd: Int32, path: String, key: [UInt8], aad: Data) {
        self.fd = fd
        self.path = path
        self.key = key
        self.aad = aad
    }

    static func nonce(_ counter: UInt64, last: Bool) -> [UInt8] {
        [0, 0, 0] + withUnsafeBytes(of: counter.bigEndian, Array.init) + [last ? 1 : 0]
    }

    func write(_ data: Data) throws {
        pending.append(data)
        while pending.count > SealedExport.segmentBytes {
            try seal(pending.prefix(SealedExport.segmentBytes), last: false)
            pending.removeFirst(SealedExport.segmentBytes)
        }
    }

    func finish() throws { try seal(pending, last: true) }

    private func seal(_ plain: Data, last: Bool) throws {
        let (cipher, tag) = try ChunkCodec.aesGCM(encrypt: true, Data(plain), key: key, nonce: Self.nonce(counter, last: last), aad: aad, tag: nil)
        counter += 1
        try FileSystem.writeAll(fd: fd, cipher + Data(tag), path: path)
    }
}

/// Reads the plain stream back, segment by segment, checking each segment's tag, its place
/// (the counter) and that the last one is marked last and nothing follows it.
final class SealedStreamReader {
    let file: OpenedFile
    var offset: Int64
    let key: [UInt8]
    let aad: Data
    var counter: UInt64 = 0
    var plain = Data()
    var ended = false

    init(file: OpenedFile, offset: Int64, key: [UInt8], aad: Data) {
        self.file = file
        self.offset = offset
        self.key = key
        self.aad = aad
    }

    private func nextSegment() throws {
        guard !ended else { throw SealedExportError.damaged("its records go on past the last segment") }
        let full = SealedExport.segmentBytes + SealedExport.tagBytes
        let sealed = try file.read(at: offset, count: full)
        guard sealed.count >= SealedExport.tagBytes else { throw SealedExportError.damaged("it is cut short") }
        offset += Int64(sealed.count)
        // A segment shorter than full is the last one; a full one is the last when nothing follows.
        let last = sealed.count < full || offset == file.size
        let body = sealed.prefix(sealed.count - SealedExport.tagBytes)
        guard
            let (open, _) = try? ChunkCodec.aesGCM(
                encrypt: false, Data(body), key: key, nonce: SealedStreamWriter.nonce(counter, last: last), aad: aad, tag: [UInt8](sealed.suffix(SealedExport.tagBytes)))
        else { throw SealedExportError.damaged("segment \(counter) does not authenticate (changed, moved, or the file was cut)") }
        counter += 1
        ended = last
        plain.append(open)
    }

    func read(_ n: Int) throws -> Data {
        while plain.count < n { try nextSegment() }
        let out = plain.prefix(n)
        plain.removeFirst(n)
        return Data(out)
    }

    /// Whether the whole stream was read (the last segment, nothing left of it).
    var isAtEnd: Bool { ended && plain.isEmpty }
}

/// Writes the records of a sealed stream as a bundle directory, trusting nothing in them.
struct BundleExtraction {
    let stream: SealedStreamReader

    static func allowed(_ name: String) -> Int64? {
        if name == Manifest.fileName { return Int64(Manifest.maxManifestBytes) }
        if name == Manifest.sealFile { return 4096 }
        return Manifest.Member(rawValue: name)?.sizeLimit
    }

    func write(to bundle: String) throws {
        let (target, staging) = try stageNewBundle(at: bundle)
        var done = false
        defer { if !done { _ = FileSystem.removeTree(staging) } }
        var seen = Set<String>()
        var current: (fd: Int32, name: String, size: Int64, written: Int64)?
        func closeCurrent() throws {
            guard let c = current else { return }
            defer { close(c.fd) }
            current = nil
            guard c.written == c.size else { throw SealedExportError.damaged("\(c.name) ends at \(c.written) of its \(c.size) bytes") }
            guard fsync(c.fd) == 0 else { throw SparcError.posix("cannot sync", staging + "/" + c.name) }
        }
        defer { if let c = current { close(c.fd) } }
        loop: while true {
            let kind = String(decoding: try stream.read(1), as: UTF8.self)
            switch kind {
            case "F":
                try closeCurrent()
                let length = Int(try stream.read(1)[0])
                let name = String(decoding: try stream.read(length), as: UTF8.self)
                let size = Int64(bitPattern: try stream.read(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
                guard let limit = Self.allowed(name), !seen.contains(name) else { throw SealedExportError.damaged("it holds a file named '\(name.terminalSafe)'") }
                guard size >= 0, size <= limit else { throw SealedExportError.damaged("\(name) claims \(size) bytes") }
                seen.insert(name)
                let path = staging + "/" + name
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw SparcError.posix("cannot create", path) }
                current = (fd, name, size, 0)
                guard ftruncate(fd, off_t(size)) == 0 else { throw SparcError.posix("cannot size", path) }
            case "D", "Z":
                guard var c = current else { throw SealedExportError.damaged("data before a file") }
                let count: Int64 =
                    kind == "D"
                    ? Int64(try stream.read(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                    : Int64(bitPattern: try stream.read(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
                guard count >= 0, count <= c.size - c.written, kind == "Z" || count <= 1 << 20 else {
                    throw SealedExportError.damaged("\(c.name) gets more bytes than it declared")
                }
                if kind == "D" {
                    let data = try stream.read(Int(count))
                    let wrote = data.withUnsafeBytes { pwrite(c.fd, $0.baseAddress, $0.count, off_t(c.written)) }
                    guard wrote == data.count else { throw SparcError.posix("cannot write", staging + "/" + c.name) }
                }
                // Zeros are the file's holes already (it was sized at its start).
                c.written += count
                current = c
            case "E":
                try closeCurrent()
                break loop
            default:
                throw SealedExportError.damaged("an unknown record")
            }
        }
        guard stream.isAtEnd else { throw SealedExportError.damaged("data follows its end") }
        guard seen.contains(Manifest.fileName) else { throw SealedExportError.damaged("it holds no manifest") }
        if let problem = try BundleReader(path: staging).verify().first {
            throw SealedExportError.damaged("the bundle in it does not check: \(problem.description)")
        }
        try FileSystem.renameNoReplace(staging, to: target)
        done = true
        FileSystem.syncDirectory(containing: target)
    }
}

extension Data {
    mutating func append<T: FixedWidthInteger>(bigEndian value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

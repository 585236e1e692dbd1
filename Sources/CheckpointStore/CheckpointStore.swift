import Foundation
import SnapshotModel
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A stored checkpoint: the bundle's own manifest (its digests cover every member, its seal
/// still applies) and, per member, the list of chunks it is made of.
public struct StoredCheckpoint: Codable, Equatable, Sendable {
    public struct Member: Codable, Equatable, Sendable {
        public var name: String
        public var size: Int64
        /// The size of every chunk but the last, for a member cut at fixed offsets (the memory
        /// image); the largest chunk's size for one cut where its content says (`lengths`).
        public var chunkBytes: Int
        /// One chunk id per chunk of the member; "" for a chunk of zeros (never stored).
        public var chunks: [String]
        /// Each chunk's length, for a member cut by content (nil: fixed `chunkBytes`).
        public var lengths: [Int]?
        /// For a disk stored as the guest sees it (`disk.img`): each chunk's hash in the
        /// bundle digest (hex; a chunk is one `ChunkedDigest` chunk), so that a later
        /// checkpoint that reuses the chunk needs not read it to digest the disk.
        public var digestHashes: [String]?
        /// Byte ranges stored as zeros although the disk held data there (swap slots left out):
        /// a later checkpoint reads them again rather than reuse those chunks.
        public var zeroed: [[Int64]]?

        /// Where each chunk lies in the member, or nil when the chunks do not tile it exactly.
        public func extents() -> [(offset: Int64, length: Int)]? {
            guard chunkBytes > 0, chunkBytes <= ChunkCodec.maxChunkBytes, size >= 0 else { return nil }
            var out: [(offset: Int64, length: Int)] = []
            out.reserveCapacity(chunks.count)
            var offset: Int64 = 0
            if let lengths {
                guard lengths.count == chunks.count else { return nil }
                for l in lengths {
                    guard l > 0, l <= chunkBytes else { return nil }
                    out.append((offset, l))
                    offset += Int64(l)
                }
                return offset == size ? out : nil
            }
            guard Int64(chunks.count) == (size + Int64(chunkBytes) - 1) / Int64(chunkBytes) else { return nil }
            for i in 0..<chunks.count {
                out.append((offset, Int(min(Int64(chunkBytes), size - offset))))
                offset += Int64(chunkBytes)
            }
            return out
        }
    }

    public var formatVersion = 1
    public var name: String
    public var vm: String
    public var createdAt: String
    /// manifest.json of the bundle, byte for byte.
    public var bundleManifest: Data
    /// host.seal of the bundle, when it had one.
    public var seal: Data?
    public var members: [Member]
    /// The running state a restore replaced, saved first (`sparc undo`); retention leaves it
    /// alone, and the VM's next undo point replaces it.
    public var undoPoint: Bool?
}

/// What storing a checkpoint cost.
public struct StoreReport: Codable, Equatable, Sendable {
    public var name: String
    /// Bytes of the bundle's members (holes included).
    public var logicalBytes: Int64 = 0
    public var chunks = 0
    /// Chunks of zeros: recorded, never stored.
    public var zeroChunks = 0
    /// Chunks the store held already (from this or any other checkpoint).
    public var sharedChunks = 0
    /// Bytes written to the store (sealed, compressed where it paid).
    public var storedBytes: Int64 = 0
}

/// One checkpoint as the store lists it.
public struct StoreEntry: Codable, Equatable, Sendable {
    public var name: String
    public var vm: String
    public var createdAt: String
    public var logicalBytes: Int64
    /// Bytes of the chunks no other checkpoint uses (what deleting it would free).
    public var uniqueBytes: Int64
    /// What was left out, from the bundle's manifest ("" when nothing).
    public var excluded: String
    /// The running state a restore replaced (`sparc undo` goes back to it).
    public var undoPoint: Bool? = nil
}

/// The content-addressed checkpoint store: every member of every checkpoint cut into chunks,
/// each stored once (under its keyed digest), zero chunks never, compressed where it pays and
/// sealed with AES-256-GCM; a sealed manifest per checkpoint lists its chunks. Chunks are
/// written before their manifest, so a crash leaves at worst unreferenced chunks (`gc` removes
/// them), never a listed checkpoint that cannot be read back.
public final class CheckpointStore {
    public let objects: ObjectStore
    let keys: StoreKeys
    /// Chunk size: 1 MiB (guest pages are 4 KiB; larger chunks dedup worse across checkpoints,
    /// smaller ones cost a manifest entry and a file each).
    public static let defaultChunkBytes = 1 << 20
    static let maxManifestBytes = 64 << 20

    public init(objects: ObjectStore, keys: StoreKeys) {
        self.objects = objects
        self.keys = keys
    }

    /// The store under `directory` (`$SPARC_BUNDLES/store`), its key in `stateDirectory`.
    public convenience init(directory: String, stateDirectory: String, passphrase: Data? = nil) throws {
        try FileSystem.makeDirectories(stateDirectory)
        self.init(
            objects: try DirectoryObjectStore(root: directory), keys: try StoreKeys.load(Self.keyPath(stateDirectory), create: true, passphrase: passphrase))
    }

    /// Where the store's key is kept.
    public static func keyPath(_ stateDirectory: String) -> String { stateDirectory + "/store.key" }

    static func checkNamed(_ name: String) throws {
        guard DirectoryObjectStore.isSafeName(name), !name.contains(".put-") else { throw StoreError.badName(name) }
    }

    /// Stores a bundle (verified first: a damaged bundle is refused, nothing stored) as `name`.
    ///
    /// `justWritten`: the bundle is one this process has just written into a private staging
    /// directory, its digests computed as it was written; it is not read a second time to
    /// verify them (the store's export and verify check them on what was stored).
    ///
    /// `prestored`: members the manifest lists that are in the store already (a disk stored
    /// as the guest sees it while the checkpoint ran, `storeGuestDisk`), not in the directory.
    public func importBundle(
        _ reader: BundleReader, as name: String, chunkBytes: Int = defaultChunkBytes, compress: Bool = true, justWritten: Bool = false,
        prestored: [StoredCheckpoint.Member] = [], undoPoint: Bool = false
    ) throws -> StoreReport {
        try Self.checkNamed(name)
        return try objects.withLock(exclusive: false) {
            try importLocked(
                reader, as: name, chunkBytes: chunkBytes, compress: compress, verify: !justWritten, prestored: prestored, undoPoint: undoPoint)
        }
    }

    func importLocked(
        _ reader: BundleReader, as name: String, chunkBytes: Int, compress: Bool, verify: Bool, prestored: [StoredCheckpoint.Member] = [],
        undoPoint: Bool = false
    ) throws -> StoreReport {
        guard !objects.exists("checkpoints/" + name) else { throw StoreError.exists(name) }
        if verify, let problem = reader.verify().first { throw BundleError.damaged(member: problem.file, why: problem.reason) }
        var report = StoreReport(name: name)
        var members: [StoredCheckpoint.Member] = []
        for entry in reader.manifest.files {
            guard let member = Manifest.Member(rawValue: entry.name) else { continue }
            if let given = prestored.first(where: { $0.name == entry.name }) {
                guard given.size == entry.size, given.extents() != nil else { throw BundleError.damaged(member: entry.name, why: "its stored size differs from the manifest's") }
                report.logicalBytes += given.size
                members.append(given)
                continue
            }
            let file = try reader.open(member)
            var chunks: [String] = []
            var lengths: [Int] = []
            // RAM does not move: the memory image is cut at fixed offsets. Everything else (a
            // qcow2 disk above all, whose clusters shift when the guest allocates one) is cut
            // where its content says, so an insertion changes the chunks around it, not all after.
            let byContent = member != .memory
            let chunker = ContentChunker(keys: keys)
            let window = byContent ? ContentChunker.maxBytes : chunkBytes
            var buffer = [UInt8](repeating: 0, count: window)
            var batch: [Data] = []
            var filled = 0
            var readOffset: Int64 = 0
            while true {
                // Fill the window (or to the end of the member).
                while filled < window && readOffset < file.size {
                    let want = Int(min(Int64(window - filled), file.size - readOffset))
                    let n = buffer.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress! + filled, want, off_t(readOffset)) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw SparcError.posix("cannot read", file.path) }
                    filled += n
                    readOffset += Int64(n)
                }
                guard filled > 0 else { break }
                let cut = byContent ? chunker.cut(buffer, count: filled) : filled
                batch.append(Data(buffer[0..<cut]))
                lengths.append(cut)
                buffer.withUnsafeMutableBytes { b in _ = memmove(b.baseAddress!, b.baseAddress! + cut, filled - cut) }
                filled -= cut
                if batch.count == Self.batchChunks {
                    chunks += try storeBatch(batch, compress: compress, report: &report)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            chunks += try storeBatch(batch, compress: compress, report: &report)
            report.logicalBytes += file.size
            members.append(
                .init(
                    name: entry.name, size: file.size, chunkBytes: byContent ? ContentChunker.maxBytes : chunkBytes, chunks: chunks,
                    lengths: byContent ? lengths : nil))
        }
        let manifestData = try OpenedFile(regular: reader.file(Manifest.fileName), maxSize: Manifest.maxManifestBytes).readAll()
        let seal = try? OpenedFile(regular: reader.file(Manifest.sealFile), maxSize: 4096).readAll()
        let stored = StoredCheckpoint(
            name: name, vm: reader.manifest.vm.name, createdAt: reader.manifest.createdAt, bundleManifest: manifestData, seal: seal, members: members,
            undoPoint: undoPoint ? true : nil)
        // Every chunk's name durable before the manifest that lists it.
        try objects.flush()
        FaultPoint.reached("store-before-manifest")
        // The manifest last: only now does the checkpoint exist.
        let sealed = try ChunkCodec.sealObject(try JSONEncoder().encode(stored), label: "checkpoints/" + name, keys: keys)
        guard try objects.put("checkpoints/" + name, sealed) else { throw StoreError.exists(name) }
        report.storedBytes += Int64(sealed.count)
        FaultPoint.reached("store-after-manifest")
        return report
    }

    /// Chunks cut in a row, then sealed and stored side by side (hashing, compressing and
    /// encrypting are most of the cost; the cutting is sequential and cheap).
    static let batchChunks = 8

    /// Stores a batch of plain chunks (each once: zero chunks never, known ones not again),
    /// concurrently; returns their ids in order ("" for zeros) and counts them in `report`.
    func storeBatch(_ batch: [Data], compress: Bool, report: inout StoreReport) throws -> [String] {
        guard !batch.isEmpty else { return [] }
        let ids = SharedBox([String](repeating: "", count: batch.count))
        let counts = SharedBox((zero: 0, shared: 0, stored: Int64(0)))
        let failure = SharedBox<Error?>(nil)
        DispatchQueue.concurrentPerform(iterations: batch.count) { i in
            let plain = batch[i]
            if ChunkCodec.isZero(plain) {
                counts.mutate { $0.zero += 1 }
                return
            }
            let id = ChunkCodec.id(of: plain, keys: keys)
            ids.mutate { $0[i] = id }
            if objects.exists("chunks/" + id) {
                counts.mutate { $0.shared += 1 }
                return
            }
            do {
                let sealed = try ChunkCodec.seal(plain, id: id, keys: keys, compress: compress)
                let new = try objects.putDeferringName("chunks/" + id, sealed)
                counts.mutate { c in if new { c.stored += Int64(sealed.count) } else { c.shared += 1 } }
                FaultPoint.reached("store-after-chunk")
            } catch {
                failure.value = error
            }
        }
        if let error = failure.value { throw error }
        report.chunks += batch.count
        report.zeroChunks += counts.value.zero
        report.sharedChunks += counts.value.shared
        report.storedBytes += counts.value.stored
        return ids.value
    }

    /// A stored checkpoint's manifest, opened and checked.
    /// Holds the store's shared lock until released: chunks stored under it stay while the
    /// checkpoint that lists them is being written (`gc` waits for the exclusive lock).
    public func lease() throws -> FileLock {
        guard let dir = objects as? DirectoryObjectStore, let lock = try FileLock(dir.root + "/lock", shared: true) else {
            throw SparcError("cannot lock the checkpoint store")
        }
        return lock
    }

    public func checkpoint(_ name: String) throws -> StoredCheckpoint {
        try Self.checkNamed(name)
        guard objects.exists("checkpoints/" + name) else { throw StoreError.noSuchCheckpoint(name) }
        let plain = try ChunkCodec.openObject(try objects.get("checkpoints/" + name, maxBytes: Self.maxManifestBytes), label: "checkpoints/" + name, keys: keys)
        let stored: StoredCheckpoint
        do { stored = try JSONDecoder().decode(StoredCheckpoint.self, from: plain) } catch {
            throw StoreError.damagedObject("checkpoints/" + name, "its manifest does not decode")
        }
        guard stored.name == name, stored.formatVersion == 1 else { throw StoreError.damagedObject("checkpoints/" + name, "it names another checkpoint") }
        for m in stored.members {
            guard m.extents() != nil, Manifest.Member(rawValue: m.name) != nil
            else { throw StoreError.damagedObject("checkpoints/" + name, "member \(m.name.terminalSafe) is not consistent") }
        }
        return stored
    }

    /// The names of the stored checkpoints.
    public func names() throws -> [String] { try objects.list("checkpoints/").map { String($0.dropFirst("checkpoints/".count)) }.filter { !$0.contains(".put-") } }

    /// Every checkpoint with its logical size and the bytes only it holds.
    public func list() throws -> [StoreEntry] {
        let all = try names().map { try checkpoint($0) }
        var users: [String: Int] = [:]
        for c in all { for id in Set(c.members.flatMap(\.chunks)) where !id.isEmpty { users[id, default: 0] += 1 } }
        return all.map { c in
            let own = Set(c.members.flatMap(\.chunks)).filter { !$0.isEmpty && users[$0] == 1 }
            let manifest = try? Manifest.decode(c.bundleManifest)
            let excluded = manifest.map { m in m.exclusion.isEmpty ? "" : "\(m.exclusion.processes.count) process(es) left out" } ?? ""
            return StoreEntry(
                name: c.name, vm: c.vm, createdAt: c.createdAt, logicalBytes: c.members.reduce(0) { $0 + $1.size },
                uniqueBytes: own.reduce(0) { $0 + (objects.size("chunks/" + $1) ?? 0) }, excluded: excluded, undoPoint: c.undoPoint)
        }
    }

    /// Writes a stored checkpoint out as a self-contained bundle at `path` (a new directory,
    /// appearing only when whole), byte for byte the bundle that was stored: its manifest's
    /// digests are checked on what was written, and its seal still applies.
    ///
    /// `except`: members not written (a restore reads them from the store as it goes).
    public func export(_ name: String, to path: String, except: Set<String> = []) throws {
        let stored = try checkpoint(name)
        let (target, staging) = try stageNewBundle(at: path)
        var done = false
        defer { if !done { _ = FileSystem.removeTree(staging) } }
        for m in stored.members where !except.contains(m.name) {
            let out = staging + "/" + m.name
            let fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw SparcError.posix("cannot create", out) }
            defer { close(fd) }
            guard ftruncate(fd, off_t(m.size)) == 0 else { throw SparcError.posix("cannot size", out) }
            for (id, extent) in zip(m.chunks, m.extents() ?? []) where !id.isEmpty {
                let plain = try chunk(id)
                let offset = extent.offset
                guard plain.count == extent.length else {
                    throw StoreError.damagedObject("chunks/" + id, "it is \(plain.count) bytes where \(m.name) needs \(extent.length)")
                }
                let wrote = plain.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
                guard wrote == plain.count else { throw SparcError.posix("cannot write", out) }
            }
            guard fsync(fd) == 0 else { throw SparcError.posix("cannot sync", out) }
        }
        try FileSystem.writeAtomically(stored.bundleManifest, to: staging + "/" + Manifest.fileName)
        if let seal = stored.seal { try FileSystem.writeAtomically(seal, to: staging + "/" + Manifest.sealFile) }
        // What was written is what was stored: every member against the bundle's own digests.
        if let problem = try BundleReader(path: staging).verify().first(where: { !(except.contains($0.file) && $0.reason == "missing") }) {
            throw StoreError.damagedObject("checkpoints/" + name, "\(problem.description) after export")
        }
        try FileSystem.renameNoReplace(staging, to: target)
        done = true
        FileSystem.syncDirectory(containing: target)
    }

    /// A chunk's plain text, opened and checked against its name.
    public func chunk(_ id: String) throws -> Data {
        try ChunkCodec.open(try objects.get("chunks/" + id, maxBytes: ChunkCodec.maxChunkBytes + 1024), id: id, keys: keys)
    }

    /// Removes a checkpoint from the list (its chunks stay until `gc`).
    public func delete(_ name: String) throws {
        _ = try checkpoint(name)
        try objects.delete("checkpoints/" + name)
    }

    /// Removes the chunks no checkpoint references; returns how many and their bytes. It holds
    /// the store's lock exclusively, so no checkpoint is being stored meanwhile (one counts on
    /// chunks that are there before its manifest lists them). A chunk younger than `grace`
    /// seconds stays all the same.
    public func gc(grace: TimeInterval = 0, now: Date = Date()) throws -> (chunks: Int, bytes: Int64) {
        try objects.withLock(exclusive: true) { try gcLocked(grace: grace, now: now) }
    }

    func gcLocked(grace: TimeInterval, now: Date) throws -> (chunks: Int, bytes: Int64) {
        // Under the exclusive lock no put runs: every temporary is an interrupted writer's.
        try objects.removeAbandonedTemporaries()
        let referenced = Set(try names().flatMap { try checkpoint($0).members.flatMap(\.chunks) })
        var removed = 0
        var bytes: Int64 = 0
        for key in try objects.list("chunks/") where !referenced.contains(String(key.dropFirst("chunks/".count))) {
            if let dir = objects as? DirectoryObjectStore, let p = try? dir.path(key) {
                var st = stat()
                if stat(p, &st) == 0, now.timeIntervalSince1970 - Double(st.st_mtim.tv_sec) < grace { continue }
            }
            bytes += objects.size(key) ?? 0
            try objects.delete(key)
            removed += 1
            FaultPoint.reached("gc-after-remove")
        }
        return (removed, bytes)
    }

    /// One problem `check` found, and the checkpoints it breaks.
    public struct Problem: Codable, Equatable, Sendable {
        public var object: String
        public var reason: String
        public var breaks: [String]
    }

    /// Checks every checkpoint's manifest and that its chunks are there; with `readData`, opens
    /// every chunk (tag, size, name). Returns the problems, each with the checkpoints it breaks.
    public func check(readData: Bool) throws -> [Problem] {
        var problems: [String: Problem] = [:]
        var verified: [String: String?] = [:]
        for name in try names() {
            let stored: StoredCheckpoint
            do { stored = try checkpoint(name) } catch {
                problems["checkpoints/" + name] = Problem(object: "checkpoints/" + name, reason: "\(error)", breaks: [name])
                continue
            }
            for id in Set(stored.members.flatMap(\.chunks)) where !id.isEmpty {
                let key = "chunks/" + id
                if verified[key] == nil {
                    if !objects.exists(key) {
                        verified[key] = .some("missing")
                    } else if readData {
                        do {
                            _ = try ChunkCodec.open(try objects.get(key, maxBytes: ChunkCodec.maxChunkBytes + 1024), id: id, keys: keys)
                            verified[key] = .some(nil)
                        } catch { verified[key] = .some("\(error)") }
                    } else {
                        verified[key] = .some(nil)
                    }
                }
                if let reason = verified[key] ?? nil {
                    problems[key, default: Problem(object: key, reason: reason, breaks: [])].breaks.append(name)
                }
            }
        }
        return problems.values.sorted { $0.object < $1.object }
    }

    /// Bytes the store holds: chunks, manifests.
    public func usage() throws -> (chunks: Int, chunkBytes: Int64, checkpoints: Int, manifestBytes: Int64) {
        let chunks = try objects.list("chunks/")
        let checkpoints = try objects.list("checkpoints/")
        return (
            chunks.count, chunks.reduce(0) { $0 + (objects.size($1) ?? 0) }, checkpoints.count, checkpoints.reduce(0) { $0 + (objects.size($1) ?? 0) }
        )
    }
}

extension ChunkCodec {
    /// Seals an object that is not named by its content (a checkpoint's manifest): the label
    /// (its key) is the associated data, so it cannot be moved under another name.
    public static func sealObject(_ plain: Data, label: String, keys: StoreKeys) throws -> Data {
        try sealed(plain, flags: 0, name: Data(("object:" + label).utf8), keys: keys)
    }

    public static func openObject(_ sealed: Data, label: String, keys: StoreKeys) throws -> Data {
        guard let (_, plain) = unsealed(sealed, name: Data(("object:" + label).utf8), keys: keys) else {
            throw StoreError.damagedObject(label, "its authentication tag does not match (damaged, moved, or sealed by another key)")
        }
        return plain
    }
}

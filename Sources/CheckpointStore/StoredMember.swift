import Foundation
import SnapshotModel
import SparcSupport

/// A member of a stored checkpoint, read as it is decrypted: each read opens the chunks it
/// covers (a few are kept: searches read overlapping blocks), zero chunks read as zeros and
/// are holes to `dataRegions`. Nothing decrypted is written anywhere.
public final class StoredMember: ByteSource, @unchecked Sendable {
    public let path: String
    public let size: Int64
    public let store: CheckpointStore
    /// Its chunk list as the store keeps it.
    public let member: StoredCheckpoint.Member
    let extents: [(offset: Int64, length: Int)]
    private let lock = NSLock()
    private var cache: [(index: Int, plain: Data)] = []
    static let cachedChunks = 8

    init(store: CheckpointStore, member: StoredCheckpoint.Member, display: String) throws {
        guard let extents = member.extents() else { throw StoreError.damagedObject(display, "its chunks do not tile it") }
        self.store = store
        self.member = member
        self.extents = extents
        path = display
        size = member.size
    }

    /// The chunk holding byte `offset` (binary search over the extents).
    func chunkIndex(_ offset: Int64) -> Int {
        var lo = 0, hi = extents.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if extents[mid].offset <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    func plain(_ index: Int) throws -> Data {
        lock.lock()
        if let hit = cache.firstIndex(where: { $0.index == index }) {
            let entry = cache.remove(at: hit)
            cache.append(entry)
            lock.unlock()
            return entry.plain
        }
        lock.unlock()
        let id = member.chunks[index]
        let plain = try store.chunk(id)
        guard plain.count == extents[index].length else { throw StoreError.damagedObject("chunks/" + id, "it is not \(extents[index].length) bytes") }
        lock.lock()
        cache.append((index, plain))
        if cache.count > Self.cachedChunks { cache.removeFirst() }
        lock.unlock()
        return plain
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        guard offset >= 0, offset < size, buffer.count > 0 else { return 0 }
        var done = 0
        var position = offset
        var index = chunkIndex(position)
        while done < buffer.count && position < size {
            let extent = extents[index]
            let within = Int(position - extent.offset)
            let n = min(buffer.count - done, extent.length - within)
            if member.chunks[index].isEmpty {
                (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: n)
            } else {
                let data = try plain(index)
                data.withUnsafeBytes { (buffer.baseAddress! + done).copyMemory(from: $0.baseAddress! + within, byteCount: n) }
            }
            done += n
            position += Int64(n)
            index += 1
        }
        return done
    }

    public func dataRegions(before: Int, after: Int) -> [Range<Int>] {
        var regions: [Range<Int>] = []
        let size = Int(self.size)
        for (i, e) in extents.enumerated() where !member.chunks[i].isEmpty {
            let lo = max(0, Int(e.offset) - before), hi = min(size, Int(e.offset) + e.length + after)
            if let last = regions.last, last.upperBound >= lo {
                regions[regions.count - 1] = last.lowerBound..<max(last.upperBound, hi)
            } else {
                regions.append(lo..<hi)
            }
        }
        return regions
    }
}

/// Bytes held in memory (a stored checkpoint's manifest), read as a source.
public final class InMemorySource: ByteSource, @unchecked Sendable {
    public let path: String
    public let data: Data
    public var size: Int64 { Int64(data.count) }

    public init(_ data: Data, path: String) {
        self.data = data
        self.path = path
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let n = min(buffer.count, data.count - Int(offset))
        data.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: n) }
        return n
    }

    public func dataRegions(before: Int, after: Int) -> [Range<Int>] { data.isEmpty ? [] : [0..<data.count] }
}

/// A stored checkpoint opened for reading in place: its bundle's manifest and seal, and each
/// member as a `StoredMember`.
public struct StoredBundle {
    public let name: String
    public let stored: StoredCheckpoint
    public let manifest: Manifest
    let store: CheckpointStore

    public init(store: CheckpointStore, name: String) throws {
        self.store = store
        self.name = name
        stored = try store.checkpoint(name)
        manifest = try Manifest.decode(stored.bundleManifest)
    }

    /// A member, or nil when the checkpoint has none of that name.
    public func open(_ member: Manifest.Member) throws -> StoredMember? {
        guard let m = stored.members.first(where: { $0.name == member.rawValue }) else { return nil }
        return try StoredMember(store: store, member: m, display: name + "/" + member.rawValue)
    }

    /// The memory image and the disk as members a restore reads straight from the store
    /// (no decrypted copy on disk); a disk kept as the guest sees it stands for its digest by
    /// its recorded chunk hashes (each chunk's content is checked as it is read).
    public func externalMembers() throws -> [String: BundleReader.ExternalMember] {
        var out: [String: BundleReader.ExternalMember] = [:]
        for member in [Manifest.Member.memory, .diskImage] {
            guard let source = try open(member) else { continue }
            let recorded = member == .diskImage && CheckpointStore.isReusableParent(source.member, size: source.size) ? source.member.recordedDigest : nil
            out[member.rawValue] = .init(source: source, recordedDigest: recorded)
        }
        return out
    }

    /// Whether this host sealed the bundle (its seal is kept with it in the store).
    public func seal(key: Data) -> BundleReader.SealState {
        guard let seal = stored.seal else { return .missing }
        return BundleSeal.verify(seal, key: key, manifestDigest: manifest.manifestSHA256) ? .sealed : .invalid
    }

    /// Checks every member against the bundle manifest's digests, decrypting as it reads (the
    /// store's tags are checked on the way); the problems found, as a bundle's verify has them.
    public func verify(progress: ((String, Int64, Int64) -> Void)? = nil, cancel: Cancellation? = nil) -> [BundleReader.Problem] {
        var problems: [BundleReader.Problem] = []
        let listed = Set(manifest.files.map(\.name))
        for m in stored.members where !listed.contains(m.name) {
            problems.append(.init(file: m.name, reason: "not listed in the manifest"))
        }
        for entry in manifest.files {
            guard let member = Manifest.Member(rawValue: entry.name) else { continue }
            do {
                guard let source = try open(member) else {
                    problems.append(.init(file: entry.name, reason: "missing"))
                    continue
                }
                guard source.size == entry.size else {
                    problems.append(.init(file: entry.name, reason: "is \(source.size) bytes, the manifest says \(entry.size)"))
                    continue
                }
                let digest = try ChunkedDigest.digest(source: source, progress: { progress?(entry.name, $0, $1) }, cancel: cancel)
                if digest != entry.sha256 { problems.append(.init(file: entry.name, reason: "content differs from its digest in the manifest")) }
            } catch {
                problems.append(.init(file: entry.name, reason: "\(error)"))
            }
        }
        return problems.sorted { $0.file < $1.file }
    }
}

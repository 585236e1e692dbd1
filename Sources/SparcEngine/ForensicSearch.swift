import CheckpointStore
import Foundation
import HexView
import SnapshotModel
import SparcSupport

/// Searches bundles (every file) and plain files, and attributes hits in a bundle's memory
/// image to the page's owner from the bundle's owner map.
public enum ForensicSearch {
    /// A file to search, opened (or a stored checkpoint's member, decrypted as it is read),
    /// and how to describe its offsets.
    public struct Target {
        public var file: ByteSource
        public var display: String
        public var layout: PhysicalLayout?
        public var owners: OwnerIndex?
        /// Why the hits of this file are not attributed although the bundle has an owner map.
        public var note: String? = nil
    }

    /// Expands a bundle into its files (memory image first), each opened by its fixed name
    /// without following symlinks and size-checked against the manifest; any other path is
    /// itself (a FIFO or device is refused, never waited on).
    ///
    /// With `store`, a name that is no file here and names a checkpoint in it is that
    /// checkpoint (`NAME/memory.img` one member of it), read in place: each member decrypted
    /// as it is read, nothing written out.
    public static func targets(_ path: String, store: CheckpointStore? = nil) throws -> [Target] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if let store, parts.count <= 2, !FileSystem.exists(path), (try? store.names().contains(parts[0])) == true {
            let all = try targets(stored: StoredBundle(store: store, name: parts[0]))
            guard parts.count == 2 else { return all }
            let one = all.filter { $0.display == path }
            guard !one.isEmpty else { throw SparcError("the stored checkpoint \(parts[0]) has no \(parts[1])") }
            return one
        }
        guard FileSystem.exists(path) else { throw SparcError("\(path): no such file or bundle") }
        guard FileSystem.isDirectory(path) else {
            // One member of a bundle (the hex view searches the file it shows): read as part of
            // its bundle, so a memory image's hits keep their addresses and owners.
            let bundle = Path.directory(of: path)
            if Manifest.Member(rawValue: Path.base(of: path)) != nil, FileSystem.exists(bundle + "/" + Manifest.fileName),
                let member = try? targets(bundle).first(where: { $0.display == bundle + "/" + Path.base(of: path) })
            {
                return [member]
            }
            return [Target(file: try OpenedFile(regular: path, followSymlinks: true), display: path, layout: nil, owners: nil)]
        }
        guard FileSystem.exists(path + "/" + Manifest.fileName) else {
            throw SparcError("\(path) is a directory but not a sparc bundle (no manifest.json)")
        }
        let reader = try BundleReader(path: path)
        let m = reader.manifest
        var owners: OwnerIndex?
        var note: String?
        do { owners = try ownerIndex(reader) } catch let tooBig as OwnerIndex.LegacyMapTooLarge {
            note = "\(tooBig): hits in \(Manifest.memoryFile) are not attributed to their owners"
        }
        func display(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }
        var targets: [Target] = []
        let members = [Manifest.Member.memory] + Manifest.Member.allCases.filter { $0 != .memory && m.file($0) != nil }
        for member in members {
            let isMemory = member == .memory
            targets.append(
                Target(
                    file: try reader.open(member), display: display(member.rawValue),
                    layout: isMemory ? PhysicalLayout(ramBytes: UInt64(m.memory.bytes)) : nil, owners: isMemory ? owners : nil,
                    note: isMemory ? note : nil))
        }
        let manifest = try OpenedFile(regular: reader.file(Manifest.fileName), maxSize: Manifest.maxManifestBytes)
        targets.append(Target(file: manifest, display: display(Manifest.fileName), layout: nil, owners: nil))
        return targets
    }

    /// A stored checkpoint's members, as a bundle's (memory image first, the manifest last).
    static func targets(stored bundle: StoredBundle) throws -> [Target] {
        let m = bundle.manifest
        let frames = PhysicalLayout(ramBytes: UInt64(m.memory.bytes)).frameLimit
        var owners: OwnerIndex?
        var note: String?
        if let map = try bundle.open(.ownerMap) {
            owners = try OwnerIndex(file: map, frames: frames)
        } else if m.file(.owners) != nil {
            note = "a format-2 owner map is not read from the store: hits in \(Manifest.memoryFile) are not attributed (export the checkpoint to attribute them)"
        }
        var targets: [Target] = []
        let members = [Manifest.Member.memory] + Manifest.Member.allCases.filter { $0 != .memory && m.file($0) != nil }
        for member in members {
            guard let source = try bundle.open(member) else { throw StoreError.damagedObject("checkpoints/" + bundle.name, "it lacks \(member.rawValue)") }
            let isMemory = member == .memory
            targets.append(
                Target(
                    file: source, display: source.path, layout: isMemory ? PhysicalLayout(ramBytes: UInt64(m.memory.bytes)) : nil,
                    owners: isMemory ? owners : nil, note: isMemory ? note : nil))
        }
        targets.append(Target(file: InMemorySource(bundle.stored.bundleManifest, path: bundle.name + "/" + Manifest.fileName), display: bundle.name + "/" + Manifest.fileName, layout: nil, owners: nil))
        return targets
    }

    /// A bundle's owner map (nil when it has none); one that breaks its limits is refused.
    public static func ownerIndex(_ reader: BundleReader) throws -> OwnerIndex? {
        let frames = PhysicalLayout(ramBytes: UInt64(reader.manifest.memory.bytes)).frameLimit
        if reader.manifest.file(.ownerMap) != nil { return try OwnerIndex(file: reader.open(.ownerMap), frames: frames) }
        if reader.manifest.file(.owners) != nil { return try OwnerIndex(legacyJSON: reader.open(.owners), frames: frames) }
        return nil
    }

    /// Searches every target of every path; `progress` gets (file, bytes done, bytes total),
    /// `note` what the operator should know about the answer (hits not attributed).
    /// With `store`, a path that names a checkpoint in it is searched in place (see `targets`).
    public static func search(
        paths: [String], store: CheckpointStore? = nil, query: SearchQuery, contextBytes: Int = 16, progress: ((String, Int64, Int64) -> Void)? = nil,
        cancel: SearchCancellation? = nil, note: ((String) -> Void)? = nil
    ) throws -> [SearchHit] {
        var hits: [SearchHit] = []
        let searcher = FileSearcher(query: query, contextBytes: contextBytes)
        for path in paths {
            for target in try targets(path, store: store) {
                if let n = target.note { note?("\(target.display): \(n)") }
                var found = try searcher.search(
                    file: target.file, displayName: target.display,
                    progress: { done, total in progress?(target.display, done, total) }, cancel: cancel)
                if let layout = target.layout {
                    for i in found.indices {
                        let address = layout.physicalAddress(fileOffset: found[i].offset)
                        found[i].address = address
                        found[i].owner = target.owners?.owner(ofFrame: address / 4096)
                    }
                }
                hits += found
            }
        }
        return hits
    }
}

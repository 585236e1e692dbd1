import Foundation
import GuestQuery
import HexView
import SnapshotModel
import SparcSupport

/// Searches bundles (every file) and plain files, and attributes hits in a bundle's memory
/// image to the page's owner from the bundle's owner map.
public enum ForensicSearch {
    /// A file to search and how to describe its offsets.
    public struct Target {
        public var path: String
        public var display: String
        public var layout: PhysicalLayout?
        public var owners: OwnerIndex?
    }

    /// Expands a bundle into its files (memory image first); any other path is itself.
    public static func targets(_ path: String) throws -> [Target] {
        guard FileSystem.exists(path) else { throw SparcError("\(path): no such file or bundle") }
        guard FileSystem.isDirectory(path) else { return [Target(path: path, display: path, layout: nil, owners: nil)] }
        guard FileSystem.exists(path + "/" + Manifest.fileName) else {
            throw SparcError("\(path) is a directory but not a sparc bundle (no manifest.json)")
        }
        let reader = try BundleReader(path: path)
        let m = reader.manifest
        var owners: OwnerIndex?
        if m.file(named: Manifest.ownersFile) != nil, let data = try? FileSystem.readFile(reader.file(Manifest.ownersFile)),
            let map = try? JSONDecoder().decode(OwnerMap.self, from: data)
        {
            owners = OwnerIndex(map)
        }
        let names = [Manifest.memoryFile] + (m.files.map(\.name) + [Manifest.fileName]).filter { $0 != Manifest.memoryFile }
        return names.map { name in
            let isMemory = name == Manifest.memoryFile
            return Target(
                path: reader.file(name), display: path.hasSuffix("/") ? path + name : path + "/" + name,
                layout: isMemory ? PhysicalLayout(ramBytes: UInt64(m.memory.bytes)) : nil, owners: isMemory ? owners : nil)
        }
    }

    /// Searches every target of every path; `progress` gets (file, bytes done, bytes total).
    public static func search(
        paths: [String], query: SearchQuery, contextBytes: Int = 16, progress: ((String, Int64, Int64) -> Void)? = nil,
        cancel: SearchCancellation? = nil
    ) throws -> [SearchHit] {
        var hits: [SearchHit] = []
        let searcher = FileSearcher(query: query, contextBytes: contextBytes)
        for path in paths {
            for target in try targets(path) {
                var found = try searcher.search(
                    file: target.path, displayName: target.display,
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

import Foundation
import SnapshotModel
import SparcSupport

/// Rewrites bundles as an attacker with a copy of one would: files replaced, manifest values
/// edited, the manifest's own digest recomputed ("resealed"). What it cannot make is the
/// host's seal, which needs the host key.
enum BundleForge {
    /// Copies a bundle to `destination` (a fresh directory) without its seal.
    static func copy(_ bundle: String, to destination: String) throws {
        try FileSystem.makeDirectory(destination)
        for name in try FileManager.default.contentsOfDirectory(atPath: bundle) where name != Manifest.sealFile {
            let r = try Subprocess.run(["cp", "--sparse=always", bundle + "/" + name, destination + "/" + name])
            guard r.status == 0 else { throw SparcError("cp failed: \(r.stderrSummary)") }
        }
    }

    /// Replaces files (listing them with their new sizes and digests), applies `edit` to the
    /// manifest's JSON and writes it back with a matching self-digest.
    static func forge(
        _ bundle: String, replacing files: [String: Data] = [:], edit: (inout [String: Any]) -> Void = { _ in }
    ) throws {
        let manifestPath = bundle + "/" + Manifest.fileName
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifestPath))) as! [String: Any]
        var entries = obj["files"] as! [[String: Any]]
        for (name, data) in files {
            unlink(bundle + "/" + name)
            try data.write(to: URL(fileURLWithPath: bundle + "/" + name))
            if let i = entries.firstIndex(where: { $0["name"] as? String == name }) {
                entries[i]["size"] = data.count
                entries[i]["sha256"] = ChunkedDigest.of(data)
            }
        }
        obj["files"] = entries
        edit(&obj)
        try write(obj, to: manifestPath)
    }

    /// Replaces member `name` with a file of `size` bytes that starts with `head` (the rest a
    /// hole), optionally listed under another member name, its size and digest in the manifest.
    static func sparseMember(_ bundle: String, _ name: String, size: Int64, head: Data, listedAs newName: String? = nil, edit: (inout [String: Any]) -> Void = { _ in }) throws {
        let target = newName ?? name
        unlink(bundle + "/" + name)
        unlink(bundle + "/" + target)
        try head.write(to: URL(fileURLWithPath: bundle + "/" + target))
        guard truncate(bundle + "/" + target, off_t(size)) == 0 else { throw SparcError.posix("truncate", target) }
        let digest = try ChunkedDigest.of(file: bundle + "/" + target)
        let manifestPath = bundle + "/" + Manifest.fileName
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: manifestPath))) as! [String: Any]
        var entries = obj["files"] as! [[String: Any]]
        if let i = entries.firstIndex(where: { $0["name"] as? String == name }) {
            entries[i]["name"] = target
            entries[i]["size"] = size
            entries[i]["sha256"] = digest
        }
        obj["files"] = entries
        edit(&obj)
        try write(obj, to: manifestPath)
    }

    /// Writes a manifest object with its self-digest filled in.
    static func write(_ obj: [String: Any], to path: String) throws {
        var o = obj
        let zeros = String(repeating: "0", count: 64)
        o["manifestSHA256"] = zeros
        var data = try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        let text = String(decoding: data, as: UTF8.self).replacingOccurrences(of: zeros, with: SHA256Hasher.hex(of: data))
        unlink(path)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Edits one key of a nested object of the manifest.
    static func set(_ obj: inout [String: Any], _ section: String, _ key: String, _ value: Any) {
        var inner = obj[section] as? [String: Any] ?? [:]
        inner[key] = value
        obj[section] = inner
    }
}

import ArgumentParser
import CheckpointStore
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every file of a bundle against the digests in its manifest.",
        discussion: "Exit status 0 when intact, 1 when not (each difference is listed), 2 when it cannot be read.")
    @Argument(help: "The bundle directory, or a stored checkpoint's name (see 'sparc bundles').") var bundle: String
    @Flag(help: "Print the verdict as JSON ({\"schemaVersion\": 1, \"verify\": {intact, problems, sealedByThisHost, …}}); the exit status is the same.")
    var json = false

    /// The verdict under `--json`.
    struct Verdict: Encodable {
        var name: String
        var stored: Bool
        var intact: Bool
        var problems: [String]
        var filesVerified: Int?
        var sealedByThisHost: Bool?
        var exclusionGaps: [String]
    }

    func run() throws {
        if let store = try StoredBundles().store(for: [bundle]) { return try verifyStored(try StoredBundle(store: store, name: bundle)) }
        let reader = try BundleReader(path: bundle)
        let show = progressPrinter()
        let problems = reader.verify(progress: show.map { p in { file, done, total in p("verifying \(file) \(done * 100 / max(total, 1))%") } })
        endProgress()
        try report(problems, name: reader.path, how: "", manifest: reader.manifest, seal: reader.seal)
    }

    /// A stored checkpoint, verified in place: every chunk's tag on the way, every member
    /// against the bundle manifest's digests, the host's seal.
    func verifyStored(_ stored: StoredBundle) throws {
        let show = progressPrinter()
        let problems = stored.verify(progress: show.map { p in { file, done, total in p("verifying \(file) \(done * 100 / max(total, 1))%") } })
        endProgress()
        try report(problems, name: stored.name, how: " (stored, decrypted as read)", manifest: stored.manifest, seal: stored.seal)
    }

    /// Prints the verdict: intact (and sealed by this host or not, and any gap of a
    /// --best-effort exclusion), or each problem and exit 1.
    func report(_ problems: [BundleReader.Problem], name: String, how: String, manifest: Manifest, seal: (Data) -> BundleReader.SealState) throws {
        let verdict = Verdict(
            name: name, stored: !how.isEmpty, intact: problems.isEmpty, problems: problems.map(\.description), filesVerified: nil, sealedByThisHost: nil,
            exclusionGaps: manifest.exclusion.gaps?.map(\.description) ?? [])
        let name = name.terminalSafe
        guard problems.isEmpty else {
            if json {
                try printJSON(Versioned(result: verdict, key: "verify"))
            } else {
                for p in problems { print("\(name)/\(p.description)") }
            }
            throw SparcError("\(name): \(problems.count) problem(s) found", kind: .negative)
        }
        let sealed = seal(try HostKey(directory: try VMManager().stateDirectory).sealKey(create: true))
        if json {
            var intact = verdict
            intact.filesVerified = manifest.files.count + 1
            intact.sealedByThisHost = sealed == .sealed
            return try printJSON(Versioned(result: intact, key: "verify"))
        }
        let origin = sealed == .sealed ? "sealed by this host" : "not sealed by this host (made elsewhere, or re-sealed after a change)"
        print("\(name)\(how): intact (\(manifest.files.count + 1) files verified), \(origin)")
        // Intact is not complete: a --best-effort exclusion says where it fell short.
        let gaps = manifest.exclusion.gaps ?? []
        if !gaps.isEmpty { print("exclusion incomplete (--best-effort), \(gaps.count) gap(s):") }
        for g in gaps { print("  \(g.terminalSafe)") }
    }
}

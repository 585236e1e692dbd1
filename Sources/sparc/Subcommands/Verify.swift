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

    func run() throws {
        if let store = try StoredBundles().store(for: [bundle]) { return try verifyStored(try StoredBundle(store: store, name: bundle)) }
        let reader = try BundleReader(path: bundle)
        let show = progressPrinter()
        let problems = reader.verify(progress: show.map { p in { file, done, total in p("verifying \(file) \(done * 100 / max(total, 1))%") } })
        endProgress()
        let path = reader.path.terminalSafe
        if problems.isEmpty {
            let manager = try VMManager()
            let seal = reader.seal(key: try HostKey(directory: manager.stateDirectory).sealKey(create: true))
            let origin = seal == .sealed ? "sealed by this host" : "not sealed by this host (made elsewhere, or re-sealed after a change)"
            print("\(path): intact (\(reader.manifest.files.count + 1) files verified), \(origin)")
            // Intact is not complete: a --best-effort exclusion says where it fell short.
            let gaps = reader.manifest.exclusion.gaps ?? []
            if !gaps.isEmpty { print("exclusion incomplete (--best-effort), \(gaps.count) gap(s):") }
            for g in gaps { print("  \(g.terminalSafe)") }
            return
        }
        for p in problems { print("\(path)/\(p.description)") }
        throw SparcError("\(path): \(problems.count) problem(s) found", kind: .negative)
    }

    /// A stored checkpoint, verified in place: every chunk's tag on the way, every member
    /// against the bundle manifest's digests, the host's seal.
    func verifyStored(_ stored: StoredBundle) throws {
        let show = progressPrinter()
        let problems = stored.verify(progress: show.map { p in { file, done, total in p("verifying \(file) \(done * 100 / max(total, 1))%") } })
        endProgress()
        let name = stored.name.terminalSafe
        if problems.isEmpty {
            let seal = stored.seal(key: try HostKey(directory: try VMManager().stateDirectory).sealKey(create: true))
            let origin = seal == .sealed ? "sealed by this host" : "not sealed by this host (made elsewhere, or re-sealed after a change)"
            print("\(name) (stored): intact (\(stored.manifest.files.count + 1) files verified, decrypted as read), \(origin)")
            let gaps = stored.manifest.exclusion.gaps ?? []
            if !gaps.isEmpty { print("exclusion incomplete (--best-effort), \(gaps.count) gap(s):") }
            for g in gaps { print("  \(g.terminalSafe)") }
            return
        }
        for p in problems { print("\(name)/\(p.description)") }
        throw SparcError("\(name): \(problems.count) problem(s) found", kind: .negative)
    }
}

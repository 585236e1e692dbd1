import ArgumentParser
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
    @Argument(help: "The bundle directory.") var bundle: String

    func run() throws {
        let reader = try BundleReader(path: bundle)
        let problems = reader.verify()
        if problems.isEmpty {
            print("\(reader.path): intact (\(reader.manifest.files.count + 1) files verified)")
            return
        }
        for p in problems { print("\(reader.path)/\(p.file): \(p.reason)") }
        throw SparcError("\(reader.path): \(problems.count) problem(s) found", kind: .negative)
    }
}

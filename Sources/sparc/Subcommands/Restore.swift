import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild a VM from a bundle and resume it.",
        discussion: "The bundle is verified first; a damaged or tampered bundle is refused and nothing is started.")
    @Argument(help: "The bundle directory.") var bundle: String
    @Option(help: "Name for the restored VM.") var name: String = "default"
    @Flag(help: "Stop a running VM of that name first.") var replace = false
    @Flag(help: "UNSAFE: keep excluded processes running although their memory was not saved.")
    var noKill = false
    @Flag(help: "Restore a bundle older than the VM's newest checkpoint (a rollback; it is logged).")
    var allowRollback = false
    @Flag(help: "Restore a bundle that is not in the VM's history (made elsewhere, or its manifest changed).")
    var foreign = false
    @Option(help: "Seconds to wait for the guest agent after resuming.") var timeout: Double = 30

    func run() throws {
        let report = try VMManager(agentTimeout: timeout).restore(
            bundle: bundle, name: name, replace: replace, killExcluded: !noKill,
            policy: RestorePolicy(allowRollback: allowRollback, allowForeign: foreign), progress: progressPrinter())
        endProgress()
        for w in report.warnings { printError("sparc: warning: \(w)") }
        if let c = report.cleanup {
            if !c.killed.isEmpty { print("killed excluded processes: \(c.killed.map(String.init).joined(separator: " "))") }
            if !c.evicted.isEmpty { print("evicted page cache of: \(c.evicted.joined(separator: ", "))") }
            if !c.removed.isEmpty { print("removed memory-only files: \(c.removed.joined(separator: ", "))") }
        }
        print(String(format: "VM '%@' restored from %@ (pid %d) in %.2f s, restore epoch %d%@", report.name, report.bundle, report.pid, report.total, report.epoch, report.rollback ? " (rollback, logged)" : ""))
    }
}

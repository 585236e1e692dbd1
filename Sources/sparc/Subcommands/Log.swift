import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a VM's tamper-evident history: boots, checkpoints, restores, rollbacks, stops.",
        discussion: """
            Every entry is chained to the one before with an HMAC keyed by a host secret \
            (created on first use, mode 0600, in the state directory: $SPARC_STATE_DIR, else \
            /var/lib/sparc for root). --verify reports an edited, removed or reordered entry and \
            exits 1.
            """)
    @Option(help: "Name of the VM.") var name: String = "default"
    @Flag(help: "Check the chain; exit 1 when it is broken.") var verify = false
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try RuntimeLayout.validate(name: name)
        let manager = try VMManager()
        manager.recoverAbandoned(name)
        let log = try manager.history(name)
        let entries = try log.entries()
        // A name sparc has never run nor restored is a mistake (a typo), not an empty history.
        if entries.isEmpty && !FileSystem.exists(manager.root + "/" + name) {
            throw SparcError("no VM '\(name)' known here: it has no history (see 'sparc vm list')")
        }
        if json {
            try printJSON(entries, key: "entries")
        } else if !verify {
            if entries.isEmpty { print("no history for '\(name)'") }
            for e in entries {
                var line = "\(e.seq)  \(e.time)  \(e.event.rawValue)"
                if let b = e.bundle { line += "  \(b.terminalSafe)" }
                if let d = e.bundleDigest { line += "  sha256:\(d.prefix(16))" }
                if let ep = e.epoch { line += "  epoch \(ep)" }
                if let d = e.detail { line += "  (\(d.terminalSafe))" }
                print(line)
            }
        }
        if verify {
            let problems = try log.verify()
            if problems.isEmpty {
                if !json { print("history of '\(name)': intact (\(entries.count) entries)") }
                return
            }
            for p in problems { print("history of '\(name)': \(p)") }
            throw SparcError("history of '\(name)' has been tampered with", kind: .negative)
        }
    }
}

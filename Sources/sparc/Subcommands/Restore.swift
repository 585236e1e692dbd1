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
        discussion: """
            Every bundle is treated as untrusted: its manifest is checked, each file is copied \
            into sparc's private directories while its digest is checked, its disk must stand \
            alone (no backing or data file), and QEMU runs sandboxed. Nothing about a running VM \
            of the same name changes until every check has passed.
            A bundle this host sealed restores under its own name: the newest checkpoint freely, \
            an older one as a rollback (--allow-rollback, logged). A bundle from elsewhere needs \
            --foreign; a different name, or a name that belongs to another VM here, makes a copy \
            with its own identity (--clone), which starts with a copy of the source's \
            rollback-sensitive data.
            Boot files come from sparc's store by digest; for a bundle from another host pass \
            them with --kernel and --initrd.
            Disk: a VM that keeps its writes in a file of its own gets that file rolled back to \
            the checkpoint (a clone gets a new file in sparc's state directory, or --disk FILE); \
            otherwise it runs on a private copy that 'sparc vm stop' discards.
            libvirt: a domain's bundle (checkpointed with --connect) restores with --connect URI \
            --name DOMAIN as that domain, running under libvirt again from the definition in the \
            bundle; the domain's persistent definition is not changed. A bundle of sparc's own VM \
            is refused there.
            Without --name the VM is the one the bundle was saved from.
            Undo: a restore over a running VM first checkpoints it into the store as its undo \
            point (VM-…-undo; the VM's previous one goes), so 'sparc undo --name VM' brings back \
            what the restore replaced; --no-undo skips it. An undo point leaves nothing out.
            Examples:
              sparc restore web-20261202.sparc --replace
              sparc restore web-20261207-101010 --replace      (a stored checkpoint, by name)
              sparc restore web-20261202.sparc --name web2 --clone
              sparc restore db.sparc --connect qemu:///system --name db
            """)
    @Argument(help: "The bundle directory, or a stored checkpoint's name (see 'sparc bundles').") var bundle: String
    @Option(help: "Name for the restored VM (default: the VM the bundle was saved from).") var name: String?
    @Flag(help: "Stop a running VM of that name first (saving it as its undo point, see --no-undo).") var replace = false
    @Flag(help: "Replace a running VM without saving it first as its undo point.") var noUndo = false
    @Flag(help: "UNSAFE: keep excluded processes running although their memory was not saved.")
    var noKill = false
    @Flag(help: "Restore a bundle older than the VM's newest checkpoint (a rollback; it is logged).")
    var allowRollback = false
    @Flag(help: "Restore a bundle this host did not seal (made elsewhere, or changed after saving).")
    var foreign = false
    @Flag(help: "Restore as a new VM with its own identity (another name, or over a different VM's name).")
    var clone = false
    @Option(help: "The kernel the bundle was saved with, when this host's store lacks it.") var kernel: String?
    @Option(help: "The initrd the bundle was saved with, when this host's store lacks it.") var initrd: String?
    @Option(help: "A new file for the restored VM's disk, which keeps its writes there.") var disk: String?
    @Option(help: "What the network card attaches to instead of the bundle's record (as vm start --net).") var net: String?
    @Option(parsing: .unconditional, help: "Seconds to wait for the guest agent after resuming.") var timeout: Double = 30
    @Flag(help: "Print the result as JSON ({\"schemaVersion\": 1, \"restore\": …}); a failure as JSON on stderr.") var json = false

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
    }

    @OptionGroup var lock: LockOptions
    @OptionGroup var connection: ConnectOption

    func run() throws {
        let manager = lock.apply(try VMManager(agentTimeout: timeout))
        let policy = RestorePolicy(allowRollback: allowRollback, allowForeign: foreign, clone: clone, kernel: kernel, initrd: initrd, disk: disk, network: net)
        manager.connect = connection.uri
        // Ctrl-C, SIGTERM and SIGHUP cancel until the guest resumes; after that the restore finishes.
        Interruption.install()
        let stored = StoredBundles()
        defer { stored.remove() }
        // A stored checkpoint: its small files written out, its memory and disk read from the store as it goes.
        let (path, external) = try stored.forRestore(bundle)
        // Without --name the bundle goes back to the VM it came from (a libvirt domain: its domain).
        let name = try self.name ?? BundleReader(path: path).manifest.vm.name
        // Over a running VM: its state is stored first, as the undo point.
        var undo: UndoRequest?
        if replace && !noUndo && (try? manager.running(name)) != nil || (replace && !noUndo && connection.uri != nil) {
            do {
                undo = UndoRequest(store: try openStore(), home: try BundleHome.ensure())
            } catch {
                throw SparcError("cannot save the running VM first as its undo point (\(error)); pass --no-undo to restore without one")
            }
        }
        let report = try manager.restore(
            bundle: path, name: name, replace: replace, killExcluded: !noKill, policy: policy, progress: progressPrinter(),
            cancel: Interruption.cancellation, external: external, storedName: external.isEmpty ? nil : bundle, undo: undo)
        endProgress()
        if json { return try printJSON(Versioned(result: report, key: "restore")) }
        for w in report.warnings { printError("sparc: warning: \(w.terminalSafe)") }
        if let c = report.cleanup {
            if let dropped = c.droppedBuffers, dropped > 0 {
                print("dropped unread data of the excluded processes' pipes, sockets and terminals (\(dropped) buffer(s)): no reader sees their zeroed pages")
            }
            if !c.killed.isEmpty { print("killed excluded processes: \(c.killed.map(String.init).joined(separator: " "))") }
            if !c.evicted.isEmpty { print("evicted page cache of: \(c.evicted.joined(separator: ", ").terminalSafe)") }
            if !c.removed.isEmpty { print("removed memory-only files: \(c.removed.joined(separator: ", ").terminalSafe)") }
            if let mapped = c.stillMapped, !mapped.isEmpty {
                let names = mapped.keys.sorted().map { Path.base(of: $0.description) }
                let shown = names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", …" : "")
                print(
                    "kept in the page cache: \(mapped.values.reduce(0, +)) page(s) of \(mapped.count) file(s) that running processes map, saved as they were (\(shown.terminalSafe))"
                )
            }
        }
        var notes: [String] = []
        if let step = report.clockStep { notes.append("guest clock set to the host's, " + VMManager.describeStep(step)) }
        if report.rollback { notes.append("rollback, logged") }
        if report.clone { notes.append("a copy with its own identity") }
        if !report.sealed { notes.append("foreign bundle") }
        print(
            String(
                format: "\(connection.uri == nil ? "VM" : "domain") '%@' restored from %@ (pid %d) in %.2f s, restore epoch %d%@", report.name,
                (external.isEmpty ? report.bundle : bundle).terminalSafe, report.pid, report.total, report.epoch,
                notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")"))
        if let disk = report.diskNote { print("  " + disk.terminalSafe) }
        if let undo = report.undoPoint {
            print("  the state it replaced is stored as \(undo.terminalSafe): 'sparc undo --name \(report.name.terminalSafe)' goes back to it")
        }
    }
}

struct Undo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Go back to the state the VM's last restore replaced.",
        discussion: """
            A restore over a running VM first stores it as its undo point (see 'sparc restore'). \
            This restores that undo point over the VM, as 'sparc restore NAME --replace' would, \
            and is no rollback. It takes no new undo point: the state it replaces (the restored \
            one) is the checkpoint the restore came from.
            Examples:
              sparc undo --name web
            """)
    @Option(help: "The VM to take back.") var name: String = "default"
    @Option(parsing: .unconditional, help: "Seconds to wait for the guest agent after resuming.") var timeout: Double = 30
    @Flag(help: "Print the result as JSON ({\"schemaVersion\": 1, \"restore\": …}); a failure as JSON on stderr.") var json = false
    @OptionGroup var lock: LockOptions
    @OptionGroup var connection: ConnectOption

    func run() throws {
        let manager = lock.apply(try VMManager(agentTimeout: timeout))
        manager.connect = connection.uri
        let vm = name
        let store = try openStore()
        // Undo points are named …-undo: only those manifests are opened.
        let points = try store.names().filter { $0.hasSuffix("-undo") }.compactMap { try? store.checkpoint($0) }.filter { $0.vm == vm && $0.undoPoint == true }
        guard let point = points.max(by: { $0.createdAt < $1.createdAt }) else {
            throw SparcError("VM '\(vm)' has no undo point: a restore over it while it runs makes one")
        }
        Interruption.install()
        let stored = StoredBundles()
        defer { stored.remove() }
        let (path, external) = try stored.forRestore(point.name)
        let report = try manager.restore(
            bundle: path, name: vm, replace: true, progress: progressPrinter(), cancel: Interruption.cancellation, external: external,
            storedName: point.name)
        endProgress()
        if json { return try printJSON(Versioned(result: report, key: "restore")) }
        for w in report.warnings { printError("sparc: warning: \(w.terminalSafe)") }
        print(String(format: "VM '%@' is back to %@ (pid %d) in %.2f s, restore epoch %d", vm, point.name.terminalSafe, report.pid, report.total, report.epoch))
        if let disk = report.diskNote { print("  " + disk.terminalSafe) }
    }
}

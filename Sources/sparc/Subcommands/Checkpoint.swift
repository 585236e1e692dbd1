import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

struct Checkpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save a running VM into the checkpoint store (or a bundle directory with -o), optionally leaving processes out.",
        discussion: """
            With nothing left out, memory is copied while the guest runs and its processes run \
            on: QEMU stops the guest only for the last round (tens of milliseconds; \
            SPARC_LIVE_COPY=0 pauses it for the whole copy instead). With an exclusion its \
            processes are frozen and it is paused while memory is saved, so what is left out stays \
            put. Either way the bundle is the guest at one instant, and the guest runs on after \
            (unless --stop). Without -o the checkpoint goes into the store under the bundle home, \
            named VM-YYYYMMDD-HHMMSS (UTC): cut into chunks each stored once across every \
            checkpoint, compressed, encrypted with the store's key ('sparc bundles' lists them; \
            restore, verify, search, scan, hexdump and strings take the name). With -o it is a \
            self-contained bundle directory, which appears under its name only when complete.

            Exclusion: --exclude-pid, --exclude-name and --exclude-tty (each repeatable) name what \
            must not reach disk. A process brings its descendants; a terminal brings every process \
            on it, and for a pty the process holding its master (the terminal program). With \
            --scope all (the default) the kernel memory carrying their data is left out too: page \
            cache of their files, pipe and socket buffers, terminal buffers, unused kernel stack; \
            --scope user leaves out only the processes' own pages. Pages another process also maps \
            (shared libraries) are kept and counted. On restore the excluded processes are killed \
            before the guest runs on.
            Examples:
              sparc checkpoint --name web
              sparc checkpoint -o before-upgrade.sparc
              sparc checkpoint -o clean.sparc --exclude-name gpg-agent --exclude-tty pts/0
              sparc checkpoint --connect qemu:///system --name web --exclude-name ssh-agent
            With --connect the VM is a libvirt domain prepared with 'sparc libvirt prepare'; it \
            keeps running under libvirt, and its definition goes into the bundle.

            Free memory: pages the guest's kernel holds free at the pause (what exited processes \
            left behind) are never saved, with or without exclusion: they read as zeros in the \
            bundle, which is smaller by as much. Unused swap slots read as zeros in the bundle's \
            copy of the disk (the VM's own disk is untouched). The guest's kernel records are read \
            from the paused RAM itself, so nothing in use is left out. --save-free-memory keeps \
            everything (to debug a guest); the summary says what was done and why.
            """)
    @OptionGroup var vm: VMOptions
    @Option(
        name: [.short, .customLong("output")],
        help: "Write a self-contained bundle directory here (it must not exist) instead of storing the checkpoint in the store under $SPARC_BUNDLES, $XDG_DATA_HOME/sparc/bundles or /var/lib/sparc/bundles for root."
    )
    var output: String?
    /// The default since the store landed; kept so that scripts that pass it go on working.
    @Flag(help: .hidden) var store = false
    @OptionGroup var passphrase: PassphraseOption
    @Flag(help: "Stop the VM after saving instead of letting it run on.") var stop = false
    @Option(name: .customLong("exclude-pid"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Leave out this process and its descendants.", valueName: "pid"))
    var excludePid: [Int32] = []
    @Option(name: .customLong("exclude-name"), help: ArgumentHelp("Leave out processes with this command name.", valueName: "name"))
    var excludeName: [String] = []
    @Option(name: .customLong("exclude-tty"), help: ArgumentHelp("Leave out a terminal (ttyS0, pts/1) and everything on it.", valueName: "tty"))
    var excludeTTY: [String] = []
    @Option(help: "user: only the processes' own pages; all: also the kernel buffers carrying their data (default: the config's scope, else all).")
    var scope: ExclusionScope?
    @Flag(help: "Leave out only what this command names: not the config's exclusion rules.") var noConfigRules = false
    @Flag(help: "Also leave out pages of files on memory-only file systems (tmpfs); they are removed at restore.")
    var excludeMemoryFiles = false
    @Flag(
        help: ArgumentHelp(
            "Save even where a step of the exclusion cannot complete (a page map or frame table unreadable), recording each gap in the bundle.",
            discussion: "Without it such a step makes the checkpoint refuse: an exclusion never silently saves what it was asked to leave out."))
    var bestEffort = false
    @Flag(
        help: ArgumentHelp(
            "Refuse when the processes' data may still be where sparc cannot leave it out.",
            discussion: "A server they talked to, a queue whose writer cannot be known, a kernel key: without --strict each is named in the report as a POSSIBLE COPY with what to add."))
    var strict = false
    @Flag(help: "Keep the memory and swap slots the guest holds free (left out by default: they hold what exited processes left).")
    var saveFreeMemory = false
    @Flag(help: "Print the report as JSON.") var json = false
    @Flag(help: "Scan the new bundle's memory for credentials (what exclusion left in it) and print the findings.") var scan = false
    @Flag(
        help: ArgumentHelp(
            "With any finding, remove the new bundle and exit 1, naming each owning process (implies --scan).",
            discussion: "Accepted findings (--allow, --allow-file, or the VM's own list in STATE/scan-allow/NAME) do not count."))
    var refuseSecrets = false
    @OptionGroup(title: "Credential scan (with --scan or --refuse-secrets)") var ruleOptions: ScanRuleOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var connection: ConnectOption

    /// The checkpoint report and, with --scan, the gate's verdict.
    struct Output: Encodable {
        var checkpoint: CheckpointReport
        var scan: CredentialScan.Gate?
    }

    func run() throws {
        if let bad = excludePid.first(where: { $0 <= 0 }) { throw SparcError("--exclude-pid \(bad): a process id is a positive number") }
        let config = try SparcConfig.shared.get()
        var request = ExclusionRequest(
            pids: excludePid, names: excludeName, ttys: excludeTTY, scope: scope ?? config.scope ?? .all, excludeMemoryFiles: excludeMemoryFiles,
            bestEffort: bestEffort)
        // The config's rules: names go to the agent as --exclude-name; patterns and users are
        // matched against the process list now.
        if !noConfigRules, !config.rules(for: vm.name).isEmpty {
            let agent = try connection.agent(vm)
            let processes = try agent.processes()
            agent.close()
            let (names, pids) = config.exclusion(for: vm.name, processes: processes)
            request.names += names.filter { !request.names.contains($0) }
            request.pids += pids.filter { !request.pids.contains($0) }
            let named = pids.compactMap { pid in processes.first { $0.pid == pid }.map { "\($0.pid) \($0.command)" } }
            printError(
                "sparc: the config (\(config.files.joined(separator: ", ").terminalSafe)) leaves out: "
                    + (names.map { "name \($0.terminalSafe)" } + named.map { "pid \($0.terminalSafe)" }).joined(separator: ", "))
        }
        if strict {
            guard !request.isEmpty else { throw SparcError("--strict applies to an exclusion: add --exclude-pid, --exclude-name or --exclude-tty") }
            request.strict = true
        }
        // Rules and allowances are read before the guest pauses: a bad rule file stops nothing.
        let gating = scan || refuseSecrets
        if !gating && (!ruleOptions.allow.isEmpty || ruleOptions.allowFile != nil || !ruleOptions.ruleFiles.isEmpty) {
            throw SparcError("--rules, --allow and --allow-file apply to the credential scan: add --scan or --refuse-secrets")
        }
        let rules = gating ? try ruleOptions.rules() : nil
        let allow = try rules.map { try ruleOptions.allowances(vm: vm.name, rules: $0) } ?? []
        let manager = lock.apply(try vm.manager())
        manager.connect = connection.uri
        // Ctrl-C, SIGTERM and SIGHUP cancel as Esc does in the TUI: the guest runs and is thawed, nothing partial is left.
        Interruption.install()
        if store && output != nil { throw SparcError("--store and -o exclude each other: -o writes a bundle directory, the default the store") }
        // Opened before the guest is touched: a store that cannot be opened (a wrapped key and
        // no passphrase) refuses now, not after the checkpoint was taken.
        let storeHandle = output == nil ? try openStore(passphraseFile: passphrase.passphraseFile) : nil
        // A checkpoint into the store is a bundle staged in a private directory beside it, stored, then removed.
        let staging = output == nil ? try StoreStaging(home: try BundleHome.ensure(), memoryBytes: manager.memoryStagingBytes(of: vm.name)) : nil
        if let staging, staging.clearTextOnDisk {
            printError("sparc: note: the memory image is staged in the clear in \(staging.directory.terminalSafe) until it is stored (the RAM directory \(GuestRAM.baseDirectory) has no room for it, or the VM's RAM size is not known here)")
        }
        defer { staging?.remove() }
        let destination = storeHandle.map { staging!.destination(vm: vm.name, store: $0) }
        let target = output ?? destination!.bundlePath
        var report = try manager.checkpoint(
            name: vm.name, output: target, stopAfter: stop, exclusion: request.isEmpty ? nil : request,
            saveFreeMemory: saveFreeMemory, cancel: Interruption.cancellation, progress: progressPrinter(), store: destination)
        endProgress()
        var gate: CredentialScan.Gate?
        if let rules {
            let show = progressPrinter()
            gate = try manager.gateCheckpoint(
                report, vm: vm.name, rules: rules, allow: allow, refuse: refuseSecrets, reveal: ruleOptions.show, maxFindingsPerRule: ruleOptions.maxPerRule,
                progress: show.map { p in { _, done, total in p("scanning the memory image \(done * 100 / max(total, 1))%") } },
                cancel: Interruption.cancellation)
            endProgress()
        }
        if let staging, let destination, gate?.refused != true, FileSystem.exists(report.bundle) {
            let stored = try staging.store(destination)
            report.bundle = stored.name
            if !json {
                print("stored as \(stored.name.terminalSafe): \(formatBytes(stored.storedBytes)) written (\(stored.sharedChunks) of \(stored.chunks) chunks already in the store, \(stored.zeroChunks) of zeros)")
            }
        }
        if json {
            try printStampedJSON(Output(checkpoint: report, scan: gate))
        } else {
            if gate?.refused != true { report.summaryLines.forEach { print($0) } }
            if let gate { ScanOutput.print(gate.scan, scanned: [report.bundle + " (memory)"]) }
        }
        if let message = gate?.message {
            printError("sparc: " + message.terminalSafe)
            throw ExitCode(1)
        }
    }
}

extension ExclusionScope: ExpressibleByArgument {}

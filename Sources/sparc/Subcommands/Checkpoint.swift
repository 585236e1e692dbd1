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
        abstract: "Save a running VM into a new bundle directory, optionally leaving processes out.",
        discussion: """
            The guest is frozen and paused while device state and RAM are saved, then runs on \
            (unless --stop). The bundle appears under its name only when complete.

            Exclusion: --exclude-pid, --exclude-name and --exclude-tty (each repeatable) name what \
            must not reach disk. A process brings its descendants; a terminal brings every process \
            on it, and for a pty the process holding its master (the terminal program). With \
            --scope all (the default) the kernel memory carrying their data is left out too: page \
            cache of their files, pipe and socket buffers, terminal buffers, unused kernel stack; \
            --scope user leaves out only the processes' own pages. Pages another process also maps \
            (shared libraries) are kept and counted. On restore the excluded processes are killed \
            before the guest runs on.
            Examples:
              sparc checkpoint -o before-upgrade.sparc
              sparc checkpoint -o clean.sparc --exclude-name gpg-agent --exclude-tty pts/0
            """)
    @OptionGroup var vm: VMOptions
    @Option(
        name: [.short, .customLong("output")],
        help: "Bundle directory to create (must not exist); default NAME-TIMESTAMP.sparc in $SPARC_BUNDLES, $XDG_DATA_HOME/sparc/bundles or /var/lib/sparc/bundles for root."
    )
    var output: String?
    @Flag(help: "Stop the VM after saving instead of letting it run on.") var stop = false
    @Option(name: .customLong("exclude-pid"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Leave out this process and its descendants.", valueName: "pid"))
    var excludePid: [Int32] = []
    @Option(name: .customLong("exclude-name"), help: ArgumentHelp("Leave out processes with this command name.", valueName: "name"))
    var excludeName: [String] = []
    @Option(name: .customLong("exclude-tty"), help: ArgumentHelp("Leave out a terminal (ttyS0, pts/1) and everything on it.", valueName: "tty"))
    var excludeTTY: [String] = []
    @Option(help: "user: only the processes' own pages; all: also the kernel buffers carrying their data.")
    var scope: ExclusionScope = .all
    @Flag(help: "Also leave out pages of files on memory-only file systems (tmpfs); they are removed at restore.")
    var excludeMemoryFiles = false
    @Flag(
        help: ArgumentHelp(
            "Save even where a step of the exclusion cannot complete (a page map or frame table unreadable), recording each gap in the bundle.",
            discussion: "Without it such a step makes the checkpoint refuse: an exclusion never silently saves what it was asked to leave out."))
    var bestEffort = false
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var lock: LockOptions

    func run() throws {
        let request = ExclusionRequest(
            pids: excludePid, names: excludeName, ttys: excludeTTY, scope: scope, excludeMemoryFiles: excludeMemoryFiles, bestEffort: bestEffort)
        let report = try lock.apply(vm.manager()).checkpoint(
            name: vm.name, output: try output ?? BundleHome.newBundle(vm: vm.name), stopAfter: stop, exclusion: request.isEmpty ? nil : request, progress: progressPrinter())
        endProgress()
        if json { return try printJSON(report) }
        report.summaryLines.forEach { print($0) }
    }
}

extension ExclusionScope: ExpressibleByArgument {}

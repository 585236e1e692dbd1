import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

/// sparc: a security- and privacy-aware checkpointer for QEMU virtual machines.
struct Sparc: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparc",
        abstract: "Checkpoint QEMU virtual machines, leaving chosen processes' memory out.",
        discussion: """
            Start with 'sparc vm start', look inside with 'sparc ps' and 'sparc ttys', save with \
            'sparc checkpoint -o NAME.sparc', bring back with 'sparc restore NAME.sparc'.
            Exit status: 0 success, 1 a negative answer (verify failed), 2 usage or operational error; \
            'sparc exec' passes on the guest command's status.
            Runtime files live in $SPARC_RUNTIME_DIR (default $XDG_RUNTIME_DIR/sparc, /run/sparc for root); \
            guest RAM lives in /dev/shm.
            """,
        version: "sparc " + SparcVersion.describe(),
        subcommands: [
            VM.self, Exec.self, Console.self, Terminal.self, PS.self, TTYs.self, Checkpoint.self, Restore.self, Undo.self, Verify.self, Import.self, Export.self, Keygen.self, Bundles.self, Store.self, Prune.self, Search.self, Scan.self, Strings.self, Hexdump.self, Log.self, RSDM.self, Libvirt.self, Schedule.self, Config.self, TUI.self, Guard.self,
        ],
        defaultSubcommand: TUI.self
    )
}

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
        version: "0.1.0",
        subcommands: [
            VM.self, Exec.self, Console.self, Terminal.self, PS.self, TTYs.self, Checkpoint.self, Restore.self, Verify.self, Search.self, Strings.self, Hexdump.self, Log.self, RSDM.self, RSDMServe.self, TUI.self,
        ],
        defaultSubcommand: TUI.self
    )
}

/// Options every command that talks to one VM shares.
struct VMOptions: ParsableArguments {
    @Option(name: .long, help: "The VM to act on.")
    var name: String = "default"

    @Option(name: .long, help: "Seconds to wait for the guest agent to answer.")
    var timeout: Double = 10

    func manager() -> VMManager { VMManager(agentTimeout: timeout) }
}

/// Prints progress on one line of stderr when stderr is a terminal; silent otherwise.
func progressPrinter() -> ((String) -> Void)? {
    guard isatty(2) == 1 else { return nil }
    return { message in
        let line = "\r\u{1B}[K" + message
        FileHandle.standardError.write(Data(line.utf8))
    }
}

func endProgress() {
    if isatty(2) == 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly, as with other tools.
func writeOut(_ data: Data) {
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(1, raw.baseAddress! + off, raw.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                exit(errno == EPIPE ? 0 : 2)
            }
            off += n
        }
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 {
        v /= 1024
        i += 1
    }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

// MARK: - vm

struct VM: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start, stop and list virtual machines.",
        subcommands: [Start.self, Stop.self, Status.self, List.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot a VM and return once its guest agent answers.",
            discussion: """
                Without --kernel, boots the default guest built by 'make guest' (Debian kernel, busybox, \
                sparc-agent, an ext4 data disk at /data). The disk image is used read-only as a base: the \
                guest writes to an overlay in the runtime directory, which 'sparc vm stop' discards; \
                checkpoints keep the disk state.
                """)
        @Option(help: "Name of the VM.") var name: String = "default"
        @Option(help: "Guest RAM in MiB.") var memory: Int = 256
        @Option(help: "Virtual CPUs.") var cpus: Int = 1
        @Option(help: "Disk image (qcow2 or raw) used as the base of the data disk.") var disk: String?
        @Option(help: "Kernel to boot instead of the default guest's.") var kernel: String?
        @Option(help: "Initramfs for --kernel.") var initrd: String?
        @Option(help: "Kernel command line for --kernel.") var append: String?
        @Option(help: "auto, tcg or kvm. auto uses KVM only where stock guest kernels run on it.")
        var accel: String = "auto"
        @Option(help: "Seconds to wait for the guest agent after boot.") var agentTimeout: Double = 120

        func run() throws {
            var o = StartOptions()
            o.name = name
            o.memoryMiB = memory
            o.cpus = cpus
            o.disk = disk
            o.kernel = kernel
            o.initrd = initrd
            o.append = append
            o.agentTimeout = agentTimeout
            switch accel {
            case "auto": o.accel = nil
            case "tcg": o.accel = .tcg
            case "kvm": o.accel = .kvm
            default: throw SparcError("--accel must be auto, tcg or kvm (got '\(accel)')")
            }
            let begin = Date()
            let state = try VMManager().start(o, progress: progressPrinter())
            endProgress()
            print(
                "VM '\(state.name)' running: pid \(state.pid), \(state.spec.memoryMiB) MiB, \(state.spec.accel.rawValue), agent ready in \(String(format: "%.1f", Date().timeIntervalSince(begin))) s"
            )
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a VM (the guest's file systems are synced first) and remove its runtime files.")
        @Option(help: "Name of the VM.") var name: String = "default"
        func run() throws {
            try VMManager().stop(name: name, progress: progressPrinter())
            endProgress()
            print("VM '\(name)' stopped")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether a VM runs and whether its agent answers.")
        @Option(help: "Name of the VM.") var name: String = "default"
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let s = try VMManager().status(name: name)
            if json { return try printJSON(s) }
            print("name:     \(s.name)")
            print("state:    \(s.state)")
            if let pid = s.pid { print("pid:      \(pid)") }
            if let m = s.memoryMiB { print("memory:   \(m) MiB") }
            if let a = s.accel { print("accel:    \(a)") }
            if let q = s.qemuVersion { print("qemu:     \(q)") }
            if let t = s.startedAt { print("started:  \(t)") }
            if let r = s.restoredFrom { print("restored: \(r)") }
            if let a = s.agent { print("agent:    \(a)") }
            print("runtime:  \(s.runtimeDirectory)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List VMs known to sparc.")
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            let all = VMManager().list()
            if json { return try printJSON(all) }
            if all.isEmpty {
                print("no VMs (start one with 'sparc vm start')")
                return
            }
            print(pad("NAME", 16) + pad("STATE", 14) + pad("PID", 9) + pad("MEMORY", 10) + "RESTORED FROM")
            for s in all {
                print(
                    pad(s.name, 16) + pad(s.state, 14) + pad(s.pid.map(String.init) ?? "-", 9)
                        + pad(s.memoryMiB.map { "\($0) MiB" } ?? "-", 10) + (s.restoredFrom ?? "-"))
            }
        }
    }
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    if s.count >= width { return s + " " }
    let fill = String(repeating: " ", count: width - s.count)
    return right ? fill + s + " " : s + fill
}

// MARK: - guest commands

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in the guest.",
        discussion: """
            Without --detach, prints the command's output and exits with its status. With --detach, \
            starts it in a new session with no terminal and prints its pid.
            Example: sparc exec -- sh -c 'echo hello > /data/hello'
            """)
    @OptionGroup var vm: VMOptions
    @Flag(help: "Start the command in the background and print its pid.") var detach = false
    @Option(help: "Kill the command after this many seconds (0 = no limit).") var limit: Double = 0
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).")
    var command: [String] = []

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give the command after --, e.g. sparc exec -- uname -a") }
        let agent = try vm.manager().agentClient(vm.name)
        defer { agent.close() }
        var stdin = Data()
        if !detach && isatty(0) == 0 { stdin = FileHandle.standardInput.readDataToEndOfFile() }
        let request = ExecRequest(argv: argv, detach: detach, stdin: stdin.isEmpty ? nil : stdin, timeoutMs: Int(limit * 1000))
        // The agent timeout bounds the answer; a running command may take as long as --limit allows.
        let wait = limit > 0 ? limit + vm.timeout : (detach ? vm.timeout : 24 * 3600)
        let result = try agent.exec(request, timeout: wait)
        if detach {
            print(result.pid)
            return
        }
        writeOut(result.stdout)
        FileHandle.standardError.write(result.stderr)
        if result.timedOut { printError("sparc: command killed after \(limit) s") }
        let status = result.status ?? 0
        if status != 0 { throw ExitCode(status) }
    }
}

struct Console: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Attach to the guest's serial console (Ctrl-] detaches), or type text into it.",
        discussion: "Example: sparc console --send 'export SECRET=hunter2\\n'  (\\n, \\r, \\t, \\e, \\xHH are expanded)")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Option(help: "Type TEXT into the console and exit instead of attaching.") var send: String?

    func run() throws {
        let console = try VMManager().console(name)
        if let send {
            try console.send(SerialConsole.unescape(send))
            return
        }
        if isatty(0) == 1 { printError("connected to the serial console of '\(name)'; Ctrl-] detaches") }
        try console.attach()
        if isatty(0) == 1 { printError("\r\ndetached") }
    }
}

struct Terminal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open an interactive shell on a new pty in the guest (Ctrl-] detaches; the shell runs on).",
        discussion: """
            A relay process in the guest holds the pty master, as a terminal program would, and \
            talks to this command over the VM's second serial port: typed text never passes the \
            agent. Exclude the whole session with --exclude-tty pts/N (see 'sparc ttys').
            Example: sparc terminal --send 'export TOKEN=abc\\n'
            """)
    @OptionGroup var vm: VMOptions
    @Option(help: "Type TEXT into the terminal and exit instead of attaching.") var send: String?
    @Flag(help: "Print the relay's pid, the shell's pid and the pty as JSON, and exit.") var json = false

    func run() throws {
        let (info, console) = try vm.manager().terminal(vm.name)
        if json { return try printJSON(info) }
        if let send {
            if info.started { usleep(300_000) }  // let the new shell print its prompt first
            try console.send(SerialConsole.unescape(send))
            return
        }
        if isatty(0) == 1 { printError("shell on \(info.tty) in '\(vm.name)' (relay pid \(info.relayPid)); Ctrl-] detaches") }
        if !info.started { try console.send(Data("\n".utf8)) }
        try console.attach()
        if isatty(0) == 1 { printError("\r\ndetached; the shell on \(info.tty) runs on") }
    }
}

struct PS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the guest's processes.")
    @OptionGroup var vm: VMOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("kernel"), help: "Include kernel threads.") var includeKernel = false

    func run() throws {
        let agent = try vm.manager().agentClient(vm.name)
        defer { agent.close() }
        let list = try agent.processes().filter { includeKernel || !$0.kernelThread }
        if json { return try printJSON(list) }
        print(pad("PID", 7, right: true) + pad("PPID", 7, right: true) + pad("USER", 9) + "S " + pad("TTY", 8) + pad("RSS", 9, right: true) + "COMMAND")
        for p in list {
            print(
                pad(String(p.pid), 7, right: true) + pad(String(p.ppid), 7, right: true) + pad(p.user, 9) + p.state + " "
                    + pad(p.tty ?? "?", 8) + pad("\(p.rssKiB)K", 9, right: true) + p.command)
        }
    }
}

struct TTYs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ttys", abstract: "List the guest's terminals and the processes on each.")
    @OptionGroup var vm: VMOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let agent = try vm.manager().agentClient(vm.name)
        defer { agent.close() }
        let ttys = try agent.ttys()
        if json { return try printJSON(ttys) }
        print(pad("TTY", 10) + pad("KIND", 17) + "PIDS")
        for t in ttys {
            print(pad(t.name, 10) + pad(t.kind.rawValue, 17) + (t.pids.isEmpty ? "-" : t.pids.map(String.init).joined(separator: ",")))
        }
    }
}

// MARK: - bundles

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
    @Option(name: [.short, .customLong("output")], help: "Bundle directory to create (must not exist).")
    var output: String
    @Flag(help: "Stop the VM after saving instead of letting it run on.") var stop = false
    @Option(name: .customLong("exclude-pid"), help: ArgumentHelp("Leave out this process and its descendants.", valueName: "pid"))
    var excludePid: [Int32] = []
    @Option(name: .customLong("exclude-name"), help: ArgumentHelp("Leave out processes with this command name.", valueName: "name"))
    var excludeName: [String] = []
    @Option(name: .customLong("exclude-tty"), help: ArgumentHelp("Leave out a terminal (ttyS0, pts/1) and everything on it.", valueName: "tty"))
    var excludeTTY: [String] = []
    @Option(help: "user: only the processes' own pages; all: also the kernel buffers carrying their data.")
    var scope: String = "all"
    @Flag(help: "Also leave out pages of files on memory-only file systems (tmpfs); they are removed at restore.")
    var excludeMemoryFiles = false
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        guard let scope = ExclusionScope(rawValue: scope) else { throw SparcError("--scope must be user or all (got '\(self.scope)')") }
        let request = ExclusionRequest(pids: excludePid, names: excludeName, ttys: excludeTTY, scope: scope, excludeMemoryFiles: excludeMemoryFiles)
        let report = try vm.manager().checkpoint(
            name: vm.name, output: output, stopAfter: stop, exclusion: request.isEmpty ? nil : request, progress: progressPrinter())
        endProgress()
        if json { return try printJSON(report) }
        print("checkpoint saved: \(report.bundle)")
        print(
            "  memory \(formatBytes(report.memoryBytes)) (\(formatBytes(report.memoryDataBytes)) data), devices \(formatBytes(report.devicesBytes))"
                + (report.diskBytes.map { ", disk \(formatBytes($0))" } ?? ""))
        let ex = report.exclusion
        if !ex.isEmpty {
            print("  excluded (scope \(ex.scope ?? "all")): \(formatBytes(ex.bytes)) in \(ex.ranges) ranges, collected in \(String(format: "%.0f", ex.collectMilliseconds)) ms")
            for p in ex.processes { print("    pid \(p.pid) \(p.command)  [\(p.reason)]") }
            let kinds = ExcludedKind.allCases.compactMap { k -> String? in
                guard let b = ex.bytesByKind[k.rawValue], b > 0 else { return nil }
                return "\(k.rawValue) \(formatBytes(Int64(b)))"
            }
            if !kinds.isEmpty { print("    " + kinds.joined(separator: ", ")) }
            print("    kept-shared pages: \(ex.keptSharedPages)")
            for w in ex.warnings { print("    warning: \(w)") }
        }
        print(String(format: "  guest paused %.2f s, total %.2f s%@", report.downtime, report.total, report.stopped ? ", VM stopped" : ""))
    }
}

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

// MARK: - forensics

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search bundles (every file) or any files for a pattern, and say whose memory each hit is in.",
        discussion: """
            PATH is a bundle directory or any file (raw memory dump, VM save file, disk image). By \
            default a text is searched as ASCII and UTF-16LE. Hits in a bundle's memory image show \
            the guest-physical address and the owner recorded at checkpoint time (pid, command and \
            mapping, or the kind of kernel memory, or free).
            Exit status: 0 found, 1 not found, 2 error (as grep).
            Examples:
              sparc search hunter2 monday.sparc
              sparc search --hex 'de ad be ef' /var/lib/vm/dump.raw
              sparc search -i --encoding all --json TOKEN a.sparc b.sparc
            """)
    @Argument(help: "The text (or hex bytes with --hex, or a regular expression with --regex).") var pattern: String
    @Argument(help: "Bundles or files to search.") var paths: [String]
    @Flag(name: [.short, .customLong("ignore-case")], help: "Match ASCII letters in either case.") var ignoreCase = false
    @Option(help: "ascii, utf8, utf16le, utf16be or all, comma-separated (default ascii,utf16le).")
    var encoding: String = "ascii,utf16le"
    @Flag(help: "PATTERN is hex bytes, e.g. 'de ad be ef'.") var hex = false
    @Flag(help: "PATTERN is a regular expression over bytes (bytes above 0x7f read as '.').") var regex = false
    @Flag(help: "Print hits as JSON.") var json = false
    @Flag(help: "Print only the number of hits per file.") var count = false
    @Option(help: "Bytes of context around each hit.") var context: Int = 16

    func run() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one bundle or file to search") }
        if hex && regex { throw SparcError("--hex and --regex exclude each other") }
        let query: SearchQuery
        if hex {
            query = try .hex(pattern)
        } else if regex {
            query = try .regex(pattern, ignoreCase: ignoreCase)
        } else {
            query = try .text(pattern, encodings: try SearchEncoding.parse(encoding), ignoreCase: ignoreCase)
        }
        let show = progressPrinter()
        let hits = try ForensicSearch.search(
            paths: paths, query: query, contextBytes: max(0, context),
            progress: show.map { p in { file, done, total in p("searching \(Path.base(of: file)) \(done * 100 / max(total, 1))%") } })
        endProgress()
        if json {
            try printJSON(hits)
        } else if count {
            var perFile: [String: Int] = [:]
            for h in hits { perFile[h.file, default: 0] += 1 }
            for path in paths {
                for t in try ForensicSearch.targets(path) { print("\(t.display): \(perFile[t.display] ?? 0)") }
            }
        } else {
            for h in hits {
                var line = "\(h.file):0x\(String(h.offset, radix: 16))"
                if let a = h.address { line += " gpa 0x\(String(a, radix: 16))" }
                line += " \(h.encoding)"
                if let o = h.owner { line += " [\(o.description)]" }
                print(line + "  \(h.context)")
            }
            if hits.isEmpty {
                for path in paths {
                    print(FileSystem.isDirectory(path) ? "not found in any file of the bundle \(path)" : "not found in \(path)")
                }
            } else {
                print("\(hits.count) hit(s)")
            }
        }
        if hits.isEmpty { throw ExitCode(1) }
    }
}

struct Strings: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print printable strings of a file or bundle with their offsets (like strings -a -td).")
    @Argument(help: "A bundle or any file.") var path: String
    @Option(help: "Minimum length.") var min: Int = 4
    @Option(help: "ascii, utf16le, utf16be or all, comma-separated.") var encoding: String = "ascii"

    func run() throws {
        let encodings = try SearchEncoding.parse(encoding).filter { $0 != .utf8 }
        guard min >= 1 else { throw SparcError("--min must be at least 1") }
        var out = ""
        for target in try ForensicSearch.targets(path) {
            try StringsExtractor.scan(file: target.path, minimum: min, encodings: encodings.isEmpty ? [.ascii] : encodings) { offset, text, enc in
                out += "\(target.display) \(offset) \(enc == .ascii ? "" : enc.rawValue + " ")\(text)\n"
                if out.utf8.count > 1 << 16 {
                    writeOut(Data(out.utf8))
                    out = ""
                }
            }
        }
        writeOut(Data(out.utf8))
    }
}

struct Hexdump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show bytes of a file or a bundle's memory image as hex rows, coloured by byte category.")
    @Argument(help: "A file, or a bundle (its memory image).") var path: String
    @Option(help: "File offset to start at (decimal or 0x hex).") var offset: String?
    @Option(help: "Guest-physical address to start at (bundles).") var address: String?
    @Option(help: "Bytes to show.") var length: String = "256"
    @Flag(help: "Print repeated rows instead of '*'.") var noSqueeze = false
    @Option(help: "auto, always or never (NO_COLOR is honoured).") var color: String = "auto"

    static func number(_ s: String) throws -> UInt64 {
        let v = s.lowercased().hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
        guard let v else { throw SparcError("'\(s)' is not a number") }
        return v
    }

    func run() throws {
        if offset != nil && address != nil { throw SparcError("--offset and --address exclude each other") }
        let target = try ForensicSearch.targets(path)[0]
        var start = try offset.map(Self.number) ?? 0
        if let address {
            guard let layout = target.layout else { throw SparcError("--address needs a bundle (its memory image has guest addresses)") }
            let gpa = try Self.number(address)
            guard let r = layout.fileRanges(physical: gpa, length: 1).first else { throw SparcError("address 0x\(String(gpa, radix: 16)) is not guest RAM") }
            start = UInt64(r.lowerBound)
        }
        let count = try Self.number(length)
        guard let size = FileSystem.size(target.path) else { throw SparcError.posix("cannot read", target.path) }
        guard start < UInt64(max(size, 0)) || size == 0 else { throw SparcError("offset \(start) is past the end (\(size) bytes)") }
        let fd = open(target.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SparcError.posix("cannot read", target.path) }
        defer { close(fd) }
        let want = Int(min(count, UInt64(size) - start))
        var data = [UInt8](repeating: 0, count: want)
        let got = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(start)) }
        guard got >= 0 else { throw SparcError.posix("cannot read", target.path) }
        data.removeLast(want - got)
        let useColor: Bool
        switch color {
        case "always": useColor = true
        case "never": useColor = false
        case "auto": useColor = isatty(1) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        default: throw SparcError("--color must be auto, always or never")
        }
        let layout = target.layout
        let printer = HexPrinter(color: useColor, address: layout.map { l in { l.physicalAddress(fileOffset: $0) } })
        var out = ""
        printer.print(data, offset: start, squeeze: !noSqueeze, to: &out)
        print(out, terminator: "")
    }
}

// MARK: - rollback safety

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
        let log = HistoryLog(vm: name)
        let entries = try log.entries()
        if json {
            try printJSON(entries)
        } else if !verify {
            if entries.isEmpty { print("no history for '\(name)'") }
            for e in entries {
                var line = "\(e.seq)  \(e.time)  \(e.event.rawValue)"
                if let b = e.bundle { line += "  \(b)" }
                if let d = e.bundleDigest { line += "  sha256:\(d.prefix(16))" }
                if let ep = e.epoch { line += "  epoch \(ep)" }
                if let d = e.detail { line += "  (\(d))" }
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

struct RSDM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsdm",
        abstract: "Show or change a VM's rollback-sensitive data (kept by the host, never rolled back).",
        discussion: "In the guest: sparc-rsdm get|set|incr|del KEY [VALUE], sparc-rsdm epoch.")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Argument(help: "list (default), get KEY, set KEY VALUE, del KEY, epoch.") var words: [String] = []

    func run() throws {
        try RuntimeLayout.validate(name: name)
        let store = RSDMStore(vm: name)
        switch (words.first ?? "list", words.count) {
        case ("list", _):
            print("epoch \(try store.epoch())")
            for (k, v) in try store.all().sorted(by: { $0.key < $1.key }) { print("\(k)=\(v)") }
        case ("get", 2):
            guard let v = try store.get(words[1]) else { throw SparcError("no key '\(words[1])'", kind: .negative) }
            print(v)
        case ("set", 3): try store.set(words[1], words[2])
        case ("del", 2): try store.delete(words[1])
        case ("epoch", 1): print(try store.epoch())
        default: throw ValidationError("usage: sparc rsdm [list | get KEY | set KEY VALUE | del KEY | epoch]")
        }
    }
}

/// The host side of a VM's RSDM port; started in the background by vm start and restore.
struct RSDMServe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rsdm-serve", shouldDisplay: false)
    @Option var name: String = "default"
    func run() throws {
        try RSDMServer.run(socketPath: VMManager().layout(name).rsdmSocket, store: RSDMStore(vm: name))
    }
}

struct TUI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui", abstract: "Open the terminal UI on a VM (the default with no subcommand on a terminal).")
    @Option(help: "Name of the VM.") var name: String = "default"
    @Flag(help: "Draw without colours (NO_COLOR is honoured too).") var noColor = false
    @Flag(help: "Disable checkpoint (and, later, restore).") var readonly = false
    @Option(help: "Where checkpoints go and bundles are listed.") var bundles: String = "."

    func run() throws {
        guard isatty(0) == 1 && isatty(1) == 1 else {
            print(Sparc.helpMessage())
            return
        }
        try TerminalUI(
            manager: VMManager(), vmName: name, color: !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil,
            bundleDirectory: FileSystem.absolute(bundles), readonly: readonly
        ).run()
    }
}

// MARK: - entry point

signal(SIGPIPE, SIG_IGN)
// Bundles hold guest memory: nothing sparc writes is for other users to read.
umask(0o077)
do {
    var command = try Sparc.parseAsRoot()
    try command.run()
} catch let error as SparcError {
    endProgress()
    printError("sparc: \(error.message)")
    exit(error.exitCode)
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let code = Sparc.exitCode(for: error)
    if code == .success {
        print(Sparc.fullMessage(for: error))
        exit(0)
    }
    printError(Sparc.fullMessage(for: error))
    exit(2)
}

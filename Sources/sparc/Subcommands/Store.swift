import ArgumentParser
import CheckpointStore
import Foundation
import SnapshotModel
import Hypervisor
import SparcEngine
import SparcSupport

/// The checkpoint store under the bundle home, its key in the state directory (opened with the
/// passphrase of `--passphrase-file`, else `$SPARC_STORE_PASSPHRASE_FILE`, when it is wrapped).
func openStore(passphraseFile: String? = nil) throws -> CheckpointStore {
    try VMManager().openStore(passphrase: try readPassphrase(passphraseFile))
}

/// The passphrase in a file (its first line), or nil without one; the file is read bounded.
func readPassphrase(_ option: String?) throws -> Data? {
    guard let path = option ?? ProcessInfo.processInfo.environment["SPARC_STORE_PASSPHRASE_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
    let text = try OpenedFile(regular: path, followSymlinks: true, maxSize: 4096).readAll()
    let line = text.split(separator: 0x0A, maxSplits: 1, omittingEmptySubsequences: false).first.map { Data($0) } ?? Data()
    guard !line.isEmpty else { throw SparcError("the passphrase file \(path.terminalSafe) is empty") }
    return line
}

/// `--keep-last`, `--keep-hourly`, `--keep-daily`, `--keep-weekly`: a retention rule, for
/// `prune` and for the prune after each scheduled checkpoint.
struct RetentionOptions: ParsableArguments {
    @Option(help: "Keep the newest N checkpoints of each VM.") var keepLast = 0
    @Option(help: "Keep the newest of each of the latest N hours.") var keepHourly = 0
    @Option(help: "Keep the newest of each of the latest N days.") var keepDaily = 0
    @Option(help: "Keep the newest of each of the latest N weeks.") var keepWeekly = 0

    var policy: RetentionPolicy { RetentionPolicy(last: keepLast, hourly: keepHourly, daily: keepDaily, weekly: keepWeekly) }

    func validate() throws {
        for (flag, n) in policy.flags where n < 0 { throw ValidationError("\(flag) must be 0 or more (got \(n))") }
    }
}

/// `--passphrase-file`: for a store whose key is wrapped.
struct PassphraseOption: ParsableArguments {
    @Option(help: "A file whose first line is the store key's passphrase (default: $SPARC_STORE_PASSPHRASE_FILE).") var passphraseFile: String?
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a bundle, or a sealed export made for you, in the checkpoint store (deduplicated, compressed, encrypted).",
        discussion: """
            The bundle is verified first (a damaged one is refused, nothing stored). The memory \
            image is cut into 1 MiB chunks, everything else where its content says (about 1 MiB); \
            each chunk is stored once across every checkpoint, zero chunks never, compressed with \
            zstd where that pays and sealed with AES-256-GCM under the store's key (state \
            directory, store.key, 0600). The bundle itself is left as it was.
            A sealed export ('sparc export --recipient') is opened with --identity, your private \
            key ('sparc keygen'); the bundle in it is checked before anything is stored.
            Examples:
              sparc import monday.sparc --as monday
              sparc import web.sealed --identity ~/.config/sparc/me.key
            """)
    @Argument(help: "The bundle directory, or a sealed export file.") var bundle: String
    @Option(name: .customLong("as"), help: "The checkpoint's name in the store (default: the bundle's name without .sparc or .sealed).") var name: String?
    @Option(help: "Your private key (PEM), to open a sealed export addressed to it.") var identity: String?
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var passphrase: PassphraseOption

    func run() throws {
        let store = try openStore(passphraseFile: passphrase.passphraseFile)
        var base = Path.base(of: FileSystem.absolute(bundle))
        for suffix in [".sparc", ".sealed"] where base.hasSuffix(suffix) { base = String(base.dropLast(suffix.count)) }
        let stored: StoreReport
        if SealedExport.isSealed(bundle) {
            guard let identity else { throw SparcError("\(bundle.terminalSafe) is a sealed export: pass --identity KEY (the private key it was sealed to)") }
            let key = try RecipientKey.read(pem: identity, private: true)
            // Opened into a private staging directory, checked, stored, removed: in the RAM
            // directory when it has room for the export (its zero runs stay holes there), else
            // beside the store, and then it says so.
            let sealedBytes = (try? OpenedFile(regular: bundle))?.size
            let staging = try StoreStaging(home: try BundleHome.ensure(), memoryBytes: sealedBytes)
            defer { staging.remove() }
            if staging.clearTextOnDisk {
                printError("sparc: note: the opened bundle is staged in the clear in \(staging.directory.terminalSafe) until it is stored (the RAM directory \(GuestRAM.baseDirectory) has no room for it)")
            }
            let opened = staging.directory + "/" + base + ".sparc"
            progressPrinter()?("opening the sealed export")
            try SealedExport.open(bundle, identity: key, to: opened)
            endProgress()
            stored = try store.importBundle(try BundleReader(path: opened), as: name ?? base)
        } else {
            if identity != nil { throw SparcError("--identity opens a sealed export; \(bundle.terminalSafe) is a bundle directory") }
            stored = try store.importBundle(try BundleReader(path: bundle), as: name ?? base)
        }
        if json { return try printStampedJSON(stored) }
        print(
            "stored \(stored.name.terminalSafe): \(formatBytes(stored.logicalBytes)) in \(stored.chunks) chunks (\(stored.zeroChunks) of zeros, \(stored.sharedChunks) already in the store); \(formatBytes(stored.storedBytes)) written")
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a stored checkpoint out as a self-contained bundle, or sealed to a recipient's public key.",
        discussion: """
            Without --recipient the bundle appears only when whole, byte for byte the one that was \
            stored (its digests are checked on what was written; its seal still applies). It is \
            not encrypted: its confidentiality is its file permissions.
            With --recipient (repeatable) the output is one file sealed to each public key \
            ('sparc keygen' on the receiving host makes the pair): AES-256-GCM in 1 MiB segments \
            under a random file key, wrapped per recipient by X25519 and HKDF-SHA256 (age's \
            design, with OpenSSL). It is written straight from the store: nothing decrypted \
            touches the disk. The receiver runs 'sparc import FILE --identity KEY'.
            Examples:
              sparc export web-20261207-101010 -o web.sparc
              sparc export web-20261207-101010 -o web.sealed --recipient backup-host.pub
            """)
    @Argument(help: "The checkpoint's name in the store (see 'sparc bundles').") var name: String
    @Option(name: .shortAndLong, help: "The bundle directory (or with --recipient the file) to create; it must not exist.") var output: String
    @Option(name: .customLong("recipient"), help: "A recipient's X25519 public key (PEM); seals the export to it.") var recipients: [String] = []
    @OptionGroup var passphrase: PassphraseOption

    func run() throws {
        let store = try openStore(passphraseFile: passphrase.passphraseFile)
        if recipients.isEmpty {
            try store.export(name, to: output)
            return print("exported \(name.terminalSafe) to \(FileSystem.absolute(output).terminalSafe)")
        }
        let keys = try recipients.map { try RecipientKey.read(pem: $0, private: false) }
        try SealedExport.write(name, of: store, to: output, recipients: keys)
        print("exported \(name.terminalSafe) sealed to \(keys.count) recipient(s): \(FileSystem.absolute(output).terminalSafe)")
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make an X25519 key pair to receive sealed exports: FILE (private, 0600) and FILE.pub.",
        discussion: """
            Hand FILE.pub to whoever exports checkpoints to you ('sparc export --recipient FILE.pub'); \
            keep FILE ('sparc import --identity FILE'). Both are PEM, as 'openssl genpkey -algorithm \
            X25519' writes them; neither file may exist.
            """)
    @Option(name: .shortAndLong, help: "The private key file to create.") var output: String

    func run() throws {
        let key = try RecipientKey.generate()
        try FileSystem.createNew(output, contents: try key.pem(private: true), mode: 0o600)
        do {
            try FileSystem.createNew(output + ".pub", contents: try key.pem(private: false), mode: 0o644)
        } catch {
            unlink(output)
            throw error
        }
        print("private key: \(FileSystem.absolute(output).terminalSafe) (keep it)\npublic key:  \(FileSystem.absolute(output).terminalSafe).pub (hand it out)")
    }
}

struct Bundles: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the checkpoints in the store: VM, time, size, bytes only it holds, what was left out.")
    @Flag(help: "Print the list as JSON.") var json = false
    @OptionGroup var passphrase: PassphraseOption

    func run() throws {
        let entries = try openStore(passphraseFile: passphrase.passphraseFile).list()
        if json { return try printJSON(entries, key: "bundles") }
        if entries.isEmpty { return print("no checkpoints in the store (sparc import BUNDLE stores one)") }
        print("NAME                              VM          CREATED                SIZE       UNIQUE     EXCLUDED")
        for e in entries {
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
            print(
                pad(e.name.terminalSafe, 34) + pad(e.vm.terminalSafe, 12) + pad(e.createdAt.terminalSafe, 23) + pad(formatBytes(e.logicalBytes), 11)
                    + pad(formatBytes(e.uniqueBytes), 11) + (e.excluded.isEmpty ? "-" : e.excluded))
        }
    }
}

struct Store: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look after the checkpoint store: its usage, its integrity, its unused chunks.",
        subcommands: [Usage.self, Check.self, GC.self, Remove.self, Passphrase.self])

    struct Passphrase: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wrap the store's key by a passphrase (scrypt, AES-256-GCM), change it, or store the key plain again.",
            discussion: "The store's objects are not touched: only the key file (STATE/store.key, 0600) is replaced, whole.")
        @OptionGroup var passphrase: PassphraseOption
        @Option(help: "A file whose first line is the new passphrase.") var newPassphraseFile: String?
        @Flag(help: "Store the key plain again (no passphrase).") var remove = false
        func run() throws {
            guard (newPassphraseFile != nil) != remove else { throw SparcError("give --new-passphrase-file or --remove") }
            let state = try VMManager().stateDirectory
            _ = try openStore(passphraseFile: passphrase.passphraseFile)  // made when missing; the current passphrase checked
            try StoreKeys.rewrap(CheckpointStore.keyPath(state), current: try readPassphrase(passphrase.passphraseFile), new: try newPassphraseFile.map { try readPassphrase($0)! })
            print(remove ? "the store key is stored plain (no passphrase)" : "the store key is wrapped by the new passphrase")
        }
    }

    struct Usage: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "du", abstract: "Bytes the store holds.")
        @OptionGroup var passphrase: PassphraseOption
        func run() throws {
            let u = try openStore(passphraseFile: passphrase.passphraseFile).usage()
            print("\(u.checkpoints) checkpoint(s), \(u.chunks) chunk(s): \(formatBytes(u.chunkBytes)) of chunks, \(formatBytes(u.manifestBytes)) of manifests")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every checkpoint's manifest and chunks.",
            discussion: "Without --read-data, that every chunk is there; with it, every chunk's tag, size and name. Exit 1 when something is wrong, naming the checkpoints it breaks.")
        @Flag(help: "Open every chunk (reads the whole store).") var readData = false
        @OptionGroup var passphrase: PassphraseOption
        func run() throws {
            let problems = try openStore(passphraseFile: passphrase.passphraseFile).check(readData: readData)
            for p in problems { print("\(p.object.terminalSafe): \(p.reason.terminalSafe) (breaks \(p.breaks.map(\.terminalSafe).joined(separator: ", ")))") }
            if !problems.isEmpty { throw SparcError("\(problems.count) problem(s) in the store", kind: .negative) }
            print("the store is intact" + (readData ? " (every chunk read)" : " (every chunk present; --read-data reads them)"))
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Remove chunks no checkpoint uses (it waits for a checkpoint being stored, which may count on them).")
        @OptionGroup var passphrase: PassphraseOption
        func run() throws {
            let freed = try openStore(passphraseFile: passphrase.passphraseFile).gc()
            print("removed \(freed.chunks) chunk(s), \(formatBytes(freed.bytes))")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a checkpoint from the store (its chunks go at the next gc).")
        @Argument(help: "The checkpoint's name.") var name: String
        @Flag(help: "Do not ask.") var yes = false
        @OptionGroup var passphrase: PassphraseOption
        func run() throws {
            let manager = try VMManager()
            let store = try openStore(passphraseFile: passphrase.passphraseFile)
            _ = try store.checkpoint(name)
            if !yes {
                guard isatty(0) != 0 else { throw SparcError("removing '\(name.terminalSafe)' needs a confirmation: pass --yes") }
                FileHandle.standardError.write(Data("remove checkpoint '\(name.terminalSafe)' from the store? [y/N] ".utf8))
                guard let answer = readLine(), answer.lowercased().hasPrefix("y") else { return print("kept") }
            }
            manager.recordRemoved([try store.checkpoint(name)], why: "removed by sparc store rm")
            try store.delete(name)
            print("removed \(name.terminalSafe) (its chunks no other checkpoint uses go at 'sparc store gc')")
        }
    }
}

/// Stored checkpoints named where a bundle path is expected. Searches, scans, strings,
/// hexdump and verify read them in place (`store(for:)`: each member decrypted as it is read,
/// nothing written out); a restore, which hands QEMU files, has one written out
/// (`path`, see `WrittenOutCheckpoints`) for the command's length.
final class StoredBundles {
    private var written: WrittenOutCheckpoints?

    /// Whether `argument` may name a stored checkpoint (NAME, or NAME/MEMBER for one member):
    /// it is no absolute path and no file here.
    static func mayBeStored(_ argument: String) -> Bool {
        !argument.hasPrefix("/") && argument.split(separator: "/", omittingEmptySubsequences: false).count <= 2 && !FileSystem.exists(argument)
    }

    /// The store, when one of `arguments` names a checkpoint in it (nil: all are paths).
    func store(for arguments: [String]) throws -> CheckpointStore? {
        guard arguments.contains(where: Self.mayBeStored) else { return nil }
        let home = BundleHome.path()
        guard FileSystem.isDirectory(home + "/store") else { return nil }
        let store = try openStore()
        let names = Set(try store.names())
        return arguments.contains { Self.mayBeStored($0) && names.contains(String($0.split(separator: "/").first ?? "")) } ? store : nil
    }

    /// The bundle path for `argument`, a stored checkpoint written out (for a restore).
    func path(_ argument: String) throws -> String {
        // A path is a path: nothing is opened for it (a plain bundle needs no store, no key).
        guard Self.mayBeStored(argument), !argument.contains("/") else { return argument }
        if written == nil { written = WrittenOutCheckpoints(manager: try VMManager(), passphrase: try readPassphrase(nil)) }
        defer { endProgress() }
        let show = progressPrinter()
        return try written!.path(argument, progress: show.map { p in { p(ProgressEvent(nil, $0)) } })
    }

    /// For a restore: the bundle path for `argument` and the members read from the store as
    /// the restore goes (see `WrittenOutCheckpoints.forRestore`).
    func forRestore(_ argument: String) throws -> (path: String, external: [String: BundleReader.ExternalMember]) {
        guard Self.mayBeStored(argument), !argument.contains("/") else { return (argument, [:]) }
        if written == nil { written = WrittenOutCheckpoints(manager: try VMManager(), passphrase: try readPassphrase(nil)) }
        defer { endProgress() }
        let show = progressPrinter()
        return try written!.forRestore(argument, progress: show.map { p in { p(ProgressEvent(nil, $0)) } })
    }

    func remove() { written?.remove() }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove stored checkpoints a retention rule does not keep, and the chunks only they held.",
        discussion: """
            Per VM: the newest --keep-last, and the newest of each of the latest --keep-hourly hours, \
            --keep-daily days and --keep-weekly weeks (UTC) that have one. A VM's newest checkpoint \
            is always kept. --dry-run prints what would go and removes nothing.
            """)
    @Option(name: .customLong("vm"), help: "Only this VM's checkpoints (default: every VM's).") var vm: String?
    @OptionGroup var retention: RetentionOptions
    @Flag(help: "Print what would be removed; remove nothing.") var dryRun = false
    @Flag(help: "Print the decisions as JSON.") var json = false
    @OptionGroup var passphrase: PassphraseOption

    func run() throws {
        var policy = retention.policy
        // No rule given: the config's retention, if it has one.
        if policy.isEmpty, let r = try SparcConfig.shared.get().retention { policy = r }
        let manager = try VMManager()
        let (decisions, freed) = try openStore(passphraseFile: passphrase.passphraseFile).prune(policy, vm: vm, dryRun: dryRun) { removed in
            manager.recordRemoved([removed], why: "pruned (\(policy.description))")
        }
        if json { return try printJSON(decisions, key: "decisions") }
        for d in decisions {
            print((d.keep ? "keep   " : (dryRun ? "would remove " : "remove ")) + "\(d.name.terminalSafe)  \(d.createdAt.terminalSafe)" + (d.keep ? "  (\(d.reasons.joined(separator: ", ")))" : ""))
        }
        let gone = decisions.filter { !$0.keep }.count
        print(dryRun ? "\(gone) checkpoint(s) would be removed (--dry-run: nothing was)" : "removed \(gone) checkpoint(s); \(freed.chunks) chunk(s), \(formatBytes(freed.bytes)) freed")
    }
}

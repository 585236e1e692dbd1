import CNCurses
import CheckpointStore
import Foundation
import GuestQuery
import HexView
import SecretScan
import SnapshotModel
import SparcEngine
import SparcSupport

/// Runs one job (checkpoint, search, scan, restore) at a time off the drawing loop; the job
/// reports its progress and result through the channel the loop drains.
final class JobRunner {
    let channel: JobChannel
    /// Cancels the running job at its next safe point.
    private(set) var cancellation = Cancellation()
    private let running = SharedBox(false)
    private let done = DispatchGroup()

    init(channel: JobChannel) { self.channel = channel }

    var isRunning: Bool { running.value }

    /// Starts `work` on its own thread, unless a job runs (false then). `work` reports its
    /// progress on the channel and returns its status line and result.
    func start(_ label: String, _ work: @escaping (Cancellation, JobChannel) -> (String, JobResult)) -> Bool {
        guard !running.mutate({ r -> Bool in
            defer { r = true }
            return r
        }) else { return false }
        let cancel = Cancellation()
        cancellation = cancel
        // A step held for a test (SPARC_FAULT stall) ends on this job's cancel too.
        FaultPoint.interruption = cancel
        let channel = channel
        let running = running
        let done = done
        channel.post(.progress(label, fraction: nil))
        done.enter()
        startThread {
            let (line, result) = work(cancel, channel)
            running.value = false
            channel.post(.finished(line, result))
            done.leave()
        }
        return true
    }

    func cancel() { cancellation.cancel() }

    /// Waits until the running job has ended (it unwinds on its own after a cancel).
    func waitUntilDone() { done.wait() }
}

/// The curses front: owns the terminal and the event loop. All curses calls happen here,
/// on the thread that called `run`; jobs and the agent's answers come back through one
/// channel (`JobChannel`) that the loop drains before each draw.
public final class TerminalUI {
    let manager: VMManager
    let color: Bool
    var model: TUIModel
    let channel = JobChannel()
    lazy var jobs = JobRunner(channel: channel)
    /// Whether an agent request is out (one at a time; its answer comes on the channel).
    let asking = SharedBox(false)

    /// The store's key passphrase (a wrapped key), when the operator gave one.
    let passphrase: Data?
    /// Stored checkpoints written out for reading (search, scan, hex, restore), kept while the
    /// UI runs since hex views point into them; removed when it ends.
    let writtenOut: WrittenOutCheckpoints
    /// The store, opened once (its key unwrapped once: a passphrase-wrapped key costs a
    /// memory-hard KDF, not to be paid at every refresh); shared with the jobs' threads (it
    /// holds no mutable state).
    private let openedStore = SharedBox<CheckpointStore?>(nil)

    func store() throws -> CheckpointStore { try storeOpener()() }

    /// Opens the store once, from any thread (it reads nothing of the model).
    func storeOpener() -> () throws -> CheckpointStore {
        let (box, manager, home, passphrase) = (openedStore, manager, model.bundleDirectory, passphrase)
        return {
            if let s = box.value { return s }
            let s = try manager.openStore(home: home, passphrase: passphrase)
            box.value = s
            return s
        }
    }

    /// Whether a background verification runs (one at a time), and how to stop it at exit.
    let verifying = SharedBox(false)
    let verifyCancel = Cancellation()

    /// A file's identity: inode, size and modification time (a bundle's files are replaced
    /// or edited in place: either changes it).
    static func identity(of path: String) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return "-" }
        return "\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    /// Starts verifying the first listed checkpoint whose files were not verified as they are
    /// now, off the UI thread (every file against its digest; a stored one decrypted as read).
    func verifyNext() {
        let list = model.bundleList
        guard let next = list.names.first(where: { list.verdicts[$0]?.identity != list.identities[$0] }), let identity = list.identities[next] else { return }
        guard !verifying.mutate({ v -> Bool in
            defer { v = true }
            return v
        }) else { return }
        let stored = list.stored.contains(next)
        let home = model.bundleDirectory
        let store = stored ? try? self.store() : nil
        let (channel, verifying, cancel) = (self.channel, self.verifying, self.verifyCancel)
        startThread {
            var problem: String?
            do {
                let problems =
                    stored
                    ? try StoredBundle(store: store ?? { throw SparcError("the store cannot be opened") }(), name: next).verify(cancel: cancel)
                    : try BundleReader(path: home + "/" + next).verify(cancel: cancel)
                problem = problems.first.map { $0.description + (problems.count > 1 ? " (and \(problems.count - 1) more)" : "") }
            } catch {
                problem = "\(error)"
            }
            if !cancel.isCancelled { channel.post(.verified(next, identity: identity, problem: problem)) }
            verifying.value = false
        }
    }

    /// The source the hex view reads (kept while it pages through the same file).
    private var hexSourceCache: (path: String, source: ByteSource)?

    /// What the hex view reads for `path`: a stored checkpoint's member ("NAME/memory.img",
    /// decrypted as it is read) or a file.
    func hexSource(_ path: String) throws -> ByteSource {
        if let cached = hexSourceCache, cached.path == path { return cached.source }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let source: ByteSource
        if parts.count == 2, model.bundleList.stored.contains(String(parts[0])) {
            let store = try self.store()
            guard let target = try ForensicSearch.targets(String(parts[0]), store: store).first(where: { $0.display == path }) else {
                throw SparcError("no \(parts[1]) in the stored checkpoint \(parts[0])")
            }
            source = target.file
        } else {
            source = try OpenedFile(regular: path, followSymlinks: true)
        }
        hexSourceCache = (path, source)
        return source
    }

    /// The store's checkpoint names when it was last listed: it is listed again (every manifest
    /// opened) only when they change.
    private var storeNames: [String]?

    /// `picker`: open on a list of libvirt domains (the manager's `connect`) instead of `vmName`.
    public init(
        manager: VMManager, vmName: String, color: Bool, bundleDirectory: String = FileManager.default.currentDirectoryPath, readonly: Bool = false,
        picker: DomainPicker? = nil, passphrase: Data? = nil
    ) {
        self.manager = manager
        self.color = color
        self.passphrase = passphrase
        self.writtenOut = WrittenOutCheckpoints(manager: manager, home: bundleDirectory, passphrase: passphrase)
        self.model = TUIModel(vmName: vmName, bundleDirectory: bundleDirectory, readonly: readonly)
        if let config = try? SparcConfig.shared.get() { model.config = config }
        model.domainPicker = picker
    }

    /// Lists the checkpoints (the store's and the bundle directories beside it, read here, so
    /// one just written is there for the next key) and asks the agent for the process list off
    /// the UI thread (it may take seconds to answer), except the first time, which fills the
    /// screen before it is drawn.
    func refresh(wait: Bool = false) {
        let home = model.bundleDirectory
        let bundles = ((try? FileManager.default.contentsOfDirectory(atPath: home)) ?? []).filter { $0.hasSuffix(".sparc") }.sorted()
        var stored = Array(model.bundleList.stored)
        if FileSystem.isDirectory(home + "/store") {
            do {
                let store = try self.store()
                let names = try store.names().sorted()
                if names != storeNames {
                    storeNames = names
                    stored = []
                    for e in try store.list() {
                        stored.append(e.name)
                        let summary = BundleSummary(stored: e.name, manifest: try store.checkpoint(e.name).bundleManifest, uniqueBytes: e.uniqueBytes)
                        model.bundleList.details[e.name] = summary.line
                        model.bundleList.uniqueBytes[e.name] = e.uniqueBytes
                        model.bundleList.kills[e.name] = summary.damage == nil ? summary.kills : nil
                        model.bundleList.vms[e.name] = summary.damage == nil ? summary.vm : nil
                        model.bundleList.createdAt[e.name] = summary.damage == nil ? summary.createdAt : nil
                        if e.undoPoint == true { model.bundleList.undoPoints.insert(e.name) } else { model.bundleList.undoPoints.remove(e.name) }
                    }
                }
            } catch {
                model.status = "the store in \(home) cannot be read: \(error)"
            }
        }
        model.bundleList.stored = Set(stored)
        model.setBundles(stored.sorted() + bundles)
        for b in stored { model.bundleList.identities[b] = Self.identity(of: home + "/store/checkpoints/" + b) }
        for b in bundles {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: home + "/" + b)) ?? []).sorted()
            model.bundleList.identities[b] = files.map { Self.identity(of: home + "/" + b + "/" + $0) }.joined(separator: ";")
        }
        verifyNext()
        for b in bundles where model.bundleList.details[b] == nil {
            let summary = BundleSummary(path: home + "/" + b)
            model.bundleList.details[b] = summary.line
            if summary.damage == nil {
                model.bundleList.kills[b] = summary.kills
                model.bundleList.vms[b] = summary.vm
                model.bundleList.createdAt[b] = summary.createdAt
            }
        }
        // Until a domain is picked there is no agent to ask.
        guard model.domainPicker == nil else { return }
        guard !asking.mutate({ r -> Bool in
            defer { r = true }
            return r
        }) else { return }
        let vm = model.processes.vmName
        let manager = self.manager
        let channel = self.channel
        let asking = self.asking
        let ask = {
            // The VM's state first (its state file and QEMU, no agent): a stopped VM is said so.
            // A libvirt domain's state is libvirt's: there it is the agent's answer alone.
            let own = manager.connect == nil
            let status = own ? try? manager.status(name: vm) : nil
            let state = status.map { $0.guest?.hasPrefix("frozen") == true ? "frozen" : $0.state } ?? (own ? "stopped" : "running")
            do {
                let agent = try manager.agentClient(vm, timeout: 5)
                defer { agent.close() }
                channel.post(.guest(.success(GuestView(processes: try agent.processes(), ttys: try agent.ttys(), state: state))))
            } catch {
                channel.post(.guest(.failure(GuestViewError("\(error)", state: own && status == nil ? "stopped" : state == "running" ? "not answering" : state))))
            }
            asking.value = false
        }
        if wait {
            ask()
            drainChannel()
        } else {
            startThread(ask)
        }
    }

    /// Applies what jobs and the agent sent since the last draw (on the UI thread).
    func drainChannel() {
        for event in channel.drain() {
            switch model.apply(event) {
            case .refresh: refresh()
            case .none: break
            case let effect: start(effect)
            }
        }
    }

    func start(_ effect: Effect) {
        let manager = self.manager
        let vm = model.processes.vmName
        let directory = model.bundleDirectory
        let writtenOut = self.writtenOut
        let isStored = model.bundleList.stored.contains
        let openStore = storeOpener()
        /// The bundle a restore reads for a list entry: a stored checkpoint is written out first
        /// (QEMU is handed files), and removed once the restore is done.
        func bundlePath(_ bundle: String, _ channel: JobChannel) throws -> String {
            if bundle.hasPrefix("/") { return bundle }
            guard isStored(bundle) else { return directory + "/" + bundle }
            // Writing a stored checkpoint out takes no cancel.
            return try writtenOut.path(bundle) { channel.post(.progress($0, fraction: nil, cancellable: false)) }
        }
        /// What a search or scan reads for a list entry: a stored checkpoint in place (by name,
        /// with its store: decrypted as it is read), a bundle directory by path.
        func inPlace(_ bundle: String) throws -> (String, CheckpointStore?) {
            let name = String(bundle.split(separator: "/", maxSplits: 1).first ?? "")
            if bundle.hasPrefix("/") || !isStored(name) { return (bundle.hasPrefix("/") ? bundle : directory + "/" + bundle, nil) }
            return (bundle, try openStore())
        }
        let started: Bool
        switch effect {
        case .checkpoint(let request, let output):
            started = jobs.start("checkpoint: starting") { cancel, channel in
                do {
                    // Into the store unless a bundle path was asked for: the bundle is staged beside the store and stored.
                    let store = output == nil ? try openStore() : nil
                    let staging = output == nil ? try StoreStaging(home: directory, memoryBytes: manager.memoryStagingBytes(of: vm)) : nil
                    defer { staging?.remove() }
                    let destination = store.map { staging!.destination(vm: vm, store: $0) }
                    let r = try manager.checkpoint(
                        name: vm, output: output ?? destination!.bundlePath, exclusion: request.isEmpty ? nil : request, cancel: cancel,
                        progress: { event in
                            channel.post(.progress("checkpoint: \(event.text)", fraction: event.checkpointFraction, cancellable: event.cancellable))
                        }, store: destination)
                    guard let staging, let destination else {
                        return (r.oneLine + " — on Bundles (F6), F5 scans it for credentials", .saved(Path.base(of: r.bundle)))
                    }
                    channel.post(.progress("checkpoint: storing (deduplicated, compressed, encrypted)", fraction: nil, cancellable: false))
                    let stored = try staging.store(destination)
                    // "saved PATH in …" becomes "stored NAME (N new) in …": the name first, so that a narrow status line shows it.
                    let rest = r.oneLine.hasPrefix("saved \(r.bundle)") ? String(r.oneLine.dropFirst("saved \(r.bundle)".count)) : ": " + r.oneLine
                    return ("stored \(stored.name) (\(formatBytes(stored.storedBytes)) new)" + rest + " — on Bundles (F6), F5 scans it", .saved(stored.name))
                } catch {
                    return ("checkpoint failed: \(error)", .none)
                }
            }
        case .delete(let bundle):
            let stored = isStored(bundle)
            started = jobs.start("deleting \(bundle)") { _, _ in
                do {
                    if stored {
                        let store = try openStore()
                        manager.recordRemoved([try store.checkpoint(bundle)], why: "deleted in the TUI")
                        try store.delete(bundle)
                        return ("deleted \(bundle) from the store (its chunks go at 'sparc store gc')", .none)
                    }
                    let left = FileSystem.removeTree(directory + "/" + bundle)
                    return (left.isEmpty ? "deleted the bundle \(bundle)" : "could not delete \(left.count) file(s) of \(bundle) (not this user's?)", .none)
                } catch {
                    return ("delete failed: \(error)", .none)
                }
            }
        case .search(let pattern, let bundle, let encodings, let ignoreCase):
            started = jobs.start("searching \(bundle)") { cancel, channel in
                do {
                    let (path, store) = try inPlace(bundle)
                    let query = try SearchQuery.text(pattern, encodings: encodings, ignoreCase: ignoreCase)
                    let hits = try ForensicSearch.search(
                        paths: [path], store: store, query: query,
                        progress: { file, done, total in
                            channel.post(.progress("searching \(Path.base(of: file)) \(done * 100 / max(total, 1))%", fraction: nil))
                        }, cancel: cancel)
                    guard let first = hits.first else { return ("'\(pattern)': not found in any file of the bundle \(bundle)", .none) }
                    return (
                        "'\(pattern)': \(hits.count) hit(s); first in \(Path.base(of: first.file)) at 0x\(String(first.offset, radix: 16))"
                            + (first.owner.map { " [\($0.description)]" } ?? ""), .hits(hits)
                    )
                } catch {
                    return ("search failed: \(error)", .none)
                }
            }
        case .scan(let bundle):
            started = jobs.start("scanning \(bundle) for credentials") { cancel, channel in
                do {
                    let (path, store) = try inPlace(bundle)
                    let report = try CredentialScan.scan(
                        paths: [path], store: store, rules: try SecretRules(),
                        progress: { file, done, total in
                            channel.post(.progress("scanning \(Path.base(of: file)) \(done * 100 / max(total, 1))%", fraction: nil))
                        }, cancel: cancel)
                    guard !report.findings.isEmpty else { return ("no credentials found in \(bundle)", .none) }
                    let owners = report.owningProcesses.map { "pid \($0.pid) \($0.command)" }
                    return (
                        "\(report.findings.count) credential finding(s) in \(bundle)" + (owners.isEmpty ? "" : ", held by " + owners.joined(separator: ", ")),
                        .findings(report.findings, bundle: bundle)
                    )
                } catch {
                    return ("scan failed: \(error)", .none)
                }
            }
        case .restore(let bundle, _), .undo(let bundle):
            var allowRollback = false
            if case .restore(_, let allowed) = effect { allowRollback = allowed }
            // Undo restores the undo point and takes none itself.
            var isUndo = false
            if case .undo = effect { isUndo = true }
            started = jobs.start(isUndo ? "undo: starting" : "restore: starting") { cancel, channel in
                do {
                    // A stored checkpoint's memory and disk are read from the store as the restore goes.
                    let (path, external) =
                        bundle.hasPrefix("/") || !isStored(bundle)
                        ? (try bundlePath(bundle, channel), [:])
                        : try writtenOut.forRestore(bundle) { channel.post(.progress($0, fraction: nil, cancellable: false)) }
                    defer { writtenOut.remove() }
                    // The running VM is stored first as its undo point ('sparc undo' goes back to it).
                    let undo = !isUndo && (try? manager.running(vm)) != nil ? UndoRequest(store: try openStore(), home: directory) : nil
                    let r = try manager.restore(
                        bundle: path, name: vm, replace: true, policy: RestorePolicy(allowRollback: allowRollback),
                        progress: { channel.post(.progress("restore: \($0)", fraction: nil, cancellable: $0.cancellable)) }, cancel: cancel,
                        external: external, storedName: external.isEmpty ? nil : bundle, undo: undo)
                    let killed = r.cleanup?.killed ?? []
                    return (
                        // What happened to the guest first: a narrow status line cuts the end.
                        (isUndo ? "undone: back to " : "restored ") + "\(bundle) (epoch \(r.epoch)\(r.rollback ? ", rollback logged" : ""))"
                            + (killed.isEmpty ? "; all processes run on" : "; killed \(killed.map(String.init).joined(separator: " ")), the rest runs on")
                            + (r.undoPoint.map { "; what it replaced is \($0) (u undoes)" } ?? ""),
                        .none
                    )
                } catch RestoreRefusal.rollback {
                    return ("", .rollbackRefused(bundle))
                } catch {
                    return ("restore failed: \(error)", .none)
                }
            }
        case .loadHex(let path, let offset):
            let perLine = HexPrinter.bytesPerLine(columns: Int(sparc_cols()), withAddress: model.hex?.isMemoryImage == true)
            model.hex?.bytesPerLine = perLine
            let count = HexScreen.bytes(height: Int(sparc_lines()), perLine: perLine)
            var data = [UInt8](repeating: 0, count: count)
            var size: UInt64?
            do {
                let source = try hexSource(path)
                let n = try data.withUnsafeMutableBytes { try source.read(into: $0, at: Int64(offset)) }
                size = UInt64(source.size)
                if model.hex?.isMemoryImage == true { model.hex?.layout = PhysicalLayout(ramBytes: UInt64(source.size)) }
                data.removeLast(count - n)
            } catch {
                data = []
                model.status = "cannot read \(path): \(error)"
            }
            model.hex?.data = data
            model.hex?.size = size
            return
        default: return
        }
        if !started, let busy = model.busy { model.status = "\(busy) — one job at a time (Esc cancels it)" }
    }

    static func decode(_ key: Int32) -> Key? {
        switch key {
        case KEY_UP: return .up
        case KEY_DOWN: return .down
        case KEY_PPAGE: return .pageUp
        case KEY_NPAGE: return .pageDown
        case KEY_HOME: return .home
        case KEY_END: return .end
        case 9: return .tab
        case KEY_BTAB: return .backTab
        case 10, 13, KEY_ENTER: return .enter
        case 27: return .escape
        case KEY_BACKSPACE, 127, 8: return .backspace
        case 32...126: return .char(Character(Unicode.Scalar(UInt8(key))))
        default:
            for n in 1...12 where key == sparc_key_f(Int32(n)) { return .function(n) }
            return nil
        }
    }

    nonisolated(unsafe) static var interruptFlag: sig_atomic_t = 0

    public func run() throws {
        defer {
            verifyCancel.cancel()
            writtenOut.remove()
        }
        setlocale(LC_ALL, "")
        initscr()
        // What became of work running at the quit, said on the terminal once the screen is gone.
        var farewell: String?
        defer {
            endwin()
            if let farewell { FileHandle.standardError.write(Data(("sparc: " + farewell.terminalSafe + "\n").utf8)) }
        }
        /// Cancels the running job where it still can be, waits for it, and keeps its last word.
        func endRunningWork(_ why: String) {
            let cancellable = model.busyCancellable
            jobs.cancel()
            model.status = cancellable ? "\(why): cancelling the work first…" : "\(why): waiting for the work to finish (it cannot be cancelled now)…"
            draw()
            jobs.waitUntilDone()
            drainChannel()
            farewell = (cancellable ? "quit during work, cancelled: " : "quit during work, waited for it: ") + model.status
        }
        cbreak()
        noecho()
        keypad(sparc_stdscr(), true)
        set_escdelay(25)
        curs_set(0)
        if color && has_colors() {
            start_color()
            use_default_colors()
            init_pair(1, Int16(COLOR_BLACK), Int16(COLOR_CYAN))
            init_pair(2, Int16(COLOR_BLACK), Int16(COLOR_GREEN))
            init_pair(3, Int16(COLOR_YELLOW), -1)
            // Byte categories, hexyl's palette: NUL grey, printable cyan, whitespace green,
            // other ASCII magenta, non-ASCII yellow.
            init_pair(4, Int16(COLOR_BLACK + 8 < 16 && COLORS >= 16 ? COLOR_BLACK + 8 : COLOR_WHITE), -1)
            init_pair(5, Int16(COLOR_CYAN), -1)
            init_pair(6, Int16(COLOR_GREEN), -1)
            init_pair(7, Int16(COLOR_MAGENTA), -1)
            init_pair(8, Int16(COLOR_YELLOW), -1)
        }
        mousemask(sparc_all_mouse_events(), nil)
        timeout(200)
        // Ctrl-C, SIGTERM and SIGHUP (the terminal closed) quit through the loop, so a running
        // checkpoint is cancelled and unwinds (the guest resumed and thawed, nothing partial
        // left) and endwin always runs.
        for sig in [SIGINT, SIGTERM, SIGHUP] { signal(sig) { _ in TerminalUI.interruptFlag = 1 } }
        // On a crash, give the terminal back before dying with the same signal.
        for sig in [SIGSEGV, SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGTRAP] {
            signal(sig) { s in
                endwin()
                signal(s, SIG_DFL)
                raise(s)
            }
        }
        refresh(wait: true)
        var lastRefresh = Date()
        while true {
            drainChannel()
            if Self.interruptFlag != 0 {
                if jobs.isRunning { endRunningWork("interrupted") }
                return
            }
            draw()
            let code = getch()
            if code == ERR {
                if model.busy == nil && Date().timeIntervalSince(lastRefresh) > 2 {
                    refresh()
                    lastRefresh = Date()
                }
                continue
            }
            if code == KEY_RESIZE {
                // A hex page is laid out for the width it was loaded at (16 or 8 bytes a row).
                if let page = model.hex { start(.loadHex(path: page.path, offset: page.offset)) }
                continue
            }
            let effect: Effect
            if code == KEY_MOUSE {
                var event = MEVENT()
                guard getmouse(&event) == OK else { continue }
                if event.bstate & (sparc_wheel_up() | sparc_wheel_down()) != 0 {
                    // The wheel moves the cursor three rows, as the arrows would (htop's way).
                    let key: Key = event.bstate & sparc_wheel_up() != 0 ? .up : .down
                    for _ in 0..<3 { _ = model.handle(key) }
                    continue
                }
                guard event.bstate & sparc_button1_clicked() != 0 else { continue }
                effect = model.click(row: Int(event.y), column: Int(event.x), height: Int(sparc_lines()), width: Int(sparc_cols()))
            } else {
                guard let key = Self.decode(code) else { continue }
                effect = model.handle(key)
            }
            switch effect {
            case .quit:
                return
            case .forceQuit:
                // Cancel where the work still can be (it unwinds: the guest resumed, nothing
                // partial kept), else wait for it; either way say which on the way out.
                if jobs.isRunning { endRunningWork("quitting") }
                return
            case .refresh:
                refresh()
                lastRefresh = Date()
            case .none: break
            case .cancel:
                jobs.cancel()
                model.status = "cancelling…"
            default: start(effect)
            }
        }
    }

    func attributes(_ style: CellBuffer.Style) -> attr_t {
        switch style {
        case .normal: return 0
        case .header: return color ? sparc_color_pair(2) | sparc_a_bold() : sparc_a_reverse()
        case .selected: return color ? sparc_color_pair(1) : sparc_a_reverse()
        case .status: return color ? sparc_color_pair(3) : sparc_a_bold()
        case .key: return sparc_a_bold()
        case .dim: return sparc_a_bold()
        case .tagged: return color ? sparc_color_pair(3) | sparc_a_bold() : sparc_a_bold()
        case .byteNull: return color ? sparc_color_pair(4) | sparc_a_dim() : sparc_a_dim()
        case .bytePrintable: return color ? sparc_color_pair(5) : 0
        case .byteWhitespace: return color ? sparc_color_pair(6) : 0
        case .byteOtherASCII: return color ? sparc_color_pair(7) : 0
        case .byteNonASCII: return color ? sparc_color_pair(8) : 0
        case .byteHit: return sparc_a_reverse() | sparc_a_bold()
        }
    }

    func draw() {
        var rows: Int32 = 0
        var cols: Int32 = 0
        sparc_getmaxyx(sparc_stdscr(), &rows, &cols)
        var buffer = CellBuffer(width: Int(cols), height: Int(rows))
        model.screenHeight = Int(rows)
        model.render(into: &buffer)
        erase()
        for r in 0..<buffer.height {
            var c = 0
            while c < buffer.width {
                let style = buffer.cell(row: r, column: c).style
                var run = ""
                var end = c
                while end < buffer.width && buffer.cell(row: r, column: end).style == style {
                    run.append(buffer.cell(row: r, column: end).character)
                    end += 1
                }
                let attr = attributes(style)
                attron(Int32(bitPattern: UInt32(truncatingIfNeeded: attr)))
                let scalars = Array(run.unicodeScalars.map { wchar_t(bitPattern: $0.value) }) + [0]
                mvaddnwstr(Int32(r), Int32(c), scalars, Int32(scalars.count - 1))
                attroff(Int32(bitPattern: UInt32(truncatingIfNeeded: attr)))
                c = end
            }
        }
        CNCurses.refresh()
    }
}

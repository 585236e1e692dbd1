import Foundation
import CheckpointStore
import HostState
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A VM's scheduled checkpoints: a systemd service that checkpoints it into the store (with
/// `--refuse-secrets` when asked) and prunes by the retention given, and a timer that starts it.
/// The service reports a failure to the journal (its output) and to the VM's history
/// (`ExecStopPost` runs `sparc schedule record`, which appends `scheduleFailed`).
public struct CheckpointSchedule: Codable, Equatable, Sendable {
    public var vm: String
    /// systemd's calendar expression (`OnCalendar=`): `hourly`, `daily`, `*:0/15` …
    public var onCalendar: String
    /// What the prune after each run keeps (empty: no prune).
    public var retention = RetentionPolicy()
    public var refuseSecrets = false
    /// A libvirt URI when the VM is a domain.
    public var connect: String?
    /// The environment the scheduled runs get (the bundle home, state and runtime directories
    /// in force when it was scheduled).
    public var environment: [String: String] = [:]

    public init(vm: String, onCalendar: String) {
        self.vm = vm
        self.onCalendar = onCalendar
    }

    public static let unitPrefix = "sparc-checkpoint-"
    public var serviceName: String { Self.unitPrefix + vm + ".service" }
    public var timerName: String { Self.unitPrefix + vm + ".timer" }

    /// Refuses what a unit file cannot carry as it is: the name, the calendar expression and
    /// every value are checked (no newlines, quotes, `%` specifiers or backslashes).
    public func validate() throws {
        guard VMName.isValid(vm) else { throw SparcError("'\(vm.terminalSafe)' is not a VM name sparc accepts") }
        func plain(_ s: String, _ what: String) throws {
            guard !s.isEmpty, s.utf8.count <= 512, !s.unicodeScalars.contains(where: { $0.value < 0x20 || "\"'\\%$;`".unicodeScalars.contains($0) }) else {
                throw SparcError("\(what) '\(s.terminalSafe)' cannot go into a systemd unit (no quotes, %, $, ;, backslashes or control characters)")
            }
        }
        try plain(onCalendar, "the schedule")
        if let connect { try plain(connect, "the libvirt URI") }
        for (k, v) in environment {
            try plain(k, "the variable")
            try plain(v, "the value of $\(k)")
        }
        for (flag, n) in retention.flags where n < 0 {
            throw SparcError("\(flag) must be 0 or more (got \(n))")
        }
    }

    /// The arguments of the scheduled checkpoint.
    public func checkpointArguments() -> [String] {
        ["checkpoint", "--name", vm] + (connect.map { ["--connect", $0] } ?? []) + (refuseSecrets ? ["--refuse-secrets"] : [])
    }

    /// The arguments of the prune after it (nil: no retention was given).
    public func pruneArguments() -> [String]? {
        guard !retention.isEmpty else { return nil }
        return ["prune", "--vm", vm] + retention.arguments
    }

    /// The service unit, running `sparc` at `binary`.
    public func service(binary: String) -> String {
        var lines = [
            "# Written by 'sparc schedule add'; 'sparc schedule rm --name \(vm)' removes it.",
            "[Unit]",
            "Description=sparc checkpoint of VM \(vm)",
            "Documentation=man:sparc.schedule(1)",
            "",
            "[Service]",
            "Type=oneshot",
        ]
        for (k, v) in environment.sorted(by: { $0.key < $1.key }) { lines.append("Environment=\(k)=\(v)") }
        lines.append("ExecStart=" + ([binary] + checkpointArguments()).joined(separator: " "))
        if let prune = pruneArguments() { lines.append("ExecStartPost=" + ([binary] + prune).joined(separator: " ")) }
        // systemd says how the run ended; a failure goes into the VM's history as well as the journal.
        lines.append("ExecStopPost=\(binary) schedule record --name \(vm) --result ${SERVICE_RESULT} --exit-status ${EXIT_STATUS}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The timer unit.
    public func timer() -> String {
        [
            "# Written by 'sparc schedule add'; 'sparc schedule rm --name \(vm)' removes it.",
            "[Unit]",
            "Description=sparc checkpoints of VM \(vm) (\(onCalendar))",
            "",
            "[Timer]",
            "OnCalendar=\(onCalendar)",
            "Persistent=true",
            "Unit=\(serviceName)",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ].joined(separator: "\n") + "\n"
    }

    /// Reads a schedule back from its timer and service (for `list`); nil when they are not sparc's.
    public static func read(vm: String, directory: String) -> CheckpointSchedule? {
        let base = directory + "/" + unitPrefix + vm
        guard let timer = try? OpenedFile(regular: base + ".timer", maxSize: 64 << 10).readAll(),
            let service = try? OpenedFile(regular: base + ".service", maxSize: 64 << 10).readAll()
        else { return nil }
        func values(_ text: Data, _ key: String) -> [String] {
            String(decoding: text, as: UTF8.self).split(separator: "\n").compactMap { $0.hasPrefix(key + "=") ? String($0.dropFirst(key.count + 1)) : nil }
        }
        guard let calendar = values(timer, "OnCalendar").first, let start = values(service, "ExecStart").first else { return nil }
        var s = CheckpointSchedule(vm: vm, onCalendar: calendar)
        let words = start.split(separator: " ").map(String.init)
        s.refuseSecrets = words.contains("--refuse-secrets")
        if let i = words.firstIndex(of: "--connect"), i + 1 < words.count { s.connect = words[i + 1] }
        let prune = values(service, "ExecStartPost").first?.split(separator: " ").map(String.init) ?? []
        func number(_ flag: String) -> Int { prune.firstIndex(of: flag).flatMap { $0 + 1 < prune.count ? Int(prune[$0 + 1]) : nil } ?? 0 }
        for (flag, _) in s.retention.flags { _ = s.retention.set(flag, to: number(flag)) }
        for e in values(service, "Environment") {
            let kv = e.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 2 { s.environment[kv[0]] = kv[1] }
        }
        return s
    }

    /// The VMs with a schedule in `directory`.
    public static func scheduled(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { name in
            guard name.hasPrefix(unitPrefix), name.hasSuffix(".timer") else { return nil }
            let vm = String(name.dropFirst(unitPrefix.count).dropLast(".timer".count))
            return VMName.isValid(vm) ? vm : nil
        }.sorted()
    }

    /// Writes the two units into `directory` (each new: an existing one is refused unless
    /// `replace`), through the directory's descriptor, never following a link.
    public func install(in directory: String, binary: String, replace: Bool) throws {
        try validate()
        guard binary.hasPrefix("/"), !binary.unicodeScalars.contains(where: { $0.value <= 0x20 || "\"'\\%$;`".unicodeScalars.contains($0) }) else {
            throw SparcError("sparc's own path '\(binary.terminalSafe)' cannot go into a systemd unit: install it where the path has no spaces or quotes")
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dir >= 0 else { throw SparcError.posix("cannot open the unit directory", directory) }
        defer { close(dir) }
        for (name, text) in [(serviceName, service(binary: binary)), (timerName, timer())] {
            let temporary = ".\(name).sparc-\(getpid())"
            unlinkat(dir, temporary, 0)
            let fd = openat(dir, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw SparcError.posix("cannot create", directory + "/" + temporary) }
            let written = Data(text.utf8).withUnsafeBytes { FileSystem.writeAll(fd: fd, $0) }
            let synced = fsync(fd) == 0
            close(fd)
            guard written, synced else {
                unlinkat(dir, temporary, 0)
                throw SparcError.posix("cannot write", directory + "/" + name)
            }
            if !replace {
                // link-then-unlink: the name is taken only if nothing holds it.
                guard linkat(dir, temporary, dir, name, 0) == 0 else {
                    let e = errno
                    unlinkat(dir, temporary, 0)
                    if e == EEXIST { throw SparcError("\(directory)/\(name) exists: VM '\(vm)' is scheduled already ('sparc schedule rm --name \(vm)', or --replace)") }
                    throw SparcError.posix("cannot create", directory + "/" + name)
                }
                unlinkat(dir, temporary, 0)
            } else {
                guard renameat(dir, temporary, dir, name) == 0 else {
                    unlinkat(dir, temporary, 0)
                    throw SparcError.posix("cannot write", directory + "/" + name)
                }
            }
        }
    }

    /// Removes a VM's two units from `directory`; returns the files removed.
    public static func remove(vm: String, in directory: String) throws -> [String] {
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dir >= 0 else { throw SparcError.posix("cannot open the unit directory", directory) }
        defer { close(dir) }
        var removed: [String] = []
        for suffix in [".timer", ".service"] {
            let name = unitPrefix + vm + suffix
            if unlinkat(dir, name, 0) == 0 { removed.append(directory + "/" + name) }
        }
        return removed
    }
}

extension VMManager {
    /// Records in the VM's history how a scheduled run ended, when it failed (systemd's
    /// `SERVICE_RESULT` and `EXIT_STATUS`); a run that succeeded recorded its checkpoint itself.
    public func recordScheduledRun(_ name: String, result: String, exitStatus: String) throws -> Bool {
        guard result != "success" else { return false }
        let detail = "scheduled checkpoint failed: \(result) (exit status \(exitStatus.isEmpty ? "none" : exitStatus)); see 'journalctl -u \(CheckpointSchedule.unitPrefix)\(name).service'"
        _ = try history(name).append(.scheduleFailed, detail: String(detail.prefix(400)))
        return true
    }
}

import ArgumentParser
import Foundation
import Hypervisor
import SparcEngine
import SparcSupport

struct Schedule: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checkpoint a VM on a schedule: a systemd timer and service per VM.",
        discussion: """
            'add' writes sparc-checkpoint-NAME.service and .timer (in /etc/systemd/system unless \
            --unit-dir) and enables the timer; 'systemctl list-timers' shows it. Each run \
            checkpoints the VM into the store (with --refuse-secrets when asked), then prunes \
            its checkpoints by the retention given. A run that fails is marked failed by systemd, \
            its output is in the journal ('journalctl -u sparc-checkpoint-NAME.service'), and the \
            VM's history says so ('sparc log --name NAME').
            Examples:
              sparc schedule add --name web --every hourly --keep-last 24 --keep-daily 7
              sparc schedule add --name db --every '*:0/15' --refuse-secrets
              sparc schedule list
              sparc schedule rm --name web
            """,
        subcommands: [Add.self, List.self, Remove.self, Record.self])

    struct UnitOptions: ParsableArguments {
        @Option(help: "Where the units go (default: /etc/systemd/system).") var unitDir = "/etc/systemd/system"
        @Flag(help: "Write or remove the units only: no 'systemctl daemon-reload', enable or disable.") var noEnable = false

        func systemctl(_ args: [String]) throws {
            guard !noEnable else { return }
            guard Subprocess.which("systemctl") != nil else {
                throw SparcError("systemctl is not here: the units are in \(unitDir); enable the timer once systemd runs, or pass --no-enable")
            }
            let r = try Subprocess.run(["systemctl"] + args, timeout: 60)
            guard r.status == 0 else { throw SparcError("systemctl \(args.joined(separator: " ")) failed: \(r.stderrSummary)") }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Schedule a VM's checkpoints (a systemd timer and service).")
        @Option(help: "Name of the VM.") var name: String = "default"
        @Option(help: "When, as systemd's OnCalendar= (hourly, daily, '*:0/15', 'Mon..Fri 02:00').") var every: String
        @OptionGroup var retention: RetentionOptions
        @Flag(help: "Each run refuses to keep a checkpoint in which the credential scan finds a secret.") var refuseSecrets = false
        @Flag(help: "Replace the VM's schedule if it has one.") var replace = false
        @OptionGroup var connection: ConnectOption
        @OptionGroup var units: UnitOptions

        func run() throws {
            var schedule = CheckpointSchedule(vm: name, onCalendar: every)
            schedule.retention = retention.policy
            schedule.refuseSecrets = refuseSecrets
            schedule.connect = connection.uri
            // The scheduled runs see the directories in force now.
            let environment = ProcessInfo.processInfo.environment
            for key in ["SPARC_BUNDLES", "SPARC_STATE_DIR", "SPARC_RUNTIME_DIR", "SPARC_RAM_DIR", "SPARC_STORE_PASSPHRASE_FILE", "SPARC_CONFIG"] {
                if let v = environment[key], !v.isEmpty { schedule.environment[key] = FileSystem.absolute(v) }
            }
            try schedule.validate()
            if Subprocess.which("systemd-analyze") != nil, !units.noEnable {
                let check = try Subprocess.run(["systemd-analyze", "calendar", every], timeout: 30)
                guard check.status == 0 else { throw SparcError("'\(every.terminalSafe)' is not a systemd calendar expression: \(check.stderrSummary)") }
            }
            let binary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            try schedule.install(in: units.unitDir, binary: binary, replace: replace)
            try units.systemctl(["daemon-reload"])
            try units.systemctl(["enable", "--now", schedule.timerName])
            print("scheduled VM '\(name)': \(every)\(schedule.pruneArguments().map { ", then " + $0.joined(separator: " ") } ?? "") (\(units.unitDir)/\(schedule.timerName))")
            if units.noEnable { print("not enabled (--no-enable): systemctl daemon-reload && systemctl enable --now \(schedule.timerName)") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the VMs with scheduled checkpoints.")
        @Option(help: "Where the units are (default: /etc/systemd/system).") var unitDir = "/etc/systemd/system"
        @Flag(help: "Print the schedules as JSON.") var json = false

        func run() throws {
            let schedules = CheckpointSchedule.scheduled(in: unitDir).compactMap { CheckpointSchedule.read(vm: $0, directory: unitDir) }
            if json { return try printJSON(schedules, key: "schedules") }
            if schedules.isEmpty { return print("no scheduled checkpoints in \(unitDir) ('sparc schedule add' adds one)") }
            print(pad("VM", 16) + pad("WHEN", 20) + "THEN")
            for s in schedules {
                print(pad(s.vm, 16) + pad(s.onCalendar, 20) + (s.pruneArguments()?.joined(separator: " ") ?? "(no retention)") + (s.refuseSecrets ? ", refusing secrets" : ""))
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Stop and remove a VM's scheduled checkpoints (its checkpoints stay).")
        @Option(help: "Name of the VM.") var name: String = "default"
        @OptionGroup var units: UnitOptions

        func run() throws {
            guard VMName.isValid(name) else { throw SparcError("'\(name.terminalSafe)' is not a VM name sparc accepts") }
            let timer = CheckpointSchedule.unitPrefix + name + ".timer"
            guard CheckpointSchedule.scheduled(in: units.unitDir).contains(name) else {
                throw SparcError("VM '\(name)' has no scheduled checkpoints in \(units.unitDir) (see 'sparc schedule list')")
            }
            try units.systemctl(["disable", "--now", timer])
            let removed = try CheckpointSchedule.remove(vm: name, in: units.unitDir)
            try units.systemctl(["daemon-reload"])
            for r in removed { print("removed \(r)") }
        }
    }

    /// Run by the service's `ExecStopPost`: how the run ended goes into the VM's history.
    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Record how a scheduled run ended (run by the service).", shouldDisplay: false)
        @Option(help: "Name of the VM.") var name: String
        @Option(help: "systemd's $SERVICE_RESULT.") var result: String
        @Option(help: "systemd's $EXIT_STATUS.") var exitStatus: String = ""

        func run() throws {
            try RuntimeLayout.validate(name: name)
            if try VMManager().recordScheduledRun(name, result: result, exitStatus: exitStatus) {
                printError("sparc: the scheduled checkpoint of '\(name)' failed (\(result.terminalSafe)); recorded in its history")
            }
        }
    }
}

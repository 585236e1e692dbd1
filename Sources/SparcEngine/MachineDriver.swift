import Foundation
import GuestQuery
import Hypervisor
import Libvirt
import SnapshotModel
import SparcSupport

/// Where the machines a command names come from, as one table of the operations whose work
/// differs (libvirt's qemu driver keeps one such table): sparc's own QEMU (`OwnDriver`) or a
/// libvirt daemon (`LibvirtDriver`). The engine asks its `driver` and never which it is.
protocol MachineDriver {
    /// The libvirt URI (nil: sparc's own VMs), passed on to a guardian.
    var connect: String? { get }
    /// Refuses a name this kind of machine cannot carry, before its lock is taken.
    func validate(name: String) throws
    /// The running machine of that name, for a checkpoint.
    func machine(_ name: String, manager: VMManager) throws -> Machine
    /// After a checkpoint failed: the error that says its QEMU died under it (and what was
    /// cleaned up), nil while nothing more is to be said.
    func explainCheckpointFailure(_ name: String, cause: Error, manager: VMManager) -> Error?
    /// The machine a bundle is restored into under that name.
    func restoreTarget(reader: BundleReader, name: String, policy: RestorePolicy, manager: VMManager) throws -> RestoreTarget
    /// Undoes a checkpoint or restore of that machine that died holding its guest; returns what was done.
    func recoverAbandoned(_ name: String, by who: String, manager: VMManager) -> String?
    /// A client for the running machine's agent.
    func agentClient(_ name: String, timeout: TimeInterval, manager: VMManager) throws -> AgentClient
    /// The identity its rollback-sensitive data is kept under.
    func identity(of name: String, manager: VMManager) throws -> String
    /// The host end of the guest's terminal port.
    func terminalSocket(_ name: String, manager: VMManager) throws -> String
}

extension VMManager {
    /// The driver for the machines this manager names: libvirt's domains under `connect`,
    /// else sparc's own VMs.
    var driver: MachineDriver { connect.map { LibvirtDriver(uri: $0) } ?? OwnDriver() }
}

/// sparc's own VMs: QEMU processes it started, found through their runtime directories.
struct OwnDriver: MachineDriver {
    var connect: String? { nil }

    func validate(name: String) throws {}

    func machine(_ name: String, manager: VMManager) throws -> Machine { try OwnMachine(name: name, manager: manager) }

    func explainCheckpointFailure(_ name: String, cause: Error, manager: VMManager) -> Error? {
        manager.cleanUpAfterQEMUDied(name, during: "the checkpoint", cause: cause, outcome: "no bundle was written")
    }

    func restoreTarget(reader: BundleReader, name: String, policy: RestorePolicy, manager: VMManager) throws -> RestoreTarget {
        try OwnRestoreTarget(reader: reader, name: name, manager: manager)
    }

    func recoverAbandoned(_ name: String, by who: String, manager: VMManager) -> String? {
        let layout = manager.layout(name)
        guard FileSystem.exists(layout.atWorkMarker) || FileSystem.exists(layout.pausedMarker),
            let state = try? VMState.load(layout.stateFile), QEMUProcess.isQEMU(state.pid)
        else { return nil }
        return manager.recoverFromDeadFreeze(name, layout: layout, by: who)
    }

    func agentClient(_ name: String, timeout: TimeInterval, manager: VMManager) throws -> AgentClient {
        _ = try manager.running(name)
        return AgentClient(socketPath: manager.layout(name).agentSocket, timeout: timeout)
    }

    func identity(of name: String, manager: VMManager) throws -> String {
        guard let id = try manager.registry.identity(of: name) else {
            throw SparcError("no VM named '\(name)' has been started on this host, so it has no rollback-sensitive data")
        }
        return id
    }

    func terminalSocket(_ name: String, manager: VMManager) throws -> String { manager.layout(name).terminalSocket }
}

/// The domains of one libvirt daemon, reached through libvirt's API.
struct LibvirtDriver: MachineDriver {
    let uri: String

    var connect: String? { uri }

    func validate(name: String) throws {
        guard VMName.isValid(name) else {
            throw SparcError("domain name '\(name.terminalSafe)' cannot name a sparc history (letters, digits, '.', '_' and '-', 1 to 64 characters)")
        }
    }

    func machine(_ name: String, manager: VMManager) throws -> Machine { try DomainMachine(uri: uri, name: name, manager: manager) }

    func explainCheckpointFailure(_ name: String, cause: Error, manager: VMManager) -> Error? { nil }

    func restoreTarget(reader: BundleReader, name: String, policy: RestorePolicy, manager: VMManager) throws -> RestoreTarget {
        try DomainRestoreTarget(reader: reader, uri: uri, name: name, policy: policy, manager: manager)
    }

    func recoverAbandoned(_ name: String, by who: String, manager: VMManager) -> String? {
        manager.recoverAbandonedDomain(name, uri: uri, by: who)
    }

    func agentClient(_ name: String, timeout: TimeInterval, manager: VMManager) throws -> AgentClient {
        let client = try LibvirtDomains.agentClient(uri: uri, domain: name, timeout: timeout)
        // A domain checkpoint or restore that died with the guest frozen or paused: undone now.
        if VMName.isValid(name), FreezeMarker.read(manager.layout(name).atWorkMarker).map({ !$0.writerAlive }) == true {
            if let connection = try? LibvirtConnection(uri: uri), (try? connection.state(of: name)) == "paused" { try? connection.resume(name) }
            manager.recoverFromDeadFreeze(name, layout: manager.layout(name), agentSocket: client.socketPath)
        }
        return client
    }

    func identity(of name: String, manager: VMManager) throws -> String {
        // A libvirt domain's data is kept under its UUID.
        try LibvirtConnection(uri: uri).uuid(of: name)
    }

    func terminalSocket(_ name: String, manager: VMManager) throws -> String {
        // libvirt's QEMU listens where `libvirt prepare` put the port; input holds live in sparc's runtime directory.
        try FileSystem.makeDirectory(manager.layout(name).directory)
        return DomainPreparation.terminalSocket(domain: name)
    }
}

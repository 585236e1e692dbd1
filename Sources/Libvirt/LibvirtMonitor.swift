import CLibvirt
import Foundation
import Hypervisor
import SparcSupport

/// QMP on a libvirt domain's QEMU, through libvirt (which holds the monitor socket).
///
/// libvirt starts QEMU with `-sandbox …,spawn=deny`, so device state cannot go to an `exec:`
/// helper: the descriptor it is written to travels with the command
/// (`virDomainQemuMonitorCommandWithFiles`) and QEMU migrates into `fd:NAME`.
public final class LibvirtMonitor: MachineMonitor {
    let connection: LibvirtConnection
    let domain: OpaquePointer
    public let name: String

    init(connection: LibvirtConnection, domain: OpaquePointer, name: String) {
        self.connection = connection
        self.domain = domain
        self.name = name
    }

    deinit { virDomainFree(domain) }

    @discardableResult
    public func execute(_ command: String, _ arguments: [String: Any]?, fds: [Int32], timeout: TimeInterval?) throws -> Any {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        let text = String(decoding: try JSONSerialization.data(withJSONObject: message), as: UTF8.self)
        var result: UnsafeMutablePointer<CChar>?
        var descriptors = fds
        let rc = descriptors.withUnsafeMutableBufferPointer { buffer in
            virDomainQemuMonitorCommandWithFiles(domain, text, UInt32(buffer.count), buffer.baseAddress, nil, nil, &result, 0)
        }
        guard rc == 0, let result else {
            throw SparcError("libvirt could not run \(command) on domain '\(name)': \(LibvirtConnection.lastError())")
        }
        defer { free(result) }
        let reply = try QMPClient.parse(Data(String(cString: result).utf8))
        if let error = reply["error"] as? [String: Any] {
            throw SparcError("QEMU refused \(command): \(error["desc"] as? String ?? "unknown error")")
        }
        return reply["return"] ?? [String: Any]()
    }
}

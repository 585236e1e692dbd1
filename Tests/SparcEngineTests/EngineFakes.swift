import Foundation
import GuestQuery
import Hypervisor
import SparcSupport
import TestSupport

@testable import SparcEngine

#if canImport(Glibc)
    import Glibc
#endif

/// QMP as a checkpoint and a restore use it: capabilities, a descriptor, a migration into
/// it (the device state written) or from it (the device state read), its state.
final class FakeMonitor: MachineMonitor {
    var passed: Int32 = -1
    var failMigration = false
    /// The device state a restore handed over.
    var received = Data()
    func execute(_ command: String, _ arguments: [String: Any]?, fds: [Int32], timeout: TimeInterval?) throws -> Any {
        switch command {
        case "getfd": passed = dup(fds[0])
        case "migrate":
            if failMigration { throw SparcError("migration refused (injected)") }
            _ = "QEVM device state".withCString { write(passed, $0, strlen($0)) }
            close(passed)
        case "migrate-incoming":
            if failMigration { throw SparcError("incoming migration refused (injected)") }
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(passed, &chunk, chunk.count)
                if n <= 0 { break }
                received.append(chunk, count: n)
            }
            close(passed)
        case "query-migrate": return ["status": "completed"]
        default: break
        }
        return [String: Any]()
    }
}

/// The guest agent's side: hello, freeze, owners, no memory layout (an older agent), thaw,
/// and at a restore reseed and the clock; `refuseThaw` makes it fail to thaw.
final class FakeGuestAgent {
    var server: LineServer!
    var path: String { server.path }
    var frozen = false
    var thaws = 0
    var refuseThaw = false
    let lock = NSLock()

    init(dir: String) throws {
        server = try LineServer(path: dir + "/agent.sock") { [unowned self] line in
            guard case .success(let request) = AgentFraming.decodeRequest(line) else { return [] }
            return [AgentFraming.encode(self.answer(request))]
        }
    }

    func answer(_ request: AgentRequest) -> AgentResponse {
        lock.lock()
        defer { lock.unlock() }
        switch request.op {
        case .hello:
            return AgentResponse(
                id: request.id,
                hello: HelloInfo(agentVersion: "fake", protocolVersion: 1, kernel: "k", pid: 1, bootId: "b", uptimeSeconds: 1, frozen: frozen))
        case .freeze:
            frozen = true
            return AgentResponse(id: request.id, freeze: FreezeResult(processes: 3, milliseconds: 1))
        case .thaw:
            if refuseThaw { return AgentResponse(id: request.id, error: AgentFailure(.failed, "thaw refused (injected)")) }
            let was = frozen
            frozen = false
            thaws += 1
            return AgentResponse(id: request.id, freeze: FreezeResult(processes: 3, milliseconds: 1, wasFrozen: was))
        case .reseed:
            return AgentResponse(id: request.id)
        case .setClock:
            return AgentResponse(id: request.id, clock: ClockResult(stepSeconds: 0))
        case .owners:
            return AgentResponse(id: request.id, owners: OwnerMap())
        default:
            return AgentResponse(id: request.id, error: AgentFailure(.unknownOperation, "not in the fake"))
        }
    }

}

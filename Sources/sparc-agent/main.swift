#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// sparc-agent: answers the host over the virtio-serial port `org.sparc.agent.0`.
///
/// It never logs what it relays and keeps no copy of command output after sending.
let agentVersion = SparcVersion.number

/// Finds the /dev node of the named virtio-serial port.
func findPort(named name: String) -> String? {
    let base = "/sys/class/virtio-ports"
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] {
        let portName = GuestSystem.readText("\(base)/\(entry)/name")?.trimmed
        if portName == name { return "/dev/\(entry)" }
    }
    return nil
}

final class Agent {
    let fd: Int32
    let writeLock = Lock()
    let freezer = Freezer()
    let bootId = GuestSystem.readText("/proc/sys/kernel/random/boot_id")?
        .trimmed ?? ""

    init(fd: Int32) { self.fd = fd }

    func send(_ response: AgentResponse) {
        let frame = AgentFraming.encode(response)
        writeLock.withLock {
            _ = frame.withUnsafeBytes { FileSystem.writeAll(fd: fd, $0) }
        }
    }

    func handle(_ request: AgentRequest) -> AgentResponse {
        do {
            switch request.op {
            case .hello:
                let uptime = GuestSystem.uptime()
                var uts = utsname()
                uname(&uts)
                let release = withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                return AgentResponse(
                    id: request.id,
                    hello: HelloInfo(
                        agentVersion: agentVersion, protocolVersion: AgentProtocol.version, kernel: release,
                        pid: getpid(), bootId: bootId, uptimeSeconds: uptime, frozen: freezer.isFrozen, leaseLeft: freezer.leaseLeft))
            case .processes:
                return AgentResponse(id: request.id, processes: GuestSystem.processes())
            case .ttys:
                return AgentResponse(id: request.id, ttys: GuestSystem.ttys())
            case .exec:
                guard let params = request.exec else { throw AgentFailure(.invalidArgument, "exec needs parameters") }
                // While the guest is frozen, run commands beside the agent so they are not frozen too.
                let cgroup = freezer.isFrozen ? freezer.agent : freezer.exec
                return AgentResponse(id: request.id, exec: try Executor.run(params, cgroup: cgroup))
            case .freeze:
                // A checkpoint without exclusion: nothing for a restore of it to clean up (a plan
                // left by a cancelled collection must not travel into this one's RAM).
                freezer.setPendingCleanup(nil)
                return AgentResponse(id: request.id, freeze: try freezer.set(frozen: true))
            case .thaw:
                let wasFrozen = freezer.isFrozen
                if request.recovering == true {
                    // The freeze's owner died: thaw as the lease would have.
                    freezer.thawAsOwnerless()
                    return AgentResponse(id: request.id, freeze: FreezeResult(processes: 0, milliseconds: 0, wasFrozen: wasFrozen))
                }
                // The host is in charge again (a checkpoint done, or a restore that cleaned up or chose --no-kill).
                freezer.setPendingCleanup(nil)
                var result = try freezer.set(frozen: false)
                result.wasFrozen = wasFrozen
                return AgentResponse(id: request.id, freeze: result)
            case .collect:
                guard let params = request.collect else { throw AgentFailure(.invalidArgument, "collect needs parameters") }
                // Collecting needs a frozen guest; freezing here saves the host a round trip.
                if !freezer.isFrozen { _ = try freezer.set(frozen: true) }
                let plan = try ExclusionCollector(params).run(frozen: freezer.isFrozen)
                // Thawed meanwhile (the checkpoint was cancelled): no plan to carry.
                guard freezer.isFrozen else { throw AgentFailure(.failed, "the guest was thawed while its exclusion was collected") }
                // Carried in the RAM the checkpoint copies: a restored guest can clean up even if its host never returns.
                freezer.setPendingCleanup(
                    CleanupRequest(
                        kill: plan.processes, drain: params.scope == .all ? plan.processes : [],
                        drainExited: params.scope == .all ? plan.exitedPids ?? [] : [], evictFiles: plan.evictFiles, removeFiles: plan.removeFiles))
                return AgentResponse(id: request.id, plan: plan)
            case .cleanup:
                guard let params = request.cleanup else { throw AgentFailure(.invalidArgument, "cleanup needs parameters") }
                freezer.setPendingCleanup(nil)
                return AgentResponse(id: request.id, cleanup: Cleanup.run(params))
            case .reseed:
                guard let entropy = request.entropy, !entropy.isEmpty else { throw AgentFailure(.invalidArgument, "reseed needs entropy") }
                // Written to /dev/urandom: mixed into the pool (the kernel also reseeds on the new VM generation id).
                let fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw AgentFailure(.failed, "cannot open /dev/urandom") }
                defer { close(fd) }
                let n = entropy.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                guard n == entropy.count else { throw AgentFailure(.failed, "cannot write /dev/urandom") }
                return AgentResponse(id: request.id)
            case .owners:
                return AgentResponse(id: request.id, owners: try OwnerMapCollector.collect())
            case .memoryLayout:
                return AgentResponse(id: request.id, memoryLayout: try MemoryLayoutCollector.collect())
            case .setClock:
                guard let setting = request.clock else { throw AgentFailure(.invalidArgument, "setClock needs the host's time") }
                return AgentResponse(id: request.id, clock: try GuestClock.set(to: setting))
            case .poweroff:
                // A frozen guest cannot shut down; its services must run to stop cleanly.
                if freezer.isFrozen { _ = try freezer.set(frozen: false) }
                let command =
                    FileSystem.exists("/run/systemd/system") ? ["systemctl", "poweroff", "--no-block"] : ["poweroff"]
                _ = try Executor.run(ExecRequest(argv: command, detach: true), cgroup: freezer.exec)
                return AgentResponse(id: request.id, poweroff: PowerOffResult(command: command))
            case .terminal:
                return AgentResponse(id: request.id, terminal: try TerminalRelay.ensure(cgroup: freezer.exec))
            }
        } catch let failure as AgentFailure {
            return AgentResponse(id: request.id, error: failure)
        } catch {
            return AgentResponse(id: request.id, error: AgentFailure(.failed, "\(error)"))
        }
    }

    /// Reads frames forever. A read of 0 bytes means the host side is closed (between
    /// connections, or across a restore): wait and read again on the same descriptor.
    func serve() -> Never {
        var lines = LineBuffer(maxLine: AgentProtocol.maxFrameBytes)
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 {
                if errno != EINTR { usleep(100_000) }
                continue
            }
            if n == 0 {
                usleep(50_000)
                continue
            }
            for frame in lines.append(Data(buf[0..<n])) {
                guard case .line(let line) = frame else {
                    send(AgentResponse(id: nil, error: AgentFailure(.badFrame, "frame larger than \(AgentProtocol.maxFrameBytes) bytes")))
                    continue
                }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
                switch AgentFraming.decodeRequest(line) {
                case .failure(let response):
                    send(response)
                case .success(let request):
                    // Only the work of the checkpoint or restore that froze the guest keeps it frozen.
                    switch request.op {
                    case .freeze, .collect:
                        freezer.setLease(request.leaseSeconds)
                        freezer.renewLease()
                    case .owners, .memoryLayout, .cleanup, .reseed, .setClock, .thaw: freezer.renewLease()
                    case .hello, .processes, .ttys, .exec, .terminal, .poweroff: break
                    }
                    // Requests run concurrently so a long exec does not hold up a freeze or ps.
                    startThread { [self] in
                        send(handle(request))
                        // What the request's work freed goes back to the guest (a checkpoint's
                        // collection and owner map are megabytes the guest would lack after it).
                        _ = sparc_release_free_memory()
                    }
                }
            }
        }
    }
}

signal(SIGPIPE, SIG_IGN)
// Freed heap memory is zeroed (glibc M_PERTURB with a zero low byte), so what the agent
// relayed does not linger in its memory, where a checkpoint would keep it.
_ = sparc_zero_freed_memory()
let args = CommandLine.arguments
if args.count == 3 && args[1] == "relay" {
    TerminalRelay.run(device: args[2])
}
if (args.first.map { $0.hasSuffix("sparc-rsdm") } ?? false) || args.dropFirst().first == "rsdm" {
    RSDMClient.main(Array(args.dropFirst(args.first!.hasSuffix("sparc-rsdm") ? 1 : 2)))
}
if args.count == 2 && args[1] == "thaw" {
    // Run by systemd after the agent ended (ExecStopPost): an agent that dies while the guest
    // is frozen must not leave it frozen.
    Freezer.thawAfterAgent()
    exit(0)
}
if args.count == 3 && args[1] == "keeper", let watched = pid_t(args[2]) {
    Freezer.keep(watching: watched)
}
if args.contains("--version") {
    print("sparc-agent \(agentVersion) (protocol \(AgentProtocol.version))")
    exit(0)
}
var path = findPort(named: AgentProtocol.portName)
var waited = 0
while path == nil {
    // The port appears once virtio_console has probed; do not spin.
    sleep(1)
    waited += 1
    if waited % 30 == 0 {
        printError("sparc-agent: waiting for virtio port \(AgentProtocol.portName)")
    }
    path = findPort(named: AgentProtocol.portName)
}
let fd = open(path!, O_RDWR | O_CLOEXEC)
if fd < 0 {
    printError("sparc-agent: cannot open \(path!): \(String(cString: strerror(errno)))")
    exit(1)
}
let agent = Agent(fd: fd)
agent.freezer.setUp()
// Spawned by the main thread, which lives as long as the agent: the keeper hears of its death.
agent.freezer.startKeeper()
agent.freezer.startWatchdog()
ForkLineage.shared.start()
// Loaded from the start: its write ledger records who writes into which pipe or socket, so
// that data an excluded process left in someone else's queue can be found later.
do { try ExclusionCollector.loadHelper() } catch { printError("sparc-agent: kernel helper not loaded: \((error as? AgentFailure)?.message ?? "\(error)")") }
_ = ExclusionCollector.helperLoadedAtStart
agent.serve()

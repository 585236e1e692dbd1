#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestProcfs
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Their pipes, sockets, terminals and kernel stacks, and what they left in others' queues.
struct KernelBuffersChannel: ExclusionChannel {
    let phase = "kernel"
    let kernelScopeOnly = true
    func collect(_ processes: [ExcludedProcess], into collector: ExclusionCollector) throws { try collector.collectKernelBuffers(processes) }
}

/// Kernel buffers (pipes, sockets, terminals, kernel stacks) through the kernel helper.
extension ExclusionCollector {
    /// Loads the kernel helper: the default guest's copy (insmod), or the one DKMS built for
    /// the running kernel from the sparc-guest package (modprobe).
    static func loadHelper() throws {
        if FileSystem.exists(helperPath) {
            setTerminalOffsetsIfUnset()
            return
        }
        let offsets = try terminalOffsets()
        let params = offsets.map { "\($0.name)=\($0.value)" }
        let r: ProcessResult
        if FileSystem.exists(helperModule) {
            r = try Subprocess.run(["insmod", helperModule] + params)
        } else {
            r = try Subprocess.run(["modprobe", "sparc_helper"] + params)
        }
        guard r.status == 0, FileSystem.exists(helperPath) else {
            var uts = utsname()
            uname(&uts)
            let release = withUnsafeBytes(of: &uts.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if !FileSystem.exists(helperModule) && r.stderrText.contains("not found") {
                throw AgentFailure(
                    .failed,
                    "the kernel helper is not built for the guest's kernel \(release) (install linux-headers-\(release) in the guest, then run 'dkms autoinstall')")
            }
            throw AgentFailure(.failed, "the kernel helper could not be loaded: \(r.stderrSummary)")
        }
    }

    /// The guest's boot-time clock (ns) just after the agent's start loaded the kernel helper
    /// (or tried to): a write ledger that began later was loaded again since. Read first by
    /// the agent's start (main.swift).
    static let helperLoadedAtStart: UInt64 = {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }()

    /// Where the private `struct n_tty_data` keeps its read and echo buffers, from the
    /// guest kernel's BTF, as the helper's parameter names and values.
    static func terminalOffsets() throws -> [(name: String, value: Int)] {
        guard let btf = try? BTF(), let off = btf.memberOffsets(of: "n_tty_data", members: ["read_buf", "echo_buf"]),
            let read = off["read_buf"], let echo = off["echo_buf"]
        else { throw AgentFailure(.failed, "struct n_tty_data is not described in the guest kernel's BTF") }
        return [("n_tty_read_buf_offset", read), ("n_tty_echo_buf_offset", echo)]
    }

    /// A helper loaded by hand (`modprobe sparc_helper`) has no terminal offsets: set them
    /// through its parameters. When that fails the helper answers "blind" and the
    /// collection refuses (fail closed), so a failure here need not be thrown.
    static func setTerminalOffsetsIfUnset() {
        guard let offsets = try? terminalOffsets() else { return }
        for (name, value) in offsets {
            let path = "/sys/module/sparc_helper/parameters/\(name)"
            guard let now = try? FileSystem.readFile(path), String(decoding: now, as: UTF8.self).hasPrefix("-1") else { continue }
            let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            try? FileSystem.writeAll(fd: fd, Data("\(value)\n".utf8), path: path)
            close(fd)
        }
    }

    /// Sends the kernel helper one request ("pids" to collect, "drain" to drop, with the
    /// descendants that have exited after "exited") and returns its answer.
    static func askHelper(_ verb: String, _ pids: [Int32], exited: [Int32] = []) throws -> String {
        let fd = open(helperPath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw AgentFailure(.failed, "cannot open \(helperPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // The helper takes one write of at most 64 KiB: the oldest exited descendants go first.
        var command = verb + " " + pids.map(String.init).joined(separator: " ")
        var tail = exited.isEmpty ? "" : " exited " + exited.map(String.init).joined(separator: " ")
        if command.utf8.count + tail.utf8.count > 60_000 {
            let room = max(0, 60_000 - command.utf8.count) / 8
            tail = " exited " + exited.suffix(room).map(String.init).joined(separator: " ")
        }
        command += tail + "\n"
        let wrote = command.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard wrote == command.utf8.count else {
            throw AgentFailure(.failed, "kernel helper refused the request: \(String(cString: strerror(errno)))")
        }
        var text = Data()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            text.append(buf, count: n)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// What a queue someone else holds that the excluded processes wrote into became.
    static func peerQueueNote(kind: String, holder: Int32, bytes: UInt64) -> String {
        let who = describe(holder)
        switch kind {
        case "pipe": return "\(who) holds a pipe the excluded processes wrote into: its \(bytes) unread byte(s) are left out, and the pipe is emptied at restore (its reader finds no more data)"
        case "tcp": return "\(who) has \(bytes) unread byte(s) the excluded processes sent on a loopback TCP connection: left out; at restore the connection is reset"
        case "udp": return "\(who) has \(bytes) byte(s) of datagrams the excluded processes sent: left out, and dropped at restore"
        default: return "\(who) has \(bytes) unread byte(s) the excluded processes sent on a unix socket: left out, and dropped at restore"
        }
    }

    /// "pid 300 (cat)".
    static func describe(_ pid: Int32) -> String {
        "pid \(pid) (\(GuestSystem.stat(of: pid)?.comm ?? "?"))"
    }

    func collectKernelBuffers(_ processes: [ExcludedProcess]) throws {
        do {
            try Self.loadHelper()
        } catch let f as AgentFailure {
            throw AgentFailure(.failed, "\(f.message); --scope all needs it (use --scope user to save without kernel buffers)")
        }
        let text = try Self.askHelper("pids", processes.map(\.pid), exited: exitedPids)
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 4 else { continue }
            switch f[0] {
            case "gone": warnings.append("pid \(f[1]) exited during collection")
            case "blind":
                try gap("the kernel helper does not know where the guest kernel keeps a terminal's typed input (loaded without its terminal offsets, and they could not be set): terminal buffers cannot be left out")
            case "overflow": try gap("the kernel helper's answer overflowed its 8 MiB: kernel buffers past that point were not collected")
            case "talked":
                guard let holder = Int32(f[2]) else { continue }
                talks.insert(Conversations.Talk(holder: holder, kind: String(f[1])))
            case "peer":
                guard let holder = Int32(f[2]), let bytes = UInt64(f[3], radix: 16) else { continue }
                warnings.append(Self.peerQueueNote(kind: String(f[1]), holder: holder, bytes: bytes))
            case "unattributed":
                guard let holder = Int32(f[2]), let bytes = UInt64(f[3], radix: 16) else { continue }
                possibleCopies.append(
                    "\(Self.describe(holder)) has \(bytes) unread byte(s) on a loopback \(f[1] == "tcp" ? "TCP connection" : "UDP socket") from a sender sparc cannot name (gone, and sent before the kernel helper began to record or its record was lost): kept; end that reader, or restore knowing it may hold the excluded processes' data")
            case "ledger":
                guard let probes = UInt32(f[1], radix: 16), let lost = UInt64(f[2], radix: 16) else { continue }
                // Bit 0: pipe_write, 1-2: tcp_sendmsg/tcp_sendpage, 3-4: udp_sendmsg/udpv6_sendmsg,
                // 5-7: unix_stream_sendmsg/unix_stream_sendpage/unix_dgram_sendmsg (ledger.c).
                if probes & 1 == 0 {
                    possibleCopies.append("the kernel helper cannot watch pipe writes here: what the excluded processes wrote into pipes others hold cannot be found")
                }
                if probes & 0b1010_0000 != 0b1010_0000 {
                    possibleCopies.append("the kernel helper cannot watch unix socket sends here: what the excluded processes sent on sockets they closed cannot be found")
                }
                if probes & 0b110 == 0 || probes & 0b1_1000 == 0 {
                    possibleCopies.append("the kernel helper cannot watch TCP or UDP sends here: what the excluded processes sent to local receivers cannot be found")
                }
                if lost > 0 {
                    possibleCopies.append("the kernel helper's write ledger lost \(lost) older record(s): data written long ago into others' queues may not be attributed")
                }
                // Writes before the ledger began are in no record. The agent loads the helper at
                // its own start, so only a ledger begun after that (the helper loaded late, or
                // unloaded and loaded again) leaves a gap the README does not already name: a
                // process older than such a ledger may have left data in a queue someone else
                // holds that nothing can find.
                let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
                let nsPerTick: UInt64 = 1_000_000_000 / hz
                if let since = UInt64(f[3], radix: 16), since > Self.helperLoadedAtStart {
                    for p in processes {
                        let started: UInt64 = p.startTime * nsPerTick
                        guard started < since else { continue }
                        let seconds = Int((since - started) / 1_000_000_000)
                        possibleCopies.append(
                            "pid \(p.pid) started \(seconds) s before the kernel helper began to record writes: what it wrote before then into pipes and sockets others hold cannot be found")
                    }
                }
            default:
                guard let kind = ExcludedKind(rawValue: String(f[0])), let start = UInt64(f[2], radix: 16),
                    let len = UInt64(f[3], radix: 16)
                else { continue }
                byteRanges[kind, default: []].append(start..<start + len)
            }
        }
    }
}

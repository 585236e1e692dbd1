import Foundation
import Libvirt
import GuestQuery
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The guest's serial console, reached through QEMU's console socket.
///
/// Input waits while a checkpoint runs: what reached a terminal between the collection of
/// its buffers and the pause would land in buffers nobody collected. Each write holds a
/// shared lock on the VM's hold file until QEMU has taken the bytes; a checkpoint holds it
/// exclusively from before its collection until the guest runs again (and a killed
/// checkpoint's lock dies with it).
public struct SerialConsole {
    /// The key that detaches an interactive session: Ctrl-] (as telnet and virsh console).
    public static let detachByte: UInt8 = 0x1D

    public let socketPath: String
    /// The VM's input hold (`RuntimeLayout.inputHold`).
    public let holdPath: String

    public init(socketPath: String, holdPath: String) {
        self.socketPath = socketPath
        self.holdPath = holdPath
    }

    /// Expands `\n`, `\r`, `\t`, `\e`, `\\` and `\xHH` in operator-typed text.
    public static func unescape(_ text: String) -> Data {
        var out = Data()
        var it = Array(text.utf8)[...]
        while let c = it.popFirst() {
            guard c == UInt8(ascii: "\\"), let n = it.popFirst() else {
                out.append(c)
                continue
            }
            switch n {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "e"): out.append(0x1B)
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "x"):
                let hex = String(decoding: it.prefix(2), as: UTF8.self)
                if hex.count == 2, let v = UInt8(hex, radix: 16) {
                    out.append(v)
                    it = it.dropFirst(2)
                } else {
                    out.append(contentsOf: [UInt8(ascii: "\\"), n])
                }
            default: out.append(contentsOf: [UInt8(ascii: "\\"), n])
            }
        }
        return out
    }

    /// Types `data` into the console, a little at a time, as a person would
    /// (the guest's 16-byte UART FIFO drops bytes sent in one burst).
    public func send(_ data: Data) throws {
        let socket = try connect()
        defer { socket.close() }
        var i = 0
        while i < data.count {
            let chunk = data[data.startIndex + i..<data.startIndex + min(data.count, i + 8)]
            try pass(Data(chunk), to: socket)
            i += chunk.count
            usleep(2000)
        }
        // Give QEMU a moment to pass the last bytes on before the connection closes.
        usleep(100_000)
    }

    /// Writes input unless a checkpoint holds it (then waits), and returns once QEMU has
    /// taken it (or after a second: a paused guest takes nothing).
    func pass(_ data: Data, to socket: UnixSocket) throws {
        try FileLock.withLock(holdPath, shared: true) {
            try socket.write(data, deadline: Date().addingTimeInterval(10))
            let deadline = Date().addingTimeInterval(1)
            var queued: Int32 = 0
            while ioctl(socket.fd, UInt(TIOCOUTQ), &queued) == 0, queued > 0, Date() < deadline { usleep(1000) }
        }
    }

    func connect() throws -> UnixSocket {
        do {
            return try UnixSocket.connect(to: socketPath)
        } catch {
            throw SparcError("console socket \(socketPath) is not reachable: is the VM running?")
        }
    }

    /// Relays the operator's terminal to the console until Ctrl-] (or end of input).
    public func attach(input: Int32 = 0, output: Int32 = 1) throws {
        let socket = try connect()
        defer { socket.close() }
        var saved = termios()
        let isTTY = isatty(input) == 1
        if isTTY {
            tcgetattr(input, &saved)
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(input, TCSANOW, &raw)
        }
        defer { if isTTY { tcsetattr(input, TCSANOW, &saved) } }
        var buf = [UInt8](repeating: 0, count: 4096)
        var inputOpen = true
        while true {
            var fds = [pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)]
            if inputOpen { fds.append(pollfd(fd: input, events: Int16(POLLIN), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), inputOpen ? -1 : 500) < 0 {
                if errno == EINTR { continue }
                break
            }
            if !inputOpen && fds[0].revents == 0 { return }  // input ended and the guest went quiet
            if fds[0].revents != 0 {
                let n = recv(socket.fd, &buf, buf.count, 0)
                if n <= 0 { throw SparcError("console connection closed (the VM stopped?)") }
                var off = 0
                while off < n {
                    let w = buf.withUnsafeBytes { write(output, $0.baseAddress! + off, n - off) }
                    if w <= 0 { break }
                    off += w
                }
            }
            if inputOpen && fds.count > 1 && fds[1].revents != 0 {
                let n = read(input, &buf, buf.count)
                if n <= 0 {
                    inputOpen = false
                    continue
                }
                if isTTY, let i = buf[0..<n].firstIndex(of: Self.detachByte) {
                    if i > 0 { try pass(Data(buf[0..<i]), to: socket) }
                    return
                }
                try pass(Data(buf[0..<n]), to: socket)
            }
        }
    }
}

extension VMManager {
    public func console(_ name: String) throws -> SerialConsole {
        _ = try running(name)
        return SerialConsole(socketPath: layout(name).consoleSocket, holdPath: layout(name).inputHold)
    }

    /// Starts (or finds) the guest's terminal relay and returns the pty it serves and the
    /// host end to talk to it (the VM's second serial port).
    public func terminal(_ name: String) throws -> (info: TerminalInfo, console: SerialConsole) {
        let agent = try agentClient(name)
        defer { agent.close() }
        let info = try agent.terminal()
        return (info, SerialConsole(socketPath: try driver.terminalSocket(name, manager: self), holdPath: layout(name).inputHold))
    }
}

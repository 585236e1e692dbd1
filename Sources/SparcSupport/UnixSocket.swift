#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif
import CSparcSupport

/// A connected Unix stream socket with deadline-bounded reads and writes.
public final class UnixSocket {
    public let fd: Int32
    public let path: String
    private var closed = false

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close() }

    /// The process at the other end (SO_PEERCRED: the kernel's record of who listened or
    /// connected), nil when the kernel does not say.
    public var peerProcess: pid_t? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc hides the type without _GNU_SOURCE).
        var cred: (Int32, UInt32, UInt32) = (0, 0, 0)
        var len = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, cred.0 > 0 else { return nil }
        return cred.0
    }

    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw SparcError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    /// Binds and listens on `path`; returns the listening descriptor (used by test peers).
    public static func listen(at path: String, backlog: Int32 = 4) throws -> Int32 {
        var addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SparcError.posix("socket") }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw SparcError.posix("cannot listen on", path, errno: code)
        }
        return fd
    }

    /// Connects to the socket at `path`, failing with a clear error when nobody listens.
    public static func connect(to path: String) throws -> UnixSocket {
        var addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SparcError.posix("socket") }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let code = errno
            Glibc.close(fd)
            throw SparcError.posix("cannot connect to", path, errno: code)
        }
        return UnixSocket(fd: fd, path: path)
    }

    public func close() {
        if !closed {
            closed = true
            Glibc.close(fd)
        }
    }

    /// Waits until the socket is readable (or writable), up to `deadline`.
    /// Returns false on timeout.
    public func wait(for events: Int16, until deadline: Date?) throws -> Bool {
        while true {
            var p = pollfd(fd: fd, events: events, revents: 0)
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline.timeIntervalSinceNow
                if left <= 0 { return false }
                timeout = Int32(min(left * 1000, Double(Int32.max)).rounded(.up))
            }
            let rc = poll(&p, 1, timeout)
            if rc < 0 {
                if errno == EINTR { continue }
                throw SparcError.posix("poll", path)
            }
            if rc == 0 { continue }
            return true
        }
    }

    /// Writes all of `data`, or throws when the deadline passes first. `fds` travel with the
    /// first bytes (SCM_RIGHTS), as QEMU's monitor expects for `getfd` and `add-fd`.
    public func write(_ data: Data, fds: [Int32] = [], deadline: Date? = nil) throws {
        var offset = 0
        var pendingFDs = fds
        while offset < data.count {
            guard try wait(for: Int16(POLLOUT), until: deadline) else {
                throw SparcError("timed out writing to \(path)")
            }
            let n = data.withUnsafeBytes { raw -> Int in
                if !pendingFDs.isEmpty {
                    return pendingFDs.withUnsafeBufferPointer {
                        sparc_send_with_fds(fd, raw.baseAddress! + offset, raw.count - offset, $0.baseAddress, Int32($0.count))
                    }
                }
                return send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 { pendingFDs = [] }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw SparcError.posix("write to", path)
            }
            offset += n
        }
    }

    /// Reads whatever is available (at most `max` bytes), waiting up to `deadline`.
    /// Returns nil on timeout and an empty Data at end of stream.
    public func read(max: Int = 65536, deadline: Date?) throws -> Data? {
        guard try wait(for: Int16(POLLIN), until: deadline) else { return nil }
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = recv(fd, &buffer, max, Int32(MSG_DONTWAIT))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return try read(max: max, deadline: deadline) }
                throw SparcError.posix("read from", path)
            }
            return Data(buffer[0..<n])
        }
    }
}

/// Splits a byte stream into newline-terminated frames with a size bound.
public struct LineBuffer {
    public private(set) var pending = Data()
    public let maxLine: Int

    public init(maxLine: Int = 64 << 20) { self.maxLine = maxLine }

    public enum Frame: Equatable {
        case line(Data)
        /// A line longer than `maxLine`: its bytes were dropped up to the next newline, all
        /// but its first `headBytes` (enough to find a request's id and answer it).
        case oversized(head: Data)
    }

    /// What an oversized line keeps of its start.
    public static let headBytes = 256

    private var discarding = false
    private var head = Data()

    /// Adds bytes and returns every complete frame they finish.
    public mutating func append(_ data: Data) -> [Frame] {
        var frames: [Frame] = []
        var chunk = data[...]
        while let nl = chunk.firstIndex(of: 0x0A) {
            let part = chunk[chunk.startIndex..<nl]
            chunk = chunk[(nl + 1)...]
            if discarding {
                discarding = false
                pending.removeAll()
                frames.append(.oversized(head: head))
                head = Data()
                continue
            }
            if pending.count + part.count > maxLine {
                let start = (pending + part.prefix(Self.headBytes)).prefix(Self.headBytes)
                pending.removeAll()
                frames.append(.oversized(head: Data(start)))
                continue
            }
            pending.append(contentsOf: part)
            frames.append(.line(pending))
            pending = Data()
        }
        if !discarding {
            pending.append(contentsOf: chunk)
            if pending.count > maxLine {
                head = Data(pending.prefix(Self.headBytes))
                pending.removeAll()
                discarding = true
            }
        }
        return frames
    }
}

import Foundation
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A unix socket server for tests that speaks newline-framed requests, one client at a time
/// (as the guest agent's port does): each line goes to `reply`, whose frames are written back.
/// The fake agents of the engine and protocol tests are this server with their own replies.
public final class LineServer {
    public let path: String
    private let listener: Int32

    /// Listens at `path` (a new temporary path when nil).
    public init(path: String? = nil, reply: @escaping (Data) -> [Data]) throws {
        self.path = path ?? NSTemporaryDirectory() + "line-server-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        listener = try UnixSocket.listen(at: self.path)
        let fd = listener
        Thread.detachNewThread {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    // Closed here, never in deinit: a descriptor number freed while this thread
                    // could still accept on it would be the next test's listener.
                    close(fd)
                    return
                }
                var buffer = Data()
                var chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = read(c, &chunk, chunk.count)
                    if n <= 0 { break }
                    buffer.append(chunk, count: n)
                    while let nl = buffer.firstIndex(of: 0x0A) {
                        let line = Data(buffer[buffer.startIndex..<nl])
                        buffer = Data(buffer[(nl + 1)...])
                        for frame in reply(line) { _ = frame.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                    }
                }
                close(c)
            }
        }
    }

    deinit {
        // Wakes the accepting thread, which closes the listener.
        shutdown(listener, Int32(SHUT_RDWR))
        unlink(path)
    }
}

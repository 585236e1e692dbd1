#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `sparc-rsdm get|set|incr|del KEY [VALUE]` and `sparc-rsdm epoch`: the guest's access to
/// the host's rollback-sensitive data store over the `org.sparc.rsdm.0` port.
enum RSDMClient {
    static let usage = "usage: sparc-rsdm get KEY | set KEY VALUE | incr KEY [BY] | del KEY | epoch"

    static func fail(_ message: String, _ code: Int32 = 2) -> Never {
        printError("sparc-rsdm: \(message)")
        exit(code)
    }

    static func main(_ args: [String]) -> Never {
        guard let op = args.first else { fail(usage) }
        var request: [String: String] = ["op": op, "id": String(UInt64.random(in: 1...UInt64.max))]
        switch (op, args.count) {
        case ("get", 2), ("del", 2), ("incr", 2): request["key"] = args[1]
        case ("set", 3), ("incr", 3):
            request["key"] = args[1]
            request["value"] = args[2]
        case ("epoch", 1): break
        default: fail(usage)
        }
        guard let port = findPort(named: VirtioPortName.rsdm) else { fail("no RSDM port in this VM") }
        // The port opens once at a time: wait for another sparc-rsdm to finish.
        var fd: Int32 = -1
        for _ in 0..<100 {
            fd = open(port, O_RDWR | O_CLOEXEC | O_NONBLOCK)
            if fd >= 0 || errno != EBUSY { break }
            usleep(50_000)
        }
        guard fd >= 0 else { fail("cannot open \(port): \(String(cString: strerror(errno)))") }
        // Sorted keys put the id first: a request the host refuses as too large is answered under it.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(request)) ?? Data()
        var frame = Data([0x0A]) + body
        frame.append(0x0A)
        // The port is non-blocking: a large request goes out in pieces, as the host takes them.
        var sent = 0
        let sendBy = Date().addingTimeInterval(10)
        while sent < frame.count {
            let n = frame.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            if n > 0 {
                sent += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) && Date() < sendBy {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, 100)
            } else {
                fail("the host RSDM service is not connected")
            }
        }
        var lines = LineBuffer(maxLine: 64 << 10)
        var buf = [UInt8](repeating: 0, count: 8192)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 200)
            let n = read(fd, &buf, buf.count)
            if n <= 0 {
                usleep(20_000)
                continue
            }
            for f in lines.append(Data(buf[0..<n])) {
                guard case .line(let line) = f,
                    let obj = try? JSONDecoder().decode([String: RSDMValue].self, from: line),
                    obj["id"]?.string == request["id"]
                else { continue }
                if obj["ok"]?.bool != true { fail(obj["error"]?.string ?? "request refused") }
                if op == "get" || op == "incr" || op == "epoch" {
                    guard let v = obj["value"]?.string else { fail("no such key", 1) }
                    print(v)
                }
                exit(0)
            }
        }
        fail("the host RSDM service did not answer")
    }
}

/// A JSON scalar of the RSDM protocol.
enum RSDMValue: Decodable {
    case string(String), bool(Bool), null
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) } else if let s = try? c.decode(String.self) { self = .string(s) } else { self = .null }
    }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
}

import Foundation
import SparcSupport
import TestSupport
import XCTest

@testable import GuestQuery

final class ProtocolTests: XCTestCase {
    func decode(_ text: String) -> Result<AgentRequest, AgentResponse> {
        AgentFraming.decodeRequest(Data(text.utf8))
    }

    func testRequestRoundTrip() throws {
        let request = AgentRequest(id: 42, op: .exec, exec: ExecRequest(argv: ["echo", "hi"], detach: true, stdin: Data([0, 1]), timeoutMs: 5))
        let frame = AgentFraming.encode(request)
        XCTAssertEqual(frame.last, 0x0A)
        XCTAssertEqual(frame.filter { $0 == 0x0A }.count, 1, "a frame is exactly one line")
        XCTAssertEqual(try decode(String(decoding: frame.dropLast(), as: UTF8.self)).get(), request)
    }

    func testResponseRoundTripKeepsBinaryOutput() throws {
        let r = AgentResponse(id: 7, exec: ExecResult(status: 3, pid: 9, stdout: Data([0, 0x0A, 0xFF]), stderr: Data("e".utf8)))
        let back = try JSONDecoder().decode(AgentResponse.self, from: AgentFraming.encode(r))
        XCTAssertEqual(back, r)
        XCTAssertTrue(back.ok)
    }

    func testBadFramesGetErrorsWithTheirIdWhenReadable() {
        guard case .failure(let notJSON) = decode("hello there") else { return XCTFail() }
        XCTAssertEqual(notJSON.error?.code, .badFrame)
        XCTAssertNil(notJSON.id)
        XCTAssertFalse(notJSON.ok)

        guard case .failure(let version) = decode(#"{"v":99,"id":5,"op":"hello"}"#) else { return XCTFail() }
        XCTAssertEqual(version.error?.code, .unsupportedVersion)
        XCTAssertEqual(version.id, 5)

        guard case .failure(let unknown) = decode(#"{"v":1,"id":6,"op":"format-disk"}"#) else { return XCTFail() }
        XCTAssertEqual(unknown.error?.code, .unknownOperation)
        XCTAssertEqual(unknown.id, 6)

        guard case .failure(let noId) = decode(#"{"v":1,"op":"hello"}"#) else { return XCTFail() }
        XCTAssertEqual(noId.error?.code, .invalidArgument)

        guard case .failure(let badExec) = decode(#"{"v":1,"id":8,"op":"exec","exec":{"argv":"ls"}}"#) else { return XCTFail() }
        XCTAssertEqual(badExec.error?.code, .invalidArgument)
        XCTAssertEqual(badExec.id, 8)

        guard case .failure(let empty) = decode("  ") else { return XCTFail() }
        XCTAssertEqual(empty.error?.code, .badFrame)
    }
}

/// A fake agent on a Unix socket: answers with a scripted reply per request.
final class FakeAgent {
    let server: LineServer
    var path: String { server.path }
    init(reply: @escaping (AgentRequest) -> [Data]) throws {
        server = try LineServer { line in
            guard case .success(let request) = AgentFraming.decodeRequest(line) else { return [] }
            return reply(request)
        }
    }
}

final class AgentClientTests: XCTestCase {
    let hello = HelloInfo(agentVersion: "t", protocolVersion: 1, kernel: "k", pid: 1, bootId: "b", uptimeSeconds: 1, frozen: false)

    func testStaleAnswersAreSkipped() throws {
        let hello = self.hello
        let agent = try FakeAgent { request in
            // An answer left over from an earlier connection arrives first, then garbage, then ours.
            [AgentFraming.encode(AgentResponse(id: request.id &- 1, hello: hello)), Data("not json\n".utf8),
             AgentFraming.encode(AgentResponse(id: request.id, hello: hello))]
        }
        let client = AgentClient(socketPath: agent.path, timeout: 3)
        XCTAssertEqual(try client.hello(), hello)
    }

    func testAgentErrorsBecomeClearErrors() throws {
        let agent = try FakeAgent { [AgentFraming.encode(AgentResponse(id: $0.id, error: AgentFailure(.notFound, "no such pid 77")))] }
        let client = AgentClient(socketPath: agent.path, timeout: 3)
        XCTAssertThrowsError(try client.processes()) { XCTAssertEqual("\($0)", "guest agent: no such pid 77") }
    }

    func testSilentAgentTimesOut() throws {
        let agent = try FakeAgent { _ in [] }
        let client = AgentClient(socketPath: agent.path, timeout: 0.3)
        XCTAssertThrowsError(try client.hello()) { XCTAssertTrue("\($0)".contains("did not answer")) }
    }

    /// A hostile agent's words never reach the terminal raw: its error message, its version,
    /// process names and terminal names are guest text, escaped on their way out.
    func testAgentTextIsEscapedOnEveryWayOut() throws {
        let evil = "\u{1B}]0;owned\u{07}\u{1B}[2J\u{9B}31m\u{202E}"
        let hello = HelloInfo(agentVersion: "9" + evil, protocolVersion: 1, kernel: evil, pid: 1, bootId: "b", uptimeSeconds: 1, frozen: false)
        let agent = try FakeAgent { request in
            switch request.op {
            case .hello: return [AgentFraming.encode(AgentResponse(id: request.id, hello: hello))]
            case .processes:
                return [AgentFraming.encode(AgentResponse(id: request.id, processes: [
                    GuestProcess(pid: 5, ppid: 1, user: evil, state: "S", tty: "pts/0" + evil, rssKiB: 1, command: "sh " + evil, kernelThread: false)
                ]))]
            default: return [AgentFraming.encode(AgentResponse(id: request.id, error: AgentFailure(.failed, "bad " + evil)))]
            }
        }
        let client = AgentClient(socketPath: agent.path, timeout: 3)
        func clean(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertFalse(text.unicodeScalars.contains { $0.value < 0x20 || (0x7F..<0xA0).contains($0.value) || $0.value == 0x202E }, text, file: file, line: line)
        }
        let h = try client.hello()
        clean("sparc-agent \(h.agentVersion) on \(h.kernel)")
        XCTAssertEqual(h.agentVersion.unescaped, "9" + evil, "the text itself is kept for comparisons and JSON")
        let p = try XCTUnwrap(client.processes().first)
        clean("\(p.user) \(p.tty ?? "?") \(p.command)")
        XCTAssertThrowsError(try client.thaw()) { clean("\($0)") }
    }

    /// An answer past the frame limit ends the call at once with one clear error, not a timeout.
    func testOversizedAnswerIsAClearErrorAtOnce() throws {
        let agent = try FakeAgent { _ in [Data(repeating: 0x20, count: AgentProtocol.maxFrameBytes + 10) + Data([0x0A])] }
        let client = AgentClient(socketPath: agent.path, timeout: 120)
        XCTAssertThrowsError(try client.processes()) { XCTAssertTrue("\($0)".contains("larger than"), "\($0)") }
    }

    /// A frame of millions of tiny values (cheap to send, costly to decode) is refused before decoding.
    func testAnswerOfTooManyValuesIsRefused() throws {
        let agent = try FakeAgent { request in
            var frame = Data(#"{"id":\#(request.id),"ok":true,"ttys":[{"name":"x","kind":"pty","pids":["#.utf8)
            frame.append(Data(repeating: 0, count: 0))
            let values = Data(String(repeating: "1,", count: AgentProtocol.maxFrameValues + 10).utf8)
            frame.append(values)
            frame.append(Data("1]}]}\n".utf8))
            return [frame]
        }
        let client = AgentClient(socketPath: agent.path, timeout: 60)
        XCTAssertThrowsError(try client.ttys()) { XCTAssertTrue("\($0)".contains("JSON values"), "\($0)") }
    }

    func testMissingSocketIsAClearError() {
        let client = AgentClient(socketPath: "/nonexistent/agent.sock", timeout: 1)
        XCTAssertThrowsError(try client.hello()) { XCTAssertTrue("\($0)".contains("is the VM running")) }
    }
}

/// The agent client's typed errors: no agent, and an agent that stays silent.
final class AgentErrorTests: XCTestCase {
    func testNoAgentAndASilentAgentAreTheirOwnCases() throws {
        let dir = NSTemporaryDirectory() + "sparc-agenterror-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
        defer { FileSystem.removeTree(dir) }
        let nobody = AgentClient(socketPath: dir + "/none.sock", timeout: 1)
        XCTAssertThrowsError(try nobody.hello()) { XCTAssertEqual($0 as? AgentError, .unreachable(socket: dir + "/none.sock")) }
        // Something listens (the kernel accepts into the backlog) and never answers.
        let listener = try UnixSocket.listen(at: dir + "/silent.sock")
        defer { close(listener) }
        let silent = AgentClient(socketPath: dir + "/silent.sock", timeout: 0.3)
        defer { silent.close() }
        XCTAssertThrowsError(try silent.hello()) { XCTAssertEqual($0 as? AgentError, .noAnswer(operation: "hello", seconds: "0.3")) }
    }
}

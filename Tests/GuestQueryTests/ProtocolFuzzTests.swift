import Foundation
import SparcSupport
import TestSupport
import XCTest

@testable import GuestQuery

/// The agent reads frames from the host and the host reads the agent's answers (a guest can
/// be hostile): FuzzBudget.cases (10,000 in make test) mutated requests and as many mutated responses end in a request or an
/// error response, an answer or a decoding error, never a crash.
final class ProtocolFuzzTests: XCTestCase {
    func frames() -> [Data] {
        [
            AgentFraming.encode(AgentRequest(id: 7, op: .exec, exec: ExecRequest(argv: ["sh", "-c", "echo hi"], stdin: Data("in".utf8), timeoutMs: 500))),
            AgentFraming.encode(AgentRequest(id: 8, op: .collect, collect: ExclusionRequest(pids: [12, 13], names: ["bash"], ttys: ["pts/0"], bestEffort: true))),
            AgentFraming.encode(
                AgentRequest(
                    id: 9, op: .cleanup,
                    cleanup: CleanupRequest(
                        kill: [ExcludedProcess(pid: 12, command: "", reason: "pid 12", startTime: 5)], drain: [], evictFiles: ["/a"], removeFiles: []))),
            AgentFraming.encode(AgentRequest(id: 10, op: .reseed, entropy: Data(repeating: 7, count: 64))),
        ].map { $0.last == 0x0A ? $0.dropLast() : $0 }
    }

    func testMutatedRequestsAreAnsweredCleanly() {
        let base = frames()
        var mutator = Mutator(seed: 0xA9E7)
        var requests = 0, failures = 0
        for i in 0..<FuzzBudget.cases {
            let frame = base[i % base.count]
            let input = i % 2 == 0 ? mutator.bytes(frame) : (mutator.jsonDocument(frame, rounds: 1 + mutator.below(3)) ?? mutator.bytes(frame))
            switch AgentFraming.decodeRequest(input) {
            case .success: requests += 1
            case .failure(let response):
                failures += 1
                XCTAssertNotNil(response.error, "case \(i)")
            }
        }
        print("request fuzz: \(requests) decoded, \(failures) refused")
        XCTAssertGreaterThan(failures, FuzzBudget.cases * 3 / 10)
    }

    func testMutatedResponsesDecodeOrFailCleanly() throws {
        let plan = ExclusionPlan(
            ranges: [ExcludedRange(start: 4096, length: 8192, kind: .user)], processes: [ExcludedProcess(pid: 3, command: "x", reason: "pid 3", startTime: 1)],
            bytes: ["user": 8192], warnings: ["w"])
        let base = AgentFraming.encode(AgentResponse(id: 3, plan: plan)).dropLast()
        var mutator = Mutator(seed: 0xFEED)
        var decoded = 0
        for i in 0..<FuzzBudget.cases {
            let input = i % 2 == 0 ? mutator.bytes(base) : (mutator.jsonDocument(base, rounds: 1 + mutator.below(3)) ?? mutator.bytes(base))
            if let response = try? JSONDecoder().decode(AgentResponse.self, from: input) {
                decoded += 1
                // The host unpacks the ranges of a plan it was given: a hostile packing must not trap.
                _ = response.plan?.ranges
            }
        }
        print("response fuzz: \(decoded) decoded")
    }
}

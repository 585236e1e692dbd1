import Foundation
import SparcSupport
import XCTest

@testable import SparcEngine

final class HistoryTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-history-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    func makeLog() throws -> HistoryLog {
        let log = try HistoryLog(directory: dir, vm: "v")
        try log.append(.boot)
        try log.append(.checkpoint, bundle: "/b/one.sparc", bundleDigest: "aa", epoch: 0)
        try log.append(.restore, bundle: "/b/one.sparc", bundleDigest: "aa", epoch: 1)
        try log.append(.stop)
        return log
    }

    var logFile: String { dir + "/history/v.log" }

    func lines() throws -> [String] {
        String(decoding: try FileSystem.readFile(logFile), as: UTF8.self).split(separator: "\n").map(String.init)
    }

    func write(_ lines: [String]) throws {
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: logFile))
    }

    func testADiscardedCheckpointIsNotTheNewest() throws {
        let log = try makeLog()
        try log.append(.checkpoint, bundle: "/b/two.sparc", bundleDigest: "bb", epoch: 1)
        try log.append(.discarded, bundle: "/b/two.sparc", bundleDigest: "bb", detail: "removed by --refuse-secrets")
        XCTAssertEqual(HistoryLog.keptCheckpoints(try log.entries()).map(\.bundleDigest), ["aa"], "the refused bundle is gone: one.sparc is the newest")
        XCTAssertEqual(try log.verify(), [])
    }

    /// A pruned checkpoint is recorded, and stays the newest for the rollback check: the VM
    /// went on from it, so restoring an older one is still a rollback.
    func testAPrunedCheckpointIsStillTheNewest() throws {
        let log = try makeLog()
        try log.append(.checkpoint, bundle: "web-2", bundleDigest: "bb", epoch: 1)
        try log.append(.pruned, bundle: "web-2", bundleDigest: "bb", detail: "pruned (--keep-last 1)")
        XCTAssertEqual(HistoryLog.keptCheckpoints(try log.entries()).last?.bundleDigest, "bb")
        XCTAssertEqual(try log.entries().last?.event, .pruned)
        XCTAssertEqual(try log.verify(), [])
    }

    func testIntactChainAndKeyMode() throws {
        let log = try makeLog()
        XCTAssertEqual(try log.verify(), [])
        XCTAssertEqual(try log.entries().map(\.seq), [1, 2, 3, 4])
        var st = stat()
        stat(dir + "/history.key", &st)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testEditIsDetected() throws {
        let log = try makeLog()
        var l = try lines()
        l[1] = l[1].replacingOccurrences(of: "\"bundleDigest\":\"aa\"", with: "\"bundleDigest\":\"bb\"")
        try write(l)
        XCTAssertEqual(try log.verify().first, "entry 2 (seq 2, checkpoint) was edited: its MAC does not match")
    }

    func testDeleteIsDetected() throws {
        let log = try makeLog()
        var l = try lines()
        l.remove(at: 1)
        try write(l)
        let problems = try log.verify()
        XCTAssertTrue(problems.contains { $0.contains("removed") }, "\(problems)")
    }

    func testReorderIsDetected() throws {
        let log = try makeLog()
        var l = try lines()
        l.swapAt(1, 2)
        try write(l)
        let problems = try log.verify()
        XCTAssertTrue(problems.contains { $0.contains("out of order") }, "\(problems)")
    }

    func testTruncationIsDetected() throws {
        let log = try makeLog()
        try write(Array(try lines().prefix(3)))
        let problems = try log.verify()
        XCTAssertTrue(problems.contains { $0.contains("removed from the end") }, "\(problems)")
    }

    /// A command killed between writing its entry and the head record leaves the head one
    /// entry behind: that is a crash, not tampering, and the next entry puts the head right.
    /// Removing that last entry is still detected.
    func testCrashBetweenEntryAndHeadIsNotTampering() throws {
        let log = try makeLog()
        let headFile = dir + "/history/v.head"
        XCTAssertTrue(FileSystem.exists(headFile), "head at \(headFile)")
        let all = try log.entries()
        let behind = Data("\(all[all.count - 2].seq) \(all[all.count - 2].mac)\n".utf8)
        try behind.write(to: URL(fileURLWithPath: headFile))
        XCTAssertEqual(try log.verify(), [], "the state a SIGKILL between the two writes leaves")
        try log.append(.boot)
        XCTAssertEqual(try log.verify(), [])
        // The head behind and the last entry gone: the chain is shorter than the head says.
        try behind.write(to: URL(fileURLWithPath: headFile))
        try write(Array(try lines().prefix(all.count - 2)))
        XCTAssertTrue(try log.verify().contains { $0.contains("removed from the end") })
    }

    /// Fifty writers killed (SIGKILL) at random points of their appends: the log always
    /// verifies, and every entry a writer was told was appended is in it.
    func testKillsAtRandomPointsNeverCorruptTheLogOrLoseAnAcknowledgedEntry() throws {
        let log = try HistoryLog(directory: dir, vm: "v")
        try log.append(.boot)
        var acknowledged: Set<Int> = []
        for round in 0..<50 {
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(pipe(&fds), 0)
            let pid = fork()
            if pid == 0 {
                close(fds[0])
                let child = try! HistoryLog(directory: dir, vm: "v")
                while true {
                    if let entry = try? child.append(.checkpoint, bundle: "/b/\(round).sparc", bundleDigest: "aa", epoch: round) {
                        var seq = Int64(entry.seq)
                        _ = Glibc.write(fds[1], &seq, 8)
                    }
                }
            }
            close(fds[1])
            // Progress the writer itself reports, not a span of time (a loaded machine writes
            // less per millisecond): once it acknowledged 1 to 4 appends, the kill lands at a
            // random point of a later one.
            var seq: Int64 = 0
            for _ in 0..<Int.random(in: 1...4) where read(fds[0], &seq, 8) == 8 { acknowledged.insert(Int(seq)) }
            usleep(useconds_t.random(in: 0...3_000))
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            while read(fds[0], &seq, 8) == 8 { acknowledged.insert(Int(seq)) }
            close(fds[0])
            XCTAssertEqual(try log.verify(), [], "round \(round)")
        }
        let kept = Set(try log.entries().map(\.seq))
        XCTAssertTrue(acknowledged.isSubset(of: kept), "acknowledged but lost: \(acknowledged.subtracting(kept).sorted())")
        XCTAssertGreaterThan(acknowledged.count, 50, "the writers got appends done between kills")
        // And the log takes appends after all that.
        try log.append(.stop)
        XCTAssertEqual(try log.verify(), [])
    }

    func testMissingKeyIsAClearError() throws {
        let log = try makeLog()
        unlink(dir + "/history.key")
        XCTAssertThrowsError(try log.verify()) { XCTAssertTrue("\($0)".contains("host key") && "\($0)".contains("missing"), "\($0)") }
    }
}

final class RSDMStoreTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-rsdm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    static let vmId = "0b7c2a4e-8f1d-4c3b-9a6e-5d4f3e2a1b0c"

    func testValuesEpochAndProtocol() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        XCTAssertNil(try s.get("a"))
        try s.set("a", "1")
        XCTAssertEqual(try s.increment("a"), 2)
        XCTAssertEqual(try s.increment("new", by: 5), 5)
        XCTAssertEqual(try s.nextEpoch(), 1)
        XCTAssertEqual(try s.epoch(), 1)
        try s.delete("a")
        XCTAssertEqual(try s.all(), ["new": "5"])
        let reply = String(decoding: s.handle(Data(#"{"id":"7","op":"incr","key":"new"}"#.utf8)), as: UTF8.self)
        XCTAssertTrue(reply.contains(#""value":"6""#) && reply.contains(#""id":"7""#), reply)
        let bad = String(decoding: s.handle(Data("nonsense".utf8)), as: UTF8.self)
        XCTAssertTrue(bad.contains(#""ok":false"#))
    }

    func testBoundsAreEnforced() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        XCTAssertThrowsError(try s.set("k", String(repeating: "x", count: RSDMStore.maxValueBytes + 1))) { XCTAssertTrue("\($0)".contains("too large")) }
        XCTAssertThrowsError(try s.set(String(repeating: "k", count: 65), "v"))
        XCTAssertThrowsError(try s.set("has space", "v"))
        for i in 0..<RSDMStore.maxKeys { try s.set("k\(i)", "v") }
        XCTAssertThrowsError(try s.set("one-more", "v")) { XCTAssertTrue("\($0)".contains("store full")) }
        try s.set("k0", "replaced is fine")
    }

    func testCorruptStoreIsAnErrorNotAReset() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        try s.set("guard.failures", "3")
        try Data("{garbage".utf8).write(to: URL(fileURLWithPath: s.path))
        XCTAssertThrowsError(try s.get("guard.failures")) { XCTAssertTrue("\($0)".contains("damaged")) }
        XCTAssertThrowsError(try s.increment("guard.failures"))
        XCTAssertEqual(String(decoding: try FileSystem.readFile(s.path), as: UTF8.self), "{garbage", "not silently reset")
    }

    /// A writer killed at random moments leaves the old or the new store, never garbage.
    func testKilledWriterNeverLeavesGarbage() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        try s.set("counter", "0")
        for round in 0..<20 {
            let pid = fork()
            if pid == 0 {
                let child = try! RSDMStore(directory: dir, vmId: Self.vmId)
                while true { _ = try? child.increment("counter") }
            }
            usleep(useconds_t(2000 + round * 500))
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            let value = try s.get("counter")
            XCTAssertNotNil(value.flatMap(Int.init), "round \(round): store unreadable or garbage")
        }
        XCTAssertGreaterThan(Int(try s.get("counter") ?? "0") ?? 0, 0)
    }

    /// Thirty writers at once, each setting its own key: none of the updates is lost.
    func testConcurrentWritersLoseNoUpdate() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        try s.set("seed", "1")
        var pids: [pid_t] = []
        for i in 0..<30 {
            let pid = fork()
            if pid == 0 {
                let child = try! RSDMStore(directory: dir, vmId: Self.vmId)
                _exit((try? child.set("k\(i)", "v\(i)")) != nil && (try? child.increment("shared")) != nil ? 0 : 1)
            }
            pids.append(pid)
        }
        for pid in pids {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            XCTAssertEqual(status, 0)
        }
        let all = try s.all()
        XCTAssertEqual(all.count, 32, "every key written: \(all.keys.sorted())")
        XCTAssertEqual(all["shared"], "30", "every increment counted")
    }

    /// A guest cannot crash the host service: an increment past Int.max is an error answer.
    func testOverflowAndHostileKeysAreErrors() throws {
        let s = try RSDMStore(directory: dir, vmId: Self.vmId)
        try s.set("big", String(Int.max))
        XCTAssertThrowsError(try s.increment("big")) { XCTAssertTrue("\($0)".contains("overflow"), "\($0)") }
        let reply = String(decoding: s.handle(Data(#"{"id":"1","op":"incr","key":"big","value":"1"}"#.utf8)), as: UTF8.self)
        XCTAssertTrue(reply.contains(#""ok":false"#) && reply.contains("overflow"), reply)
        let notNumber = String(decoding: s.handle(Data(#"{"id":"2","op":"incr","key":"big","value":"x"}"#.utf8)), as: UTF8.self)
        XCTAssertTrue(notNumber.contains(#""ok":false"#), notNumber)
        XCTAssertEqual(try s.get("big"), String(Int.max), "a failed increment changes nothing")
        XCTAssertThrowsError(try s.set("esc\u{1B}]0;owned\u{07}", "v")) { XCTAssertTrue("\($0)".contains("\\e"), "escaped in the error: \($0)") }
        XCTAssertThrowsError(try RSDMStore(directory: dir, vmId: "../../sparc-canary/passwd"))
    }
}

final class RSDMRefusalTests: XCTestCase {
    func testAnOversizedRequestIsAnsweredUnderItsId() throws {
        let answer = RSDMStore.refusal(head: Data(#"{"id":"1234567","key":"huge","op":"set","value":"vvvv"#.utf8), maxBytes: 64 << 10)
        let obj = try JSONSerialization.jsonObject(with: answer) as! [String: Any]
        XCTAssertEqual(obj["id"] as? String, "1234567")
        XCTAssertEqual(obj["ok"] as? Bool, false)
        XCTAssertTrue((obj["error"] as? String)?.contains("larger than 64 KiB") == true)
        XCTAssertEqual(answer.last, 0x0A)
        let anonymous = try JSONSerialization.jsonObject(with: RSDMStore.refusal(head: Data("garbage".utf8), maxBytes: 1024)) as! [String: Any]
        XCTAssertNil(anonymous["id"] as? String)
    }
}

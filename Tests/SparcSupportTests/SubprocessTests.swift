import Foundation
import SparcSupport
import TestSupport
import XCTest

final class SubprocessTests: XCTestCase {
    func testRunCapturesOutputAndStatus() throws {
        let r = try Subprocess.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stdoutText, "out\n")
        XCTAssertEqual(r.stderrSummary, "err")
    }

    func testRunFeedsLargeInputWithoutDeadlock() throws {
        let input = Data(repeating: 0x61, count: 1 << 20)
        let r = try Subprocess.run(["/bin/cat"], input: input)
        XCTAssertEqual(r.stdout, input)
    }

    func testMissingProgramIsAClearError() {
        XCTAssertThrowsError(try Subprocess.run(["/nonexistent/prog"])) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/prog"))
        }
        XCTAssertNil(Subprocess.which("surely-not-a-program-xyz", path: "/bin:/usr/bin"))
        XCTAssertEqual(Subprocess.which("sh", path: "/nonexistent:/bin"), "/bin/sh")
    }

    func testKilledChildReportsSignal() throws {
        let r = try Subprocess.run(["/bin/sh", "-c", "kill -9 $$"])
        XCTAssertEqual(r.status, 128 + 9)
    }

    func testOutputInputAndStatus() throws {
        let r = try Subprocess.run(["/bin/sh", "-c", "cat; echo err >&2; exit 3"], input: Data("in\n".utf8))
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stdoutText, "in\n")
        XCTAssertEqual(r.stderrText, "err\n")
        XCTAssertFalse(r.timedOut)
    }

    /// A child past its timeout is killed with everything it started, and the call returns.
    func testTimeoutKillsTheWholeSession() throws {
        let marker = "/tmp/sparc-subprocess-\(getpid())"
        defer { unlink(marker) }
        // The grandchild sleeps far longer than the test runs: returning at all proves it was not waited for.
        let r = try XCTAssertFinishes("a run past its timeout") {
            try Subprocess.run(["/bin/sh", "-c", "sleep 3000 & echo $! > \(marker); echo started; wait"], timeout: 1)
        }
        XCTAssertTrue(r.timedOut)
        XCTAssertEqual(r.status, 128 + SIGKILL)
        XCTAssertEqual(r.stdoutText, "started\n")
        let grandchild = try XCTUnwrap(Int32(String(decoding: FileManager.default.contents(atPath: marker) ?? Data(), as: UTF8.self).trimmed))
        // Killed, it is gone or a zombie waiting for init to reap it.
        usleep(200_000)
        let stat = String(decoding: FileManager.default.contents(atPath: "/proc/\(grandchild)/stat") ?? Data(), as: UTF8.self)
        XCTAssertTrue(stat.isEmpty || stat.contains(") Z "), "the grandchild was killed too: \(stat)")
    }

    /// A grandchild that keeps the pipes open after the child exited does not hold the caller.
    func testExitedChildIsNotHeldByItsGrandchild() throws {
        let r = try XCTAssertFinishes("a run whose grandchild holds the pipes") {
            try Subprocess.run(["/bin/sh", "-c", "echo done; sleep 3000 & exit 0"], newSession: true)
        }
        kill(-r.pid, SIGKILL)  // the grandchild, in the child's session
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdoutText, "done\n")
    }

    /// Nor does one that keeps writing into them.
    func testExitedChildIsNotHeldByAChattyGrandchild() throws {
        let r = try XCTAssertFinishes("a run whose grandchild keeps writing") {
            try Subprocess.run(["/bin/sh", "-c", "(while :; do echo tick; sleep 0.05; done) & echo done; exit 0"], newSession: true)
        }
        kill(-r.pid, SIGKILL)
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdoutText.hasPrefix("done\n") || r.stdoutText.contains("done\n"), r.stdoutText)
    }

    /// Output past the limit is dropped (and said so) while the child still runs to its end.
    func testOutputLimit() throws {
        let r = try Subprocess.run(["/bin/sh", "-c", "head -c 1000000 /dev/zero; echo end >&2"], outputLimit: 1000)
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(r.stdout.count, 1000)
        XCTAssertTrue(r.truncated)
        XCTAssertEqual(r.stderrText, "end\n")
    }

    func testPipesAreCloseOnExec() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(Subprocess.makePipe(&fds), 0)
        defer { fds.forEach { close($0) } }
        for fd in fds { XCTAssertEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) }
    }
}

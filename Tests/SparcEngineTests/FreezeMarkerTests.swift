import Foundation
import XCTest

@testable import SparcEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The marker a checkpoint or restore leaves while it holds a guest, and the liveness test
/// its guardian and the next command use on its writer.
final class FreezeMarkerTests: XCTestCase {
    func testMarkerRoundTripsWhatRecoveryNeeds() {
        let marker = FreezeMarker(operation: .checkpoint, pid: 4242, startTime: 99, staging: "/b/.x.sparc.partial-4242-ab", diverted: "vda")
        XCTAssertEqual(FreezeMarker.parse(marker.text), marker)
        let plain = FreezeMarker(operation: .restore, pid: 7, startTime: 1, staging: nil, diverted: nil)
        XCTAssertEqual(FreezeMarker.parse(plain.text), plain)
    }

    /// A marker is a file in a directory root owns, yet what recovery does with it is bounded:
    /// only a disk target's name is merged back, never a path or an option.
    func testOnlyADiskTargetNameIsTakenAsDiverted() {
        for bad in ["../vda", "vda --delete", "", String(repeating: "a", count: 40), "vd\u{0}a", "vdá"] {
            XCTAssertNil(FreezeMarker.parse("checkpoint 1 2\ndiverted \(bad)\n")?.diverted, bad)
        }
        XCTAssertEqual(FreezeMarker.parse("checkpoint 1 2\ndiverted sdb\n")?.diverted, "sdb")
        XCTAssertNil(FreezeMarker.parse("checkpoint 0 2\n"), "no pid 0")
        XCTAssertNil(FreezeMarker.parse("pause 1 2\n"), "no unknown operation")
    }

    /// A zombie is not a running writer: the guardian sees its command's pipe close before the
    /// command is reaped, and must not take it for a command still at work.
    func testZombieIsNotRunning() throws {
        let child = fork()
        if child == 0 { _exit(0) }
        XCTAssertGreaterThan(child, 0)
        var zombie = false
        for _ in 0..<500 where !zombie {
            zombie = ProcessLiveness.stat(child)?.state == "Z"
            if !zombie { usleep(2_000) }
        }
        XCTAssertTrue(zombie, "the child exited and is not reaped yet")
        XCTAssertFalse(ProcessLiveness.isRunning(child))
        var status: Int32 = 0
        waitpid(child, &status, 0)
        XCTAssertFalse(ProcessLiveness.isRunning(child), "reaped: gone")
        let me = try XCTUnwrap(ProcessLiveness.stat(getpid()))
        XCTAssertTrue(ProcessLiveness.isRunning(getpid(), startTime: me.startTime))
        XCTAssertFalse(ProcessLiveness.isRunning(getpid(), startTime: me.startTime + 1), "a reused pid is another process")
    }
}

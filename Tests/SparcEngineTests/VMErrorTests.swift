import Foundation
import SparcSupport
import TestSupport
import XCTest

@testable import SparcEngine

/// The engine's typed errors: callers (the TUI, the CLI, scripts through exit codes) tell a VM
/// that is not there from one that is busy without reading the words.
final class VMErrorTests: ScratchDirectoryTestCase {
    override var scratchSubdirectories: [String] { ["run", "state"] }

    func testNoVMAndABusyVMAreTheirOwnCases() throws {
        let manager = try VMManager(root: dir + "/run", stateDirectory: dir + "/state")
        XCTAssertThrowsError(try manager.running("nothing")) { XCTAssertEqual($0 as? VMError, .notRunning(name: "nothing")) }
        XCTAssertThrowsError(try manager.agentClient("nothing")) { XCTAssertEqual($0 as? VMError, .notRunning(name: "nothing")) }
        // Another command (another open of the lock file) holds the VM.
        do {
            let held = try XCTUnwrap(try FileLock(manager.lockPath("busy")))
            XCTAssertThrowsError(try manager.exclusively("busy", doing: "test") {}) {
                guard case .busy(name: "busy", _)? = $0 as? VMError else { return XCTFail("\($0)") }
                XCTAssertEqual(($0 as? UserFacingError)?.exitCode, 2)
            }
            withExtendedLifetime(held) {}
        }
        XCTAssertNoThrow(try manager.exclusively("busy", doing: "test") {}, "free once the other command let go")
    }
}

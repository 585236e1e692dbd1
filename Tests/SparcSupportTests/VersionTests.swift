import Foundation
import XCTest

@testable import SparcSupport

final class VersionTests: XCTestCase {
    /// The number compiled in is the one the VERSION file (and the guest package) carries.
    func testVersionMatchesTheVersionFile() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = try String(contentsOf: root.appendingPathComponent("VERSION"), encoding: .utf8)
        XCTAssertEqual(file.trimmingCharacters(in: .whitespacesAndNewlines), SparcVersion.number)
    }

    /// An installed binary reports the commit `make install` recorded beside it.
    func testInstalledBinaryReportsTheRecordedCommit() throws {
        let prefix = NSTemporaryDirectory() + "version-\(getpid())"
        defer { FileSystem.removeTree(prefix) }
        try FileSystem.makeDirectories(prefix + "/bin")
        try FileSystem.makeDirectories(prefix + "/share/sparc")
        try "abc1234\n".write(toFile: prefix + "/share/sparc/commit", atomically: true, encoding: .utf8)
        XCTAssertEqual(SparcVersion.describe(executable: prefix + "/bin/sparc"), "\(SparcVersion.number) (commit abc1234)")
        XCTAssertEqual(SparcVersion.describe(executable: "/nonexistent/bin/sparc"), SparcVersion.number)
    }
}

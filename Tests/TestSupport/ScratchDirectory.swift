import Foundation
import SparcSupport
import XCTest

/// A test case with a private directory of its own, made before each test (with the
/// subdirectories it names) and removed after.
open class ScratchDirectoryTestCase: XCTestCase {
    public var dir = ""

    /// Subdirectories made in `dir` before each test.
    open var scratchSubdirectories: [String] { [] }

    open override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-\(type(of: self))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
        for sub in scratchSubdirectories { try FileSystem.makeDirectories(dir + "/" + sub) }
    }

    open override func tearDown() { FileSystem.removeTree(dir) }
}

import Foundation
import XCTest

@testable import SparcSupport

/// sparc runs as root beside other users: what it removes and what it creates in a shared
/// directory must never reach a file of theirs or a file they point it at.
final class SafeFileSystemTests: XCTestCase {
    var dir = ""
    /// A directory of the test's own that stands for a file another user wants root to delete.
    var canary = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-fs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
        canary = dir + "/canary"
        try FileSystem.makeDirectory(canary)
        for i in 0..<5 { try Data("keep \(i)".utf8).write(to: URL(fileURLWithPath: canary + "/file\(i)")) }
    }

    override func tearDown() { FileSystem.removeTree(dir) }

    func canaryIntact(file: StaticString = #filePath, line: UInt = #line) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: canary)) ?? []
        XCTAssertEqual(names.sorted(), (0..<5).map { "file\($0)" }, "the canary lost files", file: file, line: line)
    }

    /// A tree with files and subdirectories at `path`.
    func makeTree(_ path: String, width: Int = 4) throws {
        try FileSystem.makeDirectories(path + "/sub/deeper")
        for i in 0..<width {
            try Data("x".utf8).write(to: URL(fileURLWithPath: path + "/f\(i)"))
            try Data("y".utf8).write(to: URL(fileURLWithPath: path + "/sub/f\(i)"))
            try Data("z".utf8).write(to: URL(fileURLWithPath: path + "/sub/deeper/f\(i)"))
        }
    }

    func testRemoveTreeRemovesEverythingAndMissingIsFine() throws {
        let tree = dir + "/tree"
        try makeTree(tree)
        XCTAssertEqual(FileSystem.removeTree(tree), [])
        XCTAssertFalse(FileSystem.exists(tree))
        XCTAssertEqual(FileSystem.removeTree(tree), [], "a missing tree is fine")
        XCTAssertEqual(FileSystem.removeTree(dir + "/no/such/parent/x"), [])
    }

    func testRemoveTreeUnlinksSymlinksWithoutFollowingThem() throws {
        let tree = dir + "/tree"
        try makeTree(tree)
        XCTAssertEqual(symlink(canary, tree + "/sub/link"), 0)
        XCTAssertEqual(symlink(canary + "/file0", tree + "/filelink"), 0)
        XCTAssertEqual(FileSystem.removeTree(tree), [])
        XCTAssertFalse(FileSystem.exists(tree))
        canaryIntact()
        // The top itself a link: the link goes, its target stays.
        XCTAssertEqual(symlink(canary, dir + "/top"), 0)
        XCTAssertEqual(FileSystem.removeTree(dir + "/top"), [])
        XCTAssertFalse(FileSystem.exists(dir + "/top"))
        canaryIntact()
    }

    /// The neighbour's attack: while root walks a tree, a subdirectory is swapped for a symlink
    /// to a directory root would never delete. Run many times against a swapper thread.
    func testRemoveTreeRacingADirectorySwapNeverReachesTheTarget() throws {
        for round in 0..<150 {
            let tree = dir + "/race\(round)"
            try makeTree(tree, width: 40)
            let stop = Cancellation()
            let swaps = SharedBox(0)
            let swapper = DispatchGroup()
            swapper.enter()
            DispatchQueue.global().async {
                defer { swapper.leave() }
                while !stop.isCancelled {
                    // sub → aside, a link to the canary in its place, then back.
                    if rename(tree + "/sub", tree + "/aside") == 0 {
                        _ = symlink(self.canary, tree + "/sub")
                        swaps.mutate { $0 += 1 }
                        _ = unlink(tree + "/sub")
                        _ = rename(tree + "/aside", tree + "/sub")
                    }
                }
            }
            _ = FileSystem.removeTree(tree)
            stop.cancel()
            swapper.wait()
            canaryIntact()
            // The swapper may have put pieces back after the walk: clean them up (same code).
            _ = FileSystem.removeTree(tree)
            if round == 149 { XCTAssertGreaterThan(swaps.value, 0, "the swapper never raced") }
        }
        canaryIntact()
    }

    /// Entries of another user inside a tree sparc removes stay where they are, and are named.
    func testRemoveTreeLeavesOtherUsersEntries() throws {
        try XCTSkipUnless(geteuid() == 0, "needs root to give a file to another user")
        let tree = dir + "/tree"
        try makeTree(tree)
        XCTAssertEqual(chown(tree + "/sub/f1", 65534, 65534), 0)
        let left = FileSystem.removeTree(tree)
        XCTAssertTrue(left.contains(tree + "/sub/f1"), "\(left)")
        XCTAssertTrue(FileSystem.exists(tree + "/sub/f1"))
        XCTAssertFalse(FileSystem.exists(tree + "/f0"))
        XCTAssertEqual(chown(tree + "/sub/f1", 0, 0), 0)
        XCTAssertEqual(FileSystem.removeTree(tree), [])
    }

    func testUniqueDirectoriesAndFilesAreNewAndPrivate() throws {
        let a = try FileSystem.makeUniqueDirectory(in: dir, prefix: ".x.partial-")
        let b = try FileSystem.makeUniqueDirectory(in: dir, prefix: ".x.partial-")
        XCTAssertNotEqual(a, b)
        var st = stat()
        XCTAssertEqual(lstat(a, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        let (fd, path) = try FileSystem.createUniqueFile(beside: dir + "/target", tag: "tmp")
        close(fd)
        XCTAssertTrue(path.hasPrefix(dir + "/target.tmp-"))
        XCTAssertEqual(lstat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testRenameNoReplaceNeverReplaces() throws {
        try Data("new".utf8).write(to: URL(fileURLWithPath: dir + "/new"))
        XCTAssertEqual(symlink(canary, dir + "/planted"), 0)
        XCTAssertThrowsError(try FileSystem.renameNoReplace(dir + "/new", to: dir + "/planted")) {
            XCTAssertEqual(($0 as? SparcError)?.posixCode, EEXIST)
        }
        canaryIntact()
        try FileSystem.renameNoReplace(dir + "/new", to: dir + "/fresh")
        XCTAssertEqual(try FileSystem.readFile(dir + "/fresh"), Data("new".utf8))
    }

    func testWriteAtomicallyNeverWritesThroughAPlantedLink() throws {
        let target = dir + "/state"
        // Every name the old code used (PATH.tmp-PID) planted as a link to the canary.
        XCTAssertEqual(symlink(canary + "/file0", target + ".tmp-\(getpid())"), 0)
        try FileSystem.writeAtomically(Data("state".utf8), to: target)
        XCTAssertEqual(try FileSystem.readFile(target), Data("state".utf8))
        XCTAssertEqual(try FileSystem.readFile(canary + "/file0"), Data("keep 0".utf8))
    }

    func testStagingDirectoryMovesItsFileAndLeavesNothing() throws {
        let target = dir + "/disk.qcow2"
        do {
            let staging = try StagingDirectory(beside: target)
            try Data("disk".utf8).write(to: URL(fileURLWithPath: staging.file))
            try staging.moveIntoPlace(replace: false)
        }
        XCTAssertEqual(try FileSystem.readFile(target), Data("disk".utf8))
        do {
            let staging = try StagingDirectory(beside: target)
            try Data("other".utf8).write(to: URL(fileURLWithPath: staging.file))
            XCTAssertThrowsError(try staging.moveIntoPlace(replace: false), "the target exists")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("partial") }, [])
    }

    /// A holder that removes its lock file before letting go leaves nothing behind, and a
    /// waiter blocked on the removed file starts over on the path's new one: it ends up holding
    /// the lock the path names, and nobody else gets it meanwhile.
    func testALockFileRemovedByItsHolderNeverLetsTwoHoldIt() throws {
        let dir = NSTemporaryDirectory() + "sparc-lock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
        defer { FileSystem.removeTree(dir) }
        let path = dir + "/vm.lock"
        var holder = try FileLock(path)
        final class Box: @unchecked Sendable { var lock: FileLock? }
        let waiter = Box(), got = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            waiter.lock = try? FileLock(path)
            got.signal()
        }
        usleep(200_000)
        XCTAssertEqual(got.wait(timeout: .now() + 0.1), .timedOut, "the waiter waits while the lock is held")
        holder?.removeFile()
        holder = nil
        XCTAssertEqual(got.wait(timeout: .now() + 10), .success)
        XCTAssertNotNil(waiter.lock)
        XCTAssertTrue(FileSystem.exists(path), "the waiter holds the path's new file")
        XCTAssertNil(try FileLock(path, wait: false), "nobody else gets it while the waiter holds it")
        waiter.lock?.removeFile()
        waiter.lock = nil
        XCTAssertFalse(FileSystem.exists(path), "nothing left behind")
    }
}

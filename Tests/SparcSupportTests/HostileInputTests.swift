import Foundation
import TestSupport
import XCTest

@testable import SparcSupport

/// What sparc reads from guests, bundles and shared directories is hostile; these are the
/// guards every reader goes through.
final class HostileInputTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }
    override func tearDown() { FileSystem.removeTree(dir) }

    func testTerminalSafeEscapesControlsAndBidi() {
        XCTAssertEqual("plain text ünï".terminalSafe, "plain text ünï")
        XCTAssertEqual("a\u{1B}]0;owned\u{07}b".terminalSafe, "a\\e]0;owned\\x07b")
        XCTAssertEqual("\u{1B}[2J".terminalSafe, "\\e[2J")
        XCTAssertEqual("tab\there\nnl\r".terminalSafe, "tab\\there\\nnl\\r")
        XCTAssertEqual("\u{9B}31m".terminalSafe, "\\x9b31m", "C1 CSI")
        XCTAssertEqual("x\u{202E}gpj.exe".terminalSafe, "x\\u{202e}gpj.exe", "bidi override")
        XCTAssertEqual("\u{7F}".terminalSafe, "\\x7f")
    }

    func testPrivateDirectoryIsCreatedAndChecked() throws {
        let fresh = dir + "/a/b/runtime"
        try FileSystem.ensurePrivateDirectory(fresh, what: "runtime directory")
        var st = stat()
        XCTAssertEqual(lstat(fresh, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)

        let open = dir + "/open"
        XCTAssertEqual(mkdir(open, 0o755), 0)
        XCTAssertEqual(chmod(open, 0o755), 0)
        XCTAssertThrowsError(try FileSystem.ensurePrivateDirectory(open, what: "runtime directory")) {
            XCTAssertTrue("\($0)".contains("chmod 700"), "\($0)")
        }
        let link = dir + "/link"
        XCTAssertEqual(symlink(fresh, link), 0)
        XCTAssertThrowsError(try FileSystem.ensurePrivateDirectory(link, what: "runtime directory")) {
            XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)")
        }
        if geteuid() == 0 {
            let foreign = dir + "/foreign"
            XCTAssertEqual(mkdir(foreign, 0o700), 0)
            XCTAssertEqual(chown(foreign, 65534, 65534), 0)
            // removeTree leaves another user's entries where they are: given back for the tear-down.
            defer { chown(foreign, 0, 0) }
            XCTAssertThrowsError(try FileSystem.ensurePrivateDirectory(foreign, what: "runtime directory")) {
                XCTAssertTrue("\($0)".contains("belongs to uid 65534"), "\($0)")
            }
        }
    }

    func testOpenedFileRefusesFIFOsSymlinksAndOversizedFiles() throws {
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // No writer will ever come: opening it blocking would never return.
        try XCTAssertFinishes("opening a FIFO") {
            XCTAssertThrowsError(try OpenedFile(regular: fifo)) { XCTAssertTrue("\($0)".contains("not a regular file")) }
        }
        let file = dir + "/f"
        try Data("12345".utf8).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(symlink(file, dir + "/l"), 0)
        XCTAssertThrowsError(try OpenedFile(regular: dir + "/l")) { XCTAssertTrue("\($0)".contains("symbolic link")) }
        XCTAssertEqual(try OpenedFile(regular: dir + "/l", followSymlinks: true).readAll(), Data("12345".utf8))
        XCTAssertThrowsError(try OpenedFile(regular: file, maxSize: 4)) { XCTAssertTrue("\($0)".contains("more than")) }
    }

    func testFileLockSerialisesAndIsReleasedOnExit() throws {
        let path = dir + "/lock"
        let held = try FileLock(path)
        XCTAssertNotNil(held)
        XCTAssertNil(try FileLock(path, wait: false), "a second holder waits (here: is refused)")
        _ = held
    }

    func testSpawnPassesOnlyTheGivenDescriptors() throws {
        let file = dir + "/passed"
        try Data("via fd 3".utf8).write(to: URL(fileURLWithPath: file))
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let leaked = open(file, O_RDONLY)  // no O_CLOEXEC: must still not reach the child
        defer { close(leaked) }
        var out: [Int32] = [0, 0]
        XCTAssertEqual(Subprocess.makePipe(&out), 0)
        let pid = try Subprocess.spawn(["/bin/sh", "-c", "cat <&3; ls /proc/self/fd | tr '\\n' ' '"], stdout: out[1], inherit: [3: fd])
        close(out[1])
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(out[0], &buf, buf.count)
            if n <= 0 { break }
            data.append(buf, count: n)
        }
        close(out[0])
        XCTAssertEqual(Subprocess.wait(pid), 0)
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("via fd 3"), text)
        let fds = text.dropFirst("via fd 3".count).split(separator: " ").compactMap { Int($0) }
        XCTAssertEqual(Set(fds).subtracting([0, 1, 2, 3]).count, 1, "only ls's own directory descriptor beyond 0-3: \(fds)")
    }
}

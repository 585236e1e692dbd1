import Foundation
import XCTest

@testable import Hypervisor
@testable import SparcSupport

/// The guest RAM file QEMU inherits: only the private file sparc made is handed over.
final class GuestRAMTests: XCTestCase {
    func testOnlyThePrivateFileSparcMadeIsOpenedForQEMU() throws {
        let base = NSTemporaryDirectory() + "ramtest-\(getpid())"
        try FileSystem.makeDirectories(base)
        defer { FileSystem.removeTree(base) }
        let ram = try GuestRAM.create(vm: "t", bytes: 1 << 20, base: base)
        defer { GuestRAM.remove(ram) }
        let fd = try GuestRAM.openChecked(ram)
        close(fd)

        chmod(ram, 0o644)
        XCTAssertThrowsError(try GuestRAM.openChecked(ram), "a file others can read is refused")
        chmod(ram, 0o600)
        let other = base + "/other"
        XCTAssertTrue(FileManager.default.createFile(atPath: other, contents: nil, attributes: [.posixPermissions: 0o600]))
        let symbolic = base + "/link"
        symlink(other, symbolic)
        XCTAssertThrowsError(try GuestRAM.openChecked(symbolic), "a symlink is refused")
        let hard = base + "/hard"
        link(ram, hard)
        XCTAssertThrowsError(try GuestRAM.openChecked(ram), "a file with a second name is refused")
        unlink(hard)
        close(try GuestRAM.openChecked(ram))
    }
}

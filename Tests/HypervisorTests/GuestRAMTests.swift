import Foundation
import XCTest

@testable import Hypervisor
@testable import SparcSupport

/// The guest RAM file QEMU inherits: only the private file sparc made is handed over.
final class GuestRAMTests: XCTestCase {
    func testOnlyThePrivateFileSparcMadeIsOpenedForQEMU() throws {
        let base = "/dev/shm/ramtest-\(getpid())"  // RAM directories must be in memory (tmpfs)
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

/// Guest RAM is made only where it stays in memory.
final class GuestRAMPlacementTests: XCTestCase {
    func testRAMOnADiskFileSystemIsRefused() throws {
        let onDisk = NSTemporaryDirectory() + "ram-on-disk-\(getpid())"
        try FileSystem.makeDirectories(onDisk)
        defer { FileSystem.removeTree(onDisk) }
        if sparc_filesystem_type_is_memory(onDisk) { throw XCTSkip("\(onDisk) is on tmpfs here") }
        XCTAssertThrowsError(try GuestRAM.create(vm: "x", bytes: 1 << 20, base: onDisk)) { XCTAssertTrue("\($0)".contains("not on tmpfs or hugetlbfs"), "\($0)") }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: onDisk), [], "nothing was made there")
        XCTAssertNoThrow(try GuestRAM.checkInMemory("/dev/shm"))
    }
}

/// Whether `path` is on tmpfs or hugetlbfs.
func sparc_filesystem_type_is_memory(_ path: String) -> Bool { (try? GuestRAM.checkInMemory(path)) != nil }

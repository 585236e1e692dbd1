import GuestProcfs
import GuestQuery
import XCTest

final class ProcStatTests: XCTestCase {
    static let line = "1234 (a (b) c) S 1 1234 1234 34817 1234 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 2000000 321 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"

    /// The command may hold spaces and parentheses: fields count from the last ')'.
    func testCommandWithSpacesAndParentheses() throws {
        let s = try XCTUnwrap(ProcStat.parse(Self.line))
        XCTAssertEqual(s.pid, 1234)
        XCTAssertEqual(s.comm, "a (b) c")
        XCTAssertEqual(s.state, "S")
        XCTAssertEqual(s.ppid, 1)
        XCTAssertEqual(s.pgrp, 1234)
        XCTAssertEqual(s.session, 1234)
        XCTAssertEqual(s.ttyNr, 34817)
        XCTAssertEqual(s.flags, 4_194_560)
        XCTAssertEqual(s.startTime, 98765)
        XCTAssertEqual(s.rssPages, 321)
        XCTAssertFalse(s.isKernelThread)
    }

    func testKernelThreadFlag() throws {
        let kthread = Self.line.replacingOccurrences(of: " 4194560 ", with: " 2129984 ")
        XCTAssertTrue(try XCTUnwrap(ProcStat.parse(kthread)).isKernelThread)
    }

    /// A line cut short (the process exited mid-read) or garbage is nil, never a trap.
    func testTruncatedAndGarbageLines() {
        for cut in [0, 5, 12, 40, 60] { XCTAssertNil(ProcStat.parse(String(Self.line.prefix(cut))), "cut at \(cut)") }
        XCTAssertNil(ProcStat.parse(")( S 1 2"))
        XCTAssertNil(ProcStat.parse([UInt8](repeating: 0xff, count: 300)))
    }
}

final class TTYNamesTests: XCTestCase {
    func testNamesFromTTYNumbers() {
        XCTAssertNil(TTYNames.name(ttyNr: 0))
        XCTAssertEqual(TTYNames.name(ttyNr: 4 << 8 | 64), "ttyS0")
        XCTAssertEqual(TTYNames.name(ttyNr: 4 << 8 | 1), "tty1")
        XCTAssertEqual(TTYNames.name(ttyNr: 136 << 8 | 3), "pts/3")
        // pts numbers past 255: the minor's high bits sit above bit 20.
        XCTAssertEqual(TTYNames.name(ttyNr: 136 << 8 | (300 & 0xff) | ((300 >> 8) << 20)), "pts/300")
        XCTAssertEqual(TTYNames.name(ttyNr: 5 << 8 | 1), "console")
        XCTAssertEqual(TTYNames.kind("ttyS1"), .serial)
        XCTAssertEqual(TTYNames.kind("pts/0"), .pty)
        XCTAssertEqual(TTYNames.kind("tty2"), .virtualConsole)
        XCTAssertEqual(TTYNames.normalize("/dev/pts/1"), "pts/1")
    }
}

final class ProcMapsTests: XCTestCase {
    func testMapsLines() {
        let text = """
            55d0c2a00000-55d0c2a2d000 r--p 00000000 fe:01 1311268                    /usr/bin/bash
            55d0c2a2d000-55d0c2b0c000 r-xp 0002d000 fe:01 1311268                    /usr/bin/bash
            7f00aa000000-7f00aa100000 rw-s 00000000 00:01 2048                       /memfd:secret (deleted)
            7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]
            bad line
            20-10 r--p 00000000 00:00 0
            """
        let maps = ProcMaps.parse(text)
        XCTAssertEqual(maps.count, 4, "bad lines and reversed ranges are skipped")
        XCTAssertEqual(maps[0].path, "/usr/bin/bash")
        XCTAssertEqual(maps[0].file, FileKey(major: 0xfe, minor: 1, inode: 1_311_268))
        XCTAssertFalse(maps[0].executable)
        XCTAssertTrue(maps[1].executable)
        XCTAssertEqual(maps[2].path, "/memfd:secret (deleted)", "a path keeps its spaces")
        XCTAssertNil(maps[3].file)
        XCTAssertEqual(maps[3].path, "[stack]")
    }

    /// A reserved, never-touched large mapping (a JVM's heap) is told from a touched one.
    func testUntouchedLargeMappings() {
        let smaps = """
            7f0000000000-7f0100000000 rw-p 00000000 00:00 0
            Size:           4194304 kB
            Rss:                   0 kB
            Swap:                  0 kB
            7f0200000000-7f0300000000 rw-p 00000000 00:00 0
            Rss:                  12 kB
            Swap:                  0 kB
            7f0400000000-7f0400001000 rw-p 00000000 00:00 0
            Rss:                   0 kB
            Swap:                  0 kB
            """
        XCTAssertEqual(ProcMaps.untouchedLarge(smaps: smaps), [0x7f00_0000_0000])
        XCTAssertEqual(ProcMaps.untouchedLarge(smaps: ""), [])
    }
}

final class FrameRunsTests: XCTestCase {
    func testRunsOfMarkedFrames() {
        let marks: [UInt8] = [0, 1, 1, 0, 2, 1, 1, 1]
        XCTAssertEqual(FrameRuns.ranges(in: marks, equal: 1, pageSize: 4096), [4096..<12288, 20480..<32768])
        XCTAssertEqual(FrameRuns.ranges(in: marks, equal: 2, pageSize: 4096), [16384..<20480])
        XCTAssertEqual(FrameRuns.ranges(in: [], equal: 1, pageSize: 4096), [])
    }
}

final class BTFTests: XCTestCase {
    /// A minimal BTF blob: header, one INT, one STRUCT with two members.
    static func blob(truncateTypesBy cut: Int = 0) -> [UInt8] {
        var strings: [UInt8] = [0]
        func str(_ s: String) -> UInt32 {
            let off = UInt32(strings.count)
            strings += Array(s.utf8) + [0]
            return off
        }
        var types: [UInt8] = []
        func u32(_ v: UInt32) { types += withUnsafeBytes(of: v.littleEndian, Array.init) }
        u32(str("int")); u32(1 << 24); u32(4); u32(32)  // INT, 4 bytes, 32 bits
        u32(str("n_tty_data")); u32(4 << 24 | 2); u32(16)  // STRUCT with 2 members
        u32(str("read_buf")); u32(1); u32(64)  // at bit 64 = byte 8
        u32(str("echo_buf")); u32(1); u32(96)
        types.removeLast(cut)
        var header: [UInt8] = [0x9f, 0xeb, 1, 0]
        for v: UInt32 in [24, 0, UInt32(types.count), UInt32(types.count), UInt32(strings.count)] {
            header += withUnsafeBytes(of: v.littleEndian, Array.init)
        }
        return header + types + strings
    }

    func testMemberOffsets() {
        let btf = BTF(bytes: Self.blob())
        XCTAssertEqual(btf.memberOffsets(of: "n_tty_data", members: ["read_buf", "echo_buf"]), ["read_buf": 8, "echo_buf": 12])
        XCTAssertNil(btf.memberOffsets(of: "nothing", members: ["x"]))
    }

    /// A blob cut short, or whose header points past its end, describes nothing, never a trap.
    func testDamagedBlobs() {
        XCTAssertNil(BTF(bytes: Self.blob(truncateTypesBy: 8)).memberOffsets(of: "n_tty_data", members: ["read_buf"]))
        var lying = Self.blob()
        lying[12] = 0xff  // types length far past the end
        XCTAssertNil(BTF(bytes: lying).memberOffsets(of: "n_tty_data", members: ["read_buf"]))
        XCTAssertNil(BTF(bytes: []).memberOffsets(of: "n_tty_data", members: ["read_buf"]))
        XCTAssertNil(BTF(bytes: Array(Self.blob().prefix(30))).memberOffsets(of: "n_tty_data", members: ["read_buf"]))
    }
}

/// The process list always fits its frame: commands are cut, and the cut says so.
final class ProcessListBudgetTests: XCTestCase {
    func process(_ pid: Int32, command: String, user: String = "guest") -> GuestProcess {
        GuestProcess(pid: pid, ppid: 1, user: user, state: "S", tty: nil, rssKiB: 4, command: command, kernelThread: false)
    }

    func testShortCommandsAreUntouched() {
        let list = [process(1, command: "init"), process(2, command: "sh -c 'sleep 1'")]
        XCTAssertEqual(ProcessListBudget.fit(list), list)
    }

    func testALongCommandIsCutAndSaysSo() {
        let long = "sh " + String(repeating: "é", count: 1_000_000)
        let fitted = ProcessListBudget.fit([process(7, command: long, user: String(repeating: "u", count: 500))])[0]
        XCTAssertLessThanOrEqual(fitted.command.unescaped.utf8.count, ProcessListBudget.commandBytes)
        XCTAssertTrue(fitted.command.unescaped.hasPrefix("sh éé"))
        XCTAssertTrue(fitted.command.unescaped.hasSuffix("[cut \(long.utf8.count) bytes]"), fitted.command.unescaped)
        XCTAssertLessThanOrEqual(fitted.user.unescaped.utf8.count, ProcessListBudget.userBytes)
    }

    /// Many processes with long arguments: the share shrinks until the whole list fits.
    func testManyLongCommandsFitTheList() {
        let long = String(repeating: "a", count: 100_000)
        let list = (0..<10_000).map { process(Int32($0), command: long) }
        let fitted = ProcessListBudget.fit(list)
        XCTAssertEqual(fitted.count, list.count, "every process is listed")
        let bytes = fitted.reduce(0) { $0 + $1.command.unescaped.utf8.count + 160 }
        XCTAssertLessThanOrEqual(bytes, ProcessListBudget.listBytes)
        XCTAssertTrue(fitted.allSatisfy { $0.command.unescaped.contains("[cut 100000 bytes]") })
    }

    func testAgentFrameValueCountIgnoresStrings() {
        XCTAssertEqual(AgentFraming.valueCount(Data(#"{"a":[1,2,3],"b":"x,y:[{\"q\":1}"}"#.utf8), limit: 100), 7)
        XCTAssertEqual(AgentFraming.valueCount(Data(String(repeating: "[1,1],", count: 1000).utf8), limit: 50), 51, "stops past the limit")
    }
}

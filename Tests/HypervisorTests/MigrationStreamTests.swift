import Foundation
import SparcSupport
import XCTest

@testable import Hypervisor

/// Builds migration streams as QEMU 7.2 writes them (header, configuration, the `ram` section
/// in parts, a device section), to split them as a live copy does.
struct StreamBuilder {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func be32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func be64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func name(_ s: String) {
        u8(UInt8(s.utf8.count))
        bytes += Array(s.utf8)
    }
    mutating func header() {
        be32(0x5145_564D)
        be32(3)
        u8(0x07)
        be32(10)
        bytes += Array("pc-q35-7.2".utf8)
    }
    mutating func section(_ kind: UInt8, id: UInt32, idstr: String? = nil) {
        u8(kind)
        be32(id)
        if let idstr {
            name(idstr)
            be32(0)
            be32(4)
        }
    }
    mutating func footer(_ id: UInt32) {
        u8(0x7E)
        be32(id)
    }
    mutating func memSize(_ blocks: [(String, UInt64)]) {
        be64(blocks.reduce(0) { $0 + $1.1 } | 0x04)
        for (n, l) in blocks {
            name(n)
            be64(l)
        }
    }
    mutating func page(_ block: String?, _ offset: UInt64, fill: UInt8) {
        be64(offset | 0x08 | (block == nil ? 0x20 : 0))
        if let block { name(block) }
        bytes += [UInt8](repeating: fill, count: 4096)
    }
    mutating func zero(_ block: String?, _ offset: UInt64) {
        be64(offset | 0x02 | (block == nil ? 0x20 : 0))
        if let block { name(block) }
        u8(0)
    }
    mutating func eos() { be64(0x10) }
}

final class MigrationStreamTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sparc-stream-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(dir)
    }

    override func tearDown() { FileSystem.removeTree(dir) }

    /// Splits `stream`; returns the RAM copy, the device stream and the stats.
    func split(_ stream: [UInt8], ramBytes: Int64 = 8 * 4096, excluded: [Range<Int64>] = []) throws -> (ram: [UInt8], devices: [UInt8], stats: MigrationStreamSplitter.Stats) {
        let input = dir + "/stream"
        try Data(stream).write(to: URL(fileURLWithPath: input))
        let ramPath = dir + "/ram-\(UInt32.random(in: 0...UInt32.max))"
        let devicesPath = ramPath + ".dev"
        let fd = open(input, O_RDONLY)
        let ram = open(ramPath, O_RDWR | O_CREAT | O_EXCL, 0o600)
        let dev = open(devicesPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        defer {
            close(fd)
            close(ram)
            close(dev)
        }
        XCTAssertEqual(ftruncate(ram, off_t(ramBytes)), 0)
        let splitter = MigrationStreamSplitter(input: fd, ramBlock: "ram0", ramBytes: ramBytes, ramFile: ram, deviceFile: dev, excluded: excluded)
        let stats = try splitter.run()
        return (Array(try Data(contentsOf: URL(fileURLWithPath: ramPath))), Array(try Data(contentsOf: URL(fileURLWithPath: devicesPath))), stats)
    }

    /// The last copy of each guest page lands at its offset; a page sent again as zeros is
    /// zeros; the ROM's pages and the devices stay in the device stream, which is the input
    /// without the guest's pages (each ROM page naming its block where the guest's came between).
    func testGuestPagesGoToTheCopyTheRestToTheDeviceState() throws {
        let blocks: [(String, UInt64)] = [("ram0", 8 * 4096), ("pc.rom", 2 * 4096)]
        var s = StreamBuilder()
        s.header()
        s.section(0x01, id: 2, idstr: "ram")
        s.memSize(blocks)
        s.eos()
        s.footer(2)
        s.section(0x02, id: 2)
        s.page("ram0", 0, fill: 0xA1)
        s.page(nil, 4096, fill: 0xA2)
        s.page("pc.rom", 0, fill: 0xB1)
        s.page("ram0", 2 * 4096, fill: 0xA3)
        s.zero(nil, 3 * 4096)
        s.eos()
        s.footer(2)
        s.section(0x03, id: 2)
        s.page("ram0", 4096, fill: 0xC2)  // written again during the last round
        s.zero(nil, 2 * 4096)  // and one became zero
        s.page("pc.rom", 4096, fill: 0xB2)
        s.eos()
        s.footer(2)
        let devices: [UInt8] = [0x04, 0, 0, 0, 3] + Array("opaque device bytes without lengths".utf8) + [0x00]
        let stream = s.bytes + devices
        let (ram, out, stats) = try split(stream)

        XCTAssertEqual(ram[0], 0xA1)
        XCTAssertEqual(ram[4096], 0xC2, "the last copy wins")
        XCTAssertEqual(ram[2 * 4096 ..< 3 * 4096].allSatisfy { $0 == 0 }, true, "a page that became zero")
        XCTAssertEqual(stats.pagesWritten, 4)
        XCTAssertEqual(stats.zeroPages, 2)

        var expected = StreamBuilder()
        expected.header()
        expected.section(0x01, id: 2, idstr: "ram")
        expected.memSize(blocks)
        expected.eos()
        expected.footer(2)
        expected.section(0x02, id: 2)
        expected.page("pc.rom", 0, fill: 0xB1)
        expected.eos()
        expected.footer(2)
        expected.section(0x03, id: 2)
        expected.page(nil, 4096, fill: 0xB2)
        expected.eos()
        expected.footer(2)
        XCTAssertEqual(out, expected.bytes + devices, "the device state is the stream without the guest's pages")
        XCTAssertEqual(stats.deviceBytes, Int64(out.count))
    }

    /// A page in an excluded range never reaches the copy, however often it is sent.
    func testExcludedPagesAreDroppedAsTheyCome() throws {
        var s = StreamBuilder()
        s.header()
        s.section(0x01, id: 2, idstr: "ram")
        s.memSize([("ram0", 8 * 4096)])
        s.page("ram0", 4 * 4096, fill: 0x5E)
        s.page(nil, 5 * 4096, fill: 0x11)
        s.eos()
        s.section(0x03, id: 2)
        s.page("ram0", 4 * 4096, fill: 0x5F)
        s.eos()
        let (ram, _, stats) = try split(s.bytes + [0x00], excluded: [4 * 4096..<5 * 4096])
        XCTAssertFalse(ram.contains(0x5E) || ram.contains(0x5F), "the excluded page is not in the copy")
        XCTAssertEqual(ram[5 * 4096], 0x11)
        XCTAssertEqual(stats.excludedPages, 2)
    }

    /// What QEMU sends is not trusted: a page past its block, a block of another size than the
    /// guest's RAM, unknown flags, an unknown block, a stream cut short: each is refused.
    func testHostileStreamsAreRefused() throws {
        func stream(_ body: (inout StreamBuilder) -> Void, ramSize: UInt64 = 8 * 4096) -> [UInt8] {
            var s = StreamBuilder()
            s.header()
            s.section(0x01, id: 2, idstr: "ram")
            s.memSize([("ram0", ramSize)])
            body(&s)
            return s.bytes
        }
        let cases: [(String, [UInt8])] = [
            ("a page past its block", stream { $0.page("ram0", 8 * 4096, fill: 1); $0.eos(); $0.u8(0) }),
            ("the guest's block of another size", stream({ $0.eos(); $0.u8(0) }, ramSize: 4 * 4096)),
            ("unknown flags", stream { $0.be64(0x100 | 0x40); $0.eos(); $0.u8(0) }),
            ("an unknown block", stream { $0.page("nope", 0, fill: 1); $0.eos(); $0.u8(0) }),
            ("a page continuing nothing", stream { $0.page(nil, 0, fill: 1); $0.eos(); $0.u8(0) }),
            ("cut short", Array(stream { $0.page("ram0", 0, fill: 1) }.dropLast(100))),
            ("no header", [0, 1, 2, 3, 4, 5, 6, 7]),
        ]
        for (what, bytes) in cases {
            XCTAssertThrowsError(try split(bytes), what)
        }
    }
}

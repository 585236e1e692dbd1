import Foundation
import SparcSupport

/// Checks that a qcow2 image from a bundle stands alone. A qcow2 header can name a backing
/// file or an external data file anywhere on the host; QEMU would open it and the restored
/// guest could read it (a host's /etc/shadow as its disk). Bundles hold standalone images
/// only (sparc converts on save), and the header is read here before any tool touches it.
public enum QCOW2Header {
    static let magic: [UInt8] = [0x51, 0x46, 0x49, 0xFB]  // "QFI\xfb"
    static let incompatibleDirty: UInt64 = 1 << 0
    static let incompatibleCorrupt: UInt64 = 1 << 1
    static let incompatibleDataFile: UInt64 = 1 << 2

    /// Throws unless the bytes start a plain, standalone, unencrypted qcow2 header; returns
    /// the image's virtual size.
    @discardableResult
    public static func checkStandalone(header b: [UInt8], what: String) throws -> Int64 {
        func be(_ at: Int, _ n: Int) -> UInt64 { b[at..<at + n].reduce(0) { $0 << 8 | UInt64($1) } }
        func refuse(_ why: String) -> SparcError { SparcError("\(what) \(why): refusing it", kind: .negative) }
        guard b.count >= 72, Array(b[0..<4]) == magic else { throw refuse("is not a qcow2 image") }
        let version = be(4, 4)
        guard version == 2 || version == 3 else { throw refuse("is qcow2 version \(version)") }
        guard be(8, 8) == 0 && be(16, 4) == 0 else { throw refuse("names a backing file (a bundle's disk must stand alone)") }
        guard be(32, 4) == 0 else { throw refuse("is encrypted") }
        if version == 3 {
            guard b.count >= 104 else { throw refuse("has a truncated header") }
            let incompatible = be(72, 8)
            guard incompatible & incompatibleDataFile == 0 else { throw refuse("names an external data file") }
            guard incompatible & incompatibleCorrupt == 0 else { throw refuse("is marked corrupt") }
            guard incompatible & ~(incompatibleDirty | incompatibleCorrupt | incompatibleDataFile | (1 << 3) | (1 << 4)) == 0 else {
                throw refuse("uses unknown incompatible features")
            }
        }
        let size = be(24, 8)
        guard size > 0, size <= 64 << 40 else { throw refuse("has a virtual size of \(size) bytes") }
        return Int64(size)
    }

    /// Reads the header of the image at `path` (sparc's private copy), checks it and returns
    /// the image's virtual size.
    @discardableResult
    public static func checkStandalone(path: String, what: String) throws -> Int64 {
        let file = try OpenedFile(regular: path)
        var header = [UInt8](repeating: 0, count: 512)
        let n = header.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress, 512, 0) }
        return try checkStandalone(header: Array(header.prefix(max(0, n))), what: what)
    }
}

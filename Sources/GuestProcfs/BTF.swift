#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import SparcSupport

/// Reads member offsets of kernel structs from BTF (/sys/kernel/btf/vmlinux).
///
/// Some structs the kernel helper needs are private to a .c file (struct n_tty_data);
/// the running kernel's BTF names them, which beats copying their definitions.
public struct BTF {
    let data: [UInt8]
    let typesStart: Int
    let typesEnd: Int
    let stringsStart: Int
    let stringsEnd: Int

    public init(path: String = "/sys/kernel/btf/vmlinux") throws {
        self.init(bytes: [UInt8](try FileSystem.readFile(path)))
    }

    /// A BTF blob; one that is not BTF, or whose header points past its end, describes nothing.
    public init(bytes: [UInt8]) {
        data = bytes
        func u32(_ at: Int) -> Int {
            guard at + 4 <= bytes.count else { return 0 }
            return Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        }
        let valid = bytes.count >= 24 && bytes[0] == 0x9F && bytes[1] == 0xEB
        let hdrLen = valid ? u32(4) : 0
        let types = (hdrLen + u32(8), hdrLen + u32(8) + u32(12))
        let strings = (hdrLen + u32(16), hdrLen + u32(16) + u32(20))
        let inside = { (r: (Int, Int)) in r.0 <= r.1 && r.1 <= bytes.count }
        if valid && inside(types) && inside(strings) {
            (typesStart, typesEnd) = types
            (stringsStart, stringsEnd) = strings
        } else {
            (typesStart, typesEnd, stringsStart, stringsEnd) = (0, 0, 0, 0)
        }
    }

    private func u32(_ at: Int) -> UInt32 {
        UInt32(data[at]) | UInt32(data[at + 1]) << 8 | UInt32(data[at + 2]) << 16 | UInt32(data[at + 3]) << 24
    }

    private func name(_ offset: UInt32) -> Substring {
        let start = stringsStart + Int(offset)
        guard start < stringsEnd else { return "" }
        var end = start
        while end < stringsEnd && data[end] != 0 { end += 1 }
        return Substring(decoding: data[start..<end], as: UTF8.self)
    }

    /// Byte offsets of the named members of `struct name`, or nil when the struct is not described.
    public func memberOffsets(of structName: String, members: [String]) -> [String: Int]? {
        var pos = typesStart
        while pos + 12 <= typesEnd {
            let nameOff = u32(pos)
            let info = u32(pos + 4)
            let vlen = Int(info & 0xffff)
            let kind = Int((info >> 24) & 0x1f)
            let kindFlag = (info >> 31) != 0
            pos += 12
            let extra: Int
            switch kind {
            case 1: extra = 4  // INT
            case 3: extra = 12  // ARRAY
            case 4, 5: extra = vlen * 12  // STRUCT, UNION
            case 6: extra = vlen * 8  // ENUM
            case 13: extra = vlen * 8  // FUNC_PROTO
            case 14: extra = 4  // VAR
            case 15: extra = vlen * 12  // DATASEC
            case 17: extra = 4  // DECL_TAG
            case 19: extra = vlen * 12  // ENUM64
            default: extra = 0
            }
            if kind == 4 && name(nameOff) == structName {
                guard pos + vlen * 12 <= typesEnd else { return nil }
                var found: [String: Int] = [:]
                for i in 0..<vlen {
                    let m = pos + i * 12
                    let memberName = String(name(u32(m)))
                    let bits = u32(m + 8)
                    if members.contains(memberName) { found[memberName] = Int(kindFlag ? bits & 0xffffff : bits) / 8 }
                }
                return found
            }
            pos += extra
        }
        return nil
    }
}

import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A file's identity: its device and inode, as /proc/PID/maps and stat(2) both tell it.
public struct FileKey: Hashable, Sendable {
    public var major: UInt64
    public var minor: UInt64
    public var inode: UInt64

    public init(major: UInt64, minor: UInt64, inode: UInt64) {
        self.major = major
        self.minor = minor
        self.inode = inode
    }

    public init(_ st: stat) {
        (major, minor) = Self.split(device: UInt64(st.st_dev))
        inode = UInt64(st.st_ino)
    }

    /// A device number's major and minor (glibc's major()/minor() are macros Swift does not see).
    public static func split(device dev: UInt64) -> (major: UInt64, minor: UInt64) {
        (((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)), (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
    }
}

/// One mapping of a process (a line of /proc/PID/maps).
public struct ProcMapping: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public var inode: UInt64
    public var path: String
    /// The file's identity, for a file mapping.
    public var file: FileKey? = nil
    public var executable = false

    public init(start: UInt64, end: UInt64, inode: UInt64, path: String, file: FileKey? = nil, executable: Bool = false) {
        self.start = start
        self.end = end
        self.inode = inode
        self.path = path
        self.file = file
        self.executable = executable
    }
}

/// Parsers of /proc/PID/maps and /proc/PID/smaps.
public enum ProcMaps {
    /// Mappings this large that hold no page are skipped: their page map would be gigabytes of empty entries.
    public static let largeMapping: UInt64 = 1 << 30

    /// Starts of the large mappings whose Rss and Swap are 0 (/proc/PID/smaps: the kernel
    /// skips untouched page-table levels when it counts them).
    public static func untouchedLarge(smaps text: String, threshold: UInt64 = largeMapping) -> Set<UInt64> {
        var empty: Set<UInt64> = []
        var current: UInt64?
        var rss: UInt64 = 1, swap: UInt64 = 1
        func close() {
            if let c = current, rss == 0, swap == 0 { empty.insert(c) }
        }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = f.first else { continue }
            if first.contains("-"), !first.hasSuffix(":") {
                close()
                let se = first.split(separator: "-")
                if se.count == 2, let s = UInt64(se[0], radix: 16), let e = UInt64(se[1], radix: 16), e >= s && e - s >= threshold {
                    current = s
                } else {
                    current = nil
                }
                rss = 1
                swap = 1
            } else if first == "Rss:", f.count > 1 {
                rss = UInt64(f[1]) ?? 1
            } else if first == "Swap:", f.count > 1 {
                swap = UInt64(f[1]) ?? 1
            }
        }
        close()
        return empty
    }

    /// The lines of /proc/PID/maps.
    public static func parse(_ text: String) -> [ProcMapping] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard f.count >= 5 else { return nil }
            let se = f[0].split(separator: "-")
            guard se.count == 2, let s = UInt64(se[0], radix: 16), let e = UInt64(se[1], radix: 16), s <= e else { return nil }
            let inode = UInt64(f[4]) ?? 0
            let dev = f[3].split(separator: ":")
            var key: FileKey?
            if inode != 0, dev.count == 2, let major = UInt64(dev[0], radix: 16), let minor = UInt64(dev[1], radix: 16) {
                key = FileKey(major: major, minor: minor, inode: inode)
            }
            return ProcMapping(
                start: s, end: e, inode: inode, path: f.count > 5 ? f[5].trimmed : "", file: key, executable: f[1].contains("x"))
        }
    }
}

/// One line of /proc/PID/stat, the fields sparc reads.
public struct ProcStat: Equatable, Sendable {
    public var pid: Int32
    public var comm: String
    public var state: String
    public var ppid: Int32
    public var pgrp: Int32 = 0
    public var session: Int32 = 0
    public var ttyNr: Int
    public var flags: UInt64
    public var rssPages: Int64
    public var startTime: UInt64

    /// PF_KTHREAD in `flags`: a kernel thread, which has no user memory.
    public static let pfKthread: UInt64 = 0x0020_0000
    public var isKernelThread: Bool { flags & Self.pfKthread != 0 }

    public init(
        pid: Int32, comm: String, state: String, ppid: Int32, pgrp: Int32 = 0, session: Int32 = 0, ttyNr: Int, flags: UInt64,
        rssPages: Int64, startTime: UInt64
    ) {
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.pgrp = pgrp
        self.session = session
        self.ttyNr = ttyNr
        self.flags = flags
        self.rssPages = rssPages
        self.startTime = startTime
    }

    public static func parse(_ text: String) -> ProcStat? { parse(Array(text.utf8)) }

    /// Parses /proc/PID/stat from bytes: the command may hold spaces and parentheses, so
    /// fields are counted from the last ')'. Works on bytes because String splitting is
    /// slow under emulation and the agent parses every process's line.
    public static func parse(_ b: [UInt8]) -> ProcStat? {
        guard let open = b.firstIndex(of: UInt8(ascii: "(")), let close = b.lastIndex(of: UInt8(ascii: ")")), open < close
        else { return nil }
        var pid: Int64 = 0
        for c in b[..<open] where c >= 48 && c <= 57 { pid = pid * 10 + Int64(c - 48) }
        // fields[0] is field 3 (state); field n is fields[n - 3].
        var fields: [Range<Int>] = []
        fields.reserveCapacity(24)
        var i = close + 1
        while i < b.count && fields.count < 20 {
            while i < b.count && b[i] == 32 { i += 1 }
            let s = i
            while i < b.count && b[i] != 32 && b[i] != 10 { i += 1 }
            if s < i { fields.append(s..<i) }
            if i < b.count && b[i] == 10 { break }
        }
        guard fields.count >= 20 else { return nil }
        func num(_ r: Range<Int>) -> Int64 {
            var v: Int64 = 0
            var neg = false
            for c in b[r] {
                if c == 45 { neg = true } else if c >= 48 && c <= 57 { v = v * 10 + Int64(c - 48) }
            }
            return neg ? -v : v
        }
        // rss is field 24: parse on past start time (field 22).
        var rss: Int64 = 0
        var j = fields[19].upperBound
        var extra = 0
        while j < b.count && extra < 2 {
            while j < b.count && b[j] == 32 { j += 1 }
            let s = j
            while j < b.count && b[j] != 32 && b[j] != 10 { j += 1 }
            extra += 1
            if extra == 2 { rss = num(s..<j) }
        }
        return ProcStat(
            pid: Int32(pid), comm: String(decoding: b[(open + 1)..<close], as: UTF8.self),
            state: String(decoding: b[fields[0]], as: UTF8.self), ppid: Int32(num(fields[1])), pgrp: Int32(num(fields[2])),
            session: Int32(num(fields[3])), ttyNr: Int(num(fields[4])),
            flags: UInt64(num(fields[6])), rssPages: rss, startTime: UInt64(num(fields[19])))
    }
}

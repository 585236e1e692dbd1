#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#endif

/// An error the operator reads: one line, plus the exit code class it maps to.
///
/// `negative` is a clean "no" (verify failed, search found nothing) and exits 1;
/// `operational` covers usage and environment problems and exits 2.
/// An error the operator reads: one line, and the exit status the README gives it (1: the
/// answer is no — damaged, tampered, not found by a check; 2: it could not be done). The
/// typed errors at module edges (`BundleError`, `VMError`, `AgentError`, `RestoreRefusal`)
/// conform, so callers and tests tell their cases apart while the CLI prints them alike.
public protocol UserFacingError: Error, CustomStringConvertible {
    var exitCode: Int32 { get }
}

public struct SparcError: UserFacingError, Equatable {
    public enum Kind: Equatable, Sendable { case negative, operational }
    public var kind: Kind
    public var message: String
    /// The `errno` behind it, for callers that tell causes apart (ENOSPC).
    public var posixCode: Int32?

    public init(_ message: String, kind: Kind = .operational, posixCode: Int32? = nil) {
        self.kind = kind
        self.message = message
        self.posixCode = posixCode
    }

    public var description: String { message }

    /// The process exit status for this error.
    public var exitCode: Int32 { kind == .negative ? 1 : 2 }

    /// Builds an error from the current `errno`, naming the operation and path.
    public static func posix(_ what: String, _ path: String? = nil, errno code: Int32 = errno) -> SparcError {
        let reason = String(cString: strerror(code))
        if let path { return SparcError("\(what) \(path): \(reason)", posixCode: code) }
        return SparcError("\(what): \(reason)", posixCode: code)
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces, tabs, CR and LF.
    public var trimmed: String {
        let ws: Set<Character> = [" ", "\t", "\n", "\r", "\r\n"]
        guard let first = firstIndex(where: { !ws.contains($0) }) else { return "" }
        let last = lastIndex(where: { !ws.contains($0) })!
        return String(self[first...last])
    }
}

/// Bytes from the system's CSPRNG, eight at a time (SystemRandomNumberGenerator reads
/// getrandom(2)); a byte per call made a 24 MiB test buffer take seconds.
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        var i = 0
        while i < count {
            var word = generator.next()
            let n = min(8, count - i)
            withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: n) }
            i += n
        }
    }
    return out
}

/// VM names become file names, QEMU option values and history keys; every name sparc
/// reads, from the operator or from a bundle, passes this check.
public enum VMName {
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name.first != "-" && name.first != "."
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
                    || c == 0x2E
            }
    }

    public static func check(_ name: String) throws {
        guard isValid(name) else {
            throw SparcError("invalid VM name '\(name.terminalSafe)': use up to 64 letters, digits, '-', '_' or '.'")
        }
    }
}

/// The environment variables sparc reads, checked once before any command runs: a relative
/// directory would move with the working directory, a lease that is not a number would read
/// as a hung agent much later.
public enum SparcEnvironment {
    /// Variables that name directories: each must be an absolute path.
    public static let directories = ["SPARC_RUNTIME_DIR", "SPARC_STATE_DIR", "SPARC_BUNDLES", "SPARC_RAM_DIR", "SPARC_LIBVIRT_RAM_DIR", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_DATA_HOME"]

    public static func check(_ environment: [String: String]) throws {
        for name in directories {
            guard let value = environment[name], !value.isEmpty else { continue }
            guard value.hasPrefix("/") else { throw SparcError("$\(name) is '\(value.terminalSafe)': it must be an absolute path") }
            guard !value.utf8.contains(0x0A) else { throw SparcError("$\(name) holds a newline: it must be a plain absolute path") }
        }
        if let lease = environment["SPARC_FREEZE_LEASE"] {
            guard let seconds = Double(lease), seconds.isFinite, (1...3600).contains(seconds) else {
                throw SparcError("$SPARC_FREEZE_LEASE is '\(lease.terminalSafe)': give the seconds a freeze may last without word from its checkpoint, 1 to 3600")
            }
        }
    }
}

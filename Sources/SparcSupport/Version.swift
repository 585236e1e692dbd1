#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// sparc's version (the `VERSION` file says the same; a unit test keeps them together).
public enum SparcVersion {
    public static let number = "0.2.0"

    /// "0.2.0 (commit 1a2b3c4)": the commit from `make install`'s record beside the binary, or
    /// from the checkout the binary was built in; the number alone when neither is there.
    public static func describe(executable: String? = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        -> String
    {
        guard let executable else { return number }
        let bin = Path.directory(of: executable)
        if let recorded = try? String(contentsOfFile: bin + "/../share/sparc/commit", encoding: .utf8), !recorded.trimmed.isEmpty {
            return "\(number) (commit \(recorded.trimmed))"
        }
        var dir = bin
        while dir != "/" && !dir.isEmpty {
            if FileSystem.exists(dir + "/.git"), let r = try? Subprocess.run(["git", "-C", dir, "rev-parse", "--short", "HEAD"]), r.status == 0 {
                return "\(number) (commit \(r.stdoutText.trimmed), built in \(dir))"
            }
            dir = Path.directory(of: dir)
        }
        return number
    }
}

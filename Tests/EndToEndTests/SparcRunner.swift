import Foundation
import SparcSupport
import XCTest

/// Runs the real `sparc` binary against a private runtime directory.
struct SparcRunner {
    let binary: String
    let runtime: String
    var extraEnvironment: [String: String] = [:]

    static func locateBinary() -> String {
        if let b = ProcessInfo.processInfo.environment["SPARC_BIN"] { return b }
        // The test bundle sits in .build/<config>/ beside the sparc executable.
        var dir = Path.directory(of: FileSystem.absolute(CommandLine.arguments[0]))
        while dir != "/" {
            if FileSystem.exists(dir + "/sparc") && !FileSystem.isDirectory(dir + "/sparc") { return dir + "/sparc" }
            dir = Path.directory(of: dir)
        }
        return ".build/debug/sparc"
    }

    init(runtime: String) {
        binary = Self.locateBinary()
        self.runtime = runtime
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
        /// The command's peak resident memory, in KiB.
        var maxResidentKiB = 0
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    /// The longest any one sparc command may take in a test (a Debian boot with its agent
    /// timeout, a checkpoint of a busy guest); past it the command is killed and the test fails.
    static let commandTimeLimit: TimeInterval = 600

    @discardableResult
    func run(
        _ args: [String], input: Data? = nil, environment: [String: String]? = nil, timeout: TimeInterval = commandTimeLimit,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> Output {
        var env = ProcessInfo.processInfo.environment
        env["SPARC_RUNTIME_DIR"] = runtime
        env["SPARC_STATE_DIR"] = runtime + "-state"
        env["SPARC_BUNDLES"] = runtime + "-bundles"
        // No config of the host's: a test that wants one names it.
        env["SPARC_CONFIG"] = ""
        for (k, v) in extraEnvironment { env[k] = v }
        for (k, v) in environment ?? [:] { env[k] = v }
        // A restore over a running VM stores it first as its undo point: a full checkpoint more
        // per restore, minutes of CI over the suite's fifty-odd restores. Tests pass --no-undo
        // unless they check the undo point (they set SPARC_TEST_UNDO, which only this runner reads).
        var args = args
        if args.first == "restore", args.contains("--replace"), !args.contains("--no-undo"), env["SPARC_TEST_UNDO"] == nil { args.append("--no-undo") }
        let r = try Subprocess.run([binary] + args, input: input, environment: env, timeout: timeout)
        if r.timedOut {
            let what = "sparc \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s and was killed"
            FileHandle.standardError.write(Data("\(what)\n".utf8))
            XCTFail("\(what); stderr: \(r.stderrText)", file: file, line: line)
        }
        return Output(status: r.status, stdout: r.stdoutText, stderr: r.stderrText)
    }

    /// Runs under GNU time, which forks, execs and reads the peak resident memory of sparc
    /// alone from wait4 (a child spawned from the test process directly would count the test
    /// process's memory as its own: Linux keeps the high-water mark across the vfork and exec).
    func measured(_ args: [String], timeout: TimeInterval = commandTimeLimit, file: StaticString = #filePath, line: UInt = #line) throws -> Output {
        let report = try makeTempDir("time") + "/peak"
        defer { FileSystem.removeTree(Path.directory(of: report)) }
        var env = ProcessInfo.processInfo.environment
        env["SPARC_RUNTIME_DIR"] = runtime
        env["SPARC_STATE_DIR"] = runtime + "-state"
        env["SPARC_BUNDLES"] = runtime + "-bundles"
        // No config of the host's: a test that wants one names it.
        env["SPARC_CONFIG"] = ""
        for (k, v) in extraEnvironment { env[k] = v }
        let r = try Subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, binary] + args, environment: env, timeout: timeout)
        if r.timedOut { XCTFail("sparc \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s and was killed", file: file, line: line) }
        let peak = Int(String(decoding: (try? FileSystem.readFile(report)) ?? Data(), as: UTF8.self).split(separator: "\n").last.map(String.init)?.trimmed ?? "") ?? -1
        XCTAssertGreaterThan(peak, 0, "GNU time reported no peak memory", file: file, line: line)
        return Output(status: r.status, stdout: r.stdoutText, stderr: r.stderrText, maxResidentKiB: peak)
    }

    /// Runs and requires exit 0, returning stdout.
    @discardableResult
    func ok(_ args: [String], stdin: Data? = nil, environment: [String: String]? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let out = try run(args, input: stdin, environment: environment)
        XCTAssertEqual(out.status, 0, "sparc \(args.joined(separator: " ")) failed: \(out.stderr)", file: file, line: line)
        return out.stdout
    }

    /// Requires a failure with `status` and a single-line error containing `message`.
    func fails(_ args: [String], status: Int32 = 2, message: String, environment: [String: String]? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = try run(args, environment: environment)
        XCTAssertEqual(out.status, status, "sparc \(args.joined(separator: " ")): \(out.stderr)", file: file, line: line)
        let errLines = out.stderr.split(separator: "\n").filter { !$0.trimmed.isEmpty }
        XCTAssertEqual(errLines.count, 1, "one-line error expected, got: \(out.stderr)", file: file, line: line)
        XCTAssertTrue(out.stderr.contains(message), "expected '\(message)' in: \(out.stderr)", file: file, line: line)
    }
}

func makeTempDir(_ tag: String) throws -> String {
    let dir = "/tmp/sparc-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileSystem.makeDirectories(dir)
    return dir
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it).
func freeTCPPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    return bound ? Int(UInt16(bigEndian: addr.sin_port)) : 22222
}

/// What `--json` prints, read as the README's schemas say: one object with `schemaVersion`.
enum JSONOutput {
    /// The list under `key` of `{"schemaVersion": 1, KEY: [...]}`; nil when the text is not
    /// that (another shape, another version).
    static func list(_ text: String, _ key: String) -> [[String: Any]]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], object["schemaVersion"] as? Int == 1 else {
            return nil
        }
        return object[key] as? [[String: Any]]
    }
}

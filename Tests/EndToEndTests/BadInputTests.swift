import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// Bad input, as an operator in a hurry, a script with a bug or a neighbour would give it:
/// every case ends in one true line on stderr and the README's exit status (2 for usage and
/// operation, 1 for a negative answer), within a bounded time (a hang is killed and fails),
/// and nothing is left behind. Each case names a fragment the line must hold, so a message
/// that is not true to its cause fails the test.
final class BadInputTests: GuestTestCase {
    override class var vmName: String { "bad" }

    struct Case {
        var args: [String]
        var status: Int32 = 2
        var message: String
        var environment: [String: String] = [:]
        var input: Data? = nil
    }

    /// Runs every case; returns how each class of case ended, for the record.
    func check(_ cases: [Case], file: StaticString = #filePath, line: UInt = #line) throws {
        for c in cases {
            let out = try sparc.run(c.args, input: c.input, environment: c.environment, timeout: 120, file: file, line: line)
            let lines = out.stderr.split(separator: "\n").filter { !$0.trimmed.isEmpty }
            let shown = "sparc \(c.args.map { $0.count > 60 ? String($0.prefix(60)) + "…" : $0 }.joined(separator: " "))"
            print("bad input: \(shown) → exit \(out.status): \(lines.first ?? "")")
            XCTAssertEqual(out.status, c.status, "\(shown): \(out.stderr)", file: file, line: line)
            XCTAssertEqual(lines.count, 1, "\(shown): one line expected: \(out.stderr)", file: file, line: line)
            XCTAssertTrue(out.stderr.contains(c.message), "\(shown): expected '\(c.message)' in: \(out.stderr)", file: file, line: line)
            XCTAssertFalse(out.stderr.unicodeScalars.contains { $0.value == 0x1B }, "\(shown): raw escape in the message", file: file, line: line)
        }
    }

    func canary(_ name: String, _ text: String = "x") throws -> String {
        let path = work + "/" + name
        unlink(path)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func fifo(_ name: String) -> String {
        let path = work + "/" + name
        unlink(path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        return path
    }

    /// Arguments and options of every command, without a VM involved.
    func testArgumentsAndOptions() throws {
        let bundle = work + "/good.sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        let file = try canary("plain-file", "hello")
        let dir = work + "/plain-dir"
        try FileSystem.makeDirectory(dir)
        var cases: [Case] = []
        // Names.
        for bad in ["", "a/b", "..", ".hidden", String(repeating: "n", count: 65), "tab\tname", "esc\u{1B}[2J"] {
            cases.append(Case(args: ["ps", "--name", bad], message: "invalid VM name"))
        }
        cases.append(Case(args: ["ps", "--name=-x"], message: "invalid VM name"))
        cases.append(Case(args: ["ps", "--name", "-x"], message: "Missing value for '--name <name>'"))
        cases.append(Case(args: ["vm", "start", "--name", "a/b"], message: "invalid VM name"))
        cases.append(Case(args: ["log", "--name", "a b"], message: "invalid VM name"))
        // Numbers.
        for (args, message) in [
            (["vm", "start", "--name", "n1", "--memory", "0"], "at least 64 MiB"),
            (["vm", "start", "--name", "n1", "--memory", "-1"], "at least 64 MiB"),
            (["vm", "start", "--name", "n1", "--memory", "99999999999"], "more than 1 TiB"),
            (["vm", "start", "--name", "n1", "--memory", "1e3"], "see 'sparc vm start --help'"),
            (["vm", "start", "--name", "n1", "--cpus", "0"], "cpus must be between 1 and 64"),
            (["vm", "start", "--name", "n1", "--cpus", "65"], "cpus must be between 1 and 64"),
            (["vm", "start", "--name", "n1", "--agent-timeout", "0"], "--agent-timeout must be more than 0"),
            (["vm", "start", "--name", "n1", "--agent-timeout", "nan"], "--agent-timeout must be more than 0"),
            (["ps", "--timeout", "nan"], "--timeout must be more than 0"),
            (["ps", "--timeout", "inf"], "at most 86400"),
            (["ps", "--timeout", "1e9"], "at most 86400"),
            (["ps", "--timeout", "0"], "--timeout must be more than 0"),
            (["exec", "--limit", "nan", "--", "true"], "--limit must be a number of seconds"),
            (["exec", "--limit", "-1", "--", "true"], "--limit must be a number of seconds"),
            (["search", "x", bundle, "--context", "5000"], "--context must be between"),
            (["strings", bundle, "--min", "0"], "--min"),
            (["strings", bundle, "--min", "-3"], "--min"),
            (["hexdump", file, "--length", "-1"], "is negative"),
            (["hexdump", file, "--offset", "-1"], "is negative"),
            (["hexdump", file, "--offset", "zz"], "is not a number"),
            (["hexdump", file, "--length", "99999999999999999999999"], "is not a number"),
            (["hexdump", file, "--offset", "0xfffffffffffffffff"], "is not a number"),
            (["hexdump", file, "--offset", "100"], "past the end"),
            (["hexdump", file, "--offset", "1", "--address", "2"], "exclude each other"),
            (["hexdump", file, "--address", "0x10"], "--address needs a bundle"),
            (["scan", bundle, "--max-per-rule", "0"], "--max-per-rule must be between"),
        ] {
            cases.append(Case(args: args, message: message))
        }
        // Choices.
        for (args, message) in [
            (["vm", "start", "--name", "n1", "--accel", "warp"], "'auto', 'tcg' or 'kvm'"),
            (["vm", "start", "--name", "n1", "--guest", "windows"], "--guest"),
            (["vm", "start", "--name", "n1", "--boot", "floppy"], "--boot"),
            (["checkpoint", "--name", vm, "--scope", "some", "-o", work + "/s.sparc"], "--scope"),
            (["search", "x", bundle, "--encoding", "ebcdic"], "unknown encoding 'ebcdic'"),
            (["search", "x", bundle, "--encoding", ""], "no encoding given"),
            (["scan", bundle, "--encoding", "utf8"], "--encoding"),
            (["hexdump", file, "--color", "pink"], "--color"),
            (["frobnicate"], "unknown command 'frobnicate'"),
            (["vm", "frobnicate"], "frobnicate"),
            (["ps", "--bogus"], "Unknown option '--bogus'"),
            (["ps", "extra"], "Unexpected argument 'extra'"),
        ] {
            cases.append(Case(args: args, message: message))
        }
        // Patterns.
        for (args, message) in [
            (["search", "", bundle], "empty pattern"),
            (["search", "--hex", "abc", bundle], "is not a hex byte pattern"),
            (["search", "--hex", "zz", bundle], "is not a hex byte pattern"),
            (["search", "--hex", "00 00", bundle], "all zero bytes"),
            (["search", "--regex", "(", bundle], "invalid regular expression"),
            (["search", "--regex", "", bundle], "empty regular expression"),
            (["search", "--hex", "--regex", "ab", bundle], "--hex and --regex exclude each other"),
            (["search", "é", bundle, "--encoding", "ascii"], "not ASCII"),
            (["search", "--regex", "x", bundle, "--encoding", "utf16be"], "ascii and utf16le only"),
            (["search", "x"], "Missing expected argument '<paths> ...'"),
        ] {
            cases.append(Case(args: args, message: message))
        }
        try check(cases)
    }

    /// Paths: bundles, output places, disks, kernels, rule and allow files.
    func testPaths() throws {
        let bundle = work + "/good.sparc"
        if !FileSystem.exists(bundle) { try sparc.ok(["checkpoint", "--name", vm, "-o", bundle]) }
        let file = try canary("plain-file", "hello")
        let dir = work + "/plain-dir"
        try FileSystem.makeDirectory(dir)
        let pipe = fifo("a-fifo")
        let emptyRules = try canary("empty.yar", "")
        let garbageRules = try canary("garbage.yar", "rule {")
        let includesFIFO = try canary("include.yar", "include \"a-fifo\"\nrule x { strings: $a = \"x\" condition: $a }\n")
        let allowGarbage = try canary("allow.txt", "sha256:zz\n")
        let notBundle = work + "/not-a-bundle"
        try FileSystem.makeDirectory(notBundle)
        var cases: [Case] = [
            // Bundles that are not.
            Case(args: ["verify", work + "/missing.sparc"], message: "no bundle at"),
            Case(args: ["verify", file], message: "is not a bundle directory"),
            Case(args: ["verify", notBundle], message: "no manifest.json"),
            Case(args: ["restore", notBundle, "--name", "r1"], message: "no manifest.json"),
            Case(args: ["restore", file, "--name", "r1"], message: "is not a bundle directory"),
            Case(args: ["restore", work + "/missing.sparc", "--name", "r1"], message: "no bundle at"),
            Case(args: ["search", "x", dir], message: "not a sparc bundle"),
            Case(args: ["search", "x", work + "/missing"], message: "no such file or bundle"),
            Case(args: ["search", "x", pipe], message: "not a regular file"),
            Case(args: ["strings", pipe], message: "not a regular file"),
            Case(args: ["hexdump", pipe], message: "not a regular file"),
            Case(args: ["scan", pipe], message: "not a regular file"),
            // Where a bundle would go.
            Case(args: ["checkpoint", "--name", vm, "-o", ""], message: "the bundle path is empty"),
            Case(args: ["checkpoint", "--name", vm, "-o", bundle], message: "already exists"),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/no/such/dir/x.sparc"], message: "does not exist"),
            Case(args: ["checkpoint", "--name", vm, "-o", file + "/x.sparc"], message: "is not a directory"),
            Case(args: ["checkpoint", "--name", vm, "-o", "/"], message: "refusing to write a bundle at /"),
            // Disks and boot files.
            Case(args: ["vm", "start", "--name", "d1", "--disk", work + "/missing.qcow2"], message: "does not exist"),
            Case(args: ["vm", "start", "--name", "d1", "--disk", pipe], message: "not a regular file"),
            Case(args: ["vm", "start", "--name", "d1", "--disk", "/dev/zero"], message: "not a regular file"),
            Case(args: ["vm", "start", "--name", "d1", "--disk", dir], message: "not a regular file"),
            Case(args: ["vm", "start", "--name", "d1", "--kernel", pipe, "--initrd", file], message: "not a regular file"),
            Case(args: ["vm", "start", "--name", "d1", "--kernel", file], message: "--kernel needs --initrd"),
            Case(args: ["vm", "start", "--name", "d1", "--initrd", file], message: "need --kernel"),
            Case(args: ["vm", "start", "--name", "d1", "--kernel", work + "/missing", "--initrd", file], message: "does not exist"),
            Case(args: ["vm", "start", "--name", "d1", "--net", "bridge"], message: "--net"),
            Case(args: ["vm", "start", "--name", "d1", "--net", "user,hostfwd=tcp::99999-:22"], message: "--net must be"),
            Case(args: ["vm", "start", "--name", "d1", "--net", "tap,ifname=a b"], message: "--net"),
            // Rules and allowances.
            Case(args: ["scan", bundle, "--rules", work + "/missing.yar"], message: "missing.yar"),
            Case(args: ["scan", bundle, "--rules", pipe], message: "not a regular file"),
            Case(args: ["scan", bundle, "--rules", emptyRules], message: "hold no rule"),
            Case(args: ["scan", bundle, "--rules", garbageRules], message: "garbage.yar:1"),
            Case(args: ["scan", bundle, "--rules", includesFIFO], message: "regular file"),
            Case(args: ["scan", bundle, "--no-builtin"], message: "--no-builtin needs at least one --rules"),
            Case(args: ["scan", bundle, "--allow", "garbage"], message: "names no rule"),
            Case(args: ["scan", bundle, "--allow", "sha256:zz"], message: "is not a fingerprint"),
            Case(args: ["scan", bundle, "--allow", "@x"], message: "is not an allowance"),
            Case(args: ["scan", bundle, "--allow-file", allowGarbage], message: "allow.txt:1"),
            Case(args: ["scan", bundle, "--allow-file", pipe], message: "not a regular file"),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/a.sparc", "--allow", "aws_access_key_id"], message: "add --scan or --refuse-secrets"),
        ]
        // A bundle whose machine does not match its device state (64 CPUs claimed, 1 saved): one line with QEMU's reason.
        let cpus64 = work + "/cpus64.sparc"
        unlink(cpus64)
        FileSystem.removeTree(cpus64)
        try BundleForge.copy(bundle, to: cpus64)
        try BundleForge.forge(cpus64) { o in BundleForge.set(&o, "machine", "cpus", 64) }
        cases.append(Case(args: ["restore", cpus64, "--name", "c64", "--foreign", "--clone"], message: "QEMU could not load the device state of this bundle: load of migration failed"))
        // KVM where this host cannot give it.
        if FileSystem.exists("/sys/module/kvm_pvm") || access("/dev/kvm", R_OK | W_OK) != 0 {
            cases.append(Case(args: ["vm", "start", "--name", "k1", "--accel", "kvm"], message: "--accel kvm: "))
        }
        // Arguments that are not UTF-8 name nothing anyone gave.
        cases.append(Case(args: ["checkpoint", "--name", vm, "-o", work + "/bad-\u{FFFD}.sparc"], message: "exists"))
        try check(cases.filter { !$0.args.contains(work + "/bad-\u{FFFD}.sparc") })
        let raw = try Subprocess.run(["/bin/sh", "-c", "exec \"$0\" checkpoint --name \(vm) -o \"$(printf '\(work)/bad-\\377.sparc')\"", sparc.binary],
            environment: ["SPARC_RUNTIME_DIR": runtime, "SPARC_STATE_DIR": runtime + "-state", "PATH": "/usr/bin:/bin"])
        XCTAssertEqual(raw.status, 2, raw.stderrText)
        XCTAssertTrue(raw.stderrText.contains("is not valid UTF-8"), raw.stderrText)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work).filter { $0.hasPrefix("bad-") }, [], "nothing saved under another name")
        XCTAssertFalse(FileSystem.exists(work + "/a.sparc"))
    }

    /// The guest: processes, terminals, commands.
    func testGuestTargets() throws {
        let out = work + "/t.sparc"
        let cases: [Case] = [
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "999999"], message: "no process with pid 999999"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "0"], message: "a process id is a positive number"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "-4"], message: "a process id is a positive number"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-pid", "1"], message: "pid 1 (init) cannot be excluded"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-tty", "pts/999"], message: "no terminal 'pts/999'"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-tty", ""], message: "no terminal ''"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-name", "no-such-program"], message: "no process named 'no-such-program'"),
            Case(args: ["checkpoint", "--name", vm, "-o", out, "--exclude-name", ""], message: "no process named ''"),
            Case(args: ["checkpoint", "--name", "nosuch", "-o", out], message: "no VM named 'nosuch' is running"),
            Case(args: ["exec", "--name", vm], message: "give the command after --"),
            Case(args: ["exec", "--name", vm, "--"], message: "give the command after --"),
            Case(args: ["exec", "--name", "nosuch", "--", "true"], message: "no VM named 'nosuch' is running"),
            Case(args: ["vm", "stop", "--name", "nosuch"], message: "no VM named 'nosuch' is running"),
            Case(args: ["vm", "status", "--name", "nosuch"], message: "no VM named 'nosuch' is running"),
            Case(args: ["log", "--name", "nosuch"], message: "no VM 'nosuch' known here"),
            Case(args: ["rsdm", "--name", vm, "frobnicate"], message: "usage: sparc rsdm"),
            Case(args: ["rsdm", "--name", vm, "get"], message: "usage: sparc rsdm"),
            Case(args: ["restore", work + "/missing.sparc", "--name", vm], message: "no bundle at"),
            Case(args: ["vm", "start", "--name", vm], message: "already running"),
        ]
        try check(cases)
        XCTAssertFalse(FileSystem.exists(out))
        // sparc exec --help is sparc's help, not the guest's.
        let help = try sparc.run(["exec", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("USAGE: sparc exec"), help.stdout)
        // Standard input is passed up to its cap, and more is refused without reading it all.
        let big = Data(repeating: 0x61, count: (16 << 20) + 1)
        try check([Case(args: ["exec", "--name", vm, "--", "wc", "-c"], message: "standard input is more than 16 MiB", input: big)])
        XCTAssertEqual(try sparc.run(["exec", "--name", vm, "--", "wc", "-c"], input: Data(repeating: 0x61, count: 1 << 20)).stdout.trimmed, "1048576")
        try assertHealthy()
    }

    /// The environment sparc reads.
    func testEnvironment() throws {
        let etc = work + "/on-disk"
        try FileSystem.makeDirectory(etc)
        let cases: [Case] = [
            Case(args: ["vm", "start", "--name", "e1"], message: "not on tmpfs or hugetlbfs", environment: ["SPARC_RAM_DIR": etc]),
            Case(args: ["vm", "list"], message: "must be an absolute path", environment: ["SPARC_STATE_DIR": "relative/state"]),
            Case(args: ["vm", "list"], message: "must be an absolute path", environment: ["SPARC_RUNTIME_DIR": "rt"]),
            Case(args: ["ps", "--name", vm], message: "must be an absolute path", environment: ["SPARC_BUNDLES": "b"]),
            Case(args: ["vm", "start", "--name", "e1"], message: "must be an absolute path", environment: ["SPARC_RAM_DIR": "shm"]),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/e.sparc"], message: "$SPARC_FREEZE_LEASE", environment: ["SPARC_FREEZE_LEASE": "nan"]),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/e.sparc"], message: "$SPARC_FREEZE_LEASE", environment: ["SPARC_FREEZE_LEASE": "-5"]),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/e.sparc"], message: "$SPARC_FREEZE_LEASE", environment: ["SPARC_FREEZE_LEASE": "1e9"]),
            Case(args: ["checkpoint", "--name", vm, "-o", work + "/e.sparc"], message: "$SPARC_FREEZE_LEASE", environment: ["SPARC_FREEZE_LEASE": "soon"]),
        ]
        try check(cases)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: etc), [], "no guest RAM on a disk file system")
        XCTAssertFalse(FileSystem.exists(work + "/e.sparc"))
        try assertHealthy()
    }
}

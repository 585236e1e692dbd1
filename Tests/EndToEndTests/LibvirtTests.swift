import Foundation
import SparcSupport
import XCTest

/// sparc against a real libvirt daemon (started here when none runs, and stopped again): a
/// domain defined from plain XML with the default guest's kernel and initrd is listed, prepared
/// (a dry run first), started with virsh, and its agent answers through libvirt's channel.
final class LibvirtTests: XCTestCase {
    var runtime = ""
    var sparc: SparcRunner!
    let uri = "qemu:///system"
    var domain: String { "sparc-e2e-\(getpid())" }
    var images: String { "/var/lib/libvirt/images/\(domain)" }
    /// Daemons these tests started (pid files), stopped when the class ends; a daemon that
    /// already ran is left alone.
    nonisolated(unsafe) static var started: [String] = []
    nonisolated(unsafe) static var daemonError: String?

    func virsh(_ args: [String]) throws -> ProcessResult {
        try Subprocess.run(["virsh", "-c", uri] + args, timeout: 120)
    }

    override class func setUp() {
        super.setUp()
        guard Subprocess.which("libvirtd") != nil, (try? Subprocess.run(["virsh", "-c", "qemu:///system", "uri"], timeout: 30).status) != 0 else { return }
        do {
            try FileSystem.makeDirectories("/var/log/libvirt", mode: 0o755)
            for (daemon, pidFile) in [("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")] {
                let r = try Subprocess.run(["/usr/sbin/" + daemon, "-d"], timeout: 30)
                if r.status != 0 { daemonError = "\(daemon) -d: \(r.stderrText)" }
                started.append(pidFile)
            }
            var up = false
            for _ in 0..<50 where !up {
                up = try Subprocess.run(["virsh", "-c", "qemu:///system", "uri"], timeout: 30).status == 0
                if !up { usleep(200_000) }
            }
            if !up { daemonError = "libvirtd did not come up" }
        } catch {
            daemonError = "\(error)"
        }
    }

    override class func tearDown() {
        // Only the daemons started here, by the pids they wrote.
        for pidFile in started.reversed() {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = pid_t(text.trimmed), pid > 1 { kill(pid, SIGTERM) }
        }
        started = []
        super.tearDown()
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(Subprocess.which("libvirtd") != nil && Subprocess.which("virsh") != nil, "libvirt is not installed ('make deps' installs it)")
        if let error = Self.daemonError { XCTFail("could not start libvirt: \(error)") }
        runtime = try makeTempDir("libvirt-rt")
        sparc = SparcRunner(runtime: runtime)
        try FileSystem.makeDirectories(images, mode: 0o755)
        for f in ["vmlinuz", "initrd.img"] {
            let guest = ProcessInfo.processInfo.environment["SPARC_GUEST_DIR"] ?? FileSystem.absolute("build/guest")
            try FileManager.default.copyItem(atPath: guest + "/" + f, toPath: images + "/" + f)
        }
    }

    override func tearDown() {
        _ = try? virsh(["destroy", domain])
        _ = try? virsh(["undefine", domain])
        FileSystem.removeTree(images)
        FileSystem.removeTree(runtime)
        FileSystem.removeTree(runtime + "-state")
    }

    func testDomainIsListedPreparedAndItsAgentAnswers() throws {
        let xml = """
            <domain type='qemu'>
              <name>\(domain)</name>
              <memory unit='MiB'>256</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type><kernel>\(images)/vmlinuz</kernel><initrd>\(images)/initrd.img</initrd>
                <cmdline>console=ttyS0 init_on_free=1 quiet</cmdline></os>
              <devices>
                <serial type='pty'><target port='0'/></serial>
                <video><model type='none'/></video>
              </devices>
            </domain>
            """
        let file = runtime + "/domain.xml"
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try virsh(["define", file]).status, 0)

        let before = try sparc.ok(["vm", "list", "--connect", uri])
        let row = try XCTUnwrap(before.split(separator: "\n").first { $0.hasPrefix(domain + " ") }, before)
        XCTAssertTrue(row.contains("shut off") && row.contains("not prepared: 'sparc libvirt prepare \(domain)'"), String(row))

        // Not prepared: the agent cannot be reached, and sparc says what to do.
        XCTAssertEqual(try virsh(["start", domain]).status, 0)
        try sparc.fails(["ps", "--connect", uri, "--name", domain], message: "sparc libvirt prepare \(domain)")
        XCTAssertEqual(try virsh(["destroy", domain]).status, 0)

        let dry = try sparc.ok(["libvirt", "prepare", domain, "--connect", uri, "--dry-run"])
        XCTAssertTrue(dry.contains("+    <source type=\"file\"/>") && dry.contains("org.sparc.agent.0") && dry.contains("+  <genid/>"), dry)
        XCTAssertTrue(dry.contains("dry run: nothing changed"), dry)
        XCTAssertFalse(try virsh(["dumpxml", "--inactive", domain]).stdoutText.contains("org.sparc.agent.0"), "a dry run changes nothing")

        let prepared = try sparc.run(["libvirt", "prepare", domain], environment: ["SPARC_CONNECT": uri])
        XCTAssertEqual(prepared.status, 0, prepared.stderr)
        let done = prepared.stdout
        XCTAssertTrue(done.contains("5 change(s) defined through libvirt"), done)
        let backupLine = try XCTUnwrap(done.split(separator: "\n").first { $0.hasPrefix("the definition before: ") }, done)
        let backup = String(backupLine.dropFirst("the definition before: ".count))
        XCTAssertTrue(try String(contentsOfFile: backup, encoding: .utf8).contains("<name>\(domain)</name>"))
        let defined = try virsh(["dumpxml", "--inactive", domain]).stdoutText
        XCTAssertTrue(defined.contains("<genid>") && defined.contains("org.sparc.rsdm.0") && defined.contains("<access mode='shared'/>"), defined)
        XCTAssertTrue(try sparc.ok(["libvirt", "prepare", domain, "--connect", uri]).contains("already prepared"))

        // Started by libvirt: RAM in a shared file, the agent over libvirt's channel.
        XCTAssertEqual(try virsh(["start", domain]).status, 0)
        XCTAssertEqual(try virsh(["domstate", domain]).stdoutText.trimmed, "running")
        let listed = try sparc.ok(["vm", "list", "--connect", uri])
        XCTAssertTrue(listed.contains(domain) && listed.split(separator: "\n").contains { $0.hasPrefix(domain + " ") && $0.contains("running") && $0.hasSuffix("prepared") }, listed)
        var ps = ""
        for _ in 0..<60 where !ps.contains("sparc-agent") {
            ps = (try? sparc.run(["ps", "--connect", uri, "--name", domain, "--timeout", "5"]))?.stdout ?? ""
            if !ps.contains("sparc-agent") { sleep(1) }
        }
        XCTAssertTrue(ps.contains("sparc-agent"), "the agent answers through libvirt's channel:\n\(ps)")
        XCTAssertTrue(try sparc.ok(["ttys", "--connect", uri, "--name", domain]).contains("ttyS1"), "the terminal port")
    }

    func testBadConnections() throws {
        try sparc.fails(["vm", "list", "--connect", "qemu+unix:///system?socket=/nonexistent"], message: "is libvirtd running?")
        try sparc.fails(["ps", "--connect", uri, "--name", "no-such-domain-\(getpid())"], message: "has no domain named")
        try sparc.fails(["libvirt", "prepare", "no-such-domain-\(getpid())", "--connect", uri], message: "has no domain named")
        try sparc.fails(["libvirt", "prepare", "x"], message: "--connect URI")
    }
}

import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// Hostile bundles and hostile neighbours against the real guest: every attack of the
/// security review is run as an attacker would run it, and must fail.
final class SecurityTests: GuestTestCase {
    override class var vmName: String { "sec" }

    /// A fresh checkpoint of the test VM.
    func checkpoint(_ name: String) throws -> String {
        let bundle = work + "/\(name).sparc"
        try sparc.ok(["checkpoint", "--name", vm, "-o", bundle])
        return bundle
    }

    /// A copy of `bundle` forged with `edit` and replaced files, unsealed.
    func forged(_ bundle: String, as name: String, replacing: [String: Data] = [:], edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        let copy = work + "/\(name).sparc"
        try BundleForge.copy(bundle, to: copy)
        try BundleForge.forge(copy, replacing: replacing, edit: edit)
        return copy
    }

    func qemuImg(_ args: [String]) throws -> Data {
        let dir = work + "/img-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectory(dir)
        defer { FileSystem.removeTree(dir) }
        let r = try Subprocess.run(["qemu-img"] + args.map { $0.replacingOccurrences(of: "@", with: dir + "/") })
        XCTAssertEqual(r.status, 0, r.stderrText)
        return try Data(contentsOf: URL(fileURLWithPath: dir + "/evil.qcow2"))
    }

    /// Runs a command as the unprivileged user `nobody`.
    func asNobody(_ script: String) throws -> ProcessResult {
        try Subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", script])
    }

    func qemuPid(_ name: String) throws -> Int32 {
        let status = try sparc.ok(["vm", "status", "--name", name, "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(status.utf8)) as! [String: Any]
        return Int32(obj["pid"] as! Int)
    }

    // MARK: -

    /// A file of the test's own standing in for a host secret (a test never names a real host
    /// file as something a tool could write: qemu-img truncates the data file it is given).
    func canary(_ name: String) throws -> (path: String, content: Data) {
        let path = work + "/\(name)"
        let content = Data("root:CANARY-\(UInt64.random(in: 0...UInt64.max)):19000:0:99999:7:::\n".utf8)
        unlink(path)
        try content.write(to: URL(fileURLWithPath: path))
        return (path, content)
    }

    /// Critical: a crafted bundle must never make QEMU open a host file.
    func testCraftedBundlesNeverReachHostFiles() throws {
        let bundle = try checkpoint("victim")
        var secret = try canary("canary-shadow")

        // A disk backed by the canary (the reviewer's attack was the host's shadow file), and one
        // with the canary as its external data file.
        let backed = try qemuImg(["create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret.path, "@evil.qcow2", "64M"])
        let viaBacking = try forged(bundle, as: "evil-backing", replacing: ["disk.qcow2": backed])
        try sparc.fails(["restore", viaBacking, "--name", "evil", "--foreign", "--clone"], status: 1, message: "names a backing file")
        try assertNoVM("evil")
        // qemu-img itself truncates the data file it is given: the canary is written again after.
        let dataFile = try qemuImg(["create", "-q", "-f", "qcow2", "-o", "data_file=\(secret.path),data_file_raw=on", "@evil.qcow2", "64M"])
        secret = try canary("canary-shadow")
        let viaDataFile = try forged(bundle, as: "evil-datafile", replacing: ["disk.qcow2": dataFile])
        try sparc.fails(["restore", viaDataFile, "--name", "evil", "--foreign", "--clone"], status: 1, message: "external data file")
        try assertNoVM("evil")

        // An initrd the bundle names: only a digest, looked up in sparc's own store, never a path.
        let viaInitrd = try forged(bundle, as: "evil-initrd") { o in
            BundleForge.set(&o, "machine", "initrd", ["sha256": SHA256Hasher.hex(of: secret.content), "size": secret.content.count, "origin": secret.path])
        }
        try sparc.fails(["restore", viaInitrd, "--name", "evil", "--foreign", "--clone"], message: "not in this host's boot-file store")
        try assertNoVM("evil")
        XCTAssertEqual(try FileSystem.readFile(secret.path), secret.content, "the canary was changed by a restore")

        // Names from a bundle are checked as --name is: no path into an attacker's files.
        let viaName = try forged(bundle, as: "evil-name") { o in BundleForge.set(&o, "vm", "name", "../../../tmp/x") }
        try sparc.fails(["restore", viaName, "--name", "evil", "--foreign", "--clone"], status: 1, message: "is not a valid name")
        try sparc.fails(["verify", viaName], status: 1, message: "is not a valid name")

        // A resealed copy is not this host's bundle, however valid its manifest digest.
        let resealed = try forged(bundle, as: "resealed")
        XCTAssertEqual(try sparc.run(["verify", resealed]).status, 0)
        XCTAssertTrue(try sparc.ok(["verify", resealed]).contains("not sealed by this host"))
        XCTAssertTrue(try sparc.ok(["verify", bundle]).contains("sealed by this host"))
        try sparc.fails(["restore", resealed, "--name", vm, "--replace"], message: "not sealed by this host")
        try assertHealthy()
    }

    /// The restored QEMU parses device state from a bundle: it runs unprivileged under
    /// seccomp and holds only its own files.
    func testRestoredQEMUIsConfinedToItsOwnFiles() throws {
        let bundle = try checkpoint("confined")
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        let pid = try qemuPid(vm)
        let status = String(decoding: try FileSystem.readFile("/proc/\(pid)/status"), as: UTF8.self)
        let field = { (name: String) in status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)).trimmed } ?? "" }
        XCTAssertEqual(field("Seccomp"), "2", "QEMU runs under a seccomp filter")
        if geteuid() == 0 {
            let uid = getpwnam("sparc-qemu").map { Int($0.pointee.pw_uid) }
            XCTAssertNotNil(uid, "make test creates the sparc-qemu user")
            XCTAssertEqual(field("Uid").split(whereSeparator: { $0 == "\t" || $0 == " " }).map { Int($0) ?? -1 }, Array(repeating: uid ?? -2, count: 4))
            XCTAssertEqual(field("CapEff"), "0000000000000000", "no capabilities left")
        }
        let allowed = [runtime + "/", "/dev/shm/sparc-\(vm)-", "/dev/null", "/dev/urandom", "/dev/random", "/dev/kvm", "socket:", "pipe:", "anon_inode:"]
        var open: [String] = []
        for fd in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)") { open.append(target) }
        }
        XCTAssertFalse(open.isEmpty)
        let outside = open.filter { t in !allowed.contains { t.hasPrefix($0) } }
        XCTAssertEqual(outside, [], "QEMU holds files outside its runtime directory and RAM directory: \(open)")
        XCTAssertTrue(open.contains { $0.hasPrefix("/dev/shm/sparc-\(vm)-") && $0.hasSuffix("/ram") }, "\(open)")
        try assertHealthy()
    }

    /// High: a broken history chain refuses the restore (it is not just a warning).
    func testBrokenHistoryRefusesRestore() throws {
        let bundle = try checkpoint("chain")
        let logFile = runtime + "-state/history/\(vm).log"
        let original = try FileSystem.readFile(logFile)
        var lines = String(decoding: original, as: UTF8.self).split(separator: "\n").map(String.init)
        lines[0] = lines[0].replacingOccurrences(of: "\"event\":\"boot\"", with: "\"event\":\"stop\"")
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: logFile))
        try sparc.fails(["restore", bundle, "--name", vm, "--replace"], message: "is broken")
        try sparc.fails(["restore", bundle, "--name", vm, "--replace", "--allow-rollback"], message: "is broken")
        try original.write(to: URL(fileURLWithPath: logFile))
        try sparc.ok(["restore", bundle, "--name", vm, "--replace"])
        try assertHealthy()
    }

    /// High: another local user racing for the RAM file gets nothing: the file is created by
    /// sparc in a fresh directory only root can enter.
    func testRAMFileCannotBeTakenOverByAnotherUser() throws {
        try XCTSkipUnless(geteuid() == 0 && Subprocess.which("setpriv") != nil, "needs root and setpriv")
        let bundle = try checkpoint("race")
        // The attacker: plants world-writable files and symlinks wherever a RAM file could go.
        let attacker = try Subprocess.spawn([
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
            "while :; do for d in /dev/shm/sparc-*; do ln -sf /tmp/stolen \"$d/ram\" 2>/dev/null; touch \"$d/x\" 2>/dev/null; done; "
                + "touch /dev/shm/sparc-0-00000000-sec2.ram /dev/shm/sparc-sec2.ram 2>/dev/null; chmod 666 /dev/shm/sparc-*.ram 2>/dev/null; done",
        ], newSession: true)
        defer {
            // The whole session: a touch still running after its shell died would plant the files again.
            kill(-attacker, SIGKILL)
            _ = Subprocess.wait(attacker)
            unlink("/dev/shm/sparc-0-00000000-sec2.ram")
            unlink("/dev/shm/sparc-sec2.ram")
        }
        try sparc.ok(["restore", bundle, "--name", "sec2", "--clone"])
        defer { _ = try? sparc.run(["vm", "stop", "--name", "sec2"]) }
        let pid = try qemuPid("sec2")
        let ramTargets = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")
        }.filter { $0.hasPrefix("/dev/shm/") }
        // The descriptor sparc handed down and QEMU's own reopening of it through /proc/self/fd: one file.
        XCTAssertEqual(Set(ramTargets).count, 1, "\(ramTargets)")
        let ram = ramTargets.first ?? ""
        var st = stat()
        XCTAssertEqual(lstat(ram, &st), 0)
        XCTAssertEqual(st.st_uid, 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(lstat(Path.directory(of: ram), &st), 0)
        XCTAssertEqual(st.st_uid, 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        let read = try asNobody("head -c 16 '\(ram)'")
        XCTAssertNotEqual(read.status, 0)
        XCTAssertEqual(read.stdout, Data(), "the other user read guest RAM")
        XCTAssertEqual(try sparc.ok(["exec", "--name", "sec2", "--", "echo", "alive"]).trimmed, "alive")
    }

    /// Critical: a neighbour in a shared (1777) directory cannot make root remove anything of
    /// theirs or anything they point at. The neighbour plants staging directories under every
    /// name an old sparc would have used (with links inside to a directory of root's) and
    /// stale-looking ones of dead pids, while checkpoints are written there.
    func testNeighbourInASharedDirectoryCannotSteerWhatRootRemoves() throws {
        try XCTSkipUnless(geteuid() == 0 && Subprocess.which("setpriv") != nil, "needs root and setpriv")
        let shared = work + "/shared"
        try FileSystem.makeDirectory(shared)
        XCTAssertEqual(chmod(shared, 0o1777), 0)
        let victim = work + "/victim-dir"
        try FileSystem.makeDirectory(victim)
        XCTAssertEqual(chmod(victim, 0o755), 0)
        for i in 0..<3 { try Data("root's \(i)".utf8).write(to: URL(fileURLWithPath: victim + "/f\(i)")) }
        XCTAssertEqual(chmod(work, 0o755), 0)
        // Predictable names first: the next pids, each with a link to the victim inside; then a
        // loop that keeps a staging directory of a dead pid (1) planted, with a link in it.
        let next = Int(String(decoding: try FileSystem.readFile("/proc/sys/kernel/ns_last_pid"), as: UTF8.self).trimmed) ?? 1000
        let neighbour = try Subprocess.spawn([
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
            "cd '\(shared)' || exit 1; p=\(next); while [ $p -lt \(next + 400) ]; do mkdir -p .x.sparc.partial-$p && ln -sfn '\(victim)' .x.sparc.partial-$p/sub; p=$((p+1)); done; "
                + "while :; do mkdir -p .x.sparc.partial-4000000-abcdef .y.sparc.partial-4000000-abcdef; ln -sfn '\(victim)' .x.sparc.partial-4000000-abcdef/sub; ln -sfn '\(victim)' .y.sparc.partial-4000000-abcdef/link; "
                // The race on the names an old sparc would have removed: sub flips between a directory and a link.
                + "p=\(next); while [ $p -lt \(next + 40) ]; do d=.x.sparc.partial-$p; rm -f $d/sub; mkdir -p $d/sub && : > $d/sub/a; mv $d/sub $d/aside 2>/dev/null; ln -sfn '\(victim)' $d/sub; rm -rf $d/aside; p=$((p+1)); done; done",
        ], newSession: true)
        defer {
            kill(-neighbour, SIGKILL)
            _ = Subprocess.wait(neighbour)
            // What the neighbour made is theirs, and sparc rightly leaves it: the test tidies it away as its owner.
            _ = try? Subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "find", shared, "-mindepth", "1", "-user", "65534", "-delete"])
        }
        usleep(300_000)
        try sparc.ok(["checkpoint", "--name", vm, "-o", shared + "/x.sparc"])
        try sparc.ok(["checkpoint", "--name", vm, "-o", shared + "/y.sparc"])
        // A bundle path the neighbour took first is refused, not replaced.
        try sparc.fails(["checkpoint", "--name", vm, "-o", shared + "/.x.sparc.partial-4000000-abcdef"], message: "already exists")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: victim).sorted(), ["f0", "f1", "f2"], "root removed files through a neighbour's link")
        // What the neighbour made is theirs: sparc removed none of it.
        var st = stat()
        XCTAssertEqual(lstat(shared + "/.x.sparc.partial-4000000-abcdef/sub", &st), 0, "a neighbour's stale-looking staging directory was emptied")
        XCTAssertEqual(lstat(shared + "/.x.sparc.partial-\(next + 1)/sub", &st), 0)
        XCTAssertEqual(try sparc.run(["verify", shared + "/x.sparc"]).status, 0)
        try assertHealthy()
    }

    /// Medium: rollback-sensitive data follows the VM's identity; another name is a clone
    /// that starts with a copy of the data, never with an empty store.
    func testRSDMFollowsTheVMNotTheName() throws {
        try guest("sparc-rsdm set guard.failures 3")
        let bundle = try checkpoint("rsdm")
        try sparc.fails(["restore", bundle, "--name", "sec3"], message: "--clone")
        try sparc.ok(["restore", bundle, "--name", "sec3", "--clone"])
        defer { _ = try? sparc.run(["vm", "stop", "--name", "sec3"]) }
        XCTAssertEqual(try sparc.ok(["exec", "--name", "sec3", "--", "sparc-rsdm", "get", "guard.failures"]).trimmed, "3")
        try sparc.ok(["exec", "--name", "sec3", "--", "sparc-rsdm", "set", "guard.failures", "9"])
        XCTAssertEqual(try guest("sparc-rsdm get guard.failures"), "3", "the clone has its own store")
        XCTAssertTrue(try sparc.ok(["log", "--name", "sec3"]).contains("clone"))
        // Restoring over a name that belongs to a different VM is a clone too.
        try sparc.fails(["restore", bundle, "--name", "sec3", "--replace"], message: "--clone")
        try guest("sparc-rsdm del guard.failures")
    }

    /// Medium: nothing a guest sends ends the host's RSDM service, and a crashed server is restarted.
    func testRSDMServiceSurvivesTheGuest() throws {
        try guest("sparc-rsdm set big 9223372036854775807")
        let overflow = try sparc.run(["exec", "--name", vm, "--", "sparc-rsdm", "incr", "big"])
        XCTAssertNotEqual(overflow.status, 0)
        XCTAssertTrue(overflow.stderr.contains("overflow"), overflow.stderr)
        XCTAssertEqual(try guest("sparc-rsdm get big"), "9223372036854775807", "the service still answers")
        // A request past the 64 KiB frame is answered too (refused), not left waiting.
        let huge = try sparc.run(["exec", "--name", vm, "--", "sh", "-c", "sparc-rsdm set huge \"$(head -c 100000 /dev/zero | tr '\\0' v)\""])
        XCTAssertNotEqual(huge.status, 0)
        XCTAssertTrue(huge.stderr.contains("larger than 64 KiB"), huge.stderr)
        XCTAssertEqual(try guest("sparc-rsdm get big"), "9223372036854775807", "the service still answers after it")
        // Kill the serving worker outright: its supervisor starts another.
        let workers = try Subprocess.run(["pgrep", "-f", "sparc-rsdmd --socket \(runtime)/\(vm)/rsdm.sock.*--worker"]).stdoutText
        let worker = workers.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(worker.count, 1, workers)
        kill(worker[0], SIGKILL)
        var answered = ""
        for _ in 0..<40 where answered != "9223372036854775807" {
            usleep(250_000)
            answered = (try? sparc.run(["exec", "--name", vm, "--", "sparc-rsdm", "get", "big"]).stdout.trimmed) ?? ""
        }
        XCTAssertEqual(answered, "9223372036854775807", "a new server took over")
        try guest("sparc-rsdm del big")
    }

    /// Low: text from the guest reaches the operator's terminal escaped, never as control sequences.
    func testGuestTextIsEscaped() throws {
        let pid = try detach(
            "exec sh -c 'printf \"\\033]0;owned\\007\" > /proc/$$/comm; while :; do sleep 1; done' \"MARKERx$(printf '\\033')[2J\"")
        sleep(1)
        let ps = try sparc.run(["ps", "--name", vm])
        XCTAssertFalse(ps.stdout.utf8.contains(0x1B), "raw ESC in sparc ps")
        XCTAssertTrue(ps.stdout.contains("MARKERx\\e[2J"), ps.stdout)
        let bundle = work + "/escape.sparc"
        let out = try sparc.ok(["checkpoint", "--name", vm, "-o", bundle, "--exclude-pid", String(pid), "--scope", "user"])
        XCTAssertFalse(out.utf8.contains(0x1B), "raw ESC in checkpoint output")
        XCTAssertTrue(out.contains("\\e]0;owned\\x07"), out)
        let baseline = try checkpoint("escape-base")
        let search = try sparc.run(["search", "MARKERx", baseline])
        XCTAssertEqual(search.status, 0, search.stderr)
        XCTAssertFalse(search.stdout.utf8.contains(0x1B), "raw ESC in search output")
        XCTAssertTrue(search.stdout.contains("\\e]0;owned\\x07"), search.stdout)
        let key = try sparc.run(["exec", "--name", vm, "--", "sh", "-c", "sparc-rsdm set \"k$(printf '\\033')[2J\" v"])
        XCTAssertNotEqual(key.status, 0, "a key with control characters is refused")
        try guest("kill \(pid)")
    }

    /// The most memory a command may take on any bundle, crafted or not.
    static let memoryCeilingKiB = 256 << 10

    /// Runs a command that must fail with one line, within a minute (a hang is killed and
    /// fails the test, whatever the machine's speed) and under the memory ceiling.
    func refusedQuickly(
        _ args: [String], status: Int32, message: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let out = try sparc.measured(args, timeout: 60, file: file, line: line)
        XCTAssertEqual(out.status, status, "sparc \(args.joined(separator: " ")): \(out.stderr)", file: file, line: line)
        let errLines = out.stderr.split(separator: "\n").filter { !$0.trimmed.isEmpty }
        XCTAssertEqual(errLines.count, 1, "one-line error expected, got: \(out.stderr)", file: file, line: line)
        XCTAssertTrue(out.stderr.contains(message), "expected '\(message)' in: \(out.stderr)", file: file, line: line)
        XCTAssertLessThan(out.maxResidentKiB, Self.memoryCeilingKiB, "sparc \(args.joined(separator: " ")) took \(out.maxResidentKiB) KiB", file: file, line: line)
        print("memory: sparc \(args.prefix(2).joined(separator: " ")) … \(Path.base(of: args.last ?? "")): \(out.maxResidentKiB) KiB")
    }

    /// Critical: a crafted bundle cannot exhaust the host's memory: every member has a limit or
    /// is read as a stream, and each case ends in one line under 256 MiB.
    func testCraftedBundlesEndInOneLineWithinBoundedMemory() throws {
        let bundle = try checkpoint("memory")
        func le<T: FixedWidthInteger>(_ v: T) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
        // An owner map of 400 MiB (its limit is 512 MiB) announcing a million processes and then nothing (zeros).
        let manyProcesses = try forged(bundle, as: "owners-huge")
        try BundleForge.sparseMember(
            manyProcesses, "owners.bin", size: 400 << 20,
            head: Data("SPARCOWN".utf8) + le(UInt32(1)) + le(UInt32(4096)) + le(UInt64(0)) + le(UInt32(1 << 20)))
        try refusedQuickly(["search", "--hex", "de ad be ef", manyProcesses], status: 1, message: "not a valid owner map")
        try refusedQuickly(["scan", manyProcesses], status: 1, message: "not a valid owner map")
        // One process whose one mapping announces two billion runs.
        let manyRuns = try forged(bundle, as: "owners-runs")
        try BundleForge.sparseMember(
            manyRuns, "owners.bin", size: 400 << 20,
            head: Data("SPARCOWN".utf8) + le(UInt32(1)) + le(UInt32(4096)) + le(UInt64(0)) + le(UInt32(1)) + le(Int32(1)) + le(UInt16(1))
                + Data("x".utf8) + le(UInt32(1)) + le(UInt16(1)) + Data("m".utf8) + le(UInt32(0x7fff_ffff)))
        try refusedQuickly(["search", "x", manyRuns], status: 1, message: "runs")
        // Past its limit: refused before anything is read.
        let tooBig = try forged(bundle, as: "owners-past-limit")
        try BundleForge.sparseMember(tooBig, "owners.bin", size: 1 << 30, head: Data("SPARCOWN".utf8))
        try refusedQuickly(["search", "x", tooBig], status: 1, message: "owners.bin has a size of")
        // The reviewer's case: a legacy owners.json of 1 GiB (format 2), and one of 100 MB: the
        // search runs without reading it, and says its hits are not attributed.
        for size: Int64 in [1 << 30, 100_000_000] {
            let legacy = try forged(bundle, as: "owners-json-\(size)")
            try BundleForge.sparseMember(legacy, "owners.bin", size: size, head: Data("{\"processes\":[".utf8), listedAs: "owners.json") { o in
                o["formatVersion"] = 2
            }
            let out = try sparc.measured(["search", "--hex", "de ad be ef 01 02 03 04 05", legacy], timeout: 60)
            XCTAssertEqual(out.status, 1, out.stderr)
            XCTAssertTrue(out.stderr.contains("not attributed"), out.stderr)
            XCTAssertLessThan(out.maxResidentKiB, Self.memoryCeilingKiB)
            // Its digest is checked as a stream: a sparse gigabyte verifies in bounded memory.
            let verified = try sparc.measured(["verify", legacy], timeout: 120)
            XCTAssertEqual(verified.status, 0, verified.stderr)
            XCTAssertTrue(verified.stdout.contains("not sealed by this host"), verified.stdout)
            XCTAssertLessThan(verified.maxResidentKiB, Self.memoryCeilingKiB)
        }
        // A legacy map just under its limit (4 MiB), dense with runs: read, within the ceiling.
        let dense = try forged(bundle, as: "owners-dense")
        var json = Data("{\"pageSize\":4096,\"frameClasses\":\"\",\"processes\":[{\"pid\":1,\"command\":\"x\",\"mappings\":[{\"name\":\"m\",\"runs\":[".utf8)
        let run = Data("[1,1],".utf8)
        json.reserveCapacity(Int(OwnerIndex.maxLegacyJSONBytes))
        while json.count + run.count + 16 < OwnerIndex.maxLegacyJSONBytes { json.append(run) }
        json.append(Data("[1,1]]}]}]}".utf8))
        try BundleForge.sparseMember(dense, "owners.bin", size: Int64(json.count), head: json, listedAs: "owners.json") { o in o["formatVersion"] = 2 }
        let read = try sparc.measured(["search", "--hex", "de ad be ef 01 02 03 04 05", dense], timeout: 120)
        XCTAssertEqual(read.status, 1, read.stderr)
        XCTAssertFalse(read.stderr.contains("owner"), "the legacy owner map is read: \(read.stderr)")
        XCTAssertLessThan(read.maxResidentKiB, Self.memoryCeilingKiB, "a 4 MiB legacy owner map took \(read.maxResidentKiB) KiB")
        print("memory: search of a dense 4 MiB legacy owner map: \(read.maxResidentKiB) KiB")
        // A manifest past its limit, and one inside it full of warnings.
        let bigManifest = try forged(bundle, as: "manifest-big")
        try BundleForge.forge(bigManifest) { o in
            var e = o["exclusion"] as? [String: Any] ?? [:]
            e["warnings"] = Array(repeating: String(repeating: "w", count: 1000), count: 9000)
            o["exclusion"] = e
        }
        try refusedQuickly(["verify", bigManifest], status: 1, message: "manifest.json")
        let fullManifest = try forged(bundle, as: "manifest-full")
        try BundleForge.forge(fullManifest) { o in
            var e = o["exclusion"] as? [String: Any] ?? [:]
            e["warnings"] = Array(repeating: "w", count: 600_000)
            o["exclusion"] = e
        }
        let verified = try sparc.measured(["verify", fullManifest], timeout: 120)
        XCTAssertLessThan(verified.maxResidentKiB, Self.memoryCeilingKiB, "a manifest of 7 MiB of warnings took \(verified.maxResidentKiB) KiB")
        print("memory: verify of a manifest full of warnings: \(verified.maxResidentKiB) KiB")
        // A 1 GiB device state (holes): searched as a stream.
        let devices = try forged(bundle, as: "devices-big")
        try BundleForge.sparseMember(devices, "devices.vmstate", size: 1 << 30, head: Data("QEVM".utf8))
        let searched = try sparc.measured(["search", "QEVM", devices], timeout: 120)
        XCTAssertEqual(searched.status, 0, searched.stderr)
        XCTAssertLessThan(searched.maxResidentKiB, Self.memoryCeilingKiB)
    }

    /// High: an unprivileged guest user cannot make the process list fail: processes whose
    /// arguments add up past the agent's 64 MiB frame are listed, each command cut and saying so.
    func testHugeArgumentsOfAGuestUserNeverBreakTheProcessList() throws {
        // 36 shells of user 1000, each with 15 arguments of 127 KiB (the kernel's limit per
        // argument is 128 KiB): about 67 MiB of command lines.
        try guest(
            "printf '%s\\n' 'a=$(head -c 130000 /dev/zero | tr \"\\\\0\" a)' "
                + "'exec sh -c \"sleep 600; :\" HUGEARGS $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a' > /tmp/hugeargs.sh")
        let pid = try detach("i=0; while [ $i -lt 36 ]; do su guest -s /bin/sh -c 'sh /tmp/hugeargs.sh' >/dev/null 2>&1 & i=$((i+1)); done; wait")
        defer { _ = try? guest("pkill -f HUGEARGS; kill \(pid) 2>/dev/null; true") }
        var listed = 0
        for _ in 0..<60 where listed < 36 {
            usleep(500_000)
            listed = Int(try guest("ps -o args | grep -c '^sh -c sleep 600; : HUGEARGS' || true")) ?? 0
        }
        XCTAssertEqual(listed, 36, "the guest started the processes")
        let ps = try sparc.run(["ps", "--name", vm, "--json"], timeout: 120)
        XCTAssertEqual(ps.status, 0, ps.stderr)
        let list = JSONOutput.list(ps.stdout, "processes") ?? []
        let huge = list.compactMap { $0["command"] as? String }.filter { $0.contains("HUGEARGS") }
        XCTAssertEqual(huge.count, 36, "every process is listed")
        XCTAssertTrue(huge.allSatisfy { $0.utf8.count <= 1024 && $0.contains("[cut ") }, huge.first ?? "")
        XCTAssertEqual(try sparc.run(["ttys", "--name", vm]).status, 0)
        try assertHealthy()
    }

    /// Medium: hostile files end in one line and a clear exit status, bounded in time (a hang
    /// is killed after a minute and fails) and memory.
    func testHostileFilesEndQuicklyWithOneLine() throws {
        let bundle = try checkpoint("files")
        func quick(_ args: [String], status: Int32, message: String, file: StaticString = #filePath, line: UInt = #line) throws {
            try refusedQuickly(args, status: status, message: message, file: file, line: line)
        }
        let empty = work + "/empty"
        FileManager.default.createFile(atPath: empty, contents: Data())
        try quick(["hexdump", empty, "--offset", "5"], status: 2, message: "is empty")
        try quick(["hexdump", bundle, "--address", "0xffffffffffffffff"], status: 2, message: "not guest RAM")
        try quick(["hexdump", bundle, "--offset", "0x1000000000"], status: 2, message: "past the end")
        let small = work + "/small"
        try Data((0..<4096).map { UInt8($0 & 0xff) }).write(to: URL(fileURLWithPath: small))
        let dump = try sparc.run(["hexdump", small, "--length", "1099511627776"], timeout: 60)
        XCTAssertEqual(dump.status, 0, dump.stderr)
        XCTAssertEqual(dump.lines.count, 256, "a length past the end shows the file once")

        let negative = try forged(bundle, as: "negative") { o in BundleForge.set(&o, "memory", "bytes", -1) }
        try quick(["verify", negative], status: 1, message: "not valid")
        try quick(["search", "x", negative], status: 1, message: "not valid")
        let owners = try forged(bundle, as: "owners", replacing: [
            "owners.json": Data(#"{"pageSize":4096,"frameClasses":"","processes":[{"pid":1,"command":"x","mappings":[{"name":"[heap]","runs":[[1,18446744073709551615]]}]}]}"#.utf8)
        ])
        XCTAssertLessThan(try sparc.run(["search", "--hex", "de ad be ef", owners]).status, 2, "a wrapping owner run is dropped, not a crash")

        let secret = try canary("canary-member")
        let outsideName = try forged(bundle, as: "member") { o in
            var f = o["files"] as! [[String: Any]]
            f[1]["name"] = "../canary-member"
            o["files"] = f
        }
        try quick(["search", "CANARY", outsideName], status: 1, message: "unknown file")

        let fifo = try forged(bundle, as: "fifo")
        unlink(fifo + "/devices.vmstate")
        XCTAssertEqual(mkfifo(fifo + "/devices.vmstate", 0o600), 0)
        try quick(["verify", fifo], status: 1, message: "problem(s) found")
        try quick(["search", "x", fifo], status: 1, message: "not a regular file")
        let fifoManifest = try forged(bundle, as: "fifo-manifest")
        unlink(fifoManifest + "/manifest.json")
        XCTAssertEqual(mkfifo(fifoManifest + "/manifest.json", 0o600), 0)
        try quick(["verify", fifoManifest], status: 1, message: "not a regular file")

        let linked = try forged(bundle, as: "linked")
        unlink(linked + "/devices.vmstate")
        XCTAssertEqual(symlink(secret.path, linked + "/devices.vmstate"), 0)
        for args in [["search", "CANARY", linked], ["strings", linked], ["verify", linked]] {
            let r = try sparc.run(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertFalse(r.stdout.contains("CANARY"), "\(args) read the canary through a symlink")
        }
        XCTAssertEqual(try FileSystem.readFile(secret.path), secret.content)

        // A 1 TiB machine whose image is all holes: verify and a search for bytes starting with zeros are quick.
        // 1 TiB and the 8 KiB every machine of sparc's has (the bundle's `extraRAMBytes`).
        let hugeBytes = (Int64(1) << 40) + 8192
        let huge = try forged(bundle, as: "huge")
        XCTAssertEqual(truncate(huge + "/memory.img", off_t(hugeBytes)), 0)
        let hugeDigest = try ChunkedDigest.of(file: huge + "/memory.img")
        try BundleForge.forge(huge) { o in
            BundleForge.set(&o, "machine", "memoryMiB", 1 << 20)
            BundleForge.set(&o, "memory", "bytes", hugeBytes)
            var f = o["files"] as! [[String: Any]]
            let i = f.firstIndex { $0["name"] as? String == "memory.img" }!
            f[i]["size"] = hugeBytes
            f[i]["sha256"] = hugeDigest
            o["files"] = f
        }
        // Reading a terabyte of zeros would take minutes: within a minute means only data was read.
        let verified = try sparc.run(["verify", huge], timeout: 60)
        XCTAssertEqual(verified.status, 0, "verify of a sparse terabyte reads only its data: \(verified.stderr)")
        XCTAssertLessThan(try sparc.run(["search", "--hex", "00 53", huge], timeout: 60).status, 2, "a pattern starting with zeros does not scan holes")
        try quick(["search", "--hex", "00 00", huge], status: 2, message: "all zero bytes")
        try quick(["checkpoint", "--name", vm, "-o", empty + "/x.sparc"], status: 2, message: "is not a directory")
    }
}

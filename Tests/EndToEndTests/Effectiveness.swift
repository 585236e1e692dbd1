import Foundation
import SnapshotModel
import SparcSupport
import XCTest

/// The effectiveness scenario, shared by the guests: a fresh secret reaches the guest through
/// each channel, then three checkpoints (no exclusion, --scope user, --scope all) are searched
/// for it in every file but the disk (ASCII and UTF-16LE). The baseline must hold every
/// secret; --scope all must hold none.
struct Channel {
    var name: String
    var secret: String
}

extension GuestTestCase {
    static func randomSecret(_ tag: String) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        return tag + String((0..<(32 - tag.count)).map { _ in alphabet.randomElement()! })
    }

    /// In-guest generation: the secret is made by the guest and read back through a FIFO,
    /// so it never passes the agent's input channel (whose virtio buffers are reused, not freed).
    static var generate: String { "$(tr -dc A-Za-z0-9 </dev/urandom | head -c 32)" }

    /// Sets up the channels every guest has (2-6): heap, an open file in `fileDirectory` (on
    /// the disk), a pipe, unix and TCP sockets, arguments. Returns them and the pids to exclude.
    func standardChannels(fileDirectory: String) throws -> (channels: [Channel], pids: [Int32]) {
        var channels: [Channel] = []
        // 2. Held only in a process's heap.
        let heapPid = try detach("mkfifo /run/ch2; S=\(Self.generate); printf %s \"$S\" > /run/ch2; while :; do sleep 1000; done")
        channels.append(Channel(name: "2. in a process's heap", secret: try readFifo("/run/ch2")))

        // 3. Read from a file on the disk that the process keeps open.
        let file = fileDirectory + "/ch3.txt"
        let filePid = try detach(
            "S=\(Self.generate); printf %s \"$S\" > \(file); sync; exec sh -c 'exec 3<\(file); read -r T <&3; while :; do sleep 1000; done'")
        let fileSecret = try guest(
            "i=0; while [ \"$(wc -c < \(file) 2>/dev/null)\" != 32 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; sleep 0.5; cat \(file)")
        channels.append(Channel(name: "3. in a file on the disk kept open", secret: fileSecret))

        // 4. Written into a pipe whose reader has not read it.
        let pipePid = try detach(
            "(S=\(Self.generate); mkfifo /run/ch4; printf %s \"$S\" > /run/ch4; printf %s \"$S\") | while :; do sleep 1000; done")
        channels.append(Channel(name: "4. in a pipe not yet read", secret: try readFifo("/run/ch4")))

        // 5. Sent over a unix socket and over TCP on loopback to receivers that have not read it.
        let socketPid = try detach("sparc-probe recv-unix /run/ch5.sock & sparc-probe recv-tcp 5555 & wait")
        let sender = try detach(
            "U=\(Self.generate); T=\(Self.generate); mkfifo /run/ch5u /run/ch5t; printf %s \"$U\" > /run/ch5u; printf %s \"$T\" > /run/ch5t; printf %s \"$U\" | sparc-probe send-unix /run/ch5.sock; printf %s \"$T\" | sparc-probe send-tcp 5555")
        channels.append(Channel(name: "5. unix socket, not yet received", secret: try readFifo("/run/ch5u")))
        channels.append(Channel(name: "5. TCP on loopback, not yet received", secret: try readFifo("/run/ch5t")))
        try guest("while kill -0 \(sender) 2>/dev/null; do sleep 0.1; done")

        // 6. In the command-line arguments of a process (the manifest names it by command name only).
        let argvPid = try detach(
            "S=\(Self.generate); mkfifo /run/ch6; printf %s \"$S\" > /run/ch6; exec sh -c 'while :; do sleep 1000; done' holder \"$S\"")
        channels.append(Channel(name: "6. in a process's arguments", secret: try readFifo("/run/ch6")))
        return (channels, [heapPid, filePid, pipePid, socketPid, argvPid])
    }

    /// Takes the three checkpoints, asserts the baseline holds every secret and --scope all
    /// none, and returns the markdown table.
    func effectivenessTable(_ channels: [Channel], targets: [String], tag: String) throws -> (table: String, bundles: [String]) {
        for c in channels { XCTAssertEqual(c.secret.count, 32, "\(c.name): secret not delivered ('\(c.secret)')") }
        let bundles = [
            ("none", work + "/\(tag)-none.sparc", [String]()),
            ("user", work + "/\(tag)-user.sparc", targets + ["--scope", "user"]),
            ("all", work + "/\(tag)-all.sparc", targets + ["--scope", "all"]),
        ]
        for (_, path, extra) in bundles {
            try sparc.ok(["checkpoint", "--name", vm, "-o", path] + extra)
        }
        var table = "| channel | no exclusion | --scope user | --scope all |\n|---|---:|---:|---:|\n"
        var totals = [0, 0, 0]
        for c in channels {
            var row: [Int] = []
            for (column, (label, path, _)) in bundles.enumerated() {
                let hits = try SecretScan.hits(c.secret, inBundle: path)
                let total = hits.values.reduce(0, +)
                row.append(total)
                totals[column] += total
                if label == "all" {
                    for (file, n) in hits { XCTAssertEqual(n, 0, "\(c.name): secret found \(n)× in \(file) with --scope all") }
                }
            }
            XCTAssertGreaterThan(row[0], 0, "\(c.name): the baseline does not hold the secret, so the scenario proves nothing")
            table += "| \(c.name) | \(row[0]) | \(row[1]) | \(row[2]) |\n"
        }
        table += "| all channels | \(totals[0]) | \(totals[1]) | \(totals[2]) |\n"
        print("EFFECTIVENESS-TABLE-BEGIN\n" + table + "EFFECTIVENESS-TABLE-END")
        return (table, bundles.map(\.1))
    }

    /// The pids of live (not zombie) processes in the guest.
    func livePids() throws -> Set<Int32> {
        let ps = try sparc.ok(["ps", "--name", vm, "--json"])
        return Set(
            try XCTUnwrap(JSONOutput.list(ps, "processes"), ps)
                .filter { ($0["state"] as? String) != "Z" }.compactMap { $0["pid"] as? Int }.map(Int32.init))
    }

    func assertNoKernelComplaint(file: StaticString = #filePath, line: UInt = #line) throws {
        let log = try guest("dmesg")
        for bad in ["Oops", "BUG:", "WARNING:", "Call Trace", "general protection", "segfault"] {
            XCTAssertFalse(log.contains(bad), "guest kernel logged '\(bad)':\n\(log)", file: file, line: line)
        }
    }
}

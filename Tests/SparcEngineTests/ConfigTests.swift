import Foundation
import GuestQuery
import SparcSupport
import XCTest

@testable import SparcEngine

final class ConfigTests: XCTestCase {
    func config(_ texts: [String]) throws -> SparcConfig {
        var c = SparcConfig()
        for (i, t) in texts.enumerated() { try c.merge(t, from: "/test/\(i).toml") }
        return c
    }

    /// The later file's values win; rules for one VM add to every VM's; sources are kept.
    func testFilesMergeAndRulesAdd() throws {
        let c = try config([
            """
            bundles = "/srv/a"
            scope = "user"
            [exclude]
            commands = ["ssh-agent"]
            """,
            """
            bundles = "/srv/b"
            [retention]
            keep-last = 5
            keep-daily = 7
            [vm.web.exclude]
            commands = ["vault", "ssh-agent"]
            users = ["alice"]
            """,
        ])
        XCTAssertEqual(c.bundles, "/srv/b")
        XCTAssertEqual(c.sources["bundles"], "/test/1.toml")
        XCTAssertEqual(c.scope, .user)
        XCTAssertEqual(c.retention, .init(last: 5, hourly: 0, daily: 7, weekly: 0))
        XCTAssertEqual(c.rules(for: "web"), .init(commands: ["ssh-agent", "vault"], users: ["alice"]))
        XCTAssertEqual(c.rules(for: "db"), .init(commands: ["ssh-agent"], users: []))
        XCTAssertEqual(c.files, ["/test/0.toml", "/test/1.toml"])
    }

    /// A name goes to the agent; a pattern and a user pick pids from the live list (never a
    /// kernel thread); nothing else is picked.
    func testRulesPickProcesses() throws {
        let c = try config([
            """
            [exclude]
            commands = ["ssh-agent", "sshd: *@pts/*"]
            users = ["alice"]
            """
        ])
        func p(_ pid: Int32, _ user: String, _ command: String, kernel: Bool = false) -> GuestProcess {
            GuestProcess(pid: pid, ppid: 1, user: user, state: "S", tty: nil, rssKiB: 1, command: command, kernelThread: kernel)
        }
        let list = [
            p(10, "root", "sshd: bob@pts/0"), p(11, "root", "sshd: /usr/sbin/sshd -D"), p(12, "alice", "bash"), p(13, "bob", "ssh-agent"),
            p(14, "alice", "kworker/0:1", kernel: true), p(15, "root", "xsshd: bob@pts/1"),
        ]
        let (names, pids) = c.exclusion(for: "any", processes: list)
        XCTAssertEqual(names, ["ssh-agent"])
        XCTAssertEqual(pids, [10, 12])
    }

    /// A unit rule picks every process in that unit's cgroup (a pattern picks by unit name),
    /// never one whose unit the agent did not report, nor one in a unit named alike.
    func testUnitRulesPickTheUnitsProcesses() throws {
        let c = try config([
            """
            [exclude]
            units = ["vault.service"]
            [vm.web.exclude]
            units = ["session-*.scope"]
            """
        ])
        func p(_ pid: Int32, _ unit: String?) -> GuestProcess {
            GuestProcess(pid: pid, ppid: 1, user: "root", state: "S", tty: nil, rssKiB: 1, command: "x", kernelThread: false, unit: unit)
        }
        let list = [p(20, "vault.service"), p(21, "vault.service"), p(22, "vault-agent.service"), p(23, nil), p(24, "session-3.scope"), p(25, "ssh.service")]
        XCTAssertEqual(c.exclusion(for: "db", processes: list).pids, [20, 21])
        XCTAssertEqual(c.exclusion(for: "web", processes: list).pids, [20, 21, 24])
        XCTAssertThrowsError(try config(["[exclude]\nunits = \"vault.service\""]), "a list is required")
        // An older agent's process (no unit field) still decodes.
        let old = try JSONDecoder().decode(
            GuestProcess.self, from: Data(#"{"pid":1,"ppid":0,"user":"root","state":"S","rssKiB":1,"command":"init","kernelThread":false}"#.utf8))
        XCTAssertNil(old.unit)
    }

    /// Unknown keys, values of the wrong kind, relative paths and broken TOML are refused, each
    /// naming the file.
    func testBadConfigsAreRefused() {
        let bad = [
            "bogus = 1", "scope = \"most\"", "bundles = \"relative/path\"", "bundles = 5", "[retention]\nkeep-last = -1",
            "[retention]\nkeep-monthly = 2", "[exclude]\ncommands = \"ssh-agent\"", "[exclude]\npids = [1]", "[vm.\"../x\".exclude]\ncommands = [\"a\"]",
            "[vm.web]\nscope = \"user\"", "scope = [", "[exclude]\ncommands = [\"a\\nb\"]",
        ]
        for text in bad {
            XCTAssertThrowsError(try config([text]), text) { XCTAssertTrue("\($0)".contains("/test/0.toml"), "\($0)") }
        }
    }

    /// Which files are read: $SPARC_CONFIG alone when set (empty: none), else the system's and the user's.
    func testWhichFiles() {
        XCTAssertEqual(SparcConfig.paths(environment: ["SPARC_CONFIG": ""]), [])
        XCTAssertEqual(SparcConfig.paths(environment: ["SPARC_CONFIG": "/x.toml"]), ["/x.toml"])
        XCTAssertEqual(
            SparcConfig.paths(environment: ["XDG_CONFIG_HOME": "/h/.cfg"]), ["/etc/sparc/config.toml", "/h/.cfg/sparc/config.toml"])
        XCTAssertEqual(SparcConfig.paths(environment: ["HOME": "/h"]), ["/etc/sparc/config.toml", "/h/.config/sparc/config.toml"])
    }
}

import Foundation
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// One sparc command at a time changes a VM. Checkpoint, restore, start and stop hold the
/// VM's lock (an flock on `ROOT/NAME.lock`, which the kernel drops when its holder dies, so a
/// killed command never leaves it held); read-only commands (ps, ttys, search) never take
/// it. Re-entrant within a process: a restore that replaces a VM stops it under its own lock.
final class VMLock {
    private static let registry = Lock()
    nonisolated(unsafe) private static var held: [String: (lock: FileLock, depth: Int)] = [:]

    /// Runs `body` holding the lock at `path`; with `wait` false a held lock fails at once,
    /// naming its holder. `what` is written into the lock file for the next one to read.
    static func exclusively<T>(
        _ path: String, vm: String, doing what: String, wait: Bool, vanished: @escaping () -> Bool = { false }, _ body: () throws -> T
    ) throws -> T {
        if registry.withLock({ () -> Bool in
            guard let entry = held[path] else { return false }
            held[path] = (entry.lock, entry.depth + 1)
            return true
        }) {
            defer { release(path, vanished: vanished) }
            return try body()
        }
        guard let lock = try FileLock(path, wait: wait) else {
            throw VMError.busy(name: vm, holder: (try? String(contentsOfFile: path, encoding: .utf8))?.trimmed ?? "")
        }
        lock.describe("(pid \(getpid())) \(what)")
        registry.withLock { held[path] = (lock, 1) }
        defer { release(path, vanished: vanished) }
        return try body()
    }

    /// Lets go of the lock; `vanished` tells whether the VM left nothing in the runtime root
    /// (a mistyped name, a VM stopped): then its lock file goes too.
    private static func release(_ path: String, vanished: () -> Bool) {
        registry.withLock {
            guard let entry = held[path] else { return }
            if entry.depth > 1 {
                held[path] = (entry.lock, entry.depth - 1)
            } else {
                entry.lock.describe("")
                if vanished() { entry.lock.removeFile() }
                held[path] = nil
            }
        }
    }
}

extension VMManager {
    /// The lock file of a VM (beside its runtime directory, so it exists before the VM does).
    func lockPath(_ name: String) -> String { root + "/" + name + ".lock" }

    /// Runs `body` as the one command changing VM `name` (see `VMLock`).
    func exclusively<T>(_ name: String, doing what: String, _ body: () throws -> T) throws -> T {
        try RuntimeLayout.validate(name: name)
        let directory = root + "/" + name
        return try VMLock.exclusively(lockPath(name), vm: name, doing: what, wait: waitForLock, vanished: { !FileSystem.exists(directory) }, body)
    }
}

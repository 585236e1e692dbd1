import ArgumentParser
import Foundation
import GuestQuery
import HexView
import Hypervisor
import SnapshotModel
import SparcEngine
import SparcSupport
import SparcTUI

signal(SIGPIPE, SIG_IGN)
// Bundles hold guest memory: nothing sparc writes is for other users to read.
umask(0o077)
do {
    var command = try Sparc.parseAsRoot()
    try command.run()
} catch let error as SparcError {
    endProgress()
    printError("sparc: \(error.message)")
    exit(error.exitCode)
} catch let code as ExitCode {
    exit(code.rawValue)
} catch {
    let code = Sparc.exitCode(for: error)
    if code == .success {
        print(Sparc.fullMessage(for: error))
        exit(0)
    }
    printError(Sparc.fullMessage(for: error))
    exit(2)
}

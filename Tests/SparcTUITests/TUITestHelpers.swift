import GuestQuery

@testable import SparcTUI

/// What the tests read of the screen stack.
extension TUIModel {
    var hitsScreen: HitsScreen? { pushed.compactMap { if case .hits(let s) = $0 { return s } else { return nil } }.last }
    var findingsScreen: FindingsScreen? { pushed.compactMap { if case .findings(let s) = $0 { return s } else { return nil } }.last }

    /// The agent's answer, through the channel the front end drains.
    mutating func showGuest(ttys: [GuestTTY]) {
        _ = apply(.guest(.success(GuestView(processes: processes.processes, ttys: ttys))))
    }
}

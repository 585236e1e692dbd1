import Foundation
import GuestQuery
import HexView
import SecretScan
import SnapshotModel

/// One key binding of a screen: its keys, its label on the function bar (nil: not on the
/// bar), its line in the help, and what it does. Each screen has one table of them; the
/// function bar, the help and the key handling are all drawn from it, so they cannot disagree
/// (htop's Action table).
struct Binding {
    var keys: [Key]
    var bar: String?
    var help: String
    /// It changes a VM or the bundles (checkpoint, restore, delete): `--readonly` leaves it out
    /// of the bar and the help.
    var writes: Bool
    var action: (inout TUIModel) -> Effect

    init(_ keys: [Key], bar: String? = nil, _ help: String, writes: Bool = false, _ action: @escaping (inout TUIModel) -> Effect) {
        self.keys = keys
        self.bar = bar
        self.help = help
        self.writes = writes
        self.action = action
    }

    /// The help line: the keys by name, then what they do.
    var helpLine: String {
        let names = keys.map { FunctionKey($0, "").name }.joined(separator: ", ")
        return "  " + names.padding(toLength: max(10, names.count + 1), withPad: " ", startingAt: 0) + help
    }

    /// The function-bar entry, when the binding has one (its first key stands for it).
    var functionKey: FunctionKey? { bar.map { FunctionKey(keys[0], $0) } }
}

/// A screen's binding table, titled for the help.
struct BindingTable {
    var title: String
    var bindings: [Binding]

    func binding(for key: Key) -> Binding? { bindings.first { $0.keys.contains(key) } }
    /// The table without what writes, for a read-only UI's bar and help.
    var readOnly: BindingTable { BindingTable(title: title, bindings: bindings.filter { !$0.writes }) }
    var functionKeys: [FunctionKey] { bindings.compactMap(\.functionKey) }
    var helpLines: [String] { [title] + bindings.map(\.helpLine) }
}

/// A list's cursor and scroll: the one panel every list screen is made of (htop's Panel).
struct ListPanel: Equatable {
    private(set) var count = 0
    var cursor = 0

    /// The list now has `count` items; the cursor stays in it.
    mutating func resize(_ count: Int) {
        self.count = count
        cursor = min(cursor, max(0, count - 1))
    }

    /// Moves by a motion key (arrows, j/k, pages, Home/End); false when `key` is not one.
    mutating func move(_ key: Key, screenHeight: Int) -> Bool {
        guard let moved = ListViewport.move(cursor, count: count, by: key, screenHeight: screenHeight) else { return false }
        cursor = moved
        return true
    }

    /// One item down (positive) or up, kept in the list.
    mutating func step(_ delta: Int) { cursor = min(max(0, count - 1), max(0, cursor + delta)) }

    func viewport(screenHeight: Int) -> ListViewport { ListViewport(count: count, cursor: cursor, screenHeight: screenHeight) }

    /// A click on a screen row puts the cursor on the item shown there.
    mutating func click(row: Int, screenHeight: Int) {
        if let i = viewport(screenHeight: screenHeight).index(atScreenRow: row) { cursor = i }
    }
}

/// What a prompt is for: each kind has its own label, hint and keys (the go-to-offset prompt
/// takes no search options).
public enum PromptPurpose: Equatable, Sendable {
    /// The incremental process filter.
    case filter
    /// Search a bundle (by name in the bundle directory) or a file (by path).
    case search(String)
    /// Which file to search (then `.search(path)`).
    case chooseFile
    /// An offset in the hex view.
    case goToOffset
}

/// A line of text being typed, and what it is for.
public struct Prompt: Equatable, Sendable {
    public var purpose: PromptPurpose
    public var text = ""

    var label: String {
        switch purpose {
        case .filter: return "Filter processes"
        case .search(let target): return "Search \(target) for"
        case .chooseFile: return "Search which file (path)"
        case .goToOffset: return "Go to offset (0x… hex or decimal)"
        }
    }

    var takesSearchOptions: Bool { if case .search = purpose { return true } else { return false } }
}

/// A yes/no question whose default answer is No.
public struct Confirm: Equatable, Sendable {
    public var question: String
    public var effect: Effect
    public var yes = false
}

/// What is over the screen and takes the keys first: a question, a prompt, the help.
public enum Popup: Equatable, Sendable {
    case confirm(Confirm)
    case prompt(Prompt)
    case help([String])
}

/// What a job sends the drawing loop, through the one channel it drains (`JobChannel`).
public enum JobEvent: Sendable {
    /// The running job's progress line, when it says how far it is (0…1), and whether a
    /// cancel still stops it at this step.
    case progress(String, fraction: Double?, cancellable: Bool = true)
    /// The job is done: its status line and its result.
    case finished(String, JobResult)
    /// The guest's processes and terminals as its agent gave them (or why it did not).
    case guest(Result<GuestView, GuestViewError>)
    /// The background verification of a bundle or stored checkpoint is done: nil when every
    /// file matched its digest, else what did not. `identity` is what was verified.
    case verified(String, identity: String, problem: String?)
}

/// The guest as the agent last showed it.
public struct GuestView: Sendable {
    public var processes: [GuestProcess]
    public var ttys: [GuestTTY]
    /// The VM's state as sparc sees it: running, paused, frozen.
    public var state: String
    public init(processes: [GuestProcess], ttys: [GuestTTY], state: String = "running") {
        self.processes = processes
        self.ttys = ttys
        self.state = state
    }
}

/// Why the guest could not be shown (the agent's error, as one line).
public struct GuestViewError: Error, Sendable {
    public var message: String
    /// The VM's state when its agent did not answer: stopped, dead, paused, or "not answering".
    public var state: String
    public init(_ message: String, state: String = "not answering") {
        self.message = message
        self.state = state
    }
}

/// What a finished job hands the screens.
public enum JobResult: Sendable {
    case none
    /// A checkpoint saved this bundle (the Bundles list puts its cursor on it).
    case saved(String)
    case hits([SearchHit])
    case findings([SecretFinding], bundle: String)
    /// A restore was refused as a rollback: the operator is asked to confirm it.
    case rollbackRefused(String)
}

/// The channel from jobs (on their own threads) to the drawing loop: events queue up in
/// order and the loop takes them all at once.
public final class JobChannel: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [JobEvent] = []

    public init() {}

    public func post(_ event: JobEvent) {
        lock.lock()
        events.append(event)
        lock.unlock()
    }

    public func drain() -> [JobEvent] {
        lock.lock()
        defer {
            events = []
            lock.unlock()
        }
        return events
    }
}

/// A step of long work as the engine reports it: the words for the operator, and for a
/// checkpoint the phase, so a front end can place it on a bar without reading the words.
///
/// A string literal (interpolated or not) is an event without a phase.
public struct ProgressEvent: Sendable, Equatable, CustomStringConvertible, ExpressibleByStringInterpolation {
    /// The phases of a checkpoint, in the order they happen.
    public enum CheckpointPhase: Int, Sendable, CaseIterable, Comparable {
        case freezing, recordingOwners, savingDevices, copyingMemory, thawing, savingDisk, hashing, writingManifest

        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    public var text: String
    public var phase: CheckpointPhase?
    /// Whether a cancel still stops the work here (false past the point of no return: a
    /// checkpoint's bundle written, a restored guest running), so a front end offers it only then.
    public var cancellable = true

    public init(_ phase: CheckpointPhase?, _ text: String) {
        self.phase = phase
        self.text = text
    }

    public init(stringLiteral value: String) { self.init(nil, value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(nil, String(stringInterpolation: stringInterpolation)) }

    public var description: String { text }

    /// The events of work past its point of no return, marked as not cancellable.
    public static func finishing(_ progress: ((ProgressEvent) -> Void)?) -> ((ProgressEvent) -> Void)? {
        progress.map { report in
            { event in
                var e = event
                e.cancellable = false
                report(e)
            }
        }
    }

    /// How far along a checkpoint is, from its phase: 0 before freezing, 1 when written.
    public var checkpointFraction: Double? {
        phase.map { Double($0.rawValue + 1) / Double(CheckpointPhase.allCases.count) }
    }
}

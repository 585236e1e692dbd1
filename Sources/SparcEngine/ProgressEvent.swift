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

    public init(_ phase: CheckpointPhase?, _ text: String) {
        self.phase = phase
        self.text = text
    }

    public init(stringLiteral value: String) { self.init(nil, value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(nil, String(stringInterpolation: stringInterpolation)) }

    public var description: String { text }

    /// How far along a checkpoint is, from its phase: 0 before freezing, 1 when written.
    public var checkpointFraction: Double? {
        phase.map { Double($0.rawValue + 1) / Double(CheckpointPhase.allCases.count) }
    }
}

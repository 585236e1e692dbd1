import Foundation
import XCTest

/// Runs `body` on another thread and fails when it has not returned after `seconds`: proves
/// that something does not hang (a FIFO that would block, a child that would be waited for),
/// with a margin of 10–100 times what it takes on any machine. Never for timing: no test
/// compares how long something took.
@discardableResult
public func XCTAssertFinishes<T>(
    within seconds: Double = 120, _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: @escaping () throws -> T
) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        box.result = Result { try body() }
        done.signal()
    }
    guard done.wait(timeout: .now() + seconds) == .success, let result = box.result else {
        XCTFail("\(what) did not return within \(Int(seconds)) s: it hangs", file: file, line: line)
        throw Hung(what: what)
    }
    return try result.get()
}

/// What `XCTAssertFinishes` throws for a call that hangs (the failure is already recorded).
public struct Hung: Error { public var what: String }

/// Bytes this process has read through read(2)/pread(2) so far (`rchar` of /proc/self/io): a
/// count the kernel keeps, for proving that holes were skipped without timing anything.
public func bytesReadSoFar() -> Int64 {
    let text = (try? String(contentsOfFile: "/proc/self/io", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") where line.hasPrefix("rchar:") {
        return Int64(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
    }
    return 0
}

/// A result handed from a thread to the one that waits for it.
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
    init() {}
}

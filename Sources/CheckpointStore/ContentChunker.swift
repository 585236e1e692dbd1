import CChunker
import Foundation
import SparcSupport

/// Content-defined chunk boundaries (FastCDC: a gear hash with normalized chunking), keyed by
/// the store: the gear table comes from the store's key, so where chunks are cut (and so their
/// sizes) says nothing about content to someone without it, as restic keys its polynomial.
///
/// Chunks are 256 KiB to 4 MiB, about 1 MiB on average. Each cut depends only on the 64 bytes
/// before it, so bytes inserted into a file (a cluster a qcow2 image allocates) change the chunk
/// they land in and perhaps the next, never every chunk after them as fixed offsets would.
struct ContentChunker {
    static let minBytes = 256 << 10
    static let normalBytes = 1 << 20
    static let maxBytes = 4 << 20
    /// Before `normalBytes` a cut needs 22 clear bits (rare), after it 18 (frequent): chunk
    /// sizes cluster around 1 MiB.
    static let hardMask: UInt64 = ~0 << (64 - 22)
    static let easyMask: UInt64 = ~0 << (64 - 18)

    let gear: [UInt64]

    init(keys: StoreKeys) { gear = keys.gear }

    /// The length of the next chunk of `buffer[0..<count]`; `count` when it ends first.
    func cut(_ buffer: [UInt8], count: Int) -> Int {
        buffer.withUnsafeBufferPointer { b in
            gear.withUnsafeBufferPointer { g in
                sparc_cdc_cut(
                    b.baseAddress!, count, g.baseAddress!, Self.minBytes, Self.normalBytes, Self.maxBytes, Self.hardMask, Self.easyMask)
            }
        }
    }
}

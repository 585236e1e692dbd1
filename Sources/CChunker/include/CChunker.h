#ifndef SPARC_CCHUNKER_H
#define SPARC_CCHUNKER_H

#include <stddef.h>
#include <stdint.h>

/// Where the next content-defined chunk of `data[0..<n]` ends (FastCDC's gear hash with
/// normalized chunking): never before `min_size`; between `min_size` and `normal_size` a cut
/// needs every bit of `hard_mask` clear, from `normal_size` on only those of `easy_mask`; at
/// `max_size` at the latest. When the data ends first, returns `n` (the last chunk).
size_t sparc_cdc_cut(const uint8_t *data, size_t n, const uint64_t *gear, size_t min_size, size_t normal_size, size_t max_size,
                     uint64_t hard_mask, uint64_t easy_mask);

#endif

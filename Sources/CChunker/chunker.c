#include "CChunker.h"

size_t sparc_cdc_cut(const uint8_t *data, size_t n, const uint64_t *gear, size_t min_size, size_t normal_size, size_t max_size,
                     uint64_t hard_mask, uint64_t easy_mask) {
    if (n <= min_size) return n;
    if (n > max_size) n = max_size;
    size_t normal = normal_size < n ? normal_size : n;
    uint64_t h = 0;
    /* The hash is warmed over the 64 bytes before `min_size`: each bit of it depends on the
       last 64 bytes only, so a cut depends on the content around it, not on where the chunk began. */
    size_t i = min_size >= 64 ? min_size - 64 : 0;
    for (; i < min_size; i++) h = (h << 1) + gear[data[i]];
    for (; i < normal; i++) {
        h = (h << 1) + gear[data[i]];
        if (!(h & hard_mask)) return i + 1;
    }
    for (; i < n; i++) {
        h = (h << 1) + gear[data[i]];
        if (!(h & easy_mask)) return i + 1;
    }
    return n;
}

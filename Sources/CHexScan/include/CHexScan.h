#ifndef SPARC_CHEXSCAN_H
#define SPARC_CHEXSCAN_H
/* The hot loop of the forensic search: finds several byte patterns in one pass over a
 * buffer with SIMD anchor compares (two bytes of each pattern), then verifies candidates. */
#include <stddef.h>
#include <stdint.h>

typedef struct {
	const uint8_t *bytes;
	size_t length;
	/* Compare ASCII letters without regard to case. */
	int fold_case;
} sparc_needle;

/* Called for each match; return nonzero to stop the scan. */
typedef int (*sparc_match_fn)(void *context, int needle, size_t offset);

/* Scans hay[0..length) for the needles, any number of them (an empty one matches nothing;
 * `needle` in a match is the index in `needles`). Only matches that start before
 * `report_limit` are reported (the rest of the buffer is overlap with the next block).
 * Returns the number of matches reported, or SPARC_SCAN_FAILED when memory for the
 * needles could not be had (nothing was scanned). */
#define SPARC_SCAN_FAILED ((size_t)-1)
size_t sparc_scan(const uint8_t *hay, size_t length, size_t report_limit, const sparc_needle *needles, int count,
		  sparc_match_fn on_match, void *context);
#endif

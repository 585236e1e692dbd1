#include "CHexScan.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* Needles prepared on the stack; more are allocated (there is no limit). */
#define STACK_NEEDLES 16

typedef struct {
	const uint8_t *bytes;
	size_t length;
	int fold;
	size_t anchor; /* position of the second anchor byte */
	int index;     /* the needle's index in the caller's array */
	uint8_t first[2], last[2];
} prepared;

static uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
static uint8_t upper(uint8_t c) { return (c >= 'a' && c <= 'z') ? c - 32 : c; }

static int matches(const prepared *p, const uint8_t *at)
{
	if (!p->fold)
		return memcmp(at, p->bytes, p->length) == 0;
	for (size_t i = 0; i < p->length; i++)
		if (lower(at[i]) != lower(p->bytes[i]))
			return 0;
	return 1;
}

static void prepare(const sparc_needle *n, int index, prepared *p)
{
	p->index = index;
	p->bytes = n->bytes;
	p->length = n->length;
	p->fold = n->fold_case;
	/* The second anchor: the last byte that is not NUL, so UTF-16 patterns do not anchor
	 * on the zero bytes memory is full of. */
	p->anchor = n->length - 1;
	while (p->anchor > 0 && n->bytes[p->anchor] == 0)
		p->anchor--;
	uint8_t f = n->bytes[0], l = n->bytes[p->anchor];
	p->first[0] = p->fold ? lower(f) : f;
	p->first[1] = p->fold ? upper(f) : f;
	p->last[0] = p->fold ? lower(l) : l;
	p->last[1] = p->fold ? upper(l) : l;
}

static size_t scan_scalar(const uint8_t *hay, size_t from, size_t length, size_t limit, const prepared *ps, int count,
			  sparc_match_fn fn, void *ctx, int *stop)
{
	size_t found = 0;
	for (size_t i = from; i < limit && !*stop; i++)
		for (int k = 0; k < count; k++) {
			const prepared *p = &ps[k];
			if (i + p->length > length)
				continue;
			if ((hay[i] == p->first[0] || hay[i] == p->first[1]) && matches(p, hay + i)) {
				found++;
				if (fn(ctx, p->index, i)) {
					*stop = 1;
					break;
				}
			}
		}
	return found;
}

__attribute__((target("avx2"))) static size_t scan_avx2(const uint8_t *hay, size_t length, size_t limit,
							   const prepared *ps, int count, sparc_match_fn fn, void *ctx,
							   size_t *resume, int *stop)
{
	size_t found = 0, maxlen = 0, i = 0;

	for (int k = 0; k < count; k++)
		if (ps[k].length > maxlen)
			maxlen = ps[k].length;
	/* Blocks of 32 starting positions whose patterns fit entirely in the buffer. */
	for (; i + 32 <= limit && i + 32 + maxlen <= length + 1 && !*stop; i += 32) {
		__m256i block = _mm256_loadu_si256((const __m256i *)(hay + i));
		for (int k = 0; k < count; k++) {
			const prepared *p = &ps[k];
			__m256i tail = _mm256_loadu_si256((const __m256i *)(hay + i + p->anchor));
			/* Broadcasts from the prepared needle: any number of needles, no table. */
			__m256i a = _mm256_cmpeq_epi8(block, _mm256_set1_epi8((char)p->first[0]));
			__m256i b = _mm256_cmpeq_epi8(tail, _mm256_set1_epi8((char)p->last[0]));
			if (p->fold) {
				a = _mm256_or_si256(a, _mm256_cmpeq_epi8(block, _mm256_set1_epi8((char)p->first[1])));
				b = _mm256_or_si256(b, _mm256_cmpeq_epi8(tail, _mm256_set1_epi8((char)p->last[1])));
			}
			uint32_t mask = (uint32_t)_mm256_movemask_epi8(_mm256_and_si256(a, b));
			while (mask) {
				int bit = __builtin_ctz(mask);
				mask &= mask - 1;
				if (matches(p, hay + i + bit)) {
					found++;
					if (fn(ctx, p->index, i + bit)) {
						*stop = 1;
						break;
					}
				}
			}
			if (*stop)
				break;
		}
	}
	*resume = i;
	return found;
}

size_t sparc_scan(const uint8_t *hay, size_t length, size_t report_limit, const sparc_needle *needles, int count,
		  sparc_match_fn fn, void *ctx)
{
	prepared local[STACK_NEEDLES], *ps = local;
	int n = 0, stop = 0;
	size_t found = 0, from = 0;

	if (count > STACK_NEEDLES && !(ps = malloc(sizeof(*ps) * (size_t)count)))
		return SPARC_SCAN_FAILED;
	/* Empty needles match nothing; the others keep their own index. */
	for (int k = 0; k < count; k++)
		if (needles[k].length > 0)
			prepare(&needles[k], k, &ps[n++]);
	if (n > 0 && length > 0) {
		if (report_limit > length)
			report_limit = length;
		if (__builtin_cpu_supports("avx2"))
			found += scan_avx2(hay, length, report_limit, ps, n, fn, ctx, &from, &stop);
		if (!stop)
			found += scan_scalar(hay, from, length, report_limit, ps, n, fn, ctx, &stop);
	}
	if (ps != local)
		free(ps);
	return found;
}

/* SPDX-License-Identifier: MIT */
/*
 * Ports mpallocbits.go: bit ranges, summarize, and the searches for a run of
 * free pages inside one chunk (1 = allocated).
 */

#include <assert.h>

#include "heap/palloc.h"

static inline unsigned tz64(uint64_t x) {
        return x ? (unsigned) __builtin_ctzll(x) : 64;
}
static inline unsigned lz64(uint64_t x) {
        return x ? (unsigned) __builtin_clzll(x) : 64;
}
/* Mask of the low n bits, n in [0, 64]. */
static inline uint64_t low_mask(unsigned n) {
        return n >= 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
}

/* Ports pageBits.setRange. */
void heap_bits_set_range(uint64_t *b, unsigned i, unsigned n) {
        if (n == 0)
                return;
        unsigned j = i + n - 1;
        if (i / 64 == j / 64) {
                b[i / 64] |= low_mask(n) << (i % 64);
                return;
        }
        b[i / 64] |= UINT64_MAX << (i % 64);
        for (unsigned k = i / 64 + 1; k < j / 64; k++)
                b[k] = UINT64_MAX;
        b[j / 64] |= low_mask(j % 64 + 1);
}

/* Ports pageBits.clearRange. */
void heap_bits_clear_range(uint64_t *b, unsigned i, unsigned n) {
        if (n == 0)
                return;
        unsigned j = i + n - 1;
        if (i / 64 == j / 64) {
                b[i / 64] &= ~(low_mask(n) << (i % 64));
                return;
        }
        b[i / 64] &= ~(UINT64_MAX << (i % 64));
        for (unsigned k = i / 64 + 1; k < j / 64; k++)
                b[k] = 0;
        b[j / 64] &= ~low_mask(j % 64 + 1);
}

/* Ports pageBits.popcntRange. */
unsigned heap_bits_popcnt_range(const uint64_t *b, unsigned i, unsigned n) {
        if (n == 0)
                return 0;
        unsigned j = i + n - 1;
        if (i / 64 == j / 64)
                return (unsigned) heap_popcount64((b[i / 64] >> (i % 64)) & low_mask(n));
        unsigned s = (unsigned) heap_popcount64(b[i / 64] >> (i % 64));
        for (unsigned k = i / 64 + 1; k < j / 64; k++)
                s += (unsigned) heap_popcount64(b[k]);
        s += (unsigned) heap_popcount64(b[j / 64] & low_mask(j % 64 + 1));
        return s;
}

/*
 * Ports pallocBits.summarize: the free run at the start, the longest free
 * run and the free run at the end. The long loop at the end is Go's: it
 * finds the longest run inside words by shrinking every run of zeros by the
 * current maximum, so each word costs O(log max) rather than O(64).
 */
/* Hot in every update; on x86-64 a POPCNT clone is picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("popcnt", "default")))
#endif
void heap_palloc_summarize_into(const uint64_t *b, struct heap_sum *ret) {
        const unsigned not_set = UINT32_MAX;
        unsigned start = not_set, max = 0, cur = 0;

        for (unsigned i = 0; i < HEAP_CHUNK_WORDS; i++) {
                uint64_t x = b[i];
                if (x == 0) {
                        cur += 64;
                        continue;
                }
                unsigned t = tz64(x), l = lz64(x);
                cur += t;
                if (start == not_set)
                        start = cur;
                if (cur > max)
                        max = cur;
                cur = l;
        }
        if (start == not_set) {
                ret->start = ret->max = ret->end = HEAP_CHUNK_PAGES;
                return;
        }
        if (cur > max)
                max = cur;
        if (max >= 64 - 2)
                /* No run inside a word can beat it. */
                goto done;

        for (unsigned i = 0; i < HEAP_CHUNK_WORDS; i++) {
                uint64_t x = b[i];
                /* A word with no more than max free pages cannot hold a longer run. */
                if (64 - heap_popcount64(x) <= max)
                        continue;
                /* Drop the zeros at the bottom: they were counted already. */
                x >>= tz64(x) & 63;
                if ((x & (x + 1)) == 0)
                        continue;
                unsigned p = max, k = 1;
                for (;;) {
                        /* Shrink every run of zeros by p, to see whether one is longer. */
                        while (p > 0) {
                                if (p <= k) {
                                        x |= x >> (p & 63);
                                        if ((x & (x + 1)) == 0)
                                                goto next_word;
                                        break;
                                }
                                x |= x >> (k & 63);
                                if ((x & (x + 1)) == 0)
                                        goto next_word;
                                p -= k;
                                k *= 2;
                        }
                        unsigned j = tz64(~x);
                        x >>= j & 63;
                        j = tz64(x);
                        x >>= j & 63;
                        max += j;
                        if ((x & (x + 1)) == 0)
                                goto next_word;
                        p = j;
                }
        next_word:;
        }
done:
        /* Stored field by field: returning the 12-byte struct costs a store-forwarding stall. */
        ret->start = start;
        ret->max = max;
        ret->end = cur;
}

struct heap_sum heap_palloc_summarize(const uint64_t *b) {
        struct heap_sum s;
        heap_palloc_summarize_into(b, &s);
        return s;
}

/* Free pages immediately below page i. */
static unsigned free_below(const uint64_t *b, unsigned i) {
        unsigned cnt = 0;
        while (i > 0) {
                unsigned bit = (i - 1) % 64;
                /* Bit i-1 to the top; the bits below it follow. */
                uint64_t x = b[(i - 1) / 64] << (63 - bit);
                unsigned z = lz64(x);
                if (z > bit + 1)
                        z = bit + 1;
                cnt += z;
                i -= z;
                if (z < bit + 1)
                        break;
        }
        return cnt;
}

/* Free pages from page i up. */
static unsigned free_above(const uint64_t *b, unsigned i) {
        unsigned cnt = 0;
        while (i < HEAP_CHUNK_PAGES) {
                unsigned bit = i % 64;
                unsigned z = tz64(b[i / 64] >> bit);
                if (z > 64 - bit)
                        z = 64 - bit;
                cnt += z;
                i += z;
                if (z < 64 - bit)
                        break;
        }
        return cnt;
}

/*
 * Not in Go: the summary after [i, i+n) was freed or allocated as a whole,
 * from the summary before and the free run around the range, instead of a
 * full summarize. Freeing only joins runs, so the new run bounds the new
 * max; allocating splits one run, and only when that run may have been the
 * longest does it fall back to summarizing the chunk.
 */
void heap_palloc_summarize_after(const uint64_t *b, struct heap_sum *sum, unsigned i, unsigned n, bool alloc_op) {
        unsigned lo = i - free_below(b, i);
        unsigned hi;
        if (!alloc_op) {
                hi = i + n + free_above(b, i + n);
                if (lo == 0)
                        sum->start = hi;
                if (hi == HEAP_CHUNK_PAGES)
                        sum->end = HEAP_CHUNK_PAGES - lo;
                if (hi - lo > sum->max)
                        sum->max = hi - lo;
                return;
        }
        hi = i + n + free_above(b, i + n);
        /* The run [lo, hi) was free before and is split now. */
        if (hi - lo >= sum->max) {
                heap_palloc_summarize_into(b, sum);
                return;
        }
        if (lo == 0)
                sum->start = i;
        if (hi == HEAP_CHUNK_PAGES)
                sum->end = HEAP_CHUNK_PAGES - (i + n);
}

/*
 * Ports findBitRange64: the lowest index of a run of n 1 bits in c, or 64.
 * Shrinks runs of ones by doubling steps, so it costs O(log n).
 */
unsigned heap_find_bit_range64(uint64_t c, unsigned n) {
        unsigned p = n - 1, k = 1;
        while (p > 0) {
                if (p <= k) {
                        c &= c >> (p & 63);
                        break;
                }
                c &= c >> (k & 63);
                if (c == 0)
                        return 64;
                p -= k;
                k *= 2;
        }
        return tz64(c);
}

/* Ports pallocBits.find1. */
unsigned heap_palloc_find1(const uint64_t *b, unsigned search_idx) {
        for (unsigned i = search_idx / 64; i < HEAP_CHUNK_WORDS; i++) {
                uint64_t x = b[i];
                if (~x == 0)
                        continue;
                return i * 64 + tz64(~x);
        }
        return HEAP_FIND_NONE;
}

/* Ports pallocBits.findSmallN: runs of at most 64 pages span at most two words. */
static unsigned find_small_n(const uint64_t *b, unsigned npages, unsigned search_idx,
                             unsigned *ret_new) {
        unsigned end = 0, new_idx = HEAP_FIND_NONE;
        for (unsigned i = search_idx / 64; i < HEAP_CHUNK_WORDS; i++) {
                uint64_t bi = b[i];
                if (~bi == 0) {
                        end = 0;
                        continue;
                }
                if (new_idx == HEAP_FIND_NONE)
                        new_idx = i * 64 + tz64(~bi);
                unsigned start = tz64(bi);
                if (end + start >= npages) {
                        *ret_new = new_idx;
                        return i * 64 - end;
                }
                unsigned j = heap_find_bit_range64(~bi, npages);
                if (j < 64) {
                        *ret_new = new_idx;
                        return i * 64 + j;
                }
                end = lz64(bi);
        }
        *ret_new = new_idx;
        return HEAP_FIND_NONE;
}

/* Ports pallocBits.findLargeN: runs of more than 64 pages. */
static unsigned find_large_n(const uint64_t *b, uint64_t npages, unsigned search_idx,
                             unsigned *ret_new) {
        unsigned start = HEAP_FIND_NONE, size = 0, new_idx = HEAP_FIND_NONE;
        for (unsigned i = search_idx / 64; i < HEAP_CHUNK_WORDS; i++) {
                uint64_t x = b[i];
                if (x == UINT64_MAX) {
                        size = 0;
                        continue;
                }
                if (new_idx == HEAP_FIND_NONE)
                        new_idx = i * 64 + tz64(~x);
                if (size == 0) {
                        size = lz64(x);
                        start = i * 64 + 64 - size;
                        continue;
                }
                unsigned s = tz64(x);
                if (s + size >= npages) {
                        *ret_new = new_idx;
                        return start;
                }
                if (s < 64) {
                        size = lz64(x);
                        start = i * 64 + 64 - size;
                        continue;
                }
                size += 64;
        }
        *ret_new = new_idx;
        if (size < npages)
                return HEAP_FIND_NONE;
        return start;
}

/*
 * Ports pallocBits.find: the first run of npages free pages at or after
 * search_idx, and the first free page at or after search_idx (the new
 * search index), either HEAP_FIND_NONE.
 */
unsigned heap_palloc_find(const uint64_t *b, uint64_t npages, unsigned search_idx,
                          unsigned *ret_new_search_idx) {
        unsigned dummy;
        if (!ret_new_search_idx)
                ret_new_search_idx = &dummy;
        if (npages == 1) {
                unsigned a = heap_palloc_find1(b, search_idx);
                *ret_new_search_idx = a;
                return a;
        }
        if (npages <= 64)
                return find_small_n(b, (unsigned) npages, search_idx, ret_new_search_idx);
        return find_large_n(b, npages, search_idx, ret_new_search_idx);
}

/* Ports pallocData.allocRange, returning the count of scavenged pages as pageAlloc.allocRange does. */
unsigned heap_chunk_alloc_range(struct heap_chunk *c, unsigned i, unsigned n) {
        unsigned scav = heap_bits_popcnt_range(c->scav, i, n);
        heap_bits_set_range(c->alloc, i, n);
        heap_bits_clear_range(c->scav, i, n);
        return scav;
}

void heap_chunk_free_range(struct heap_chunk *c, unsigned i, unsigned n) {
        heap_bits_clear_range(c->alloc, i, n);
}

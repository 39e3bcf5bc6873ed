/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Bitmaps of one chunk (Go's pageBits, pallocBits, pallocData): HEAP_CHUNK_WORDS
 * words of 64 pages each, bit i of word w is page w*64+i of the chunk.
 * Pure functions over the words; the caller holds whatever lock protects them.
 */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

#define HEAP_FIND_NONE UINT32_MAX

/* Population count without a libgcc call (the build does not assume POPCNT). */
static inline unsigned heap_popcount64(uint64_t x) {
#ifdef __POPCNT__
        return (unsigned) __builtin_popcountll(x);
#endif
        x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
        x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
        x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
        return (unsigned) ((x * UINT64_C(0x0101010101010101)) >> 56);
}

void heap_bits_set_range(uint64_t *b, unsigned i, unsigned n);
void heap_bits_clear_range(uint64_t *b, unsigned i, unsigned n);
unsigned heap_bits_popcnt_range(const uint64_t *b, unsigned i, unsigned n);

struct heap_sum heap_palloc_summarize(const uint64_t *alloc);
void heap_palloc_summarize_into(const uint64_t *alloc, struct heap_sum *ret);
void heap_palloc_summarize_after(const uint64_t *alloc, struct heap_sum *sum, unsigned i, unsigned n, bool alloc_op);
unsigned heap_find_bit_range64(uint64_t c, unsigned n);
unsigned heap_palloc_find1(const uint64_t *alloc, unsigned search_idx);
unsigned heap_palloc_find(const uint64_t *alloc, uint64_t npages, unsigned search_idx,
                          unsigned *ret_new_search_idx);

/* Go's pallocData.allocRange: returns how many of the pages were scavenged. */
unsigned heap_chunk_alloc_range(struct heap_chunk *c, unsigned i, unsigned n);
void heap_chunk_free_range(struct heap_chunk *c, unsigned i, unsigned n);

static inline struct heap_sum heap_sum_make(uint32_t start, uint32_t max, uint32_t end) {
        return (struct heap_sum) { start, max, end };
}
static inline int heap_sum_eq(struct heap_sum a, struct heap_sum b) {
        return a.start == b.start && a.max == b.max && a.end == b.end;
}
static inline int heap_sum_is_zero(struct heap_sum a) {
        return a.max == 0;
}

/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared by alloc.c, cache.c and slot.c. */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

/* Pages of a fresh allocation that must be cleared for HEAP_ALLOC_ZERO: runs not released. */
#define HEAP_ZERO_RUNS 8u
struct heap_zero_plan {
        uint32_t n;
        uint64_t runs[HEAP_ZERO_RUNS][2]; /* [first page, npages) */
};

void heap_zero_plan_capture(heap *h, struct heap_zero_plan *zp, uint64_t page, uint64_t npages);
void heap_zero_plan_mask(heap *h, struct heap_zero_plan *zp, uint64_t base, uint64_t mask);
void heap_zero_plan_run(heap *h, const struct heap_zero_plan *zp);

int heap_alloc_rec(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t rec_bits, uint64_t *ret_off);
int heap_grow_locked(heap *h, uint64_t npages, uint64_t *ret_grown_bytes);
void heap_growth_scavenge(heap *h, uint32_t slot, uint64_t grown_bytes);
int heap_free_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec);
bool heap_range_in_slot_cache(heap *h, uint32_t owner_slot, uint64_t page, uint64_t npages);

/* cache.c. Called with heap lock held. */
uint64_t heap_cache_flush_locked(heap *h, uint32_t slot, uint32_t cache);
int heap_cache_find_block(const struct heap_cache *c, uint64_t page);
bool heap_cache_free_fast(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t n, uint64_t rec,
                          int *ret);

/* Mask of the low n bits, n in [0, 64]. */
static inline uint64_t heap_low_mask(uint64_t n) {
        return n >= 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
}

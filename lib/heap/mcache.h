/* SPDX-License-Identifier: MIT */
#pragma once

/* Medium caches (mcache.c): shared by alloc.c, cache.c and slot.c. */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

/* Largest allocation a medium cache serves, in pages. */
#define HEAP_MCACHE_MAX_PAGES 128u
/* Bytes of freed allocations one (slot, cache) may hold at most. */
#define HEAP_MCACHE_MAX_BYTES (UINT64_C(32) << 20)
/* Blocks of a class one miss allocates under one lock hold (one served, the rest cached). */
#define HEAP_MCACHE_BATCH 2u
/* A free that finds the cache full gives back down to this many quarters of it. */
#define HEAP_MCACHE_EVICT_KEEP 3u
/* Operations of a medium cache between collections of what it keeps unused. */
#define HEAP_MCACHE_GC_EVERY 8192u
/* Classes above its own an allocation may take a cached block of. */
#define HEAP_MCACHE_SPILL 2u
/* Size classes (HEAP_MCACHE_CLASSES, layout.h): 16, then 4 per doubling up to 128 pages. */

/* The class of a request of npages in [HEAP_CACHE_MAX_ALLOC, HEAP_MCACHE_MAX_PAGES] and its size. */
static inline unsigned heap_mcache_class(uint64_t npages, uint64_t *ret_pages) {
        if (npages <= 16) {
                *ret_pages = 16;
                return 0;
        }
        unsigned lg = 63u - (unsigned) __builtin_clzll(npages - 1);
        uint64_t step = UINT64_C(1) << (lg - 2);
        uint64_t up = (npages + step - 1) & ~(step - 1);
        *ret_pages = up;
        return 1u + (lg - 4u) * 4u + (unsigned) (up >> (lg - 2)) - 5u;
}

int heap_mcache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags, uint64_t *ret_off);
bool heap_mcache_free(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec, int *ret);
int heap_alloc_flushing_mcache(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                               uint64_t rec_bits, uint64_t *ret_off);
/* Frees for real what the medium cache of (slot, cache) holds. Called with heap lock held. */
uint64_t heap_mcache_flush_locked(heap *h, uint32_t slot, uint32_t cache);

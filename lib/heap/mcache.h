/* SPDX-License-Identifier: MIT */
#pragma once

/* Thread caches' lists (mcache.c): shared by alloc.c, cache.c, check.c, reap.c and slot.c. */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

/* Largest allocation a medium list serves, in pages. */
#define HEAP_MCACHE_MAX_PAGES 128u
/* Bytes of freed allocations one (slot, cache) may hold at most. */
#define HEAP_MCACHE_MAX_BYTES (UINT64_C(32) << 20)
/* Blocks of a class one miss allocates under one lock hold (one served, the
 * rest cached): at least HEAP_MCACHE_BATCH, and small ones up to
 * HEAP_MCACHE_BATCH_PAGES pages' worth (at most HEAP_MCACHE_BATCH_MAX). */
#define HEAP_MCACHE_BATCH 2u
#define HEAP_MCACHE_BATCH_PAGES 32u
#define HEAP_MCACHE_BATCH_MAX 16u
/* A free that finds the lists full gives back down to this many quarters of them. */
#define HEAP_MCACHE_EVICT_KEEP 3u
/* Classes above its own an allocation of 16 pages or more may take a cached block of. */
#define HEAP_MCACHE_SPILL 2u
/* Size classes (HEAP_MCACHE_CLASSES, layout.h): every size from
 * HEAP_MCACHE_MIN_PAGES to 15 pages, then 16 and 4 per doubling up to 128. */

/* The class of a request of npages in [HEAP_MCACHE_MIN_PAGES, HEAP_MCACHE_MAX_PAGES] and its size. */
static inline unsigned heap_mcache_class(uint64_t npages, uint64_t *ret_pages) {
        if (npages < HEAP_CACHE_MAX_ALLOC) {
                *ret_pages = npages;
                return (unsigned) (npages - HEAP_MCACHE_MIN_PAGES);
        }
        if (npages <= 16) {
                *ret_pages = 16;
                return HEAP_MCACHE_SMALL_CLASSES;
        }
        unsigned lg = 63u - (unsigned) __builtin_clzll(npages - 1);
        uint64_t step = UINT64_C(1) << (lg - 2);
        uint64_t up = (npages + step - 1) & ~(step - 1);
        *ret_pages = up;
        return HEAP_MCACHE_SMALL_CLASSES + 1u + (lg - 4u) * 4u + (unsigned) (up >> (lg - 2)) - 5u;
}

/* The owner's operations, inside its bracket (tcache.h). */
int heap_mcache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags, uint64_t *ret_off);
/* Whether a thread cache may grow the heap to keep its blocks apart from
 * other clients' (a hint from shared counters). Heap lock. */
bool heap_mcache_may_grow_apart(heap *h);
bool heap_mcache_free(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec, int *ret);
int heap_alloc_flushing_mcache(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                               uint64_t rec_bits, uint64_t *ret_off);
/* Frees for real what the lists of (slot, cache) hold: pages given back. Called with heap lock held. */
uint64_t heap_mcache_flush_locked(heap *h, uint32_t slot, uint32_t cache);
/* Frees what each list kept unused since the last reap (its low-water mark). Heap lock. */
uint64_t heap_mcache_trim_locked(heap *h, uint32_t slot, uint32_t cache);
/* Another thread's free of the live list allocation at page (record rec) of
 * thread cache (slot, cache), which is not inactive: the pages are kept for
 * it as an ORPHAN record. 0, or -EINVAL when the owner's own free won. Heap lock. */
int heap_mcache_orphan_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec);
/* Takes the orphans of (slot, cache): into its lists when reuse (its owner,
 * inside an operation), else back to the heap (a reaper, the owner outside
 * any operation). Pages given back. Heap lock. */
uint64_t heap_mcache_orphans_locked(heap *h, uint32_t slot, uint32_t cache, bool reuse);
/* Pages one (slot, cache)'s lists may hold. */
static inline uint64_t heap_mcache_cap_pages(heap *h) {
        uint64_t cap = HEAP_MCACHE_MAX_BYTES >> h->page_shift;
        return cap < h->capacity_pages / 16 ? cap : h->capacity_pages / 16;
}
/* The ORPHAN record of a block of n pages of (slot, cache). */
static inline uint64_t heap_mcache_orphan_record(uint64_t n, uint32_t slot, uint32_t cache) {
        return HEAP_REC_MAKE(n, slot + 1, 0) | HEAP_REC_CACHE(cache) | HEAP_REC_MEDIUM | HEAP_REC_CACHED |
               HEAP_REC_ORPHAN;
}
/* The CACHED record of a block of n pages in a list of (slot, cache). */
static inline uint64_t heap_mcache_cached_record(uint64_t n, uint32_t slot, uint32_t cache) {
        return HEAP_REC_MAKE(n, slot + 1, 0) | HEAP_REC_CACHE(cache) | HEAP_REC_MEDIUM | HEAP_REC_CACHED;
}
/* Pages of size class k (the inverse of heap_mcache_class). */
static inline uint64_t heap_mcache_class_pages(unsigned k) {
        if (k < HEAP_MCACHE_SMALL_CLASSES)
                return k + HEAP_MCACHE_MIN_PAGES;
        k -= HEAP_MCACHE_SMALL_CLASSES;
        if (k == 0)
                return 16;
        unsigned lg = 4 + (k - 1) / 4;
        return (uint64_t) (5 + (k - 1) % 4) << (lg - 2);
}
/* Whether size n (pages) is a class's: what a CACHED record may hold. */
static inline bool heap_mcache_is_class(uint64_t n) {
        uint64_t c;
        return n >= HEAP_MCACHE_MIN_PAGES && n <= HEAP_MCACHE_MAX_PAGES && (heap_mcache_class(n, &c), c == n);
}

/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared by alloc.c, cache.c and slot.c. */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"
#include "macro.h"

/* Pages of a fresh allocation that must be cleared for HEAP_ALLOC_ZERO: runs not released. */
#define HEAP_ZERO_RUNS 8u
struct heap_zero_plan {
        uint32_t n;
        uint64_t runs[HEAP_ZERO_RUNS][2]; /* [first page, npages) */
};

void heap_zero_plan_capture(heap *h, struct heap_zero_plan *zp, uint64_t page, uint64_t npages);
void heap_zero_plan_mask(heap *h, struct heap_zero_plan *zp, uint64_t base, uint64_t mask);
void heap_zero_plan_run(heap *h, const struct heap_zero_plan *zp);

/* heap_alloc_locked only: -EAGAIN, nothing done, when the first fit holds released pages. */
#define HEAP_ALLOC_BACKED_ONLY (1u << 30)
int heap_alloc_locked(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t rec_bits,
                      uint64_t *ret_page, struct heap_zero_plan *zp, uint64_t *grown);
/* The commit half of heap_alloc_locked: [page, page + npages), free, found by
 * heap_pa_alloc_find (search: its new search address), becomes an allocation
 * with its record. Pages that were released. Heap lock. */
uint64_t heap_alloc_commit_locked(heap *h, uint32_t slot, uint64_t page, uint64_t npages, unsigned flags,
                                  uint64_t rec_bits, uint64_t search, struct heap_zero_plan *zp);
int heap_alloc_rec(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t rec_bits, uint64_t *ret_off);
int heap_grow_locked(heap *h, uint64_t npages, uint64_t *ret_grown_bytes);
void heap_growth_scavenge(heap *h, uint32_t slot, uint64_t grown_bytes);
int heap_free_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec);
/* A free of what another thread cache allocated: an orphan kept for it while it is active. */
int heap_free_other_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec);
bool heap_range_in_slot_cache(heap *h, uint32_t owner_slot, uint64_t page, uint64_t npages);
bool heap_rec_in_cache(heap *h, uint64_t page, uint64_t rec);

/* cache.c. Called with heap lock held. */
uint64_t heap_cache_flush_locked(heap *h, uint32_t slot, uint32_t cache);
uint64_t heap_cache_trim_locked(heap *h, uint32_t slot, uint32_t cache);
/* Gives block b of a cache back to the heap (takes the lock). */
void heap_cache_block_giveback(heap *h, uint32_t slot, uint32_t cache, uint32_t b);

/* Mask of the low n bits, n in [0, 64]. */
static inline uint64_t heap_low_mask(uint64_t n) {
        return n >= 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
}

/* Empties position b of cache c: no block, no masks. Heap lock (or recovery after a death). */
static inline void heap_cache_block_clear(struct heap_cache *c, uint32_t b) {
        atomic_store_explicit(&c->free_mask[b], 0, memory_order_relaxed);
        atomic_store_explicit(&c->scav_mask[b], 0, memory_order_relaxed);
        atomic_store_explicit(&c->owned[b], 0, memory_order_relaxed);
        atomic_store_explicit(&c->key[b], 0, memory_order_relaxed);
        atomic_store_explicit(&c->nonempty,
                              atomic_load_explicit(&c->nonempty, memory_order_relaxed) & ~(UINT64_C(1) << b),
                              memory_order_relaxed);
}

/*
 * Block position of page in cache c, or -1. Unlocked for the owner; under
 * the lock for others. Blocks sit at the first empty position from
 * key % blocks on (linear probing), so a block is found in a step or two
 * even when the keys of one cache are not consecutive (two threads' blocks
 * interleave in the heap). Positions emptied since are no stop sign: a
 * miss probes all of them.
 */
static inline int heap_cache_find_block(const struct heap_cache *c, uint64_t page) {
        uint32_t key = (uint32_t) (page / HEAP_CACHE_PAGES + 1);
        for (uint32_t i = 0; i < HEAP_CACHE_BLOCKS; i++) {
                uint32_t b = (key + i) % HEAP_CACHE_BLOCKS;
                if (atomic_load_explicit(&c->key[b], memory_order_relaxed) == key)
                        return (int) b;
        }
        return -1;
}

/*
 * The owner's free of [page, page+n), whose record the caller read as rec,
 * into its cache without the lock, inside its operation (tcache.h): true
 * if the pages were in one of the cache's blocks. Inline: it is half of
 * the cache's alloc+free pair.
 *
 * The record is cleared with a plain store, not a compare-and-swap: the
 * owner thread is the only one that can allocate these pages again, and
 * a free by anyone else goes through the lock, re-reads the record there
 * and only clears it (the pages stay in this cache). So two frees that race
 * may both succeed, but the pages are freed exactly once; a locked
 * instruction here would wait for every store before it to drain (the
 * caller's write to the page it frees included) and cost a third of the pair.
 */
static inline bool heap_cache_free_fast(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t n,
                                        int *ret) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        int b = heap_cache_find_block(c, page);
        if (b < 0)
                return false;
        uint64_t base = page & ~(uint64_t) (HEAP_CACHE_PAGES - 1);
        if (page + n > base + HEAP_CACHE_PAGES)
                return false;
        uint64_t mask = heap_low_mask(n) << (page - base);
        uint64_t owned = atomic_load_explicit(&c->owned[b], memory_order_relaxed);
        if ((owned & mask) != mask)
                return false;
        /* Record first: a thread killed before the free bit is set loses
         * nothing (the flush recomputes free pages from the records). */
        atomic_store_explicit(&h->records[page], 0, memory_order_release);
        uint64_t old = atomic_load_explicit(&c->free_mask[b], memory_order_relaxed), free = old | mask;
        atomic_store_explicit(&c->free_mask[b], free, memory_order_relaxed);
        /* The bit is set exactly while the block has free pages. */
        atomic_store_explicit(&c->nonempty,
                              atomic_load_explicit(&c->nonempty, memory_order_relaxed) | (UINT64_C(1) << b),
                              memory_order_relaxed);
        *ret = 0;
        /* The next allocation takes from the block freed into last, whose
         * pages are warm; the block it leaves, if wholly free, goes back to
         * the heap, so that a cache holds few free pages it does not need. */
        uint32_t prev = c->cur % HEAP_CACHE_BLOCKS;
        if (prev != (uint32_t) b) {
                c->cur = (uint32_t) b;
                uint64_t prev_owned = atomic_load_explicit(&c->owned[prev], memory_order_relaxed);
                if (_unlikely_(prev_owned && atomic_load_explicit(&c->free_mask[prev], memory_order_relaxed) == prev_owned))
                        heap_cache_block_giveback(h, slot, cache, prev);
        }
        return true;
}

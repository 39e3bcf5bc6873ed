/* SPDX-License-Identifier: MIT */
/*
 * Page caches (Go's pageCache, mpagecache.go), one per (slot, cache index):
 * a 64-page aligned block taken from the heap under the lock, from which the
 * owning thread serves small allocations, and takes back its own frees,
 * without any lock. Cached pages count as in use.
 *
 * The free mask is only the owner's hint. What a cache gives back on flush
 * is recomputed from the allocation records (owned pages not covered by a
 * live record), so a thread killed between clearing a free bit and storing
 * the record loses nothing.
 */

#include <errno.h>

#include "heap/alloc.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"

/* Owned pages of the block at base covered by live records. */
static uint64_t covered_by_records(heap *h, uint64_t base, uint64_t owned) {
        uint64_t covered = 0;
        for (uint64_t m = owned; m;) {
                unsigned i = (unsigned) __builtin_ctzll(m);
                uint64_t rec = atomic_load_explicit(&h->records[base + i], memory_order_acquire);
                uint64_t n = HEAP_REC_NPAGES(rec);
                if (n) {
                        covered |= heap_low_mask(n) << i;
                        m &= ~(heap_low_mask(n) << i);
                } else
                        m &= m - 1;
        }
        return covered;
}

/*
 * Ports pageCache.flush: gives the free owned pages back to the heap,
 * scavenged ones as scavenged. Returns the pages given back.
 * Called with heap lock held.
 */
uint64_t heap_cache_flush_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint64_t owned = atomic_load_explicit(&c->owned, memory_order_relaxed);
        if (!owned)
                return 0;
        uint64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
        uint64_t scav = atomic_load_explicit(&c->scav_mask, memory_order_relaxed);
        if (base % HEAP_CACHE_PAGES || base + HEAP_CACHE_PAGES > heap_nchunks(h) * HEAP_CHUNK_PAGES) {
                /* Not a block of ours: forget it (heap_check reports the pages). */
                atomic_store_explicit(&c->owned, 0, memory_order_relaxed);
                return 0;
        }

        uint64_t tofree = owned & ~covered_by_records(h, base, owned);
        heap_intent_begin(h, HEAP_OP_CACHE_FLUSH, slot, cache, base, HEAP_CACHE_PAGES, tofree, scav);
        struct heap_chunk *ch = &h->chunks[base / HEAP_CHUNK_PAGES];
        unsigned w = (unsigned) (base % HEAP_CHUNK_PAGES) / 64;
        ch->alloc[w] &= ~tofree;
        ch->scav[w] |= tofree & scav;
        uint64_t search = heap_load(&h->hdr->search_page);
        if (search == HEAP_PAGE_NONE || base < search)
                heap_store(&h->hdr->search_page, base);
        heap_summary_update(h, base, HEAP_CACHE_PAGES, false, false);
        heap_test_point(h, HEAP_OP_CACHE_FLUSH, HEAP_STAGE_MID);
        heap_stats_inuse_add(h, -(int64_t) heap_popcount64(tofree));
        heap_stats_released_add(h, heap_popcount64(tofree & scav));
        atomic_store_explicit(&c->free_mask, 0, memory_order_relaxed);
        atomic_store_explicit(&c->scav_mask, 0, memory_order_relaxed);
        atomic_store_explicit(&c->owned, 0, memory_order_relaxed);
        h->slots[slot].cache_mask &= ~(UINT32_C(1) << cache);
        heap_intent_end(h);
        return (uint64_t) heap_popcount64(tofree);
}

/*
 * Ports pageAlloc.allocToCache: takes the free pages of the 64-page block
 * holding the first free page. Grows the heap if nothing is free.
 * Returns 1 when filled, 0 when the heap is full.
 * Called with heap lock held.
 */
static int cache_fill_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t *grown) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint64_t page = HEAP_PAGE_NONE;
        int r;

        for (unsigned attempt = 0;; attempt++) {
                uint64_t search = heap_load(&h->hdr->search_page);
                uint64_t n = heap_nchunks(h);
                if (search != HEAP_PAGE_NONE && search / HEAP_CHUNK_PAGES < n &&
                    !heap_sum_is_zero(heap_leaf(h)[search / HEAP_CHUNK_PAGES])) {
                        uint64_t ci = search / HEAP_CHUNK_PAGES;
                        unsigned j = heap_palloc_find1(h->chunks[ci].alloc, search % HEAP_CHUNK_PAGES);
                        if (j != HEAP_FIND_NONE) {
                                page = ci * HEAP_CHUNK_PAGES + j;
                                break;
                        }
                }
                if (search != HEAP_PAGE_NONE && search / HEAP_CHUNK_PAGES < n) {
                        uint64_t ns;
                        r = heap_pa_find(h, 1, &page, &ns);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                }
                heap_store(&h->hdr->search_page, HEAP_PAGE_NONE);
                if (attempt > 0)
                        return 0;
                r = heap_grow_locked(h, 1, grown);
                if (r == -ENOMEM)
                        return 0;
                if (r < 0)
                        return r;
        }

        uint64_t base = page & ~(uint64_t) (HEAP_CACHE_PAGES - 1);
        struct heap_chunk *ch = &h->chunks[base / HEAP_CHUNK_PAGES];
        unsigned w = (unsigned) (base % HEAP_CHUNK_PAGES) / 64;
        uint64_t owned = ~ch->alloc[w];
        uint64_t scav = ch->scav[w] & owned;

        heap_intent_begin(h, HEAP_OP_CACHE_FILL, slot, cache, base, HEAP_CACHE_PAGES, owned, scav);
        ch->alloc[w] |= owned;
        ch->scav[w] &= ~scav;
        heap_summary_update(h, base, HEAP_CACHE_PAGES, false, true);
        heap_test_point(h, HEAP_OP_CACHE_FILL, HEAP_STAGE_MID);
        heap_store(&h->hdr->search_page, base + HEAP_CACHE_PAGES - 1);
        heap_stats_inuse_add(h, heap_popcount64(owned));
        heap_stats_released_add(h, -(int64_t) heap_popcount64(scav));
        atomic_store_explicit(&c->base, base, memory_order_relaxed);
        atomic_store_explicit(&c->free_mask, owned, memory_order_relaxed);
        atomic_store_explicit(&c->scav_mask, scav, memory_order_relaxed);
        atomic_store_explicit(&c->owned, owned, memory_order_relaxed);
        h->slots[slot].cache_mask |= UINT32_C(1) << cache;
        heap_intent_end(h);
        return 1;
}

/* Ports pageCache.alloc/allocN: a run of npages from the free mask, or -1. */
static int64_t cache_take(struct heap_cache *c, uint64_t npages, uint64_t *ret_scav) {
        uint64_t free = atomic_load_explicit(&c->free_mask, memory_order_relaxed);
        if (!free)
                return -1;
        unsigned i = npages == 1 ? (unsigned) __builtin_ctzll(free)
                                 : heap_find_bit_range64(free, (unsigned) npages);
        if (i >= 64)
                return -1;
        uint64_t mask = heap_low_mask(npages) << i;
        uint64_t scav = atomic_load_explicit(&c->scav_mask, memory_order_relaxed);
        atomic_store_explicit(&c->free_mask, free & ~mask, memory_order_relaxed);
        if (scav & mask)
                atomic_store_explicit(&c->scav_mask, scav & ~mask, memory_order_relaxed);
        *ret_scav = scav & mask;
        return i;
}

int heap_cache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                     uint64_t *ret_off) {
        if (npages == 0 || (flags & ~(unsigned) (HEAP_ALLOC_ZERO | HEAP_ALLOC_KEEP)))
                return -EINVAL;
        if (npages >= HEAP_CACHE_MAX_ALLOC || (flags & HEAP_ALLOC_KEEP) || slot >= h->max_slots ||
            cache >= HEAP_SLOT_CACHES)
                return heap_alloc(h, slot, npages, flags, ret_off);
        if (heap_checked(h) < 0)
                return -EUCLEAN;

        struct heap_cache *c = &h->slots[slot].caches[cache];
        for (unsigned attempt = 0; attempt < 2; attempt++) {
                uint64_t scav;
                int64_t i = cache_take(c, npages, &scav);
                if (i >= 0) {
                        uint64_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
                        if (_unlikely_(base + HEAP_CACHE_PAGES > heap_nchunks(h) * HEAP_CHUNK_PAGES))
                                return -EUCLEAN; /* not a block of ours: shared memory was scribbled on */
                        uint64_t page = base + (uint64_t) i;
                        atomic_store_explicit(&h->records[page], HEAP_REC_MAKE(npages, slot + 1, 0),
                                              memory_order_release);
                        if (flags & HEAP_ALLOC_ZERO) {
                                struct heap_zero_plan zp;
                                heap_zero_plan_mask(h, &zp, base,
                                                    (heap_low_mask(npages) << i) & ~scav);
                                heap_zero_plan_run(h, &zp);
                        }
                        *ret_off = page << h->page_shift;
                        return 0;
                }
                if (attempt > 0)
                        break;

                uint64_t grown = 0;
                int r = heap_lock(h);
                if (r < 0)
                        return r;
                heap_cache_flush_locked(h, slot, cache);
                r = cache_fill_locked(h, slot, cache, &grown);
                heap_unlock(h);
                if (grown)
                        heap_growth_scavenge(h, slot, grown);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
        }
        return heap_alloc(h, slot, npages, flags, ret_off);
}

int heap_cache_flush(heap *h, uint32_t slot, uint32_t cache) {
        if (slot >= h->max_slots || cache >= HEAP_SLOT_CACHES)
                return -EINVAL;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        heap_cache_flush_locked(h, slot, cache);
        heap_unlock(h);
        return 0;
}

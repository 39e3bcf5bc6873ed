/* SPDX-License-Identifier: MIT */
/*
 * Medium caches: allocations of 16 to 128 pages that a (slot, cache) frees
 * are kept for its next allocations of that size, as TCMalloc's and
 * jemalloc's thread caches keep their large size classes; not in Go (its
 * mcache holds spans, its pageCache only 64 pages).
 *
 * Requests are rounded up to one of 13 size classes (16 pages, then four
 * per doubling: 20, 24, 28, 32, 40, ..., 112, 128), so that frees of one
 * size serve allocations of nearby sizes; the record holds the class size
 * (heap_alloc_size says so). The owner's free of such an allocation moves
 * its record from live to CACHED with one CAS (the same CAS that lets
 * exactly one of two racing frees win) and pushes it on this process's list
 * for the class; an allocation of the class pops it and moves it back with
 * one CAS. Neither takes the heap lock. The pages stay allocated and count
 * as in use: the scavenger cannot release them, so a cache holds at most
 * HEAP_MCACHE_MAX_BYTES (and 1/16 of the capacity) and gives them back on
 * heap_cache_flush, on reclaim of its slot, and when an allocation would
 * otherwise fail with -ENOMEM.
 *
 * The lists live in the slot's page cache (struct heap_mcache), so that
 * any handle of the owner, and a reclaim, sees them; they are only a hint,
 * bounds-checked when read: the CACHED records are the truth. A killed
 * client's CACHED records are records of its slot, freed by reclaim like
 * its live ones; an entry whose record is no longer CACHED for its owner
 * fails its CAS and is dropped.
 */

#include <errno.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/mcache.h"

static struct heap_mcache *mcache_of(heap *h, uint32_t slot, uint32_t cache) {
        return &h->slots[slot].medium[cache];
}

static uint64_t mcache_cap_pages(heap *h) {
        uint64_t cap = HEAP_MCACHE_MAX_BYTES >> h->page_shift;
        return MIN(cap, h->capacity_pages / 16);
}

static inline uint64_t cached_record(uint64_t npages, uint32_t slot) {
        return HEAP_REC_MAKE(npages, slot + 1, 0) | HEAP_REC_MEDIUM | HEAP_REC_CACHED;
}

/* Pops the first entry of class k: its page, or UINT64_MAX when the list is
 * empty or not a list (shared memory scribbled on: it is dropped). */
static uint64_t mcache_pop(struct heap_mcache *mc, unsigned k, uint64_t npages) {
        unsigned e = mc->head[k];
        if (!e)
                return UINT64_MAX;
        if (e > HEAP_MCACHE_ENTRIES || !(mc->used & (UINT64_C(1) << (e - 1)))) {
                mc->head[k] = 0;
                return UINT64_MAX;
        }
        mc->head[k] = mc->next[e - 1];
        mc->used &= ~(UINT64_C(1) << (e - 1));
        mc->pages = mc->pages >= npages ? mc->pages - (uint32_t) npages : 0;
        return mc->page[e - 1];
}

int heap_mcache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags, uint64_t *ret_off) {
        uint64_t n;
        unsigned k = heap_mcache_class(npages, &n);
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        int r;

        if (mc->head[k]) {
                r = heap_checked(h);
                if (r < 0)
                        return r;
                uint64_t want = cached_record(n, slot), live = HEAP_REC_MAKE(n, slot + 1, 0) | HEAP_REC_MEDIUM;
                for (uint64_t page; (page = mcache_pop(mc, k, n)) != UINT64_MAX;) {
                        uint64_t expect = want;
                        if (page + n > heap_nchunks(h) * HEAP_CHUNK_PAGES)
                                continue; /* not ours (scribbled on): dropped */
                        if (!atomic_compare_exchange_strong(&h->records[page], &expect, live))
                                continue; /* freed by a reclaim: a stale hint */
                        if ((flags & HEAP_ALLOC_ZERO) && h->base)
                                memset(h->base + (page << h->page_shift), 0, n << h->page_shift);
                        *ret_off = page << h->page_shift;
                        return 0;
                }
        }

        return heap_alloc_flushing_mcache(h, slot, cache, n, flags, HEAP_REC_MEDIUM, ret_off);
}

/* heap_alloc_rec, except that what the medium cache of (slot, cache) holds
 * must not make an allocation fail: on -ENOMEM it is given back and the
 * allocation tried once more. */
int heap_alloc_flushing_mcache(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                               uint64_t rec_bits, uint64_t *ret_off) {
        int r = heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
        if (r != -ENOMEM || !mcache_of(h, slot, cache)->used)
                return r;
        r = heap_lock(h);
        if (r < 0)
                return r;
        heap_mcache_flush_locked(h, slot, cache);
        heap_unlock(h);
        return heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
}

bool heap_mcache_free(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec, int *ret) {
        uint64_t npages = HEAP_REC_NPAGES(rec), n;
        if (npages < HEAP_CACHE_MAX_ALLOC || npages > HEAP_MCACHE_MAX_PAGES ||
            (rec & (HEAP_REC_KEEP | HEAP_REC_CACHED | HEAP_REC_MEDIUM)) != HEAP_REC_MEDIUM)
                return false; /* only what a medium cache allocated */
        unsigned k = heap_mcache_class(npages, &n);
        if (n != npages || page > UINT32_MAX)
                return false; /* not of a class: scribbled on */
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        if (mc->used == UINT64_MAX || mc->pages + n > mcache_cap_pages(h))
                return false;

        uint64_t expect = rec;
        if (!atomic_compare_exchange_strong(&h->records[page], &expect, rec | HEAP_REC_CACHED)) {
                *ret = -EINVAL; /* another free won */
                return true;
        }
        unsigned e = (unsigned) __builtin_ctzll(~mc->used);
        mc->page[e] = (uint32_t) page;
        mc->next[e] = mc->head[k];
        mc->head[k] = (uint8_t) (e + 1);
        mc->used |= UINT64_C(1) << e;
        mc->pages += (uint32_t) n;
        *ret = 0;
        return true;
}

/* Called with heap lock held. */
uint64_t heap_mcache_flush_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        uint64_t given = 0;
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++) {
                uint64_t n = k == 0 ? 16 : 0;
                if (k > 0) {
                        unsigned lg = 4 + (k - 1) / 4;
                        n = (uint64_t) (5 + (k - 1) % 4) << (lg - 2);
                }
                for (uint64_t page; (page = mcache_pop(mc, k, n)) != UINT64_MAX;) {
                        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
                        if (page + n > heap_nchunks(h) * HEAP_CHUNK_PAGES || rec != cached_record(n, slot))
                                continue;
                        if (heap_free_locked(h, slot, cache, page, rec) >= 0)
                                given += n;
                }
        }
        memset(mc, 0, sizeof(*mc));
        return given;
}

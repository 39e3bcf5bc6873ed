/* SPDX-License-Identifier: MIT */
/*
 * Medium caches: allocations of 16 to 128 pages that a (slot, cache) frees
 * are kept for its next allocations of that size, as TCMalloc's and
 * jemalloc's thread caches keep their large size classes; not in Go (its
 * mcache holds spans, its pageCache only 64 pages).
 *
 * Requests are rounded up to one of 13 size classes (16 pages, then four
 * per doubling: 20, 24, 28, 32, 40, ..., 112, 128), so that frees of one
 * size serve allocations of nearby sizes; an empty class borrows a block
 * of up to HEAP_MCACHE_SPILL classes up. The record holds the block's size
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
 * Misses and overflows go to the heap lock in batches, as TCMalloc's thread
 * caches move objects to and from the central lists: a miss allocates
 * HEAP_MCACHE_BATCH blocks of its class in one lock hold (one served, the
 * rest cached), and a free that finds the cache full gives back the longest
 * lists down to three quarters of the cache in one lock hold. Under two
 * threads, the lock's hand-offs and the shared lines they drag along
 * (summaries, bitmaps, statistics) cost far more than the work done under
 * it. Every HEAP_MCACHE_GC_EVERY operations the cache gives back half of
 * what it kept unused since the last time (mcache_collect).
 *
 * What this holds is the price: up to HEAP_MCACHE_MAX_BYTES per thread that
 * allocates medium sizes, in use for the scavenger, until the collection,
 * the thread's exit or scav_close gives it back.
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
#include "macro.h"

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

/* Pages of size class k (the inverse of heap_mcache_class). */
static uint64_t mcache_class_pages(unsigned k) {
        if (k == 0)
                return 16;
        unsigned lg = 4 + (k - 1) / 4;
        return (uint64_t) (5 + (k - 1) % 4) << (lg - 2);
}

static bool entry_used(const struct heap_mcache *mc, unsigned e) {
        return (mc->used[e / 64] >> (e % 64)) & 1;
}

/* A free entry, or HEAP_MCACHE_ENTRIES. */
static unsigned entry_free(const struct heap_mcache *mc) {
        for (unsigned w = 0; w < HEAP_MCACHE_ENTRIES / 64; w++)
                if (~mc->used[w])
                        return w * 64 + (unsigned) __builtin_ctzll(~mc->used[w]);
        return HEAP_MCACHE_ENTRIES;
}

static unsigned entries_used(const struct heap_mcache *mc) {
        unsigned n = 0;
        for (unsigned w = 0; w < HEAP_MCACHE_ENTRIES / 64; w++)
                n += (unsigned) __builtin_popcountll(mc->used[w]);
        return n;
}

/* The free entry a block of n pages would take, or HEAP_MCACHE_ENTRIES when it does not fit. */
static unsigned mcache_room(heap *h, const struct heap_mcache *mc, uint64_t n) {
        return mc->pages + n <= mcache_cap_pages(h) ? entry_free(mc) : HEAP_MCACHE_ENTRIES;
}

/* Pops the first entry of class k: its page, or UINT64_MAX when the list is
 * empty or not a list (shared memory scribbled on: it is dropped). */
static uint64_t mcache_pop(struct heap_mcache *mc, unsigned k, uint64_t npages) {
        unsigned e = mc->head[k];
        if (!e)
                return UINT64_MAX;
        if (e > HEAP_MCACHE_ENTRIES || !entry_used(mc, e - 1)) {
                mc->head[k] = 0;
                mc->count[k] = 0;
                return UINT64_MAX;
        }
        mc->head[k] = mc->next[e - 1];
        mc->count[k] -= mc->count[k] > 0;
        mc->low[k] = MIN(mc->low[k], mc->count[k]);
        mc->used[(e - 1) / 64] &= ~(UINT64_C(1) << ((e - 1) % 64));
        mc->pages = mc->pages >= npages ? mc->pages - (uint32_t) npages : 0;
        return mc->page[e - 1];
}

/* Pushes page (a CACHED record of class k, n pages) into entry e, which mcache_room gave. */
static void mcache_push(struct heap_mcache *mc, unsigned e, unsigned k, uint64_t page, uint64_t n) {
        mc->page[e] = (uint32_t) page;
        mc->next[e] = mc->head[k];
        mc->head[k] = (uint8_t) (e + 1);
        mc->count[k]++;
        mc->used[e / 64] |= UINT64_C(1) << (e % 64);
        mc->pages += (uint32_t) n;
}

/* Gives back the first entry of class k, adding its pages to *given when
 * not NULL: false when the list is empty. Called with heap lock held. */
static bool mcache_evict_one_locked(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t *given) {
        uint64_t n = mcache_class_pages(k);
        uint64_t page = mcache_pop(mcache_of(h, slot, cache), k, n);
        if (page == UINT64_MAX)
                return false;
        if (page + n > heap_nchunks(h) * HEAP_CHUNK_PAGES)
                return true; /* scribbled on: dropped, its record never read */
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (rec != cached_record(n, slot))
                return true; /* a stale hint (freed by a reclaim) or scribbled on: dropped */
        if (heap_free_locked(h, slot, cache, page, rec) >= 0 && given)
                *given += n;
        return true;
}

/*
 * jemalloc's tcache GC: every HEAP_MCACHE_GC_EVERY operations, gives back
 * half of what each class kept unused since the last time (its low-water
 * mark), so that a cache shrinks to what its thread cycles through rather
 * than staying at the most it ever held.
 */
static void mcache_collect(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        bool any = false;
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                any |= mc->low[k] > 0;
        if (any && heap_lock(h) >= 0) {
                for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                        for (unsigned i = 0, m = (mc->low[k] + 1u) / 2; i < m; i++)
                                if (!mcache_evict_one_locked(h, slot, cache, k, NULL))
                                        break;
                heap_unlock(h);
        }
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                mc->low[k] = mc->count[k];
        mc->ops = 0;
}

static inline void mcache_tick(heap *h, uint32_t slot, uint32_t cache) {
        if (_unlikely_(++mcache_of(h, slot, cache)->ops >= HEAP_MCACHE_GC_EVERY))
                mcache_collect(h, slot, cache);
}

/*
 * A miss of class k (n pages): one lock hold allocates the request and up
 * to HEAP_MCACHE_BATCH - 1 more blocks of the class, CACHED for the next
 * allocations (those never grow the heap). Falls back to
 * heap_alloc_flushing_mcache when the heap is full.
 */
static int mcache_refill(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t n, unsigned flags,
                         uint64_t *ret_off) {
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        struct heap_zero_plan zp = {};
        uint64_t page, grown = 0;
        int r;

        if (n > UINT32_MAX || h->capacity_pages > UINT32_MAX) /* entries hold 32-bit pages */
                return heap_alloc_flushing_mcache(h, slot, cache, n, flags, HEAP_REC_MEDIUM, ret_off);
        r = heap_lock(h);
        if (r < 0)
                return r;
        r = heap_alloc_locked(h, slot, n, flags, HEAP_REC_MEDIUM, &page, &zp, &grown);
        for (unsigned i = 1, e; r >= 0 && i < HEAP_MCACHE_BATCH && (e = mcache_room(h, mc, n)) < HEAP_MCACHE_ENTRIES;
             i++) {
                struct heap_zero_plan unused;
                uint64_t extra;
                /* Only backed pages: a cache hides what it holds from the
                 * scavenger, which would lose track of released ones. */
                if (heap_alloc_locked(h, slot, n, HEAP_ALLOC_BACKED_ONLY, HEAP_REC_MEDIUM | HEAP_REC_CACHED, &extra,
                                      &unused, NULL) < 0)
                        break;
                mcache_push(mc, e, k, extra, n);
        }
        heap_unlock(h);
        if (grown)
                heap_growth_scavenge(h, slot, grown);
        if (r == -ENOMEM)
                return heap_alloc_flushing_mcache(h, slot, cache, n, flags, HEAP_REC_MEDIUM, ret_off);
        if (r < 0)
                return r;
        if (flags & HEAP_ALLOC_ZERO)
                heap_zero_plan_run(h, &zp);
        *ret_off = page << h->page_shift;
        return 0;
}

/* Pops a block of class k whose record is still CACHED for slot: its page, or UINT64_MAX. */
static uint64_t mcache_take(heap *h, struct heap_mcache *mc, uint32_t slot, unsigned k, uint64_t n) {
        uint64_t want = cached_record(n, slot), live = HEAP_REC_MAKE(n, slot + 1, 0) | HEAP_REC_MEDIUM;
        for (uint64_t page; (page = mcache_pop(mc, k, n)) != UINT64_MAX;) {
                uint64_t expect = want;
                if (page + n > heap_nchunks(h) * HEAP_CHUNK_PAGES)
                        continue; /* not ours (scribbled on): dropped */
                if (atomic_compare_exchange_strong(&h->records[page], &expect, live))
                        return page;
                /* else freed by a reclaim: a stale hint */
        }
        return UINT64_MAX;
}

int heap_mcache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags, uint64_t *ret_off) {
        uint64_t n;
        unsigned k = heap_mcache_class(npages, &n);
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        int r = heap_checked(h);
        if (r < 0)
                return r;

        mcache_tick(h, slot, cache);
        /* The class, else the next ones up (at most HEAP_MCACHE_SPILL: up to
         * 1.5 times the size): a block at hand beats the heap lock, whose
         * shared lines cost more than the pages the block holds unused. */
        for (unsigned j = k; j <= k + HEAP_MCACHE_SPILL && j < HEAP_MCACHE_CLASSES; j++) {
                if (!mc->head[j])
                        continue;
                uint64_t nj = mcache_class_pages(j), page = mcache_take(h, mc, slot, j, nj);
                if (page == UINT64_MAX)
                        continue;
                if ((flags & HEAP_ALLOC_ZERO) && h->base)
                        memset(h->base + (page << h->page_shift), 0, nj << h->page_shift);
                *ret_off = page << h->page_shift;
                return 0;
        }

        return mcache_refill(h, slot, cache, k, n, flags, ret_off);
}

/* heap_alloc_rec, except that what the medium cache of (slot, cache) holds
 * must not make an allocation fail: on -ENOMEM it is given back and the
 * allocation tried once more. */
int heap_alloc_flushing_mcache(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                               uint64_t rec_bits, uint64_t *ret_off) {
        int r = heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
        if (r != -ENOMEM || !entries_used(mcache_of(h, slot, cache)))
                return r;
        r = heap_lock(h);
        if (r < 0)
                return r;
        heap_mcache_flush_locked(h, slot, cache);
        heap_unlock(h);
        return heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
}

/*
 * The owner's free of a medium allocation into a full cache: under one
 * lock hold, frees it and gives back the longest lists until the cache is
 * HEAP_MCACHE_EVICT_KEEP quarters full, so that the next frees find room
 * without the lock.
 */
static int mcache_free_evicting(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        int r = heap_lock(h);
        if (r < 0)
                return r;
        if (atomic_load_explicit(&h->records[page], memory_order_acquire) != rec)
                r = -EINVAL; /* another free won */
        else
                r = heap_free_locked(h, slot, cache, page, rec);
        while (mc->pages > mcache_cap_pages(h) * HEAP_MCACHE_EVICT_KEEP / 4 ||
               entries_used(mc) > HEAP_MCACHE_ENTRIES * HEAP_MCACHE_EVICT_KEEP / 4) {
                unsigned longest = 0;
                for (unsigned k = 1; k < HEAP_MCACHE_CLASSES; k++)
                        if (mc->count[k] > mc->count[longest])
                                longest = k;
                if (!mcache_evict_one_locked(h, slot, cache, longest, NULL))
                        break; /* counts out of step with the lists (scribbled on) */
        }
        heap_unlock(h);
        return r;
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
        unsigned e = mcache_room(h, mc, n);
        if (e == HEAP_MCACHE_ENTRIES) {
                *ret = mcache_free_evicting(h, slot, cache, page, rec);
                return true;
        }

        uint64_t expect = rec;
        if (!atomic_compare_exchange_strong(&h->records[page], &expect, rec | HEAP_REC_CACHED)) {
                *ret = -EINVAL; /* another free won */
                return true;
        }
        mcache_push(mc, e, k, page, n);
        mcache_tick(h, slot, cache);
        *ret = 0;
        return true;
}

/* Called with heap lock held. */
uint64_t heap_mcache_flush_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_mcache *mc = mcache_of(h, slot, cache);
        uint64_t given = 0;
        /* Each eviction takes an entry off the lists: at most every entry
         * once, even if someone without the lock keeps refilling them. */
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                for (unsigned i = 0; i < HEAP_MCACHE_ENTRIES && mcache_evict_one_locked(h, slot, cache, k, &given); i++)
                        ;
        memset(mc, 0, sizeof(*mc));
        return given;
}

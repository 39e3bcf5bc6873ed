/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The thread caches' fast paths, inline: heap_cache_alloc and heap_free
 * start with them, and libscav's scav_alloc and scav_free inline them so
 * that the common alloc+free pair makes no call into the heap. Each serves
 * only the common case, inside its owner's operation (tcache.h), and
 * otherwise answers HEAP_FAST_SLOW having changed nothing: the caller then
 * takes the full path, which checks everything again.
 *
 *   small (< HEAP_CACHE_MAX_ALLOC pages): a run from the current block of
 *   the thread's page cache; the owner's free of a run of one of its
 *   blocks (found at its first probe position) goes back to it;
 *   medium (up to HEAP_MCACHE_MAX_PAGES): the top of the class's list; the
 *   owner's free of a medium allocation is pushed on its class's list.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "heap/alloc.h"
#include "heap/mcache.h"
#include "heap/tcache.h"
#include "macro.h"

#define HEAP_FAST_SLOW 1
/* heap_fast_free's answer when the block the free left is wholly free: done,
 * and block (answer - HEAP_FAST_GIVEBACK) goes back to the heap
 * (heap_cache_block_giveback, after the operation: it takes the lock). */
#define HEAP_FAST_GIVEBACK 0x100

/* Size class of a medium request, by pages, and pages of a class (mcache.c). */
extern const uint8_t heap_mcache_class_of[HEAP_MCACHE_MAX_PAGES + 1];
extern const uint8_t heap_mcache_pages_of[HEAP_MCACHE_CLASSES];

/*
 * Allocation of npages (1 to HEAP_MCACHE_MAX_PAGES), no flags: 0 and
 * *ret_off, or HEAP_FAST_SLOW. The caller guarantees slot < max_slots and
 * cache < HEAP_SLOT_CACHES.
 */
static inline int heap_fast_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, uint64_t *ret_off) {
        struct heap_slot *sl = &h->slots[slot];
        struct heap_tcache *t = &sl->tc[cache];
        uint64_t page;

        if (_unlikely_(!heap_tc_enter(h, t) || heap_checked(h) < 0))
                goto slow;
        if (npages < HEAP_CACHE_MAX_ALLOC) {
                struct heap_cache *c = &sl->caches[cache];
                uint32_t b = c->cur % HEAP_CACHE_BLOCKS;
                uint64_t free = atomic_load_explicit(&c->free_mask[b], memory_order_relaxed), runs = free;
                for (uint64_t j = 1; j < npages; j++) /* runs of npages free pages, by their first */
                        runs &= free >> j;
                uint32_t key = atomic_load_explicit(&c->key[b], memory_order_relaxed);
                uint64_t base = heap_cache_key_base(key);
                /* Keys, and list entries below, are checked against the
                 * capacity (process-local) rather than the grown heap (shared):
                 * that is what keeps the accesses in bounds; heap_check
                 * judges the rest. */
                if (_unlikely_(!runs || !key || base + HEAP_CACHE_PAGES > h->capacity_pages))
                        goto slow;
                unsigned i = (unsigned) __builtin_ctzll(runs);
                uint64_t mask = ((UINT64_C(1) << npages) - 1) << i;
                /* Unconditional stores: which pages a random free pattern
                 * leaves is a coin toss a branch would mispredict. nonempty
                 * keeps the bit of a block emptied here: a hint, cleared when
                 * a refill finds the block empty (cache.c). */
                atomic_store_explicit(&c->free_mask[b], free & ~mask, memory_order_relaxed);
                atomic_store_explicit(&c->scav_mask[b],
                                      atomic_load_explicit(&c->scav_mask[b], memory_order_relaxed) & ~mask,
                                      memory_order_relaxed);
                page = base + i;
                atomic_store_explicit(&h->records[page], HEAP_REC_MAKE(npages, slot + 1, 0), memory_order_release);
        } else {
                unsigned k = heap_mcache_class_of[npages], top = t->count[k];
                if (_unlikely_(top - 1 >= HEAP_MCACHE_DEPTH || t->ops + 1u >= HEAP_MCACHE_GC_EVERY))
                        goto slow; /* empty, or time to collect: the full path */
                uint64_t n = heap_mcache_pages_of[k], want = heap_mcache_cached_record(n, slot);
                page = t->page[k][top - 1];
                if (_unlikely_(page + n > h->capacity_pages ||
                               atomic_load_explicit(&h->records[page], memory_order_relaxed) != want))
                        goto slow; /* a stale entry: the full path drops it */
                t->ops++;
                t->count[k] = (uint8_t) (top - 1);
                if (_unlikely_(top - 1 < t->low[k]))
                        t->low[k] = (uint8_t) (top - 1);
                t->pages -= (uint32_t) MIN(n, t->pages);
                /* A plain store: nobody else changes a CACHED record while
                 * its list's owner is inside an operation (mcache.c). */
                atomic_store_explicit(&h->records[page], want & ~HEAP_REC_CACHED, memory_order_release);
        }
        heap_tc_leave(t);
        *ret_off = page << h->page_shift;
        return 0;
slow:
        heap_tc_leave(t);
        return HEAP_FAST_SLOW;
}

/*
 * The owner's free of its live allocation at off (page-aligned, below the
 * capacity): 0, HEAP_FAST_GIVEBACK + a block, -EINVAL (another free won),
 * or HEAP_FAST_SLOW for anything else (a bad free included: the full path
 * says why). The caller guarantees slot < max_slots and cache <
 * HEAP_SLOT_CACHES. Records are read only for allocations the thread
 * caches hand out, whose pages lie in the grown heap; the capacity bounds
 * the read of any other.
 */
static inline int heap_fast_free(heap *h, uint32_t slot, uint32_t cache, uint64_t off) {
        struct heap_slot *sl = &h->slots[slot];
        struct heap_tcache *t = &sl->tc[cache];
        uint64_t page = off >> h->page_shift, end = h->capacity_pages;
        int r = 0;

        if (_unlikely_(heap_checked(h) < 0))
                return HEAP_FAST_SLOW;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire), n = HEAP_REC_NPAGES(rec);
        /* A live allocation of this slot's, neither KEEP nor shared (those take the lock). */
        if (_unlikely_((rec & (HEAP_REC_CACHED | HEAP_REC_SHARED | HEAP_REC_KEEP | HEAP_REC_OWNER_MASK)) !=
                               HEAP_REC_MAKE(0, slot + 1, 0) ||
                       n - 1 >= HEAP_MCACHE_MAX_PAGES || page + n > end))
                return HEAP_FAST_SLOW;

        if (_unlikely_(!heap_tc_enter(h, t)))
                goto slow;
        if (!(rec & HEAP_REC_MEDIUM)) {
                struct heap_cache *c = &sl->caches[cache];
                uint32_t key = (uint32_t) (page / HEAP_CACHE_PAGES + 1), b = key % HEAP_CACHE_BLOCKS;
                unsigned i = (unsigned) (page % HEAP_CACHE_PAGES);
                uint64_t mask = ((UINT64_C(1) << n) - 1) << i;
                if (_unlikely_(n >= HEAP_CACHE_MAX_ALLOC || i + n > HEAP_CACHE_PAGES ||
                               atomic_load_explicit(&c->key[b], memory_order_relaxed) != key ||
                               (atomic_load_explicit(&c->owned[b], memory_order_relaxed) & mask) != mask))
                        goto slow; /* not at its first position, or not ours: the full path probes */
                /* Record first: a thread killed before the free bit is set
                 * loses nothing (the flush recomputes free pages from the
                 * records). A plain store (see heap_cache_free_fast). */
                atomic_store_explicit(&h->records[page], 0, memory_order_release);
                atomic_store_explicit(&c->free_mask[b], atomic_load_explicit(&c->free_mask[b], memory_order_relaxed) | mask,
                                      memory_order_relaxed);
                atomic_store_explicit(&c->nonempty,
                                      atomic_load_explicit(&c->nonempty, memory_order_relaxed) | (UINT64_C(1) << b),
                                      memory_order_relaxed);
                /* The next allocation takes from the block freed into last;
                 * the block it leaves, if wholly free, goes back to the heap. */
                uint32_t prev = c->cur % HEAP_CACHE_BLOCKS;
                if (prev != b) {
                        c->cur = b;
                        uint64_t prev_owned = atomic_load_explicit(&c->owned[prev], memory_order_relaxed);
                        if (_unlikely_(prev_owned &&
                                       atomic_load_explicit(&c->free_mask[prev], memory_order_relaxed) == prev_owned))
                                r = HEAP_FAST_GIVEBACK + (int) prev;
                }
        } else {
                unsigned k = heap_mcache_class_of[n], top = t->count[k];
                if (_unlikely_(heap_mcache_pages_of[k] != n || top >= HEAP_MCACHE_DEPTH || page > UINT32_MAX ||
                               t->pages + n > heap_mcache_cap_pages(h) || t->ops + 1u >= HEAP_MCACHE_GC_EVERY))
                        goto slow; /* not of a class, full, or time to collect: the full path */
                /* The CAS lets exactly one of two racing frees win: here the
                 * pages would otherwise be cached and freed at once. */
                uint64_t expect = rec;
                if (_unlikely_(!atomic_compare_exchange_strong(&h->records[page], &expect, rec | HEAP_REC_CACHED))) {
                        r = -EINVAL;
                } else {
                        t->page[k][top] = (uint32_t) page;
                        t->count[k] = (uint8_t) (top + 1);
                        t->pages += (uint32_t) n;
                        t->ops++;
                }
        }
        heap_tc_leave(t);
        return r;
slow:
        heap_tc_leave(t);
        return HEAP_FAST_SLOW;
}

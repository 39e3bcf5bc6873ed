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
 *   below HEAP_MCACHE_MIN_PAGES (one page): a page from the current block
 *   of the thread's page cache; the owner's free of a run of one of its
 *   blocks (found within a few probes) goes back to it;
 *   up to HEAP_MCACHE_MAX_PAGES: the top of the class's list; the owner's
 *   free of such an allocation is pushed on its class's list.
 *
 * They work from a heap_tctx: what one thread cache's operations need,
 * looked up once (heap_tctx_init) and kept by the thread's owner in
 * process-local memory, so that an operation reads one line of it rather
 * than the heap handle, the slot's geometry and the header.
 */

#include <assert.h>
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

/* Size class of a medium request, by pages; the class of exactly n pages
 * (HEAP_MCACHE_CLASSES if none); pages of a class (mcache.c). */
extern uint8_t heap_mcache_class_of[HEAP_MCACHE_MAX_PAGES + 1];
extern uint8_t heap_mcache_class_exact[HEAP_MCACHE_MAX_PAGES + 1];
extern uint8_t heap_mcache_pages_of[HEAP_MCACHE_CLASSES];

/* One thread cache as its operations see it. Process-local. */
struct heap_tctx {
        struct heap_tcache *t;
        struct heap_cache *c;
        _Atomic uint64_t *records;
        uint8_t *base;          /* the heap mapping, or NULL */
        uint64_t owner;         /* HEAP_REC_MAKE(0, slot + 1, 0) | HEAP_REC_CACHE(cache) */
        uint64_t cap_pages;     /* the heap's capacity in pages */
        uint32_t list_cap;      /* pages the lists may hold (heap_mcache_cap_pages) */
        uint32_t slot, cache;
        uint32_t page_shift;
        bool fenced;            /* h->tc_fenced */
        /* The CACHED record of a block of each class: filled by
         * heap_tctx_init_table for a context kept (libscav's), so that a
         * pop compares with one load; computed per call otherwise. */
        uint64_t cached[HEAP_MCACHE_CLASSES];
};

/* The context of thread cache (slot, cache): slot < max_slots, cache < HEAP_SLOT_CACHES. */
static inline void heap_tctx_init(heap *h, uint32_t slot, uint32_t cache, struct heap_tctx *x) {
        *x = (struct heap_tctx) {
                .t = &h->slots[slot].tc[cache],
                .c = &h->slots[slot].caches[cache],
                .records = h->records,
                .base = h->base,
                .owner = HEAP_REC_MAKE(0, slot + 1, 0) | HEAP_REC_CACHE(cache),
                .cap_pages = h->capacity_pages,
                .list_cap = (uint32_t) heap_mcache_cap_pages(h),
                .slot = slot,
                .cache = cache,
                .page_shift = h->page_shift,
                .fenced = h->tc_fenced,
        };
}

/*
 * heap_tctx_init, and the table of CACHED records: for a context kept, which
 * the fast paths then take as "kept" (a constant). Only a process that
 * needs no fence (h->tc_fenced false) keeps one, so that those fast paths
 * need not test for it; a fenced process always takes the full paths.
 */
static inline void heap_tctx_init_table(heap *h, uint32_t slot, uint32_t cache, struct heap_tctx *x) {
        assert(!h->tc_fenced);
        heap_tctx_init(h, slot, cache, x);
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                x->cached[k] = heap_mcache_cached_record(heap_mcache_class_pages(k), slot, cache);
}

/* The CACHED record of a block of class k of this thread cache (kept: x has it). */
static inline uint64_t heap_tctx_cached(const struct heap_tctx *x, unsigned k, bool kept) {
        return kept ? x->cached[k] : x->owner | heap_mcache_pages_of[k] | HEAP_REC_MEDIUM | HEAP_REC_CACHED;
}

/*
 * What a free gives back is what the next allocation of its size gets
 * (the lists are LIFO; the page cache takes from the block freed into
 * last), and that allocation's caller writes it at once: its first line,
 * last written long ago, starts on its way now. (TCMalloc's free brings
 * it in by storing its list link there.)
 */
static inline void heap_fast_prefetch(const struct heap_tctx *x, uint64_t off) {
        /* A prefetch never faults: with no mapping (base NULL) it is a no-op in effect. */
        __builtin_prefetch((const char *) x->base + off, 1);
}

_Static_assert(HEAP_MCACHE_MIN_PAGES == 2, "heap_fast_alloc takes single pages from the page cache");

/*
 * Allocation of npages (1 to HEAP_MCACHE_MAX_PAGES), no flags: 0 and
 * *ret_off, or HEAP_FAST_SLOW. kept (a constant): x was made by
 * heap_tctx_init_table.
 */
static inline int heap_fast_alloc(const struct heap_tctx *x, uint64_t npages, uint64_t *ret_off, bool kept) {
        struct heap_tcache *t = x->t;
        uint64_t page;

        /* Not active: a reap asked, or the heap is marked corrupt (heap_mark_corrupt). */
        if (_unlikely_(!heap_tc_enter_fenced(t, !kept && x->fenced)))
                goto slow;
        if (_likely_(npages >= HEAP_MCACHE_MIN_PAGES)) {
                unsigned k = heap_mcache_class_of[npages], top = t->count[k];
                uint64_t want = heap_tctx_cached(x, k, kept);
                if (_unlikely_(top - 1 >= HEAP_MCACHE_DEPTH))
                        goto slow; /* empty: the full path refills */
                page = t->page[k][top - 1];
                /* List entries are checked against the capacity (process-local)
                 * rather than the grown heap (shared): that keeps the accesses
                 * in bounds; the record says whether the entry is still good. */
                if (_unlikely_(page >= x->cap_pages ||
                               atomic_load_explicit(&x->records[page], memory_order_relaxed) != want))
                        goto slow; /* a stale entry: the full path drops it */
                /* A plain store: nobody else changes a CACHED record while
                 * its list's owner is inside an operation (mcache.c). The
                 * record first, the list after: a byte store may alias
                 * anything, and the compiler would load x again after it. */
                atomic_store_explicit(&x->records[page], want & ~HEAP_REC_CACHED, memory_order_release);
                t->count[k] = (uint8_t) (top - 1);
                if (_unlikely_(top - 1 < t->low[k]))
                        t->low[k] = (uint8_t) (top - 1);
                t->pages -= HEAP_REC_NPAGES(want);
        } else {
                struct heap_cache *c = x->c;
                uint32_t b = c->cur % HEAP_CACHE_BLOCKS;
                uint64_t free = atomic_load_explicit(&c->free_mask[b], memory_order_relaxed);
                uint32_t key = atomic_load_explicit(&c->key[b], memory_order_relaxed);
                uint64_t base = heap_cache_key_base(key);
                /* The key, too, only against the capacity. */
                if (_unlikely_(!free || !key || base + HEAP_CACHE_PAGES > x->cap_pages))
                        goto slow;
                unsigned i = (unsigned) __builtin_ctzll(free);
                uint64_t mask = UINT64_C(1) << i;
                /* nonempty keeps the bit of a block emptied here: a hint,
                 * cleared when a refill finds the block empty (cache.c). */
                atomic_store_explicit(&c->free_mask[b], free & ~mask, memory_order_relaxed);
                atomic_store_explicit(&c->scav_mask[b],
                                      atomic_load_explicit(&c->scav_mask[b], memory_order_relaxed) & ~mask,
                                      memory_order_relaxed);
                page = base + i;
                atomic_store_explicit(&x->records[page], x->owner | 1, memory_order_release);
        }
        heap_tc_leave(t);
        *ret_off = page << x->page_shift;
        return 0;
slow:
        heap_tc_leave(t);
        return HEAP_FAST_SLOW;
}

/*
 * The owner's free of its live allocation at off (page-aligned, below the
 * capacity): 0, HEAP_FAST_GIVEBACK + a block, or HEAP_FAST_SLOW for
 * anything else (a bad free included: the full path says why). Records
 * are read only for allocations the thread caches hand out, whose pages
 * lie in the grown heap; the capacity bounds the read of any other. kept
 * as for heap_fast_alloc.
 */
static inline int heap_fast_free(const struct heap_tctx *x, uint64_t off, bool kept) {
        struct heap_tcache *t = x->t;
        uint64_t page = off >> x->page_shift;
        int r = 0;

        uint64_t rec = atomic_load_explicit(&x->records[page], memory_order_acquire), n = HEAP_REC_NPAGES(rec);
        /* A live allocation of this thread cache's, neither KEEP nor shared (those take the lock). */
        if (_unlikely_((rec & (HEAP_REC_CACHED | HEAP_REC_SHARED | HEAP_REC_KEEP | HEAP_REC_OWNER_MASK |
                               HEAP_REC_CACHE_MASK)) != x->owner ||
                       n - 1 >= HEAP_MCACHE_MAX_PAGES || page + n > x->cap_pages))
                return HEAP_FAST_SLOW;

        /* Not active: a reap asked, or the heap is marked corrupt (heap_mark_corrupt). */
        if (_unlikely_(!heap_tc_enter_fenced(t, !kept && x->fenced)))
                goto slow;
        if (_likely_(rec & HEAP_REC_MEDIUM)) {
                unsigned k = heap_mcache_class_exact[n];
                if (_unlikely_(k >= HEAP_MCACHE_CLASSES))
                        goto slow; /* not of a class: the full path says why */
                unsigned top = t->count[k];
                if (_unlikely_(top >= HEAP_MCACHE_DEPTH || t->pages + n > x->list_cap))
                        goto slow; /* full: the full path */
                /* A plain store: another thread's free of this allocation,
                 * racing this one, makes it an orphan kept for this cache
                 * (mcache.c), which this store may overwrite; both frees then
                 * succeed and the list holds the pages, once. A locked
                 * instruction here would wait for every store before it (the
                 * caller's last write to its memory included). */
                atomic_store_explicit(&x->records[page], rec | HEAP_REC_CACHED, memory_order_release);
                heap_fast_prefetch(x, off);
                t->page[k][top] = (uint32_t) page;
                t->count[k] = (uint8_t) (top + 1);
                t->pages += (uint32_t) n;
        } else {
                struct heap_cache *c = x->c;
                uint32_t key = (uint32_t) (page / HEAP_CACHE_PAGES + 1), b = key % HEAP_CACHE_BLOCKS;
                unsigned i = (unsigned) (page % HEAP_CACHE_PAGES);
                if (_unlikely_(n >= HEAP_CACHE_MAX_ALLOC || i + n > HEAP_CACHE_PAGES))
                        goto slow;
                uint64_t mask = ((UINT64_C(1) << n) - 1) << i;
                /* Its block: at its first probe position, or a few after (heap_cache_find_block). */
                for (unsigned probe = 0; atomic_load_explicit(&c->key[b], memory_order_relaxed) != key; probe++) {
                        if (_unlikely_(probe == 7))
                                goto slow; /* further, or not ours: the full path probes */
                        b = (b + 1) % HEAP_CACHE_BLOCKS;
                }
                if (_unlikely_((atomic_load_explicit(&c->owned[b], memory_order_relaxed) & mask) != mask))
                        goto slow;
                /* Record first: a thread killed before the free bit is set
                 * loses nothing (the flush recomputes free pages from the
                 * records). A plain store (see heap_cache_free_fast). */
                atomic_store_explicit(&x->records[page], 0, memory_order_release);
                heap_fast_prefetch(x, off);
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
        }
        heap_tc_leave(t);
        return r;
slow:
        heap_tc_leave(t);
        return HEAP_FAST_SLOW;
}

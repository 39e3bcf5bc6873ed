/* SPDX-License-Identifier: MIT */
/*
 * The locked allocation path: heap_alloc (Go's mheap.allocSpan's page
 * half: pageAlloc.alloc, grow on failure, heap-growth scavenging), heap_free
 * and the allocation records that make a bad free harmless.
 */

#include <errno.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/fast.h"
#include "heap/mcache.h"
#include "macro.h"
#include "heap/pagealloc.h"
#include "heap/scavenge.h"
#include "heap/share.h"
#include "heap/tcache.h"

static bool valid_slot(heap *h, uint32_t slot) {
        return slot < h->max_slots;
}

/*
 * Notes which pages of [page, page+npages) were not released, so that only
 * those are cleared after the lock is dropped (Go's needzero): released
 * pages of a memfd read back as zero. Past HEAP_ZERO_RUNS runs the last run
 * extends to the end. Called with heap lock held, before allocRange.
 */
void heap_zero_plan_capture(heap *h, struct heap_zero_plan *zp, uint64_t page, uint64_t npages) {
        zp->n = 0;
        uint64_t run_start = UINT64_MAX;
        for (uint64_t p = page; p < page + npages; p++) {
                const struct heap_chunk *c = &h->chunks[p / HEAP_CHUNK_PAGES];
                unsigned i = p % HEAP_CHUNK_PAGES;
                bool scav = (c->scav[i / 64] >> (i % 64)) & 1;
                if (!scav && run_start == UINT64_MAX)
                        run_start = p;
                if ((scav || p + 1 == page + npages) && run_start != UINT64_MAX) {
                        uint64_t end = scav ? p : p + 1;
                        if (zp->n == HEAP_ZERO_RUNS) {
                                zp->runs[HEAP_ZERO_RUNS - 1][1] = page + npages - zp->runs[HEAP_ZERO_RUNS - 1][0];
                                return;
                        }
                        zp->runs[zp->n][0] = run_start;
                        zp->runs[zp->n][1] = end - run_start;
                        zp->n++;
                        run_start = UINT64_MAX;
                }
        }
}

/* The same for cache pages: mask = pages of the block at base to clear. */
void heap_zero_plan_mask(heap *h, struct heap_zero_plan *zp, uint64_t base, uint64_t mask) {
        zp->n = 0;
        while (mask && zp->n < HEAP_ZERO_RUNS) {
                unsigned i = (unsigned) __builtin_ctzll(mask);
                uint64_t rest = mask >> i;
                unsigned len = rest == UINT64_MAX ? 64 - i : (unsigned) __builtin_ctzll(~rest);
                zp->runs[zp->n][0] = base + i;
                zp->runs[zp->n][1] = len;
                zp->n++;
                mask &= ~(heap_low_mask(len) << i);
        }
}

void heap_zero_plan_run(heap *h, const struct heap_zero_plan *zp) {
        if (!h->base)
                return;
        for (uint32_t i = 0; i < zp->n; i++)
                memset(h->base + (zp->runs[i][0] << h->page_shift), 0, zp->runs[i][1] << h->page_shift);
}

/*
 * Grows the heap by enough whole chunks for a run of npages, counting the
 * free tail of the last chunk (Go's mheap.grow asks for npages rounded to a
 * chunk; we grow contiguously, so the tail joins the new chunks).
 * Called with heap lock held.
 */
int heap_grow_locked(heap *h, uint64_t npages, uint64_t *ret_grown_bytes) {
        uint64_t n = heap_nchunks(h);
        uint64_t tail = n > 0 ? heap_leaf(h)[n - 1].end : 0;
        uint64_t need = DIV_ROUND_UP(npages - (tail < npages ? tail : npages - 1), HEAP_CHUNK_PAGES);
        if (n >= h->nchunks_max)
                return -ENOMEM;
        if (n + need > h->nchunks_max)
                need = h->nchunks_max - n;

        heap_intent_begin(h, HEAP_OP_GROW, 0, 0, n, n + need, 0, 0);
        heap_pa_grow(h, n + need);
        heap_stats_released_add(h, (int64_t) (need * HEAP_CHUNK_PAGES));
        heap_intent_end(h);
        *ret_grown_bytes += need * h->chunk_bytes;
        return 0;
}

/*
 * Go's heap-growth scavenging (mheap.grow): the heap grew because free
 * fragments were too small, so release as much as it grew, when retained
 * memory is over the goal, and always what is over the memory limit.
 */
void heap_growth_scavenge(heap *h, uint32_t slot, uint64_t grown_bytes) {
        uint64_t goal = atomic_load_explicit(&h->hdr->retained_goal, memory_order_relaxed);
        uint64_t limit = atomic_load_explicit(&h->hdr->memory_limit, memory_order_relaxed);
        uint64_t retained = heap_retained(h);
        uint64_t todo = 0;

        if (goal != HEAP_GOAL_NONE && retained > goal)
                todo = MIN(grown_bytes, retained - goal);
        if (limit && retained > limit)
                todo = MAX(todo, retained - limit);
        if (todo == 0)
                return;
        int64_t r = heap_scavenge(h, slot, todo);
        uint64_t done = r > 0 ? (uint64_t) r : 0;
        /* The generation's ranges may be exhausted: then the whole heap, from the top. */
        if (done < todo) {
                r = heap_scavenge_whole(h, slot, todo - done);
                if (r > 0)
                        done += (uint64_t) r;
        }
        if (done)
                __atomic_fetch_add(&h->hdr->growth_scavenged, done, __ATOMIC_RELAXED);
}

/* Called with heap lock held. grown == NULL: never grow the heap (-ENOMEM instead). */
int heap_alloc_locked(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t rec_bits,
                      uint64_t *ret_page, struct heap_zero_plan *zp, uint64_t *grown) {
        uint64_t page, search;
        int r;

        for (unsigned attempt = 0;; attempt++) {
                r = heap_pa_alloc_find(h, npages, &page, &search);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
                if (attempt > 0 || !grown)
                        return -ENOMEM;
                r = heap_grow_locked(h, npages, grown);
                if (r < 0)
                        return r;
        }
        if ((flags & HEAP_ALLOC_BACKED_ONLY) && !heap_pa_range_backed(h, page, npages))
                return -EAGAIN;

        (void) heap_alloc_commit_locked(h, slot, page, npages, flags, rec_bits, search, zp);
        *ret_page = page;
        return 0;
}

uint64_t heap_alloc_commit_locked(heap *h, uint32_t slot, uint64_t page, uint64_t npages, unsigned flags,
                                  uint64_t rec_bits, uint64_t search, struct heap_zero_plan *zp) {
        uint64_t rec = HEAP_REC_MAKE(npages, slot + 1, flags & HEAP_ALLOC_KEEP) | rec_bits;
        heap_intent_begin(h, HEAP_OP_ALLOC, slot, 0, page, npages, rec, 0);
        if (flags & HEAP_ALLOC_ZERO)
                heap_zero_plan_capture(h, zp, page, npages);
        uint64_t scav = heap_pa_alloc_commit(h, page, npages, search);
        heap_test_point(h, HEAP_OP_ALLOC, HEAP_STAGE_MID);
        heap_stats_released_add(h, -(int64_t) scav);
        heap_stats_reused_add(h, (int64_t) scav);
        heap_stats_inuse_add(h, (int64_t) npages);
        atomic_store_explicit(&h->records[page], rec, memory_order_release);
        heap_intent_end(h);
        return scav;
}

/* heap_alloc with extra record bits (HEAP_REC_MEDIUM). */
int heap_alloc_rec(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t rec_bits, uint64_t *ret_off) {
        struct heap_zero_plan zp = {};
        uint64_t page, grown = 0;
        int r;

        if (npages == 0 || npages > h->capacity_pages || npages > UINT32_MAX)
                return -EINVAL;
        if (flags & ~(unsigned) (HEAP_ALLOC_ZERO | HEAP_ALLOC_KEEP))
                return -EINVAL;
        if (!valid_slot(h, slot))
                return -EINVAL;

        r = heap_lock(h);
        if (r < 0)
                return r;
        r = heap_alloc_locked(h, slot, npages, flags, rec_bits, &page, &zp, &grown);
        heap_unlock(h);
        if (r < 0) {
                if (grown)
                        heap_growth_scavenge(h, slot, grown);
                return r;
        }
        if (flags & HEAP_ALLOC_ZERO)
                heap_zero_plan_run(h, &zp);
        if (grown)
                heap_growth_scavenge(h, slot, grown);
        *ret_off = page << h->page_shift;
        return 0;
}

int heap_alloc(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t *ret_off) {
        return heap_alloc_rec(h, slot, npages, flags, 0, ret_off);
}

/* Whether [page, page+npages) lies within one page cache's owned set of owner_slot. Called with heap lock held. */
bool heap_range_in_slot_cache(heap *h, uint32_t owner_slot, uint64_t page, uint64_t npages) {
        if (owner_slot >= h->max_slots || npages > HEAP_CACHE_PAGES)
                return false;
        uint64_t base = (page / HEAP_CACHE_PAGES) * HEAP_CACHE_PAGES;
        if (page + npages > base + HEAP_CACHE_PAGES)
                return false;
        uint64_t mask = heap_low_mask(npages) << (page - base);
        for (uint32_t m = h->slots[owner_slot].cache_mask; m; m &= m - 1) {
                uint32_t ci = (uint32_t) __builtin_ctz(m);
                if (ci >= HEAP_SLOT_CACHES)
                        break;
                struct heap_cache *c = &h->slots[owner_slot].caches[ci];
                int b = heap_cache_find_block(c, page);
                if (b >= 0 && (atomic_load_explicit(&c->owned[b], memory_order_relaxed) & mask) == mask)
                        return true;
        }
        return false;
}

/* Whether the allocation at page (record rec) lies in a page cache of its
 * owner, where a free leaves it. Only page-cache allocations lie in one; a
 * MEDIUM one never does (no probing for it). Called with heap lock held. */
bool heap_rec_in_cache(heap *h, uint64_t page, uint64_t rec) {
        uint32_t owner = HEAP_REC_OWNER(rec);
        return owner > 0 && !(rec & HEAP_REC_MEDIUM) && heap_range_in_slot_cache(h, owner - 1, page, HEAP_REC_NPAGES(rec));
}

/*
 * Frees the allocation whose record was rec. Pages inside a page cache of
 * their owner stay there (an orphan, given back when the cache is
 * flushed): only the owner changes a cache's free set.
 * Called with heap lock held. -EINVAL if the record changed under us.
 */
int heap_free_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        uint64_t n = HEAP_REC_NPAGES(rec);
        bool in_cache = heap_rec_in_cache(h, page, rec);

        heap_intent_begin(h, HEAP_OP_FREE, slot, cache, page, n, rec, in_cache);
        uint64_t expect = rec;
        if (!atomic_compare_exchange_strong(&h->records[page], &expect, 0)) {
                heap_intent_end(h);
                return -EINVAL;
        }
        heap_test_point(h, HEAP_OP_FREE, HEAP_STAGE_MID);
        if (!in_cache) {
                heap_pa_free(h, page, n, false);
                heap_stats_inuse_add(h, -(int64_t) n);
        }
        heap_intent_end(h);
        return 0;
}

/*
 * A free that took the lock (another thread's, another client's, or the
 * owner's own that no cache took): a list allocation of a thread cache
 * that is active becomes an orphan kept for it, since its owner may be
 * freeing it at this very moment with a plain store (mcache.c); anything
 * else is freed. Called with heap lock held.
 */
int heap_free_other_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        uint32_t owner = HEAP_REC_OWNER(rec), oc = (uint32_t) ((rec & HEAP_REC_CACHE_MASK) >> HEAP_REC_CACHE_SHIFT);
        /* A SHARED one too, when its last reference goes (share.c): its owner
         * may have read the record before it was shared, and be freeing it.
         * Not when the caller is that thread cache: it cannot race itself. */
        if ((rec & (HEAP_REC_MEDIUM | HEAP_REC_KEEP)) == HEAP_REC_MEDIUM && owner > 0 &&
            !(owner == slot + 1 && oc == cache) &&
            owner <= h->max_slots &&
            atomic_load_explicit(&h->slots[owner - 1].state, memory_order_relaxed) == HEAP_SLOT_LIVE &&
            atomic_load_explicit(&h->slots[owner - 1].tc[oc].state, memory_order_relaxed) != HEAP_TC_INACTIVE)
                return heap_mcache_orphan_locked(h, owner - 1, oc, page, rec);
        return heap_free_locked(h, slot, cache, page, rec);
}

/* A record as read from shared memory: an allocation start lying in the grown heap, whose end is end. */
static int record_valid(uint64_t page, uint64_t rec, uint64_t end) {
        uint64_t n = HEAP_REC_NPAGES(rec);
        if (n == 0 || (rec & HEAP_REC_CACHED))
                return -EINVAL; /* a CACHED record is not a live allocation */
        if (page + n > end)
                return -EUCLEAN;
        return 0;
}

int heap_free(heap *h, uint32_t slot, uint32_t cache, uint64_t off) {
        int r;
        if (valid_slot(h, slot) && cache < HEAP_SLOT_CACHES && !(off & (h->page_size - 1)) && off < h->capacity) {
                struct heap_tctx x;
                heap_tctx_init(h, slot, cache, &x);
                r = heap_fast_free(&x, off, false);
                if (r >= HEAP_FAST_GIVEBACK) {
                        heap_cache_block_giveback(h, slot, cache, (uint32_t) (r - HEAP_FAST_GIVEBACK));
                        return 0;
                }
                if (r != HEAP_FAST_SLOW)
                        return r;
        }
        r = heap_checked(h);
        if (r < 0)
                return r;
        if (off & (h->page_size - 1))
                return -EINVAL;
        uint64_t page = off >> h->page_shift, end = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        if (page >= end)
                return -EINVAL;

        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        r = record_valid(page, rec, end);
        if (r < 0)
                return r;

        /* Fast paths, no lock, inside an operation of the caller's thread
         * cache: its page cache takes it back, or its medium lists keep it
         * for its next allocation of that size. A shared allocation is its
         * holders': always the lock. */
        uint64_t n = HEAP_REC_NPAGES(rec);
        if ((rec & (HEAP_REC_OWNER_MASK | HEAP_REC_CACHE_MASK | HEAP_REC_KEEP | HEAP_REC_SHARED)) ==
                    (HEAP_REC_MAKE(0, slot + 1, 0) | HEAP_REC_CACHE(cache)) &&
            valid_slot(h, slot) && cache < HEAP_SLOT_CACHES) {
                struct heap_tcache *t = heap_tc(h, slot, cache);
                bool done = false;
                r = 0;
                if (_unlikely_(!heap_tc_enter(h, t)))
                        r = heap_tc_settle(h, slot, cache);
                if (r < 0)
                        done = true;
                else if (!(rec & HEAP_REC_MEDIUM))
                        done = n < HEAP_CACHE_MAX_ALLOC && heap_cache_free_fast(h, slot, cache, page, n, &r);
                else
                        done = heap_mcache_free(h, slot, cache, page, rec, &r);
                heap_tc_leave(t);
                if (done)
                        return r;
        }

        r = heap_lock(h);
        if (r < 0)
                return r;
        rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        r = record_valid(page, rec, heap_nchunks(h) * HEAP_CHUNK_PAGES);
        if (r >= 0 && (rec & HEAP_REC_SHARED))
                r = valid_slot(h, slot) ? heap_share_free_locked(h, slot, cache, page, rec) : -EINVAL;
        else if (r >= 0)
                r = heap_free_other_locked(h, slot, cache, page, rec);
        heap_unlock(h);
        return r;
}

int64_t heap_alloc_size(heap *h, uint64_t off) {
        if (off & (h->page_size - 1))
                return -EINVAL;
        uint64_t page = off >> h->page_shift, end = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        if (page >= end)
                return -EINVAL;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (record_valid(page, rec, end) < 0)
                return -EINVAL;
        return (int64_t) ((uint64_t) HEAP_REC_NPAGES(rec) << h->page_shift);
}

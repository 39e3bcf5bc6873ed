/* SPDX-License-Identifier: MIT */
/*
 * Page caches (Go's pageCache, mpagecache.go), one per (slot, cache index),
 * each holding up to HEAP_CACHE_BLOCKS 64-page aligned blocks taken from
 * the heap under the lock. The owning thread serves small allocations from
 * them, and takes back its own frees of pages in them, without any lock.
 * Cached pages count as in use. A block that becomes wholly free while
 * another is current goes back to the heap, so a cache holds few free pages
 * it does not need.
 *
 * The owner's lock-free operations are bracketed by its thread cache
 * (tcache.h), so that a reaper can give an idle thread's pages back
 * (reap.c).
 *
 * The free masks are only the owner's hint. What a block gives back on
 * flush is recomputed from the allocation records (owned pages not covered
 * by a live record), so a thread killed between clearing a free bit and
 * storing the record loses nothing.
 */

#include <errno.h>

#include "heap/alloc.h"
#include "heap/fast.h"
#include "heap/mcache.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "heap/tcache.h"

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
 * Ports pageCache.flush for one block: gives the free owned pages back to
 * the heap, scavenged ones as scavenged. Returns the pages given back.
 * Called with heap lock held.
 */
static uint64_t block_flush_locked(heap *h, uint32_t slot, uint32_t cache, uint32_t b) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint64_t owned = atomic_load_explicit(&c->owned[b], memory_order_relaxed);
        uint32_t key = atomic_load_explicit(&c->key[b], memory_order_relaxed);
        if (!owned && !key)
                return 0;
        uint64_t base = heap_cache_key_base(key);
        uint64_t scav = atomic_load_explicit(&c->scav_mask[b], memory_order_relaxed);
        if (!owned || !key || base + HEAP_CACHE_PAGES > heap_nchunks(h) * HEAP_CHUNK_PAGES) {
                /* Not a block of ours: forget it, masks too, so that a block
                 * placed here later starts clean (heap_check reports the pages). */
                heap_cache_block_clear(c, b);
                return 0;
        }

        uint64_t tofree = owned & ~covered_by_records(h, base, owned);
        heap_intent_block(h, b);
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
        heap_stats_reused_add(h, -(int64_t) heap_popcount64(tofree & scav)); /* never handed out */
        heap_cache_block_clear(c, b);
        heap_intent_end(h);
        return (uint64_t) heap_popcount64(tofree);
}

/* Every block of a cache. Called with heap lock held. */
uint64_t heap_cache_flush_locked(heap *h, uint32_t slot, uint32_t cache) {
        uint64_t n = 0;
        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++)
                n += block_flush_locked(h, slot, cache, b);
        h->slots[slot].cache_mask &= ~(UINT32_C(1) << cache);
        return n;
}

/*
 * A reaper's trim of an active owner's cache (the owner outside any
 * operation, or the owner itself): the blocks wholly free but the current
 * one go back. Called with heap lock held.
 */
uint64_t heap_cache_trim_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint32_t cur = c->cur % HEAP_CACHE_BLOCKS;
        uint64_t n = 0;
        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++) {
                uint64_t owned = atomic_load_explicit(&c->owned[b], memory_order_relaxed);
                if (b != cur && owned && atomic_load_explicit(&c->free_mask[b], memory_order_relaxed) == owned)
                        n += block_flush_locked(h, slot, cache, b);
        }
        return n;
}

/*
 * With all blocks in use, flushes the one with the fewest pages in use (its
 * live allocations stay, outside the cache), so that a position is free.
 * Done before the search for the next free page: the flush may give back
 * pages below the search address. Called with heap lock held.
 */
static void make_room_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint32_t victim = 0;
        unsigned fewest = UINT32_MAX;
        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++) {
                uint64_t owned = atomic_load_explicit(&c->owned[b], memory_order_relaxed);
                if (!owned)
                        return;
                unsigned live = heap_popcount64(owned & ~atomic_load_explicit(&c->free_mask[b], memory_order_relaxed));
                if (live < fewest) {
                        fewest = live;
                        victim = b;
                }
        }
        block_flush_locked(h, slot, cache, victim);
}

/* A position for the block at key: its entry if the cache holds it already,
 * else the first empty one from key % blocks on (make_room_locked made one). */
static uint32_t block_position(struct heap_cache *c, uint64_t base, uint32_t key) {
        int found = heap_cache_find_block(c, base);
        if (found >= 0)
                return (uint32_t) found;
        /* The first empty position in heap_cache_find_block's probe order. */
        for (uint32_t i = 0; i < HEAP_CACHE_BLOCKS; i++) {
                uint32_t b = (key + i) % HEAP_CACHE_BLOCKS;
                if (!atomic_load_explicit(&c->owned[b], memory_order_relaxed))
                        return b;
        }
        return key % HEAP_CACHE_BLOCKS; /* unreachable after make_room_locked */
}

/*
 * Where a fill goes, when not to the block of the first free page: not
 * into a block that holds another thread cache's records. Taking the free
 * pages of such a block puts two caches' pages, and so their records,
 * among each other, and both owners then write the same record lines on
 * every operation. First fit alone did that whenever the heap's free pages
 * were holes among live pages of several clients, as after a reap took
 * their caches back: two processes churning single pages in one pool then
 * had 25-31 of their 32 blocks in common and made 44-66 M pairs/s
 * together, against 130-135 M in two pools (110-125 M with this). So a
 * fill looks at up to HEAP_CACHE_FILL_PROBES more blocks with free pages,
 * then at a wholly free block, within HEAP_CACHE_FILL_SCAN chunks of the
 * first free page, then grows the heap for one while
 * heap_mcache_may_grow_apart allows, and only then shares.
 */
#define HEAP_CACHE_FILL_PROBES 8u
#define HEAP_CACHE_FILL_SCAN 64u

/* Whether the block at base holds a live or listed record of a thread
 * cache other than mine (its HEAP_REC_OWNER_MASK | HEAP_REC_CACHE_MASK
 * bits). Records are shared memory: a hint, as is all this. Heap lock. */
static bool block_foreign(heap *h, uint64_t base, uint64_t mine) {
        for (unsigned i = 0; i < HEAP_CACHE_PAGES; i++) {
                uint64_t rec = atomic_load_explicit(&h->records[base + i], memory_order_relaxed);
                if (rec && (rec & (HEAP_REC_OWNER_MASK | HEAP_REC_CACHE_MASK)) != mine)
                        return true;
        }
        return false;
}

/* The first free page at or after page, within HEAP_CACHE_FILL_SCAN chunks
 * of it, or HEAP_PAGE_NONE. Heap lock. */
static uint64_t next_free_page(heap *h, uint64_t page) {
        uint64_t first = page / HEAP_CHUNK_PAGES, end = MIN(heap_nchunks(h), first + HEAP_CACHE_FILL_SCAN);
        for (uint64_t ci = first; ci < end; ci++) {
                if (heap_sum_is_zero(heap_leaf(h)[ci]))
                        continue;
                unsigned j = heap_palloc_find1(h->chunks[ci].alloc, ci == first ? (unsigned) (page % HEAP_CHUNK_PAGES) : 0);
                if (j != HEAP_FIND_NONE)
                        return ci * HEAP_CHUNK_PAGES + j;
        }
        return HEAP_PAGE_NONE;
}

/*
 * The block a fill of (slot, cache) takes, page being the first free page:
 * 0 with *ret_base, or a negative errno. Without a block of its own, it
 * grows the heap for one while heap_mcache_may_grow_apart allows (adding
 * to *grown), as the lists do. Heap lock.
 */
static int fill_block_pick(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t *grown,
                           uint64_t *ret_base) {
        uint64_t mine = HEAP_REC_MAKE(0, slot + 1, 0) | HEAP_REC_CACHE(cache);
        uint64_t first = page & ~(uint64_t) (HEAP_CACHE_PAGES - 1), base = first;

        for (unsigned probe = 0; block_foreign(h, base, mine); probe++) {
                uint64_t next = probe < HEAP_CACHE_FILL_PROBES ? next_free_page(h, base + HEAP_CACHE_PAGES)
                                                               : HEAP_PAGE_NONE;
                if (next != HEAP_PAGE_NONE) {
                        base = next & ~(uint64_t) (HEAP_CACHE_PAGES - 1);
                        continue;
                }
                next = heap_pa_find_free_aligned(h, first, HEAP_CACHE_PAGES, HEAP_CACHE_FILL_SCAN);
                if (next == HEAP_PAGE_NONE && heap_mcache_may_grow_apart(h)) {
                        uint64_t end = heap_nchunks(h) * HEAP_CHUNK_PAGES;
                        int r = heap_grow_locked(h, HEAP_CACHE_PAGES, grown);
                        if (r < 0 && r != -ENOMEM)
                                return r;
                        if (r == 0)
                                next = end; /* the first new chunk: wholly free */
                }
                base = next != HEAP_PAGE_NONE ? next : first;
                break;
        }
        *ret_base = base;
        return 0;
}

/*
 * Ports pageAlloc.allocToCache: takes the free pages of the 64-page block
 * holding the first free page into a block of the cache, unless that block
 * holds another cache's records (fill_block_pick). Grows the heap if
 * nothing is free. Returns 1 and the block's position, 0 when the heap is
 * full. Called with heap lock held.
 */
static int cache_fill_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t *grown, uint32_t *ret_block) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint64_t page = HEAP_PAGE_NONE;
        int r;

        make_room_locked(h, slot, cache);
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

        uint64_t base;
        r = fill_block_pick(h, slot, cache, page, grown, &base);
        if (r < 0)
                return r;
        uint32_t key = (uint32_t) (base / HEAP_CACHE_PAGES + 1);
        /* One entry per block: pages of a block we hold already join it. */
        uint32_t b = block_position(c, base, key);
        if (atomic_load_explicit(&c->owned[b], memory_order_relaxed) &&
            atomic_load_explicit(&c->key[b], memory_order_relaxed) != key)
                return -EUCLEAN; /* no room: the cache's keys were scribbled on */
        struct heap_chunk *ch = &h->chunks[base / HEAP_CHUNK_PAGES];
        unsigned w = (unsigned) (base % HEAP_CHUNK_PAGES) / 64;
        uint64_t owned = ~ch->alloc[w];
        uint64_t scav = ch->scav[w] & owned;
        if (!owned) {
                /* The block has a free page (the bitmaps said so a moment ago): they changed under the lock. */
                heap_mark_corrupt(h);
                return -EUCLEAN;
        }

        heap_intent_block(h, b);
        heap_intent_begin(h, HEAP_OP_CACHE_FILL, slot, cache, base, HEAP_CACHE_PAGES, owned, scav);
        ch->alloc[w] |= owned;
        ch->scav[w] &= ~scav;
        heap_summary_update(h, base, HEAP_CACHE_PAGES, false, true);
        heap_test_point(h, HEAP_OP_CACHE_FILL, HEAP_STAGE_MID);
        /* Go's new search address is the block's last page; a block above the
         * first free page leaves that page the lowest free one. */
        heap_store(&h->hdr->search_page, base <= page ? base + HEAP_CACHE_PAGES - 1 : page);
        heap_stats_inuse_add(h, heap_popcount64(owned));
        heap_stats_released_add(h, -(int64_t) heap_popcount64(scav));
        heap_stats_reused_add(h, heap_popcount64(scav));
        /* Joining a block we hold keeps its masks; an empty position starts from nothing. */
        uint64_t keep = atomic_load_explicit(&c->owned[b], memory_order_relaxed) ? UINT64_MAX : 0;
        atomic_store_explicit(&c->free_mask[b],
                              (atomic_load_explicit(&c->free_mask[b], memory_order_relaxed) & keep) | owned,
                              memory_order_relaxed);
        atomic_store_explicit(&c->scav_mask[b],
                              (atomic_load_explicit(&c->scav_mask[b], memory_order_relaxed) & keep) | scav,
                              memory_order_relaxed);
        atomic_store_explicit(&c->owned[b], (atomic_load_explicit(&c->owned[b], memory_order_relaxed) & keep) | owned,
                              memory_order_relaxed);
        atomic_store_explicit(&c->key[b], key, memory_order_relaxed);
        atomic_store_explicit(&c->nonempty,
                              atomic_load_explicit(&c->nonempty, memory_order_relaxed) | (UINT64_C(1) << b),
                              memory_order_relaxed);
        h->slots[slot].cache_mask |= UINT32_C(1) << cache;
        heap_intent_end(h);
        *ret_block = b;
        return 1;
}

/* Ports pageCache.alloc/allocN on block b: a run of npages from its free mask, or -1. */
static inline int take(struct heap_cache *c, uint32_t b, uint64_t npages, uint64_t *ret_scav) {
        uint64_t free = atomic_load_explicit(&c->free_mask[b], memory_order_relaxed);
        if (!free)
                return -1;
        unsigned i;
        if (npages == 1)
                i = (unsigned) __builtin_ctzll(free);
        else if (npages == 2) /* findBitRange64's first step, inline for the common pair */
                i = free & (free >> 1) ? (unsigned) __builtin_ctzll(free & (free >> 1)) : 64;
        else
                i = heap_find_bit_range64(free, (unsigned) npages);
        if (i >= 64)
                return -1;
        uint64_t mask = heap_low_mask(npages) << i;
        uint64_t scav = atomic_load_explicit(&c->scav_mask[b], memory_order_relaxed);
        /* Unconditional stores: which pages a random free pattern leaves is
         * a coin toss a branch would mispredict. */
        atomic_store_explicit(&c->free_mask[b], free & ~mask, memory_order_relaxed);
        atomic_store_explicit(&c->nonempty,
                              atomic_load_explicit(&c->nonempty, memory_order_relaxed) &
                                      ~((uint64_t) ((free & ~mask) == 0) << b),
                              memory_order_relaxed);
        atomic_store_explicit(&c->scav_mask[b], scav & ~mask, memory_order_relaxed);
        *ret_scav = scav & mask;
        return (int) i;
}

/* Another block that can serve, then a new block from the heap. -ENOSPC: fall back to the heap. */
static _noinline_ int cache_alloc_refill(heap *h, uint32_t slot, uint32_t cache, uint64_t npages,
                                         uint32_t *ret_block, uint64_t *ret_scav) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint64_t tried = UINT64_C(1) << (c->cur % HEAP_CACHE_BLOCKS);
        int i;

        for (uint64_t m = atomic_load_explicit(&c->nonempty, memory_order_relaxed) & ~tried; m; m &= m - 1) {
                uint32_t b = (uint32_t) __builtin_ctzll(m);
                if ((i = take(c, b, npages, ret_scav)) >= 0) {
                        c->cur = *ret_block = b;
                        return i;
                }
                if (!atomic_load_explicit(&c->free_mask[b], memory_order_relaxed)) /* emptied by a fast allocation */
                        atomic_store_explicit(&c->nonempty,
                                              atomic_load_explicit(&c->nonempty, memory_order_relaxed) &
                                                      ~(UINT64_C(1) << b),
                                              memory_order_relaxed);
        }

        uint64_t grown = 0;
        uint32_t b;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = cache_fill_locked(h, slot, cache, &grown, &b);
        heap_unlock(h);
        if (grown)
                heap_growth_scavenge(h, slot, grown);
        if (r < 0)
                return r;
        if (r == 0 || (i = take(c, b, npages, ret_scav)) < 0)
                return -ENOSPC;
        c->cur = *ret_block = b;
        return i;
}

/* What no thread cache serves: large sizes, KEEP, bad arguments. */
static _noinline_ int cache_alloc_other(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                                        uint64_t *ret_off) {
        if (npages == 0 || (flags & ~(unsigned) (HEAP_ALLOC_ZERO | HEAP_ALLOC_KEEP)))
                return -EINVAL;
        return heap_alloc(h, slot, npages, flags, ret_off);
}

static _noinline_ void cache_alloc_zero(heap *h, uint64_t base, uint64_t mask) {
        struct heap_zero_plan zp;
        heap_zero_plan_mask(h, &zp, base, mask);
        heap_zero_plan_run(h, &zp);
}

/* A run of npages from the page cache, inside its owner's operation. */
static inline int page_cache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                                   uint64_t *ret_off) {
        struct heap_cache *c = &h->slots[slot].caches[cache];
        uint32_t b = c->cur % HEAP_CACHE_BLOCKS;
        uint64_t scav;
        int i = take(c, b, npages, &scav);
        if (_unlikely_(i < 0)) {
                i = cache_alloc_refill(h, slot, cache, npages, &b, &scav);
                if (i == -ENOSPC)
                        return heap_alloc_flushing_mcache(h, slot, cache, npages, flags, 0, ret_off);
                if (i < 0)
                        return i;
        }

        uint32_t key = atomic_load_explicit(&c->key[b], memory_order_relaxed);
        uint64_t base = heap_cache_key_base(key);
        if (_unlikely_(!key || base + HEAP_CACHE_PAGES > heap_nchunks(h) * HEAP_CHUNK_PAGES))
                return -EUCLEAN; /* not a block of ours: shared memory was scribbled on */
        uint64_t page = base + (uint64_t) i;
        atomic_store_explicit(&h->records[page], HEAP_REC_MAKE(npages, slot + 1, 0) | HEAP_REC_CACHE(cache),
                              memory_order_release);
        if (flags & HEAP_ALLOC_ZERO) {
                uint64_t mask = (heap_low_mask(npages) << i) & ~scav;
                if (mask)
                        cache_alloc_zero(h, base, mask);
        }
        *ret_off = page << h->page_shift;
        return 0;
}

/* The allocation half of the cache's pair: kept small, everything rare is out of line. */
int heap_cache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                     uint64_t *ret_off) {
        if (_unlikely_(npages - 1 >= HEAP_MCACHE_MAX_PAGES || (flags & ~(unsigned) HEAP_ALLOC_ZERO) ||
                       slot >= h->max_slots || cache >= HEAP_SLOT_CACHES))
                return cache_alloc_other(h, slot, cache, npages, flags, ret_off);
        if (!flags) {
                struct heap_tctx x;
                heap_tctx_init(h, slot, cache, &x);
                int f = heap_fast_alloc(&x, npages, ret_off, false);
                if (f != HEAP_FAST_SLOW)
                        return f;
        }
        if (_unlikely_(heap_checked(h) < 0))
                return -EUCLEAN;

        struct heap_tcache *t = heap_tc(h, slot, cache);
        int r = 0;
        if (_unlikely_(!heap_tc_enter(h, t)))
                r = heap_tc_settle(h, slot, cache);
        if (_likely_(r >= 0))
                r = npages < HEAP_MCACHE_MIN_PAGES ? page_cache_alloc(h, slot, cache, npages, flags, ret_off)
                                                  : heap_mcache_alloc(h, slot, cache, npages, flags, ret_off);
        heap_tc_leave(t);
        return r;
}

void heap_cache_block_giveback(heap *h, uint32_t slot, uint32_t cache, uint32_t b) {
        if (heap_lock(h) < 0)
                return; /* the block stays in the cache, flushed later */
        block_flush_locked(h, slot, cache, b);
        heap_unlock(h);
}

int heap_cache_flush(heap *h, uint32_t slot, uint32_t cache) {
        if (slot >= h->max_slots || cache >= HEAP_SLOT_CACHES)
                return -EINVAL;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        /* The owner's: outside any operation of its own, and no reaper holds the lock. */
        heap_tc_reap_locked(h, slot, cache, HEAP_TC_REAP_IDLE);
        heap_unlock(h);
        return 0;
}

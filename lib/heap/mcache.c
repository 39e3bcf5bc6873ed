/* SPDX-License-Identifier: MIT */
/*
 * Thread lists: allocations of HEAP_MCACHE_MIN_PAGES to 128 pages that a
 * thread frees are kept in its thread cache for its next allocations of
 * that size, as TCMalloc's and jemalloc's thread caches keep their size
 * classes; not in Go (its mcache holds spans, its pageCache only 64 pages).
 *
 * Classes: every size below 16 pages (a run of 5-15 pages in a page
 * cache's 64-page blocks is hard to find once frees leave holes: it cost
 * hundreds of nanoseconds), then 16 and four per doubling (20, 24, 28, 32,
 * 40, ..., 112, 128), so that frees of one size serve allocations of
 * nearby sizes; an empty class of 16 pages or more borrows a block of up
 * to HEAP_MCACHE_SPILL classes up. The record holds the block's size
 * (heap_alloc_size says so), MEDIUM, and the thread cache that allocated
 * it. Each class is a LIFO array of pages in the thread cache (struct
 * heap_tcache): the block freed last is the next one handed out.
 *
 * Only the thread that allocated a block keeps it when it frees it: a
 * plain store of CACHED into its record, then the push; an allocation pops
 * it and stores the record back live, another plain store. Neither takes
 * a lock or a locked instruction. A CACHED record is changed by nobody but
 * its list's owner (a free refuses it: a double free is refused), and by a
 * reaper only while the owner is outside any operation (reap.c). A free by
 * any other thread takes the lock; if the thread cache that allocated the
 * block is active, its owner may be storing CACHED into the record at that
 * very moment, so the pages cannot go back to the heap: the record becomes
 * an ORPHAN of that cache (a compare-and-swap that the owner's racing
 * store may overwrite: then both frees succeed and the list holds the
 * pages once) and the cache's orphan list names it. The owner takes its
 * orphans into its lists at its next miss, or at its next operation once
 * the orphan list is half full; a reaper gives them back to the heap.
 *
 * The pages stay allocated and count as in use: the scavenger cannot
 * release them, so the lists hold at most HEAP_MCACHE_MAX_BYTES (and 1/16
 * of the capacity) per thread and give them back on heap_cache_flush, on
 * reclaim of the slot, to the reaper (what a thread kept unused for a
 * generation, everything when it is idle, the pool over its goal or under
 * pressure), and when an allocation would otherwise fail with -ENOMEM.
 *
 * Misses and overflows go to the heap lock in batches, as TCMalloc's thread
 * caches move objects to and from the central lists: a miss allocates
 * HEAP_MCACHE_BATCH blocks of its class (more of small ones) in one lock
 * hold (one served, the rest cached), and a free that finds the lists full
 * gives back the longest lists down to three quarters of the bound in one
 * lock hold. Under two threads, the lock's hand-offs and the shared lines
 * they drag along (summaries, bitmaps, statistics) cost far more than the
 * work done under it.
 *
 * The lists are only a hint, bounds-checked when read: the records are the
 * truth. A killed client's CACHED and ORPHAN records are records of its
 * slot, freed by reclaim like its live ones; an entry whose record is no
 * longer CACHED for its cache is dropped when popped.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap/alloc.h"
#include "heap/fast.h"
#include "heap/mcache.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "heap/tcache.h"
#include "macro.h"

uint8_t heap_mcache_class_of[HEAP_MCACHE_MAX_PAGES + 1];
uint8_t heap_mcache_class_exact[HEAP_MCACHE_MAX_PAGES + 1];
uint8_t heap_mcache_pages_of[HEAP_MCACHE_CLASSES];

_Static_assert(HEAP_MCACHE_CLASSES < 256, "class numbers are bytes, HEAP_MCACHE_CLASSES included");

/* The fast paths' tables, from heap_mcache_class (the definition). */
static void __attribute__((constructor)) mcache_tables(void) {
        memset(heap_mcache_class_exact, HEAP_MCACHE_CLASSES, sizeof(heap_mcache_class_exact));
        for (uint64_t n = HEAP_MCACHE_MIN_PAGES, c; n <= HEAP_MCACHE_MAX_PAGES; n++)
                heap_mcache_class_of[n] = (uint8_t) heap_mcache_class(n, &c);
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++) {
                heap_mcache_pages_of[k] = (uint8_t) heap_mcache_class_pages(k);
                heap_mcache_class_exact[heap_mcache_class_pages(k)] = (uint8_t) k;
        }
}

#define mcache_cap_pages heap_mcache_cap_pages
/* mcache_refill: the orphans it took filled the class; pop again. */
#define HEAP_MCACHE_RETRY 1

/* Room for a block of n pages in list k. */
static bool mcache_room(heap *h, const struct heap_tcache *t, unsigned k, uint64_t n) {
        return t->count[k] < HEAP_MCACHE_DEPTH && t->pages + n <= mcache_cap_pages(h);
}

static void mcache_push(struct heap_tcache *t, unsigned k, uint64_t page, uint64_t n) {
        unsigned c = t->count[k];
        t->page[k][c] = (uint32_t) page;
        t->count[k] = (uint8_t) (c + 1);
        t->pages += (uint32_t) n;
}

/* Entries of list k, bounded: the counts are shared memory. */
static unsigned mcache_count(const struct heap_tcache *t, unsigned k) {
        return MIN((unsigned) t->count[k], HEAP_MCACHE_DEPTH);
}

/* Frees a block of class k (n pages) at page that a list of (slot, cache)
 * named, if its record says it is one. Pages given back. Heap lock. */
static uint64_t mcache_release_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t n) {
        if (page + n > heap_nchunks(h) * HEAP_CHUNK_PAGES)
                return 0; /* scribbled on: dropped */
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (rec != heap_mcache_cached_record(n, slot, cache))
                return 0; /* a stale hint (freed by a reclaim) or scribbled on: dropped */
        return heap_free_locked(h, slot, cache, page, rec) >= 0 ? n : 0;
}

/* Frees the m oldest entries of list k (its bottom), keeping the rest in order. Heap lock. */
static uint64_t mcache_release_oldest_locked(heap *h, uint32_t slot, uint32_t cache, unsigned k, unsigned m) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        unsigned count = mcache_count(t, k);
        uint64_t n = heap_mcache_class_pages(k), given = 0;
        m = MIN(m, count);
        if (m == 0)
                return 0;
        /* Freed first, then out of the list: a process killed in between
         * leaves stale entries, which a pop drops, and no CACHED record
         * that no list holds (heap_check). */
        for (unsigned i = 0; i < m; i++)
                given += mcache_release_locked(h, slot, cache, t->page[k][i], n);
        memmove(t->page[k], t->page[k] + m, (count - m) * sizeof(uint32_t));
        t->count[k] = (uint8_t) (count - m);
        t->low[k] = MIN(t->low[k], t->count[k]);
        t->pages = t->pages >= m * n ? t->pages - (uint32_t) (m * n) : 0;
        return given;
}

/* Frees the newest entry of list k (its top). Heap lock. */
static uint64_t mcache_release_newest_locked(heap *h, uint32_t slot, uint32_t cache, unsigned k) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        unsigned count = mcache_count(t, k);
        uint64_t n = heap_mcache_class_pages(k);
        if (count == 0)
                return 0;
        uint64_t given = mcache_release_locked(h, slot, cache, t->page[k][count - 1], n);
        t->count[k] = (uint8_t) (count - 1);
        t->low[k] = MIN(t->low[k], t->count[k]);
        t->pages = t->pages >= n ? t->pages - (uint32_t) n : 0;
        return given;
}

uint64_t heap_mcache_flush_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t given = 0;
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                given += mcache_release_oldest_locked(h, slot, cache, k, HEAP_MCACHE_DEPTH);
        t->pages = 0;
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                t->count[k] = t->low[k] = 0;
        return given;
}

uint64_t heap_mcache_trim_locked(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t given = 0;
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++) {
                given += mcache_release_oldest_locked(h, slot, cache, k, t->low[k]);
                t->low[k] = t->count[k];
        }
        return given;
}

/* Small classes (below this many pages) refill from one run of their own. */
#define HEAP_MCACHE_RUN_BELOW 16u
/* Pages whose records share a cache line. */
#define HEAP_REC_LINE_PAGES (64u / sizeof(uint64_t))
/* Small-class runs start (and, where the batch allows, end) on this many
 * pages: four record lines, not one (see below). */
#define HEAP_MCACHE_RUN_ALIGN (4u * HEAP_REC_LINE_PAGES)

/*
 * Whether a refill may grow the heap for a chunk of its own: while the
 * heap holds few free pages next to those in use, as when it fills up, and
 * not when its free pages are merely fragments (those stay usable; growing
 * past them would only spread the heap). Shared counters: a hint.
 */
static bool mcache_region_may_grow(heap *h) {
        uint64_t pages = heap_nchunks(h) * HEAP_CHUNK_PAGES, inuse = heap_load(&h->hdr->inuse_pages);
        return pages < inuse + inuse / 8 + 4 * HEAP_CHUNK_PAGES;
}

/*
 * A run of len pages starting on a multiple of align pages: the first fit
 * of len + align - 1, after growing the heap for one when grow allows.
 * 1 with *ret_run and *ret_search, 0 when none fits, or -EUCLEAN.
 */
static int mcache_find_aligned_locked(heap *h, uint64_t len, uint64_t align, bool grow, uint64_t *ret_run,
                                      uint64_t *ret_search, uint64_t *grown) {
        uint64_t padded = len + align - 1, run;
        int r = heap_pa_alloc_find(h, padded, &run, ret_search);
        if (r == 0 && grow && heap_grow_locked(h, padded, grown) == 0)
                r = heap_pa_alloc_find(h, padded, &run, ret_search);
        if (r > 0)
                *ret_run = ALIGN_UP(run, align);
        return r;
}

/*
 * Home chunks: each thread cache refills from chunks it already took
 * blocks from, where one has room, so that a client's blocks stay together
 * and apart from other clients'. Two processes that refilled by first fit
 * alone each ended up with blocks in nearly every chunk of the pool (in
 * about 342 of 370, 314 of them shared, after 1.5 s of the mixed benchmark):
 * each then mapped twice the address space it used (page tables of 1.6
 * MB against 0.8 MB in a pool of its own), its page walks crossed it, and
 * every operation of both took about 1.5 times as long as in two pools.
 * With home chunks they shared 6-14 of 366 chunks and ran within 10% of
 * two pools; one process alone, whose home is every chunk it used, still
 * gets the first fit's compact heap.
 *
 * The set is process-local (h->home, a bit per chunk) and only a
 * hint: a reconnect starts it afresh, another client may free and take a
 * chunk in it, and every run found in it is checked against the bitmaps.
 * A refill that finds no room at home takes the first fit if that lies at
 * home, else a wholly free chunk, else grows the heap for one while the
 * heap is not much larger than what is in use (heap_mcache_may_grow_apart), and
 * only then a hole among other clients' blocks.
 */

/* Chunks of the home set searched per refill, at most, past their
 * summaries; words of the set looked at, from the search address on (64:
 * 8 GiB of a heap of 4 KiB pages). */
#define HEAP_MCACHE_HOME_PROBES 16u
#define HEAP_MCACHE_HOME_WORDS 64u
/* Chunks scanned for a wholly free one, from the search address on. */
#define HEAP_MCACHE_FREE_CHUNK_SCAN 256u

/* A free run of n pages starting on a multiple of align inside chunk ci,
 * backed if asked: 1 with *ret_page, else 0. Heap lock. */
static int mcache_chunk_find_locked(heap *h, uint64_t ci, uint64_t n, uint64_t align, bool backed,
                                    uint64_t *ret_page) {
        uint64_t padded = n + align - 1;
        if (ci >= heap_nchunks(h) || padded > HEAP_CHUNK_PAGES || heap_leaf(h)[ci].max < padded)
                return 0;
        unsigned sidx, j = heap_palloc_find(h->chunks[ci].alloc, padded, 0, &sidx);
        if (j == HEAP_FIND_NONE || j + padded > HEAP_CHUNK_PAGES)
                return 0;
        uint64_t page = ALIGN_UP(ci * HEAP_CHUNK_PAGES + j, align);
        /* The summary is shared memory: the bitmap says. */
        if (!heap_pa_range_free(h, page, n) || (backed && !heap_pa_range_backed(h, page, n)))
                return 0;
        *ret_page = page;
        return 1;
}

/* The home set of thread cache (slot, cache) in this process, or NULL. */
static const uint64_t *mcache_home(heap *h, uint32_t slot, uint32_t cache) {
        return h->home[cache].slot == slot ? h->home[cache].chunks : NULL;
}

/* A run as mcache_chunk_find_locked's in the lowest home chunk of thread
 * cache (slot, cache) that has one, from the search address on (the chunks
 * below it are full), but chunk skip (one the caller has searched already,
 * or UINT64_MAX). Heap lock. */
static int mcache_home_find_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t n, uint64_t align, bool backed,
                                   uint64_t skip, uint64_t *ret_page) {
        const uint64_t *set = mcache_home(h, slot, cache);
        uint64_t search = heap_load(&h->hdr->search_page), nch = heap_nchunks(h);
        unsigned probes = 0;

        if (!set || search == HEAP_PAGE_NONE)
                return 0;
        uint64_t first = search / HEAP_CHUNK_PAGES, end = MIN((nch + 63) / 64, first / 64 + HEAP_MCACHE_HOME_WORDS);
        for (uint64_t wi = first / 64; wi < end; wi++) {
                uint64_t bits = set[wi];
                if (wi == first / 64)
                        bits &= ~UINT64_C(0) << (first % 64);
                for (; bits; bits &= bits - 1) {
                        uint64_t ci = wi * 64 + (unsigned) __builtin_ctzll(bits);
                        /* Most chunks are told by their summary alone. */
                        if (ci >= nch || ci == skip || heap_leaf(h)[ci].max < n + align - 1)
                                continue;
                        if (mcache_chunk_find_locked(h, ci, n, align, backed, ret_page))
                                return 1;
                        if (++probes == HEAP_MCACHE_HOME_PROBES)
                                return 0;
                }
        }
        return 0;
}

/* Page..page+n-1 were taken by thread cache (slot, cache): their chunks join its home set. */
static void mcache_home_add(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t n) {
        uint64_t words = (h->nchunks_max + 63) / 64, *set = h->home[cache].chunks;
        if (!set)
                set = h->home[cache].chunks = calloc(words, sizeof(uint64_t));
        if (!set)
                return; /* no memory: no home, only the first fit */
        if (h->home[cache].slot != slot) {
                memset(set, 0, words * sizeof(uint64_t));
                h->home[cache].slot = slot;
        }
        for (uint64_t ci = page / HEAP_CHUNK_PAGES; ci <= (page + n - 1) / HEAP_CHUNK_PAGES && ci < h->nchunks_max; ci++)
                set[ci / 64] |= UINT64_C(1) << (ci % 64);
}

/* Whether chunk ci is in the home set of thread cache (slot, cache). */
static bool mcache_home_has(heap *h, uint32_t slot, uint32_t cache, uint64_t ci) {
        const uint64_t *set = mcache_home(h, slot, cache);
        return set && ci < h->nchunks_max && (set[ci / 64] >> (ci % 64)) & 1;
}

/*
 * Whether a thread cache that found no room of its own may grow the heap
 * for a chunk rather than take a hole among other clients' blocks (lists
 * here, page-cache fills in cache.c): while the heap's free pages are
 * fewer than half of those in use (plus four chunks). Looser than
 * mcache_region_may_grow: with one eighth, two clients of the mixed
 * benchmark still shared 78-147 of 359 chunks, with one half 6-14 of 366.
 * It costs address space, not memory: free pages are the scavenger's to
 * release. Shared counters: a hint.
 */
bool heap_mcache_may_grow_apart(heap *h) {
        uint64_t pages = heap_nchunks(h) * HEAP_CHUNK_PAGES, inuse = heap_load(&h->hdr->inuse_pages);
        return pages < inuse + inuse / 2 + 4 * HEAP_CHUNK_PAGES;
}

/* The first wholly free chunk within HEAP_MCACHE_FREE_CHUNK_SCAN chunks of
 * the search address: 1 with its first page, else 0. Heap lock. */
static int mcache_free_chunk_locked(heap *h, uint64_t *ret_page) {
        uint64_t search = heap_load(&h->hdr->search_page), page;
        if (search == HEAP_PAGE_NONE)
                return 0;
        page = heap_pa_find_free_aligned(h, search, HEAP_CHUNK_PAGES, HEAP_MCACHE_FREE_CHUNK_SCAN);
        if (page == HEAP_PAGE_NONE)
                return 0;
        *ret_page = page;
        return 1;
}

/*
 * Where a block of n pages (a class of HEAP_MCACHE_RUN_BELOW pages or more)
 * of thread cache (slot, cache) goes: in its lowest home chunk
 * with room; else at the first fit, if that lies at home; else at the
 * start of a wholly free chunk; else, while the heap may grow for it
 * (grown non-NULL and heap_mcache_may_grow_apart), at the start of a chunk of
 * its own; else at the first fit anywhere, growing the heap for it (grown
 * non-NULL) as heap_alloc_locked does. An extra block (grown NULL) takes
 * no hole among other clients' blocks. backed: backed pages only. 1 with
 * *ret_page and *ret_search (0: the search address stays as it is), 0 when
 * none, or -EUCLEAN. Heap lock.
 */
static int mcache_home_place_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t n, bool backed,
                                    uint64_t *ret_page, uint64_t *ret_search, uint64_t *grown) {
        uint64_t page, search;
        int r;

        assert(!(backed && grown)); /* only extra blocks need backed pages, and those never grow the heap */
        *ret_search = 0; /* still a lower bound on the free pages, whatever is taken */
        if (mcache_home_find_locked(h, slot, cache, n, 1, backed, UINT64_MAX, ret_page))
                return 1;
        r = heap_pa_alloc_find(h, n, &page, &search);
        if (r < 0)
                return r;
        bool at_home = r > 0 && mcache_home_has(h, slot, cache, page / HEAP_CHUNK_PAGES);
        if (!at_home) {
                uint64_t chunk, chunk_search = 0;
                int c = mcache_free_chunk_locked(h, &chunk);
                if (c == 0 && grown && heap_mcache_may_grow_apart(h)) {
                        c = mcache_find_aligned_locked(h, HEAP_CHUNK_PAGES, HEAP_CHUNK_PAGES, true, &chunk,
                                                       &chunk_search, grown);
                        if (c < 0)
                                return c;
                }
                if (c > 0 && (!backed || heap_pa_range_backed(h, chunk, n))) {
                        *ret_page = chunk;
                        *ret_search = chunk_search;
                        return 1;
                }
                if (!grown)
                        return 0; /* an extra block: none */
        }
        if (r == 0 && grown) {
                r = heap_grow_locked(h, n, grown);
                if (r < 0)
                        return r == -ENOMEM ? 0 : r;
                r = heap_pa_alloc_find(h, n, &page, &search);
        }
        if (r <= 0 || (backed && !heap_pa_range_backed(h, page, n)))
                return r < 0 ? r : 0;
        *ret_page = page;
        *ret_search = search;
        return 1;
}

/*
 * A block of n pages (see mcache_home_place_locked) for thread cache
 * (slot, cache), committed with rec_bits and the chunk added to its home
 * set: 0 with *ret_page, -ENOMEM when none, or -EUCLEAN. flags as
 * heap_alloc_locked's (HEAP_ALLOC_BACKED_ONLY: backed pages only). Heap lock.
 */
static int mcache_alloc_home_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t n, unsigned flags,
                                    uint64_t rec_bits, uint64_t *ret_page, struct heap_zero_plan *zp,
                                    uint64_t *grown) {
        uint64_t page, search;
        int r = mcache_home_place_locked(h, slot, cache, n, flags & HEAP_ALLOC_BACKED_ONLY, &page, &search, grown);
        if (r <= 0)
                return r < 0 ? r : -ENOMEM;
        (void) heap_alloc_commit_locked(h, slot, page, n, flags & ~HEAP_ALLOC_BACKED_ONLY, rec_bits, search, zp);
        mcache_home_add(h, slot, cache, page, n);
        *ret_page = page;
        return 0;
}

/*
 * Where a small-class run of len pages of thread cache t goes, in a chunk
 * of its own: the first fit, on four lines, in the chunk of its last run
 * (t->run_chunk, shared memory: only a hint, every page checked), so that
 * what its lists gave back there comes first (a run right after the last
 * one would walk the heap, through cold records and released pages); else
 * at the start of a chunk with len free pages, growing the heap for one
 * while it fills up. 1 with *ret_run and *ret_search (0: the search
 * address stays as it is), 0 when neither (the caller takes any aligned
 * run), or -EUCLEAN. Heap lock.
 */
static int mcache_region_find_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t len, uint64_t *ret_run,
                                     uint64_t *ret_search, uint64_t *grown) {
        const struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t chunk = t->run_chunk;

        if (chunk > 0) {
                uint64_t base = (chunk - 1) * HEAP_CHUNK_PAGES;
                for (uint64_t run = base; run + len <= base + HEAP_CHUNK_PAGES; run += HEAP_MCACHE_RUN_ALIGN)
                        if (heap_pa_range_free(h, run, len)) {
                                *ret_run = run;
                                *ret_search = 0; /* still a lower bound on the free pages */
                                return 1;
                        }
        }
        /* The home set holds the last run's chunk too, searched above (none: 0 - 1 skips nothing). */
        if (mcache_home_find_locked(h, slot, cache, len, HEAP_MCACHE_RUN_ALIGN, false, chunk - 1, ret_run)) {
                *ret_search = 0;
                return 1;
        }
        if (mcache_free_chunk_locked(h, ret_run)) {
                *ret_search = 0;
                return 1;
        }
        return mcache_find_aligned_locked(h, len, HEAP_CHUNK_PAGES, mcache_region_may_grow(h), ret_run, ret_search,
                                          grown);
}

/*
 * The batch of a small class from one free run of batch * n pages, block
 * by block (each an ordinary allocation with its intent): the first is the
 * request, the others CACHED. A thread's small blocks then lie together,
 * and their records with them: blocks allocated one by one, while another
 * process or thread refills too (every fill of a fresh pool), interleave
 * with that one's, and with records eight to a line the two cores then
 * write the same lines on every operation. For the same reason the run
 * starts on a record line and, where the batch allows, ends on one: a run
 * that merely follows another thread's shares a line with it at the seam
 * (two threads of a benchmark driver filling one fresh pool at once had
 * 55-120 of 500 record lines shared in 9 runs of 10; the run with 2 shared
 * went fastest). Lines merely near each other cost too, probably through
 * the CPU's prefetchers, which fetch the other core's lines that it must
 * then take back at its next write: two processes at 8 KiB in one pool, no
 * line shared, ran at 1.37-1.86 times one process with runs on single
 * lines, 1.73-2.03 times on four (two pools: 1.73-2.14). So runs start on
 * HEAP_MCACHE_RUN_ALIGN pages, and each thread cache keeps its runs in a
 * chunk of its own where it can (mcache_region_find_locked): a chunk's
 * records are one 4 KiB page, and two clients whose runs alternated within
 * one (4-line groups, none shared) still ran 4-35% slower than in two
 * pools in 20 of 24 paired rounds; with a chunk each, about as fast.
 *
 * The up to 511 pages skipped below a run stay free; the search address
 * found is still the first free page. The heap grows (*grown) rather than
 * give up the alignment, as heap_alloc_locked would for the request alone:
 * a run that fits only unaligned is the tail of the grown heap, where both
 * threads' next refills meet. Released pages may be in the run:
 * *ret_unbacked says so; the caller backs the cached blocks' pages after
 * the lock, so that the pages counted as not released are not. -ENOMEM
 * when no run fits (the caller goes block by block). Heap lock.
 */
static int mcache_refill_run_locked(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t n, unsigned batch,
                                    unsigned flags, uint64_t *ret_page, struct heap_zero_plan *zp,
                                    bool *ret_unbacked, uint64_t *grown) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t run, search;

        /* Blocks the list has room for, besides the one served. */
        unsigned extras = 0;
        while (extras + 1 < batch && t->count[k] + extras < HEAP_MCACHE_DEPTH &&
               t->pages + (extras + 1) * n <= mcache_cap_pages(h))
                extras++;
        if (extras == 0)
                return -ENOMEM;
        /* Fewer blocks, if that makes the run end on the alignment too. */
        for (unsigned m = extras + 1; m >= 2; m--)
                if (m * n % HEAP_MCACHE_RUN_ALIGN == 0) {
                        extras = m - 1;
                        break;
                }
        uint64_t len = (extras + 1) * n;
        int r = mcache_region_find_locked(h, slot, cache, len, &run, &search, grown);
        if (r == 0)
                r = mcache_find_aligned_locked(h, len, HEAP_MCACHE_RUN_ALIGN, true, &run, &search, grown);
        if (r == 0) /* the heap is full: any run will do */
                r = heap_pa_alloc_find(h, len, &run, &search);
        if (r <= 0)
                return r < 0 ? r : -ENOMEM;
        t->run_chunk = (uint32_t) (run / HEAP_CHUNK_PAGES + 1);
        mcache_home_add(h, slot, cache, run, len);
        (void) heap_alloc_commit_locked(h, slot, run, n, flags, HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache), search, zp);
        *ret_unbacked = false;
        for (unsigned i = 1; i <= extras; i++) {
                uint64_t page = run + i * n;
                /* Recorded, then listed, as every refill: a death in between
                 * leaves a CACHED record of the dead slot, which reclaim frees. */
                if (heap_alloc_commit_locked(h, slot, page, n, 0,
                                             HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache) | HEAP_REC_CACHED, search,
                                             NULL) > 0)
                        *ret_unbacked = true;
                mcache_push(t, k, page, n);
        }
        *ret_page = run;
        return (int) extras;
}

/*
 * Backs the pages of the top extras blocks of list k (class of n pages),
 * which a run refill took with released pages in them: the pages the heap
 * counts as not released must be. On failure (no memory, an old kernel
 * with neither way) they go back to the heap. Inside the owner's operation,
 * without the lock: the blocks are allocated, so no scavenger touches them.
 */
static void mcache_back_extras(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t n, unsigned extras) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        unsigned count = mcache_count(t, k);
        int r = 0;

        if (extras > count)
                return;
        for (unsigned i = count - extras; i < count && r >= 0; i++) {
                uint64_t off = (uint64_t) t->page[k][i] << h->page_shift, len = n << h->page_shift;
                if (h->base)
                        r = madvise(h->base + off, len, MADV_POPULATE_WRITE) < 0 ? -errno : 0;
                if ((!h->base || r == -EINVAL) && h->heap_fd >= 0)
                        r = fallocate(h->heap_fd, FALLOC_FL_KEEP_SIZE, (off_t) off, (off_t) len) < 0 ? -errno : 0;
        }
        if (r >= 0 || heap_lock(h) < 0)
                return;
        for (unsigned i = 0; i < extras; i++)
                mcache_release_newest_locked(h, slot, cache, k);
        heap_unlock(h);
}

/*
 * A miss of class k (n pages): one lock hold allocates the request and up
 * to HEAP_MCACHE_BATCH - 1 more blocks of the class, CACHED for the next
 * allocations (those never grow the heap): small classes from one run
 * (mcache_refill_run_locked), others block by block from backed pages.
 * Falls back to heap_alloc_flushing_mcache when the heap is full.
 */
static _noinline_ int mcache_refill(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t n, unsigned flags,
                                    uint64_t *ret_off) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        struct heap_zero_plan zp = {};
        uint64_t page, grown = 0;
        bool unbacked = false;
        int r, extras = 0;

        if (n > UINT32_MAX || h->capacity_pages > UINT32_MAX) /* entries hold 32-bit pages */
                return heap_alloc_flushing_mcache(h, slot, cache, n, flags, HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache),
                                                  ret_off);
        r = heap_lock(h);
        if (r < 0)
                return r;
        if (t->norphans || t->orphans_lost) {
                /* Other threads freed what this one allocated: its lists take them. */
                heap_mcache_orphans_locked(h, slot, cache, true);
                if (t->count[k]) {
                        heap_unlock(h);
                        return HEAP_MCACHE_RETRY;
                }
        }
        unsigned batch = (unsigned) MAX(HEAP_MCACHE_BATCH, MIN(HEAP_MCACHE_BATCH_MAX, HEAP_MCACHE_BATCH_PAGES / n));
        r = -ENOMEM;
        if (n < HEAP_MCACHE_RUN_BELOW)
                r = extras = mcache_refill_run_locked(h, slot, cache, k, n, batch, flags, &page, &zp, &unbacked,
                                                          &grown);
        if (r == -ENOMEM) {
                extras = 0;
                r = mcache_alloc_home_locked(h, slot, cache, n, flags, HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache), &page,
                                             &zp, &grown);
        }
        /* Block by block only without a run. A run is the whole batch (its
         * length may have cut it to whole record lines): blocks added here
         * would sit above the run's on the list, where mcache_back_extras
         * looks for those. */
        for (unsigned i = 1; extras == 0 && r >= 0 && i < batch && mcache_room(h, t, k, n); i++) {
                struct heap_zero_plan unused;
                uint64_t extra;
                /* Only backed pages: a cache hides what it holds from the
                 * scavenger, which would lose track of released ones. */
                if (mcache_alloc_home_locked(h, slot, cache, n, HEAP_ALLOC_BACKED_ONLY,
                                             HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache) | HEAP_REC_CACHED, &extra,
                                             &unused, NULL) < 0)
                        break;
                mcache_push(t, k, extra, n);
        }
        heap_unlock(h);
        if (unbacked)
                mcache_back_extras(h, slot, cache, k, n, (unsigned) extras);
        if (grown)
                heap_growth_scavenge(h, slot, grown);
        if (r == -ENOMEM)
                return heap_alloc_flushing_mcache(h, slot, cache, n, flags, HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache),
                                                  ret_off);
        if (r < 0)
                return r;
        if (flags & HEAP_ALLOC_ZERO)
                heap_zero_plan_run(h, &zp);
        *ret_off = page << h->page_shift;
        return 0;
}

/*
 * Pops a block of class k whose record is still CACHED for slot and makes
 * it live: its page, or UINT64_MAX. A plain store: nobody else changes a
 * CACHED record while its list's owner is inside an operation (a free
 * refuses it, a reaper waits for the owner to leave).
 */
static inline uint64_t mcache_take(heap *h, uint32_t slot, uint32_t cache, unsigned k, uint64_t n) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t want = heap_mcache_cached_record(n, slot, cache), end = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        for (unsigned c = mcache_count(t, k); c > 0; c--) {
                uint64_t page = t->page[k][c - 1];
                t->count[k] = (uint8_t) (c - 1);
                if (_unlikely_(c - 1 < t->low[k]))
                        t->low[k] = (uint8_t) (c - 1);
                t->pages = t->pages >= n ? t->pages - (uint32_t) n : 0;
                if (_likely_(page + n <= end &&
                             atomic_load_explicit(&h->records[page], memory_order_relaxed) == want)) {
                        atomic_store_explicit(&h->records[page], want & ~HEAP_REC_CACHED, memory_order_release);
                        return page;
                }
                /* else freed by a reclaim, or scribbled on: a stale hint, dropped */
        }
        return UINT64_MAX;
}

int heap_mcache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags, uint64_t *ret_off) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t n;
        unsigned k = heap_mcache_class(npages, &n);
        int r;

        /* The class, else the next ones up (at most HEAP_MCACHE_SPILL: up to
         * 1.5 times the size): a block at hand beats the heap lock, whose
         * shared lines cost more than the pages the block holds unused. */
        unsigned last = k < HEAP_MCACHE_SMALL_CLASSES ? k : MIN(k + HEAP_MCACHE_SPILL, HEAP_MCACHE_CLASSES - 1);
        for (unsigned j = k; j <= last; j++) {
                if (!t->count[j])
                        continue;
                uint64_t nj = heap_mcache_class_pages(j), page = mcache_take(h, slot, cache, j, nj);
                if (page == UINT64_MAX)
                        continue;
                if ((flags & HEAP_ALLOC_ZERO) && h->base)
                        memset(h->base + (page << h->page_shift), 0, nj << h->page_shift);
                *ret_off = page << h->page_shift;
                return 0;
        }

        r = mcache_refill(h, slot, cache, k, n, flags, ret_off);
        if (r == HEAP_MCACHE_RETRY) {
                uint64_t page = mcache_take(h, slot, cache, k, n);
                if (page != UINT64_MAX) {
                        if ((flags & HEAP_ALLOC_ZERO) && h->base)
                                memset(h->base + (page << h->page_shift), 0, n << h->page_shift);
                        *ret_off = page << h->page_shift;
                        return 0;
                }
                r = mcache_refill(h, slot, cache, k, n, flags, ret_off);
        }
        return r;
}

/* heap_alloc_rec, except that what the lists and orphans of (slot, cache)
 * hold must not make an allocation fail: on -ENOMEM they are given back and
 * the allocation tried once more. Inside the owner's operation. */
int heap_alloc_flushing_mcache(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                               uint64_t rec_bits, uint64_t *ret_off) {
        int r = heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
        if (r != -ENOMEM || slot >= h->max_slots || cache >= HEAP_SLOT_CACHES)
                return r;
        struct heap_tcache *t = heap_tc(h, slot, cache);
        if (!t->pages && !t->norphans && !t->orphans_lost)
                return r;
        r = heap_lock(h);
        if (r < 0)
                return r;
        heap_mcache_orphans_locked(h, slot, cache, false);
        heap_mcache_flush_locked(h, slot, cache);
        heap_unlock(h);
        return heap_alloc_rec(h, slot, npages, flags, rec_bits, ret_off);
}

/*
 * The owner's free of a medium allocation into full lists: under one lock
 * hold, frees it and gives back the longest lists' newest entries until the
 * lists are HEAP_MCACHE_EVICT_KEEP quarters full, so that the next frees
 * find room without the lock.
 */
static _noinline_ int mcache_free_evicting(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        int r = heap_lock(h);
        if (r < 0)
                return r;
        if (atomic_load_explicit(&h->records[page], memory_order_acquire) != rec)
                r = -EINVAL; /* another free won */
        else
                r = heap_free_locked(h, slot, cache, page, rec);
        uint64_t keep_pages = mcache_cap_pages(h) * HEAP_MCACHE_EVICT_KEEP / 4;
        unsigned keep_depth = HEAP_MCACHE_DEPTH * HEAP_MCACHE_EVICT_KEEP / 4;
        for (;;) {
                unsigned longest = 0;
                for (unsigned k = 1; k < HEAP_MCACHE_CLASSES; k++)
                        if (mcache_count(t, k) > mcache_count(t, longest))
                                longest = k;
                unsigned k = HEAP_MCACHE_CLASSES;
                if (t->pages > keep_pages)
                        k = longest;
                else
                        for (unsigned j = 0; j < HEAP_MCACHE_CLASSES && k == HEAP_MCACHE_CLASSES; j++)
                                if (mcache_count(t, j) > keep_depth)
                                        k = j;
                if (k == HEAP_MCACHE_CLASSES || !mcache_count(t, k))
                        break;
                mcache_release_newest_locked(h, slot, cache, k);
        }
        heap_unlock(h);
        return r;
}

bool heap_mcache_free(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec, int *ret) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t npages = HEAP_REC_NPAGES(rec), n;
        if (npages < HEAP_MCACHE_MIN_PAGES || npages > HEAP_MCACHE_MAX_PAGES ||
            (rec & (HEAP_REC_KEEP | HEAP_REC_CACHED | HEAP_REC_MEDIUM | HEAP_REC_SHARED | HEAP_REC_CACHE_MASK)) !=
                    (HEAP_REC_MEDIUM | HEAP_REC_CACHE(cache)))
                return false; /* only what this thread's lists allocated */
        unsigned k = heap_mcache_class(npages, &n);
        if (n != npages || page > UINT32_MAX)
                return false; /* not of a class: scribbled on */
        if (!mcache_room(h, t, k, n)) {
                *ret = mcache_free_evicting(h, slot, cache, page, rec);
                return true;
        }

        /* A plain store, inside the owner's operation: another thread's free
         * of this allocation makes it an orphan (heap_mcache_orphan_locked),
         * which this store may overwrite; then the list holds it. */
        atomic_store_explicit(&h->records[page], rec | HEAP_REC_CACHED, memory_order_release);
        mcache_push(t, k, page, n);
        *ret = 0;
        return true;
}

int heap_mcache_orphan_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t n = HEAP_REC_NPAGES(rec);
        if (!heap_mcache_is_class(n) || page > UINT32_MAX)
                return heap_free_locked(h, slot, cache, page, rec); /* no fast path frees it: no race */
        /* Listed first, then marked: a process killed in between leaves a
         * stale entry, which heap_mcache_orphans_locked drops. */
        if (t->norphans < HEAP_TC_ORPHANS)
                t->orphan[t->norphans++] = (uint32_t) page;
        else
                t->orphans_lost = 1;
        /* A shared record goes unshared: its entry, stale now, is released after (share.c). */
        uint64_t expect = rec;
        if (!atomic_compare_exchange_strong(&h->records[page], &expect,
                                            (rec & ~HEAP_REC_SHARED) | HEAP_REC_CACHED | HEAP_REC_ORPHAN))
                return -EINVAL; /* the owner's free won */
        /* Half full: its owner's next operation takes them (or the next reap). */
        if (t->norphans >= HEAP_TC_ORPHANS / 2)
                heap_tc_request_locked(h, slot, cache, HEAP_TC_REAP_ORPHANS);
        return 0;
}

/* One orphan of (slot, cache) at page, if its record says it is one: into
 * a list (reuse, room) or back to the heap. Pages given back. Heap lock. */
static uint64_t orphan_take_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, bool reuse) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t grown = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        if (page >= grown)
                return 0;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire), n = HEAP_REC_NPAGES(rec);
        if (!heap_mcache_is_class(n) || rec != heap_mcache_orphan_record(n, slot, cache) || page + n > grown)
                return 0; /* stale: the owner's own free won, or it was taken already */
        uint64_t c;
        unsigned k = heap_mcache_class(n, &c);
        if (reuse && mcache_room(h, t, k, n)) {
                /* CACHED, then listed: its owner is inside this operation. */
                atomic_store_explicit(&h->records[page], rec & ~HEAP_REC_ORPHAN, memory_order_release);
                mcache_push(t, k, page, n);
                return 0;
        }
        return heap_free_locked(h, slot, cache, page, rec) >= 0 ? n : 0;
}

uint64_t heap_mcache_orphans_locked(heap *h, uint32_t slot, uint32_t cache, bool reuse) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t given = 0;
        for (unsigned i = 0; i < MIN(t->norphans, HEAP_TC_ORPHANS); i++)
                given += orphan_take_locked(h, slot, cache, t->orphan[i], reuse);
        t->norphans = 0;
        if (t->orphans_lost) {
                /* More than the list held: found by their records, over the grown heap once. */
                uint64_t grown = heap_nchunks(h) * HEAP_CHUNK_PAGES;
                for (uint64_t p = 0; p < grown; p++)
                        if (atomic_load_explicit(&h->records[p], memory_order_relaxed) & HEAP_REC_ORPHAN)
                                given += orphan_take_locked(h, slot, cache, p, reuse);
                t->orphans_lost = 0;
        }
        return given;
}

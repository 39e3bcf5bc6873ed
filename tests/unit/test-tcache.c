/* SPDX-License-Identifier: MIT */
/*
 * Thread caches (issue 13): the medium lists (LIFO, per class), and the
 * reaper (heap_cache_reap) that takes back what threads keep, safe against
 * owners that never lock for it: an idle thread gives everything back, a
 * busy one what it kept unused, everyone everything when asked; an owner
 * inside an operation is left to do it at its next one. A client killed
 * with full lists gives every page back. heap_check names each broken
 * thread-cache invariant. Real memfd heaps, real threads, real processes.
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/layout.h"
#include "heap/fast.h"
#include "heap/mcache.h"
#include "heap/tcache.h"
#include "heap/testing.h"
#include "../lib/test.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define MiB (UINT64_C(1) << 20)
#define PAGE UINT64_C(4096)

static void check_heap(heap *h, const char *step) {
        char buf[256] = "";
        int r = heap_check(h, buf, sizeof(buf));
        CHECKF(r == 0, "%s: heap_check: %s", step, buf);
}

static uint64_t inuse_pages(heap *h) {
        struct heap_stats st;
        CHECK(heap_get_stats(h, &st) == 0);
        return st.inuse / PAGE;
}

static struct heap_tcache *tc(heap *h, uint32_t slot, uint32_t cache) {
        return &h->slots[slot].tc[cache];
}

/* Fills (slot, cache)'s lists: n medium blocks of pages each, allocated then freed. */
static void fill_lists(heap *h, uint32_t slot, uint32_t cache, unsigned n, uint64_t pages) {
        uint64_t offs[64];
        CHECK(n <= 64);
        for (unsigned i = 0; i < n; i++)
                CHECK(heap_cache_alloc(h, slot, cache, pages, 0, &offs[i]) == 0);
        for (unsigned i = 0; i < n; i++)
                CHECK(heap_free(h, slot, cache, offs[i]) == 0);
}

/* The lists are LIFO: the block freed last is handed out first. */
static void test_lifo(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        uint64_t a, b, c, x, y;
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &a) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &b) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &c) == 0);
        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK(heap_free(h, s, 0, b) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &x) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &y) == 0);
        CHECK_EQ_U64(x, b);
        CHECK_EQ_U64(y, a);
        check_heap(h, "lifo");
        CHECK(heap_free(h, s, 0, x) == 0);
        CHECK(heap_free(h, s, 0, y) == 0);
        CHECK(heap_free(h, s, 0, c) == 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/* Maximal runs of consecutive blocks of pages each among n offsets (sorted in place). */
static unsigned count_runs(uint64_t *offs, unsigned n, uint64_t pages) {
        unsigned runs = 0;
        for (unsigned i = 1; i < n; i++)
                for (unsigned j = i; j > 0 && offs[j - 1] > offs[j]; j--) {
                        uint64_t x = offs[j];
                        offs[j] = offs[j - 1];
                        offs[j - 1] = x;
                }
        for (unsigned i = 0; i < n; i++)
                runs += i == 0 || offs[i] != offs[i - 1] + pages * PAGE;
        return runs;
}

/*
 * Two clients that refill a small class at once, on a fresh heap (all of
 * it released): each gets its blocks in runs of its own (a batch from one
 * free run), not interleaved with the other's block by block, so that
 * their records do not share lines. The cached blocks' pages are backed
 * (what the heap counts as not released is not), the heap checks, and
 * everything goes back and is released again.
 */
static void test_run_refill(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        enum { N = 64 };
        uint64_t a[N], b[N];
        uint32_t sa, sb;
        struct stat st;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &sa) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &sb) == 0);
        for (unsigned i = 0; i < N; i++) {
                CHECK(heap_cache_alloc(h, sa, 0, 2, 0, &a[i]) == 0);
                CHECK(heap_cache_alloc(h, sb, 0, 2, 0, &b[i]) == 0);
        }
        check_heap(h, "run refill");
        /* Held: N blocks each, plus what the lists still cache, all backed but
         * the blocks served first (never written here). */
        uint64_t cached = tc(h, sa, 0)->pages + tc(h, sb, 0)->pages;
        CHECK(fstat(t.heap_fd, &st) == 0);
        uint64_t batches = N / (HEAP_MCACHE_BATCH_PAGES / 2) + 2;
        CHECKF((uint64_t) st.st_blocks * 512 >= (2 * (N - batches) * 2 + cached) * PAGE,
               "backed %llu bytes, cached pages %llu", (unsigned long long) st.st_blocks * 512,
               (unsigned long long) cached);
        unsigned ra = count_runs(a, N, 2), rb = count_runs(b, N, 2);
        CHECKF(ra <= batches && rb <= batches, "runs of blocks: %u and %u (batches %llu)", ra, rb,
               (unsigned long long) batches);

        for (unsigned i = 0; i < N; i++) {
                CHECK(heap_free(h, sa, 0, a[i]) == 0);
                CHECK(heap_free(h, sb, 0, b[i]) == 0);
        }
        CHECK(heap_slot_reclaim(h, sa) >= 0);
        CHECK(heap_slot_reclaim(h, sb) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        struct heap_gen_report rep;
        CHECK(heap_scavenge_start_gen(h, &rep) == 0);
        CHECK(heap_scavenge(h, 0, UINT64_MAX) >= 0);
        struct heap_stats hs;
        CHECK(heap_get_stats(h, &hs) == 0);
        CHECK_EQ_U64(hs.released, hs.heap_sys);
        CHECK(fstat(t.heap_fd, &st) == 0);
        CHECK_EQ_U64((uint64_t) st.st_blocks, 0);
        check_heap(h, "run refill, all back");
        heap_test_free(&t);
}

/*
 * Runs start on four record lines (32 pages' records, 256 bytes) and,
 * where the batch allows, end on them: two slots refilling small classes
 * at once never have blocks whose records lie in the same four lines,
 * even when the heap's first free page is not on a line. (Before, a run
 * merely followed the last one, and two threads of a benchmark shared
 * 55-120 of 500 lines; then runs started on single lines, and the
 * neighbouring lines of two processes still cost them, mcache.c.)
 */
static void test_run_lines(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        static const uint64_t sizes[] = { 2, 3, 5, 6, 7 };
        enum { N = 24, LINE = 32, LINES = 64 * MiB / PAGE / LINE, /* LINE: four record lines */
               CHUNK_LINES = HEAP_CHUNK_PAGES / LINE };
        static uint8_t owners[LINES];
        uint64_t first, off;
        uint32_t s[2];
        unsigned shared = 0;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s[0]) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &s[1]) == 0);
        CHECK(heap_alloc(h, s[0], 1, 0, &first) == 0);
        memset(owners, 0, sizeof(owners));
        for (unsigned i = 0; i < N; i++)
                for (unsigned k = 0; k < ELEMENTSOF(sizes); k++)
                        for (unsigned j = 0; j < 2; j++) {
                                CHECK(heap_cache_alloc(h, s[j], 0, sizes[k], 0, &off) == 0);
                                owners[off / PAGE / LINE] |= (uint8_t) (1u << j);
                        }
        for (unsigned l = 0; l < LINES; l++)
                shared += owners[l] == 3;
        CHECKF(shared == 0, "%u groups of four record lines hold blocks of both slots", shared);
        /* Nor a chunk: its records are one 4 KiB page. */
        shared = 0;
        for (unsigned c = 0; c < LINES; c += CHUNK_LINES) {
                uint8_t o = 0;
                for (unsigned l = c; l < c + CHUNK_LINES; l++)
                        o |= owners[l];
                shared += o == 3;
        }
        CHECKF(shared == 0, "%u chunks hold blocks of both slots", shared);
        check_heap(h, "run lines");
        CHECK(heap_slot_reclaim(h, s[0]) >= 0);
        CHECK(heap_slot_reclaim(h, s[1]) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/*
 * A thread cache's small-class runs go to the first fit in the chunk of
 * its last run (run_chunk): after its first run, the next; after its lists
 * gave the blocks back, the chunk's first pages again, not pages further
 * on. The hint lies in shared memory: one past the heap or in a chunk
 * whose first pages are allocated gives a run over free pages only.
 */
static void test_run_hint(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct {
                uint64_t off, n;
        } live[8];
        unsigned nlive = 0;
        uint64_t off, first;
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        struct heap_tcache *c = tc(h, s, 0);
        CHECK(heap_cache_alloc(h, s, 0, 2, 0, &first) == 0);
        const uint32_t chunk = (uint32_t) (first / PAGE / HEAP_CHUNK_PAGES);
        CHECK_EQ_U64(c->run_chunk, chunk + 1);
        CHECK(heap_cache_alloc(h, s, 0, 3, 0, &off) == 0);
        CHECKF(off > first && off / PAGE / HEAP_CHUNK_PAGES == chunk, "second run at page %" PRIu64 ", first at %" PRIu64,
               off / PAGE, first / PAGE);
        CHECK(heap_free(h, s, 0, first) == 0);
        CHECK(heap_free(h, s, 0, off) == 0);
        CHECK(heap_cache_flush(h, s, 0) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 5, 0, &off) == 0);
        CHECKF(off == first, "after the lists gave back, a run at page %" PRIu64 ", not %" PRIu64, off / PAGE,
               first / PAGE);
        live[nlive].off = off, live[nlive++].n = 5;

        const uint32_t grown = (uint32_t) heap_nchunks(h);
        const struct {
                uint32_t chunk;
                const char *what;
        } hostile[] = {
                { UINT32_MAX, "past the capacity" },
                { grown + 1, "past the grown heap" },
                { chunk + 1, "a chunk whose first pages are allocated" },
                { grown, "the last grown chunk" },
        };
        for (unsigned i = 0; i < ELEMENTSOF(hostile); i++) {
                uint64_t n = 6 + i; /* a class without blocks: a refill */
                c->run_chunk = hostile[i].chunk;
                CHECK(heap_cache_alloc(h, s, 0, n, 0, &off) == 0);
                CHECKF(off / PAGE + n <= heap_nchunks(h) * HEAP_CHUNK_PAGES, "run_chunk %s: block past the heap",
                       hostile[i].what);
                for (unsigned j = 0; j < nlive; j++)
                        CHECKF(off + n * PAGE <= live[j].off || live[j].off + live[j].n * PAGE <= off,
                               "run_chunk %s: block at page %" PRIu64 " over one at %" PRIu64, hostile[i].what,
                               off / PAGE, live[j].off / PAGE);
                CHECKF(c->run_chunk == off / PAGE / HEAP_CHUNK_PAGES + 1, "run_chunk %s: then %u", hostile[i].what,
                       c->run_chunk);
                check_heap(h, hostile[i].what);
                live[nlive].off = off, live[nlive++].n = n;
        }
        CHECK(heap_slot_reclaim(h, s) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/*
 * A chunk of its own is worth growing the heap for only while it fills
 * up: a warm heap whose free pages are fragments (half of it free, in
 * 64-page holes) gives a new thread's runs a hole, not a new chunk.
 */
static void test_run_region_fragmented(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        enum { BLOCK = 64, MAX = 64 * MiB / PAGE / BLOCK };
        static uint64_t offs[MAX];
        unsigned n = 0;
        uint64_t off;
        uint32_t s[2];

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s[0]) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &s[1]) == 0);
        /* Sixteen chunks or more, every page in use, then every other block freed. */
        while (n < MAX && (n * BLOCK < 16 * HEAP_CHUNK_PAGES || inuse_pages(h) < heap_nchunks(h) * HEAP_CHUNK_PAGES))
                CHECK(heap_alloc(h, s[0], BLOCK, 0, &offs[n++]) == 0);
        CHECKF(inuse_pages(h) == heap_nchunks(h) * HEAP_CHUNK_PAGES, "%" PRIu64 " pages in use of %" PRIu64,
               inuse_pages(h), heap_nchunks(h) * HEAP_CHUNK_PAGES);
        for (unsigned i = 0; i < n; i += 2)
                CHECK(heap_free(h, s[0], 0, offs[i]) == 0);
        uint64_t chunks = heap_nchunks(h);
        CHECK(heap_cache_alloc(h, s[1], 0, 2, 0, &off) == 0);
        CHECKF(heap_nchunks(h) == chunks, "the heap grew from %" PRIu64 " to %" PRIu64 " chunks", chunks,
               heap_nchunks(h));
        check_heap(h, "fragmented");
        CHECK(heap_slot_reclaim(h, s[0]) >= 0);
        CHECK(heap_slot_reclaim(h, s[1]) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/* Regions of `pages` pages (chunks, page-cache blocks) of h holding
 * allocations (live or listed) of slot a and of slot b, by their records;
 * *ret_a, *ret_b: regions holding any of a's, of b's. */
static unsigned regions_shared(heap *h, uint64_t pages, uint32_t a, uint32_t b, unsigned *ret_a, unsigned *ret_b) {
        unsigned shared = 0, na = 0, nb = 0;
        for (uint64_t base = 0; base < heap_nchunks(h) * HEAP_CHUNK_PAGES; base += pages) {
                bool in_a = false, in_b = false;
                for (uint64_t pg = base; pg < base + pages; pg++) {
                        uint64_t rec = atomic_load(&h->records[pg]);
                        if (!HEAP_REC_NPAGES(rec))
                                continue;
                        in_a |= HEAP_REC_OWNER(rec) == a + 1;
                        in_b |= HEAP_REC_OWNER(rec) == b + 1;
                }
                shared += in_a && in_b;
                na += in_a;
                nb += in_b;
        }
        if (ret_a)
                *ret_a = na;
        if (ret_b)
                *ret_b = nb;
        return shared;
}

/*
 * Clients s[0..clients) (client j on thread cache j) take turns: while
 * filling, client j allocates its block `step`; then it frees one of its
 * nlive blocks at random and allocates another in its place. Sizes are
 * uniform in lo..hi pages. live[j * nlive + i]: client j's block i.
 */
static void churn(heap *h, const uint32_t *s, unsigned clients, uint64_t *live, unsigned nlive, bool fill,
                  unsigned steps, uint64_t lo, uint64_t hi, uint64_t *rnd) {
        for (unsigned step = 0; step < (fill ? nlive : 0) + steps; step++)
                for (unsigned j = 0; j < clients; j++) {
                        uint64_t *mine = live + (size_t) j * nlive;
                        unsigned i = step;
                        *rnd = *rnd * 6364136223846793005u + 1442695040888963407u;
                        if (!fill || step >= nlive) {
                                i = (unsigned) (*rnd >> 33) % nlive;
                                CHECK(heap_free(h, s[j], j, mine[i]) == 0);
                        }
                        uint64_t n = lo + (*rnd >> 40) % (hi - lo + 1);
                        CHECK(heap_cache_alloc(h, s[j], j, n, 0, &mine[i]) == 0);
                }
}

/* A heap of p with the clients s[0..clients) claimed. */
static heap *clients_new(const struct heap_params *p, struct heap_test *t, uint32_t *s, unsigned clients) {
        CHECK(heap_test_new(p, t) == 0);
        for (unsigned j = 0; j < clients; j++)
                CHECK(heap_slot_claim(t->h, 100 + j, 0, &s[j]) == 0);
        return t->h;
}

/* The clients' slots reclaimed: nothing is left in use; the heap freed. */
static void clients_free(struct heap_test *t, const uint32_t *s, unsigned clients) {
        for (unsigned j = 0; j < clients; j++)
                CHECK(heap_slot_reclaim(t->h, s[j]) >= 0);
        CHECK_EQ_U64(inuse_pages(t->h), 0);
        heap_test_free(t);
}

/*
 * Home chunks (mcache.c): clients whose lists refill from one heap at once,
 * while their frees overflow the lists back into it, keep their blocks in
 * chunks of their own, where first fit alone put the blocks of both in
 * most chunks. A client alone still gets a heap as compact as the first
 * fit's (no more free pages than half of those in use).
 */
static void test_home_chunks(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 1024 * MiB, .max_slots = 4 };
        static uint64_t live[2 * 128];
        uint64_t rnd = 1;
        unsigned na, nb;
        uint32_t s[2];

        heap *h = clients_new(&p, &t, s, 2);
        churn(h, s, 2, live, 128, true, 6000, 16, 128, &rnd);
        unsigned shared = regions_shared(h, HEAP_CHUNK_PAGES, s[0], s[1], &na, &nb);
        printf("home chunks, two clients: %u and %u chunks, %u of them shared, heap %" PRIu64 " chunks, %" PRIu64
               " pages in use\n", na, nb, shared, heap_nchunks(h), inuse_pages(h));
        CHECKF(shared * 20 <= na + nb, "%u of %u chunks hold blocks of both clients", shared, na + nb - shared);
        check_heap(h, "home chunks, two clients");
        clients_free(&t, s, 2);

        h = clients_new(&p, &t, s, 1);
        churn(h, s, 1, live, 128, true, 6000, 16, 128, &rnd);
        uint64_t inuse = inuse_pages(h), pages = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        printf("home chunks, one client: heap %" PRIu64 " chunks, %" PRIu64 " pages in use\n", heap_nchunks(h), inuse);
        CHECKF(pages <= inuse + inuse / 2 + 4 * HEAP_CHUNK_PAGES, "one client: %" PRIu64 " pages for %" PRIu64 " in use",
               pages, inuse);
        check_heap(h, "home chunks, one client");
        clients_free(&t, s, 1);
}

/*
 * Page-cache fills (cache.c) keep clients' single pages apart. After a
 * reap took both clients' caches back, their frees leave holes in their
 * own blocks; a fill that took whichever block held the first free page
 * put each client's next pages among the other's live ones, and both then
 * wrote the same record lines on every operation (two processes at 4 KiB
 * in one pool made 0.35-0.52 times the pairs they made in two pools in
 * tests/bench/peer-bench.py's row 2c). A fill passes over blocks that hold
 * another thread cache's records.
 */
static void test_page_blocks_apart(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 256 * MiB, .max_slots = 4 };
        struct heap_reap_report rr;
        static uint64_t live[2 * 1000];
        uint64_t rnd = 7;
        unsigned na, nb, shared;
        uint32_t s[2];

        heap *h = clients_new(&p, &t, s, 2);
        churn(h, s, 2, live, 1000, true, 0, 1, 1, &rnd);
        shared = regions_shared(h, HEAP_CACHE_PAGES, s[0], s[1], &na, &nb);
        CHECKF(shared == 0, "filled: %u of %u blocks hold pages of both clients", shared, na + nb - shared);

        CHECK(heap_cache_reap(h, HEAP_REAP_ALL, &rr) == 0);
        CHECK_EQ_U64(rr.held_pages, 0);
        churn(h, s, 2, live, 1000, false, 20000, 1, 1, &rnd);
        shared = regions_shared(h, HEAP_CACHE_PAGES, s[0], s[1], &na, &nb);
        printf("page blocks after a reap, two clients: %u blocks, %u of them shared, heap %" PRIu64 " chunks\n",
               na + nb - shared, shared, heap_nchunks(h));
        CHECKF(shared * 20 <= na + nb - shared, "%u of %u blocks hold pages of both clients", shared, na + nb - shared);
        check_heap(h, "page blocks, two clients");
        clients_free(&t, s, 2);
}

/*
 * The reaper: a thread that did nothing since the last reap gives back
 * everything and its cache becomes inactive; one that did gives back what
 * its lists kept unused since then; HEAP_REAP_ALL takes everything from
 * everyone; live allocations stay.
 */
static void test_reap(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 256 * MiB, .max_slots = 4 };
        struct heap_reap_report rr;
        uint64_t live, small[8];
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        CHECK(heap_alloc(h, s, 1, 0, &live) == 0);
        fill_lists(h, s, 0, 32, 64);
        for (unsigned i = 0; i < 8; i++)
                CHECK(heap_cache_alloc(h, s, 0, 3, 0, &small[i]) == 0);
        for (unsigned i = 0; i < 8; i++)
                CHECK(heap_free(h, s, 0, small[i]) == 0);
        CHECKF(inuse_pages(h) >= 1 + 32 * 64, "%" PRIu64 " pages in use", inuse_pages(h));
        check_heap(h, "lists full");

        /* The first reap finds the thread busy since it became active: only
         * what its lists kept unused since then goes (the low-water mark: none
         * here, they only grew), and its wholly free blocks but the current. */
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, &rr) == 0);
        CHECK_EQ_U64(rr.reaped, 1);
        CHECK(!rr.all);
        CHECKF(inuse_pages(h) >= 1 + 32 * 64, "busy thread's lists taken: %" PRIu64 " pages in use", inuse_pages(h));
        CHECK_EQ_U64(atomic_load(&tc(h, s, 0)->state), HEAP_TC_ACTIVE);
        check_heap(h, "after a trim");

        /* Idle since: everything back, the cache inactive. */
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, &rr) == 0);
        CHECK_EQ_U64(rr.reaped, 1);
        CHECK_EQ_U64(rr.held_pages, 0);
        CHECK_EQ_U64(inuse_pages(h), 1);
        CHECK_EQ_U64(atomic_load(&tc(h, s, 0)->state), HEAP_TC_INACTIVE);
        CHECK_EQ_U64(h->slots[s].tc_mask, 0);
        check_heap(h, "idle thread reaped");

        /* Nothing active: nothing asked, no barrier. */
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, &rr) == 0);
        CHECK_EQ_U64(rr.reaped + rr.deferred, 0);

        /* Its next operation activates it again. */
        fill_lists(h, s, 0, 8, 20);
        CHECK_EQ_U64(atomic_load(&tc(h, s, 0)->state), HEAP_TC_ACTIVE);
        CHECK(inuse_pages(h) >= 1 + 8 * 20);

        /* A busy thread keeps what it cycles through and gives back the rest. */
        fill_lists(h, s, 1, 16, 32);
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0); /* low-water marks start here */
        for (unsigned i = 0; i < 100; i++) {
                uint64_t x[4];
                for (unsigned j = 0; j < 4; j++)
                        CHECK(heap_cache_alloc(h, s, 1, 32, 0, &x[j]) == 0);
                for (unsigned j = 0; j < 4; j++)
                        CHECK(heap_free(h, s, 1, x[j]) == 0);
        }
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, &rr) == 0);
        CHECKF(tc(h, s, 1)->count[heap_mcache_class_of[32]] == 4, "%u blocks of 32 pages kept, want the 4 in use",
               tc(h, s, 1)->count[heap_mcache_class_of[32]]);
        CHECK_EQ_U64(atomic_load(&tc(h, s, 1)->state), HEAP_TC_ACTIVE);
        check_heap(h, "busy thread trimmed");

        /* Asked for everything (pressure): the busy one too. */
        CHECK(heap_cache_reap(h, HEAP_REAP_ALL, &rr) == 0);
        CHECK(rr.all);
        CHECK_EQ_U64(rr.held_pages, 0);
        CHECK_EQ_U64(inuse_pages(h), 1);
        check_heap(h, "everything reaped");

        /* Over the goal, a generation's reap takes everything too. */
        fill_lists(h, s, 2, 8, 64);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        heap_set_goal(h, PAGE);
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, &rr) == 0);
        CHECK(rr.all);
        CHECK_EQ_U64(inuse_pages(h), 1);
        check_heap(h, "over the goal");

        CHECK(heap_free(h, s, 0, live) == 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        check_heap(h, "end");
        heap_test_free(&t);
}

/*
 * An owner inside an operation is not touched: the reap is deferred, and
 * the owner does it at its next operation. (The owner is made to look
 * busy by its own bracket: seq odd is exactly what an operation shows.)
 */
static void test_reap_deferred(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct heap_reap_report rr;
        uint64_t x;
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        fill_lists(h, s, 0, 4, 16);
        struct heap_tcache *t0 = tc(h, s, 0);
        CHECK(heap_tc_enter(h, t0)); /* inside an operation */
        CHECK(heap_cache_reap(h, HEAP_REAP_ALL, &rr) == 0);
        CHECK_EQ_U64(rr.reaped, 0);
        CHECK_EQ_U64(rr.deferred, 1);
        CHECK_EQ_U64(atomic_load(&t0->state), HEAP_TC_REAP);
        CHECK(inuse_pages(h) >= 4 * 16);
        check_heap(h, "reap deferred");
        heap_tc_leave(t0);

        /* The owner's next operation finds the request and does it first. */
        CHECK(heap_cache_alloc(h, s, 0, 1, 0, &x) == 0);
        CHECK_EQ_U64(atomic_load(&t0->state), HEAP_TC_ACTIVE);
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                CHECK_EQ_U64(t0->count[k], 0);
        CHECK(inuse_pages(h) <= HEAP_CACHE_PAGES);
        check_heap(h, "owner reaped itself");
        CHECK(heap_free(h, s, 0, x) == 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/* An owner thread that never stops against a reaper that never stops: every
 * allocation stays its owner's, the data intact, the heap consistent. */
struct storm {
        heap *h;
        uint32_t slot, cache;
        atomic_bool stop;
        uint64_t ops, bad;
        uint64_t seed;
};

static void *owner_storm(void *arg) {
        struct storm *st = arg;
        uint8_t *base = heap_base(st->h);
        uint64_t offs[64] = {}, sizes[64] = {};
        uint64_t seed = st->seed;

        while (!atomic_load(&st->stop)) {
                unsigned k = (unsigned) (test_rnd(&seed) % 64);
                if (sizes[k]) {
                        /* Still ours: what we wrote is there. */
                        if (base[offs[k]] != (uint8_t) k || base[offs[k] + sizes[k] * PAGE - 1] != (uint8_t) k)
                                st->bad++;
                        if (heap_free(st->h, st->slot, st->cache, offs[k]) != 0)
                                st->bad++;
                        sizes[k] = 0;
                }
                uint64_t n = test_rnd(&seed) % 2 ? 1 + test_rnd(&seed) % 15 : 16 + test_rnd(&seed) % 113;
                if (heap_cache_alloc(st->h, st->slot, st->cache, n, 0, &offs[k]) != 0) {
                        st->bad++;
                        continue;
                }
                sizes[k] = (uint64_t) heap_alloc_size(st->h, offs[k]) / PAGE;
                base[offs[k]] = base[offs[k] + sizes[k] * PAGE - 1] = (uint8_t) k;
                st->ops++;
        }
        for (unsigned k = 0; k < 64; k++)
                if (sizes[k] && heap_free(st->h, st->slot, st->cache, offs[k]) != 0)
                        st->bad++;
        return NULL;
}

static void storm_against_reaper(bool fenced) {
        struct heap_test t;
        struct heap_params p = { .capacity = 512 * MiB, .max_slots = 4 };
        struct storm st[2] = {};
        pthread_t th[2];
        uint32_t s;
        unsigned reaps = 0, deferred = 0;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        h->tc_fenced = fenced; /* as a process that could not register for membarrier */
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        for (unsigned i = 0; i < 2; i++) {
                st[i] = (struct storm) { .h = h, .slot = s, .cache = i, .seed = 42 + i };
                CHECK(pthread_create(&th[i], NULL, owner_storm, &st[i]) == 0);
        }
        uint64_t until = st[0].ops + st[1].ops;
        for (unsigned i = 0; i < 2000 || st[0].ops + st[1].ops < until + 20000; i++) {
                struct heap_reap_report rr;
                CHECK(heap_cache_reap(h, i % 3 ? HEAP_REAP_GEN : HEAP_REAP_ALL, &rr) == 0);
                reaps += rr.reaped;
                deferred += rr.deferred;
                if (i % 100 == 0)
                        check_heap(h, "during the storm");
                if (i % 10 == 0)
                        sched_yield();
        }
        for (unsigned i = 0; i < 2; i++) {
                atomic_store(&st[i].stop, true);
                CHECK(pthread_join(th[i], NULL) == 0);
                CHECKF(st[i].bad == 0, "owner %u: %" PRIu64 " bad results in %" PRIu64 " operations", i, st[i].bad,
                       st[i].ops);
        }
        check_heap(h, "after the storm");
        /* Both owners idle now: two reaps give everything back. */
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0);
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        check_heap(h, "owners reaped");
        printf("storm%s: %" PRIu64 " + %" PRIu64 " owner operations, %u caches reaped, %u deferred\n",
               fenced ? " (fenced owners)" : "", st[0].ops, st[1].ops, reaps, deferred);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        heap_test_free(&t);
}

/* A client killed with full lists in several thread caches, and one killed
 * inside an operation: every page comes back with its slot. */
static void test_killed_with_full_lists(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 256 * MiB, .max_slots = 4 };
        uint64_t keep;
        uint32_t parent;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 1, 0, &parent) == 0);
        CHECK(heap_alloc(h, parent, 3, 0, &keep) == 0);
        for (unsigned inside = 0; inside < 2; inside++) {
                int pfd[2];
                CHECK(pipe(pfd) == 0);
                pid_t pid = fork();
                CHECK(pid >= 0);
                if (pid == 0) {
                        uint32_t s;
                        if (heap_slot_claim(h, (uint32_t) getpid(), 0, &s) < 0)
                                _exit(1);
                        for (uint32_t c = 0; c < 4; c++) {
                                fill_lists(h, s, c, 16, 16 + 8 * c);
                                uint64_t x;
                                if (heap_cache_alloc(h, s, c, 5, 0, &x) < 0) /* a live one, and a page cache */
                                        _exit(2);
                        }
                        if (inside)
                                heap_tc_enter(h, &h->slots[s].tc[1]);
                        if (write(pfd[1], &s, sizeof(s)) != sizeof(s))
                                _exit(3);
                        raise(SIGKILL);
                        _exit(4);
                }
                close(pfd[1]);
                uint32_t dead = UINT32_MAX;
                CHECK(read(pfd[0], &dead, sizeof(dead)) == sizeof(dead));
                close(pfd[0]);
                int status;
                CHECK(waitpid(pid, &status, 0) == pid);
                CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
                CHECKF(inuse_pages(h) > 3 + 4 * 16 * 16, "%" PRIu64 " pages in use", inuse_pages(h));
                check_heap(h, inside ? "killed inside an operation" : "killed with full lists");
                /* A reap leaves a dead owner's caches to reclaim (they may look busy). */
                CHECK(heap_cache_reap(h, HEAP_REAP_ALL, NULL) == 0);
                check_heap(h, "reaped a dead client's caches");
                CHECK(dead < 4);
                if (dead < 4)
                        CHECK(heap_slot_reclaim(h, dead) > 0);
                CHECK_EQ_U64(inuse_pages(h), 3);
                check_heap(h, "dead client reclaimed");
        }
        CHECK(heap_free(h, parent, 0, keep) == 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/*
 * Another thread's free of a list allocation while the cache that
 * allocated it is active: an orphan kept for that cache, refused as a live
 * allocation, taken into its lists at its owner's next miss (or at its next
 * operation once the orphan list is half full), given back by a reaper;
 * more orphans than the list holds are found by their records.
 */
static void test_orphans(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 256 * MiB, .max_slots = 4 };
        struct heap_reap_report rr;
        uint64_t a, b, x[100];
        uint32_t s, other;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &other) == 0);
        struct heap_tcache *t0 = tc(h, s, 0);

        /* Freed by another thread of the slot (cache 1), then by another client. */
        CHECK(heap_cache_alloc(h, s, 0, 24, 0, &a) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 24, 0, &b) == 0);
        CHECK(heap_free(h, s, 1, a) == 0);
        CHECK(heap_free(h, other, 0, b) == 0);
        CHECK(heap_free(h, s, 0, a) == -EINVAL);
        CHECK(heap_free(h, other, 1, b) == -EINVAL);
        CHECK(heap_alloc_size(h, a) == -EINVAL);
        CHECK((atomic_load(&h->records[a / PAGE]) & HEAP_REC_ORPHAN) != 0);
        CHECK_EQ_U64(t0->norphans, 2);
        check_heap(h, "two orphans");
        /* The owner's lists hold none of them: its next miss of the class takes them. */
        while (t0->count[heap_mcache_class_of[24]])
                CHECK(heap_cache_alloc(h, s, 0, 24, 0, &x[0]) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 24, 0, &x[1]) == 0);
        CHECK(x[1] == a || x[1] == b);
        CHECK_EQ_U64(t0->norphans, 0);
        check_heap(h, "orphans taken by their owner");
        CHECK(heap_free(h, s, 0, x[1]) == 0);

        /* Half the orphan list full: the owner's next operation takes them. */
        for (unsigned i = 0; i < HEAP_TC_ORPHANS / 2; i++)
                CHECK(heap_cache_alloc(h, s, 0, 16, 0, &x[i]) == 0);
        for (unsigned i = 0; i < HEAP_TC_ORPHANS / 2; i++)
                CHECK(heap_free(h, other, 0, x[i]) == 0);
        CHECK_EQ_U64(atomic_load(&t0->state), HEAP_TC_REAP);
        CHECK(heap_cache_alloc(h, s, 0, 1, 0, &a) == 0);
        CHECK_EQ_U64(atomic_load(&t0->state), HEAP_TC_ACTIVE);
        CHECK_EQ_U64(t0->norphans, 0);
        for (unsigned i = 0; i < HEAP_TC_ORPHANS / 2; i++) /* in its lists now (some borrowed a bigger class) */
                CHECK((atomic_load(&h->records[x[i] / PAGE]) & (HEAP_REC_CACHED | HEAP_REC_ORPHAN)) == HEAP_REC_CACHED);
        check_heap(h, "orphans taken at the owner's next operation");
        CHECK(heap_free(h, s, 0, a) == 0);

        /* The race both frees win: the owner's free read the record live, the
         * other's made it an orphan, then the owner's plain store of CACHED
         * lands over it and the owner pushes it (done here by hand, in that
         * order). The list holds it once; the orphan entry is stale. */
        CHECK(heap_cache_alloc(h, s, 0, 20, 0, &a) == 0);
        uint64_t live = atomic_load(&h->records[a / PAGE]);
        CHECK(heap_free(h, other, 0, a) == 0);
        CHECK(heap_tc_enter(h, t0));
        atomic_store(&h->records[a / PAGE], live | HEAP_REC_CACHED);
        uint64_t n = HEAP_REC_NPAGES(live); /* 20, or a class up it borrowed */
        unsigned k = heap_mcache_class_of[n];
        t0->page[k][t0->count[k]++] = (uint32_t) (a / PAGE);
        t0->pages += (uint32_t) n;
        heap_tc_leave(t0);
        check_heap(h, "both frees won");
        uint64_t before = inuse_pages(h);
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0); /* takes orphans: the stale one is dropped */
        CHECK(heap_cache_alloc(h, s, 0, 20, 0, &b) == 0);
        CHECK_EQ_U64(b, a);
        CHECK(heap_free(h, s, 0, b) == 0);
        CHECK(inuse_pages(h) <= before);
        check_heap(h, "the orphan entry dropped, the block handed out once");

        /* More than the orphan list holds while the owner is idle: a reaper
         * finds the rest by their records and gives them all back. */
        for (unsigned i = 0; i < 100; i++)
                CHECK(heap_cache_alloc(h, s, 2, 20, 0, &x[i]) == 0);
        for (unsigned i = 0; i < 100; i++)
                CHECK(heap_free(h, other, 0, x[i]) == 0);
        CHECK(tc(h, s, 2)->orphans_lost != 0);
        check_heap(h, "orphans lost");
        CHECK(heap_cache_reap(h, HEAP_REAP_ALL, &rr) == 0);
        CHECK_EQ_U64(tc(h, s, 2)->orphans_lost, 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        check_heap(h, "orphans reaped");

        CHECK(heap_slot_reclaim(h, other) >= 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        heap_test_free(&t);
}

/* heap_check names each broken thread-cache invariant, and passes again once repaired. */
static void test_check_detects(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        char buf[256];
        uint64_t a;
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        fill_lists(h, s, 0, 2, 16);
        CHECK(heap_cache_alloc(h, s, 0, 40, 0, &a) == 0);
        struct heap_tcache *t0 = tc(h, s, 0), *t3 = tc(h, s, 3);
        check_heap(h, "before");

        /* A CACHED record no list holds (a lost list entry). */
        uint64_t page = a / PAGE, rec = atomic_load(&h->records[page]);
        atomic_store(&h->records[page], rec | HEAP_REC_CACHED);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "in its lists") != NULL, "%s", buf);
        /* ... but not while an owner is inside an operation. */
        heap_tc_enter(h, t0);
        check_heap(h, "owner busy");
        heap_tc_leave(t0);
        atomic_store(&h->records[page], rec);
        check_heap(h, "record restored");

        /* A bad state. */
        atomic_store(&t3->state, 7);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        atomic_store(&t3->state, HEAP_TC_INACTIVE);
        /* An inactive cache that lists pages. */
        t3->count[2] = 1;
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "inactive") != NULL, "%s", buf);
        t3->count[2] = 0;
        /* An active cache the reaper cannot find. */
        h->slots[s].tc_mask &= ~UINT32_C(1);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "mask") != NULL, "%s", buf);
        h->slots[s].tc_mask |= 1;
        /* A list longer than a list can be. */
        t0->count[0] = HEAP_MCACHE_DEPTH + 1;
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        t0->count[0] = 2;
        check_heap(h, "repaired");

        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        CHECK_EQ_U64(inuse_pages(h), 0);
        heap_test_free(&t);
}

/*
 * A heap marked corrupt stops every thread cache's lock-free path, which
 * tests the cache's state rather than the flag: marked by the library
 * (heap_mark_corrupt), or by a client that wrote only the flag, at the
 * next heap_lock (here the daemon's check). A list pop, a list push and a
 * page from the page cache are refused, and the full paths say -EUCLEAN.
 */
static void corrupt_stops_caches(bool flag_alone) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct heap_tctx x0, x1;
        char buf[256];
        uint64_t a, one, off;
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        fill_lists(h, s, 0, 2, 16);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &a) == 0); /* live, a list's */
        CHECK(heap_cache_alloc(h, s, 1, 1, 0, &one) == 0); /* live, the page cache's */
        heap_tctx_init(h, s, 0, &x0);
        heap_tctx_init(h, s, 1, &x1);
        /* The fast paths serve before. */
        CHECK(heap_fast_alloc(&x0, 16, &off, false) == 0);
        CHECK(heap_fast_free(&x0, off, false) == 0);
        CHECK(heap_fast_alloc(&x1, 1, &off, false) == 0);
        CHECK(heap_fast_free(&x1, off, false) == 0);

        if (flag_alone) {
                atomic_store(&h->hdr->corrupt, 1);
                CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        } else {
                CHECK(heap_lock(h) == 0);
                heap_mark_corrupt(h);
                heap_unlock(h);
        }
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++)
                CHECKF(atomic_load(&tc(h, s, c)->state) == HEAP_TC_CORRUPT, "cache %u: state %u", c,
                       atomic_load(&tc(h, s, c)->state));
        CHECK(heap_fast_alloc(&x0, 16, &off, false) == HEAP_FAST_SLOW);
        CHECK(heap_fast_free(&x0, a, false) == HEAP_FAST_SLOW);
        CHECK(heap_fast_alloc(&x1, 1, &off, false) == HEAP_FAST_SLOW);
        CHECK(heap_fast_free(&x1, one, false) == HEAP_FAST_SLOW);
        CHECK(heap_cache_alloc(h, s, 0, 16, 0, &off) == -EUCLEAN);
        CHECK(heap_cache_alloc(h, s, 1, 1, 0, &off) == -EUCLEAN);
        CHECK(heap_free(h, s, 0, a) == -EUCLEAN);
        CHECK(heap_free(h, s, 1, one) == -EUCLEAN);
        heap_test_free(&t);
}

int main(void) {
        test_lifo();
        test_run_refill();
        test_run_lines();
        test_run_hint();
        test_run_region_fragmented();
        test_home_chunks();
        test_page_blocks_apart();
        test_reap();
        test_reap_deferred();
        storm_against_reaper(false);
        storm_against_reaper(true);
        test_killed_with_full_lists();
        test_check_detects();
        test_orphans();
        corrupt_stops_caches(false);
        corrupt_stops_caches(true);
        if (test_failures) {
                fprintf(stderr, "%d check(s) failed\n", test_failures);
                return 1;
        }
        printf("all checks passed\n");
        return 0;
}

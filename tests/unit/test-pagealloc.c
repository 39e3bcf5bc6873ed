/* SPDX-License-Identifier: MIT */
/*
 * Ports the page allocator's tables of mpagealloc_test.go (Go commit
 * d29f5247): TestPageAllocAlloc, TestPageAllocExhaust, TestPageAllocFree,
 * TestPageAllocAllocAndFree and TestPageAllocGrow.
 *
 * Chunk mapping: Go's tests place chunks at sparse indices (BaseChunkIdx +
 * n); our heap grows contiguously from offset 0. heap_test_new_sparse keeps
 * the listed chunks in order, adjacent ones adjacent, and turns every gap
 * into a single fully allocated separator chunk, which no free run can
 * cross (as none crosses unmapped memory in Go). Expected addresses are
 * written as Go writes them, {chunk offset n, page}, and translated.
 * Scavenged counts are in pages (Go's are bytes: pages x PageSize).
 *
 * TestPageAllocGrow checks Go's p.inUse address ranges. Our in-use space
 * is one range [0, heap_sys), but the scavenger keeps Go's addrRanges for
 * its search ranges; the table is run on those (heap_scav_ranges_add),
 * with the difference that ours hold at most HEAP_SCAV_RANGES ranges (a
 * search hint: further ones are dropped).
 */

#include <errno.h>
#include <string.h>

#include "../lib/test.h"
#include "heap/heap.h"
#include "heap/layout.h"
#include "heap/pagealloc.h"
#include "heap/scavenge.h"
#include "heap/testing.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define NONE (-1)
#define MAXC 8
#define MAXH 9

struct hit {
        uint64_t npages;
        int64_t chunk; /* Go's chunk offset, or NONE: the allocation fails */
        uint64_t page;
        uint64_t scav; /* pages */
};

struct alloc_test {
        const char *name;
        unsigned n;
        uint64_t idx[MAXC];
        heap_test_ranges before[MAXC], scav[MAXC], after[MAXC];
        struct hit hits[MAXH];
};

static const struct alloc_test alloc_tests[] = {
        { "AllFree1", 1, { 0 }, { {} }, { { { 0, 1 }, { 2, 2 } } }, { { { 0, 5 } } },
          { { 1, 0, 0, 1 }, { 1, 0, 1, 0 }, { 1, 0, 2, 1 }, { 1, 0, 3, 1 }, { 1, 0, 4, 0 } } },
        { "ManyArena1", 3, { 0, 1, 2 }, { { { 0, P } }, { { 0, P } }, { { 0, P - 1 } } },
          { { { 0, P } }, { { 0, P } }, { { 0, P } } }, { { { 0, P } }, { { 0, P } }, { { 0, P } } },
          { { 1, 2, P - 1, 1 } } },
        { "NotContiguous1", 2, { 0, 0xff }, { { { 0, P } }, { { 0, 0 } } }, { { { 0, P } }, { { 0, P } } },
          { { { 0, P } }, { { 0, 1 } } }, { { 1, 0xff, 0, 1 } } },
        { "AllFree2", 1, { 0 }, { {} }, { { { 0, 3 }, { 7, 1 } } }, { { { 0, 10 } } },
          { { 2, 0, 0, 2 }, { 2, 0, 2, 1 }, { 2, 0, 4, 0 }, { 2, 0, 6, 1 }, { 2, 0, 8, 0 } } },
        { "Straddle2", 2, { 0, 1 }, { { { 0, P - 1 } }, { { 1, P - 1 } } }, { { { P - 1, 1 } }, {} },
          { { { 0, P } }, { { 0, P } } }, { { 2, 0, P - 1, 1 } } },
        { "AllFree5", 1, { 0 }, { {} }, { { { 0, 8 }, { 9, 1 }, { 17, 5 } } }, { { { 0, 25 } } },
          { { 5, 0, 0, 5 }, { 5, 0, 5, 4 }, { 5, 0, 10, 0 }, { 5, 0, 15, 3 }, { 5, 0, 20, 2 } } },
        { "AllFree64", 1, { 0 }, { {} }, { { { 21, 1 }, { 63, 65 } } }, { { { 0, 192 } } },
          { { 64, 0, 0, 2 }, { 64, 0, 64, 64 }, { 64, 0, 128, 0 } } },
        { "AllFree65", 1, { 0 }, { {} }, { { { 129, 1 } } }, { { { 0, 195 } } },
          { { 65, 0, 0, 0 }, { 65, 0, 65, 1 }, { 65, 0, 130, 0 } } },
        { "ExhaustPallocChunkPages-3", 1, { 0 }, { {} }, { { { 10, 1 } } }, { { { 0, P } } },
          { { P - 3, 0, 0, 1 }, { P - 3, NONE, 0, 0 }, { 1, 0, P - 3, 0 }, { 2, 0, P - 2, 0 }, { 1, NONE, 0, 0 },
            { P - 3, NONE, 0, 0 } } },
        { "AllFreePallocChunkPages", 1, { 0 }, { {} }, { { { 0, 1 }, { P - 1, 1 } } }, { { { 0, P } } },
          { { P, 0, 0, 2 }, { P, NONE, 0, 0 }, { 1, NONE, 0, 0 } } },
        { "StraddlePallocChunkPages", 2, { 0, 1 }, { { { 0, P / 2 } }, { { P / 2, P / 2 } } },
          { {}, { { 3, 100 } } }, { { { 0, P } }, { { 0, P } } },
          { { P, 0, P / 2, 100 }, { P, NONE, 0, 0 }, { 1, NONE, 0, 0 } } },
        { "StraddlePallocChunkPages+1", 2, { 0, 1 }, { { { 0, P / 2 } }, {} }, { { { 0, P } }, { { 0, P } } },
          { { { 0, P } }, { { 0, P / 2 + 2 } } },
          { { P + 1, 0, P / 2, P + 1 }, { P, NONE, 0, 0 }, { 1, 1, P / 2 + 1, 1 } } },
        { "AllFreePallocChunkPages*2", 2, { 0, 1 }, { {}, {} }, { {}, {} }, { { { 0, P } }, { { 0, P } } },
          { { P * 2, 0, 0, 0 }, { P * 2, NONE, 0, 0 }, { 1, NONE, 0, 0 } } },
        { "NotContiguousPallocChunkPages*2", 3, { 0, 0x40, 0x41 }, { {}, {}, {} }, { { { 0, P } }, {}, {} },
          { { { 0, 22 } }, { { 0, P } }, { { 0, P } } },
          { { P * 2, 0x40, 0, 0 }, { 21, 0, 0, 21 }, { 1, 0, 21, 1 } } },
        { "StraddlePallocChunkPages*2", 3, { 0, 1, 2 }, { { { 0, P / 2 } }, {}, { { P / 2, P / 2 } } },
          { { { 0, 7 } }, { { 3, 5 }, { 121, 10 } }, { { P / 2 + 12, 2 } } },
          { { { 0, P } }, { { 0, P } }, { { 0, P } } },
          { { P * 2, 0, P / 2, 15 }, { P * 2, NONE, 0, 0 }, { 1, NONE, 0, 0 } } },
        { "StraddlePallocChunkPages*5/4", 4, { 0, 1, 2, 3 },
          { { { 0, P } }, { { 0, P * 3 / 4 } }, { { 0, P * 3 / 4 } }, { { 0, 0 } } },
          { { { 0, P } }, { { P / 2, P / 4 + 1 } }, { { P / 3, 1 } }, { { P * 2 / 3, 1 } } },
          { { { 0, P } }, { { 0, P * 3 / 4 + 1 } }, { { 0, P } }, { { 0, P } } },
          { { P * 5 / 4, 2, P * 3 / 4, 1 }, { P * 5 / 4, NONE, 0, 0 }, { 1, 1, P * 3 / 4, 1 } } },
        { "AllFreePallocChunkPages*7+5", 8, { 0, 1, 2, 3, 4, 5, 6, 7 }, { {}, {}, {}, {}, {}, {}, {}, {} },
          { { { 50, 1 } }, { { 31, 1 } }, { { 7, 1 } }, { { 200, 1 } }, { { 3, 1 } }, { { 51, 1 } }, { { 20, 1 } },
            { { 1, 1 } } },
          { { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } },
            { { 0, 6 } } },
          { { P * 7 + 5, 0, 0, 8 }, { P * 7 + 5, NONE, 0, 0 }, { 1, 7, 5, 0 } } },
        /* sumsPerPhysPage = 4096 / 8 in Go; chunkIdxBigJump = 0x100000. */
        { "DiscontiguousMappedSumBoundary", 2, { 511, 0x100000 }, { {}, {} }, { {}, {} },
          { { { 0, P } }, { { 0, P } } },
          { { P - 1, 511, 0, 0 }, { 1, 511, P - 1, 0 }, { 1, 0x100000, 0, 0 }, { P - 1, 0x100000, 1, 0 },
            { 1, NONE, 0, 0 } } },
        { "DiscontiguousBadSearchAddr", 3, { 0, 0x100000 + 0x503, 0x200000 },
          { { { 0, P - 1 } }, { { 0, P - 10 }, { P - 1, 1 } }, {} }, { {}, {}, {} },
          { { { 0, P } }, { { 0, P } }, { { 0, 100 } } },
          { { 1, 0, P - 1, 0 }, { 100, 0x200000, 0, 0 }, { 9, 0x100000 + 0x503, P - 10, 0 } } },
};

static const struct heap_params params = { .capacity = 1, .max_slots = 2 };

static void run_alloc_tests(void) {
        for (size_t t = 0; t < ELEMENTSOF(alloc_tests); t++) {
                const struct alloc_test *v = &alloc_tests[t];
                struct heap_test ht;
                uint64_t map[MAXC];
                char buf[256] = "";
                int r = heap_test_new_sparse(&params, v->n, v->idx, v->before, v->scav, &ht, map);
                CHECKF(r == 0, "%s: setup: %d", v->name, r);
                if (r < 0)
                        continue;
                for (unsigned k = 0; k < MAXH && v->hits[k].npages; k++) {
                        const struct hit *hi = &v->hits[k];
                        uint64_t page = 0, scav = 0;
                        r = heap_test_pa_alloc(ht.h, hi->npages, &page, &scav);
                        if (hi->chunk == NONE) {
                                CHECKF(r == 0, "%s: alloc #%u of %" PRIu64 ": got page %" PRIu64 ", want failure",
                                       v->name, k + 1, hi->npages, page);
                                continue;
                        }
                        uint64_t want = heap_test_page(v->n, v->idx, map, (uint64_t) hi->chunk, hi->page);
                        CHECKF(r == 1 && page == want, "%s: bad alloc #%u: got %d/page %" PRIu64 ", want page %" PRIu64,
                               v->name, k + 1, r, page, want);
                        CHECKF(scav == hi->scav, "%s: bad alloc #%u: got scav %" PRIu64 ", want %" PRIu64, v->name,
                               k + 1, scav, hi->scav);
                }
                r = heap_test_expect_sparse(ht.h, v->n, map, v->after, v->scav, buf, sizeof(buf));
                CHECKF(r == 0, "%s: %s", v->name, buf);
                heap_test_free(&ht);
        }
}

static void run_exhaust_tests(void) {
        static const uint64_t sizes[] = { 1, 2, 3, 4, 5, 8, 16, 64, 1024, 1025, 2048, 2049 };
        static const uint64_t idx[4] = { 0, 1, 2, 3 };
        for (size_t t = 0; t < ELEMENTSOF(sizes); t++) {
                uint64_t npages = sizes[t];
                struct heap_test ht;
                uint64_t map[4];
                heap_test_ranges none[4] = {};
                char buf[256] = "";
                int r = heap_test_new_sparse(&params, 4, idx, none, NULL, &ht, map);
                CHECKF(r == 0, "Exhaust/%" PRIu64 ": setup: %d", npages, r);
                if (r < 0)
                        continue;
                uint64_t nalloc = P * 4 / npages;
                for (uint64_t i = 0; i < nalloc; i++) {
                        uint64_t page = 0, scav;
                        r = heap_test_pa_alloc(ht.h, npages, &page, &scav);
                        if (r != 1 || page != i * npages) {
                                CHECKF(0, "Exhaust/%" PRIu64 ": bad alloc #%" PRIu64 ": got %d/page %" PRIu64 ", want %" PRIu64,
                                       npages, i + 1, r, page, i * npages);
                                break;
                        }
                }
                uint64_t page, scav;
                CHECKF(heap_test_pa_alloc(ht.h, npages, &page, &scav) == 0, "Exhaust/%" PRIu64 ": last alloc did not fail",
                       npages);

                heap_test_ranges want[4] = {};
                uint64_t left = nalloc * npages;
                for (unsigned i = 0; i < 4; i++) {
                        uint64_t n = MIN(left, (uint64_t) P);
                        want[i][0] = (struct heap_bit_range) { 0, (uint32_t) n };
                        left -= n;
                }
                r = heap_test_expect_sparse(ht.h, 4, map, want, NULL, buf, sizeof(buf));
                CHECKF(r == 0, "Exhaust/%" PRIu64 ": %s", npages, buf);
                heap_test_free(&ht);
        }
}

struct free_test {
        const char *name;
        unsigned n;
        uint64_t idx[MAXC];
        heap_test_ranges before[MAXC], after[MAXC];
        uint64_t npages;
        struct {
                uint64_t chunk, page;
        } frees[6];
        unsigned nfrees;
};

static const struct free_test free_tests[] = {
        { "Free1", 1, { 0 }, { { { 0, P } } }, { { { 5, P - 5 } } }, 1,
          { { 0, 0 }, { 0, 1 }, { 0, 2 }, { 0, 3 }, { 0, 4 } }, 5 },
        { "ManyArena1", 3, { 0, 1, 2 }, { { { 0, P } }, { { 0, P } }, { { 0, P } } },
          { { { 0, P / 2 }, { P / 2 + 1, P / 2 - 1 } }, { { 1, P - 1 } }, { { 0, P - 1 } } }, 1,
          { { 0, P / 2 }, { 1, 0 }, { 2, P - 1 } }, 3 },
        { "Free2", 1, { 0 }, { { { 0, P } } }, { { { 10, P - 10 } } }, 2,
          { { 0, 0 }, { 0, 2 }, { 0, 4 }, { 0, 6 }, { 0, 8 } }, 5 },
        { "Straddle2", 2, { 0, 1 }, { { { P - 1, 1 } }, { { 0, 1 } } }, { {}, {} }, 2, { { 0, P - 1 } }, 1 },
        { "Free5", 1, { 0 }, { { { 0, P } } }, { { { 25, P - 25 } } }, 5,
          { { 0, 0 }, { 0, 5 }, { 0, 10 }, { 0, 15 }, { 0, 20 } }, 5 },
        { "Free64", 1, { 0 }, { { { 0, P } } }, { { { 192, P - 192 } } }, 64, { { 0, 0 }, { 0, 64 }, { 0, 128 } }, 3 },
        { "Free65", 1, { 0 }, { { { 0, P } } }, { { { 195, P - 195 } } }, 65, { { 0, 0 }, { 0, 65 }, { 0, 130 } }, 3 },
        { "FreePallocChunkPages", 1, { 0 }, { { { 0, P } } }, { {} }, P, { { 0, 0 } }, 1 },
        { "StraddlePallocChunkPages", 2, { 0, 1 }, { { { P / 2, P / 2 } }, { { 0, P / 2 } } }, { {}, {} }, P,
          { { 0, P / 2 } }, 1 },
        { "StraddlePallocChunkPages+1", 2, { 0, 1 }, { { { 0, P } }, { { 0, P } } },
          { { { 0, P / 2 } }, { { P / 2 + 1, P / 2 - 1 } } }, P + 1, { { 0, P / 2 } }, 1 },
        { "FreePallocChunkPages*2", 2, { 0, 1 }, { { { 0, P } }, { { 0, P } } }, { {}, {} }, P * 2, { { 0, 0 } }, 1 },
        { "StraddlePallocChunkPages*2", 3, { 0, 1, 2 }, { { { 0, P } }, { { 0, P } }, { { 0, P } } },
          { { { 0, P / 2 } }, {}, { { P / 2, P / 2 } } }, P * 2, { { 0, P / 2 } }, 1 },
        { "AllFreePallocChunkPages*7+5", 8, { 0, 1, 2, 3, 4, 5, 6, 7 },
          { { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } }, { { 0, P } },
            { { 0, P } } },
          { {}, {}, {}, {}, {}, {}, {}, { { 5, P - 5 } } }, P * 7 + 5, { { 0, 0 } }, 1 },
};

static void run_free_tests(void) {
        for (size_t t = 0; t < ELEMENTSOF(free_tests); t++) {
                const struct free_test *v = &free_tests[t];
                struct heap_test ht;
                uint64_t map[MAXC];
                char buf[256] = "";
                int r = heap_test_new_sparse(&params, v->n, v->idx, v->before, NULL, &ht, map);
                CHECKF(r == 0, "%s: setup: %d", v->name, r);
                if (r < 0)
                        continue;
                for (unsigned k = 0; k < v->nfrees; k++)
                        heap_test_pa_free(ht.h, heap_test_page(v->n, v->idx, map, v->frees[k].chunk, v->frees[k].page),
                                          v->npages);
                r = heap_test_expect_sparse(ht.h, v->n, map, v->after, NULL, buf, sizeof(buf));
                CHECKF(r == 0, "%s: %s", v->name, buf);
                heap_test_free(&ht);
        }
}

static void run_alloc_and_free(void) {
        static const uint64_t idx[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
        static const struct {
                bool alloc;
                uint64_t npages, page;
        } hits[] = {
                { true, P * 8, 0 }, { false, P * 8, 0 }, { true, P * 8, 0 }, { false, P * 8, 0 }, { true, P * 8, 0 },
                { false, P * 8, 0 }, { true, 1, 0 },     { false, 1, 0 },    { true, P * 8, 0 },
        };
        struct heap_test ht;
        uint64_t map[8];
        heap_test_ranges none[8] = {};
        int r = heap_test_new_sparse(&params, 8, idx, none, NULL, &ht, map);
        CHECKF(r == 0, "Chunks8: setup: %d", r);
        if (r < 0)
                return;
        for (size_t k = 0; k < ELEMENTSOF(hits); k++) {
                if (hits[k].alloc) {
                        uint64_t page = UINT64_MAX, scav;
                        r = heap_test_pa_alloc(ht.h, hits[k].npages, &page, &scav);
                        CHECKF(r == 1 && page == hits[k].page, "Chunks8: bad alloc #%zu: got %d/page %" PRIu64, k + 1, r,
                               page);
                } else
                        heap_test_pa_free(ht.h, hits[k].page, hits[k].npages);
        }
        heap_test_free(&ht);
}

/* TestPageAllocGrow, on the scavenger's addrRanges (see the top of the file). */
static void run_grow_tests(void) {
        struct grow_test {
                const char *name;
                unsigned n;
                uint64_t chunks[40];
                unsigned nranges;
                uint64_t want[40][2]; /* chunk offsets: [base, limit) */
        };
        static struct grow_test tests[] = {
                { "One", 1, { 0 }, 1, { { 0, 1 } } },
                { "Contiguous2", 2, { 0, 1 }, 1, { { 0, 2 } } },
                { "Contiguous5", 5, { 0, 1, 2, 3, 4 }, 1, { { 0, 5 } } },
                { "Discontiguous", 3, { 0, 2, 4 }, 3, { { 0, 1 }, { 2, 3 }, { 4, 5 } } },
                { "Mixed", 4, { 0, 1, 2, 4 }, 2, { { 0, 3 }, { 4, 5 } } },
                { "WildlyDiscontiguous", 4, { 0, 1, 0x10, 0x21 }, 3, { { 0, 2 }, { 0x10, 0x11 }, { 0x21, 0x22 } } },
                { "ManyDiscontiguous", 33, {}, 33, {} },
                { "ExtremelyDiscontiguous", 2, { 0, 0x100000 }, 2, { { 0, 1 }, { 0x100000, 0x100001 } } },
        };
        struct grow_test *many = &tests[6];
        for (unsigned i = 0; i < 33; i++) {
                many->chunks[i] = 2 * i;
                many->want[i][0] = 2 * i;
                many->want[i][1] = 2 * i + 1;
        }
        const uint64_t cb = (uint64_t) 4096 * P;
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                const struct grow_test *v = &tests[t];
                struct heap_hdr hd = {};
                /* Go grows chunk by chunk in map order; addition order must not matter: add in reverse too. */
                for (int pass = 0; pass < 2; pass++) {
                        hd.nranges = 0;
                        for (unsigned k = 0; k < v->n; k++) {
                                unsigned c = pass ? v->n - 1 - k : k;
                                heap_scav_ranges_add(&hd, v->chunks[c] * cb, (v->chunks[c] + 1) * cb);
                        }
                        unsigned want_n = MIN(v->nranges, HEAP_SCAV_RANGES);
                        CHECKF(hd.nranges == want_n, "%s: got %u ranges, want %u", v->name, hd.nranges, want_n);
                        for (unsigned i = 0; pass == 0 && i < MIN(hd.nranges, want_n); i++)
                                CHECKF(hd.ranges[i][0] == v->want[i][0] * cb && hd.ranges[i][1] == v->want[i][1] * cb,
                                       "%s: range #%u: got [%#" PRIx64 ", %#" PRIx64 "), want [%#" PRIx64 ", %#" PRIx64 ")",
                                       v->name, i, hd.ranges[i][0], hd.ranges[i][1], v->want[i][0] * cb,
                                       v->want[i][1] * cb);
                }
        }

        /* Our own growth: chunks join free and scavenged, and a generation covers them all. */
        struct heap_test ht;
        struct heap_params p = { .capacity = 16 * cb };
        CHECK(heap_test_new(&p, &ht) == 0);
        for (uint64_t n = 1; n <= 16; n += 5) {
                CHECK(heap_test_grow(ht.h, n) == 0);
                CHECK(heap_scavenge_start_gen(ht.h, NULL) == 0);
                struct heap_hdr *hd = heap_test_hdr(ht.h);
                CHECK(hd->nranges == 1 && hd->ranges[0][0] == 0 && hd->ranges[0][1] == n * cb);
                struct heap_stats st;
                CHECK(heap_get_stats(ht.h, &st) == 0);
                CHECK_EQ_U64(st.heap_sys, n * cb);
                CHECK_EQ_U64(st.released, n * cb);
                char buf[256] = "";
                CHECKF(heap_check(ht.h, buf, sizeof(buf)) == 0, "grow %" PRIu64 ": %s", n, buf);
        }
        CHECK(heap_test_grow(ht.h, 17) == -ENOMEM);
        heap_test_free(&ht);
}

/* Not in Go: the first wholly free aligned block or chunk from a page on,
 * within a number of chunks (what clients take to keep apart). */
static void run_free_aligned_tests(void) {
        struct heap_test ht;
        struct heap_params p = { .capacity = 4 * (uint64_t) P * 4096, .max_slots = 2 };
        uint64_t off;
        uint32_t s;

        CHECK(heap_test_new(&p, &ht) == 0);
        heap *h = ht.h;
        CHECK(heap_test_grow(h, 3) == 0);
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        CHECK(heap_alloc(h, s, 1, 0, &off) == 0); /* page 0 */
        CHECK(heap_lock(h) == 0);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 0, 64, 8), 64);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 0, P, 8), P);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 100, 64, 8), 64);    /* from page 100's chunk on */
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, P + 5, 64, 8), P);   /* from the second chunk on */
        heap_unlock(h);
        CHECK(heap_alloc(h, s, 600, 0, &off) == 0); /* pages 1-600: into the second chunk */
        CHECK(heap_lock(h) == 0);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 0, 64, 8), 640);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 0, P, 8), 2 * P);
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 0, P, 2), HEAP_PAGE_NONE);  /* only chunks 0 and 1 looked at */
        CHECK_EQ_U64(heap_pa_find_free_aligned(h, 3 * P, 64, 8), HEAP_PAGE_NONE); /* past the grown heap */
        heap_unlock(h);
        heap_test_free(&ht);
}

int main(void) {
        run_free_aligned_tests();
        run_alloc_tests();
        run_exhaust_tests();
        run_free_tests();
        run_alloc_and_free();
        run_grow_tests();
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * scavengeReserve / scavengeUnreserve and the freeHWM / scavLWM choice of
 * scavengeStartGen, across generations (mgcscavenge.go at Go commit
 * d29f5247; Go has no table for these, so the cases follow the seed's
 * comments): reservations come from the top, are reservation_bytes =
 * alignUp(heap, chunk) / shards long with a chunk-aligned base, go back
 * only within their generation, and a generation starts at freeHWM when
 * something was freed above the lowest address scavenged, else at scavLWM.
 */

#include <string.h>

#include "../lib/test.h"
#include "heap/layout.h"
#include "heap/scavenge.h"
#include "heap/testing.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define PS UINT64_C(4096)
#define CB (PS * P)

static void check_heap(heap *h, const char *step) {
        char buf[256] = "";
        CHECKF(heap_check(h, buf, sizeof(buf)) == 0, "%s: %s", step, buf);
}

static void expect_ranges(heap *h, const char *step, unsigned n, const uint64_t (*want)[2]) {
        struct heap_hdr *hd = heap_test_hdr(h);
        CHECKF(hd->nranges == n, "%s: %u ranges, want %u", step, hd->nranges, n);
        for (unsigned i = 0; i < MIN(n, hd->nranges); i++)
                CHECKF(hd->ranges[i][0] == want[i][0] && hd->ranges[i][1] == want[i][1],
                       "%s: range #%u is [%#" PRIx64 ", %#" PRIx64 "), want [%#" PRIx64 ", %#" PRIx64 ")", step, i,
                       hd->ranges[i][0], hd->ranges[i][1], want[i][0], want[i][1]);
}

static void expect_reserve(heap *h, const char *step, uint64_t base, uint64_t limit, uint64_t gen) {
        uint64_t b, l, g;
        CHECK(heap_scavenge_reserve(h, &b, &l, &g) == 0);
        CHECKF(b == base && l == limit && g == gen,
               "%s: reserved [%#" PRIx64 ", %#" PRIx64 ") gen %" PRIu64 ", want [%#" PRIx64 ", %#" PRIx64 ") gen %" PRIu64,
               step, b, l, g, base, limit, gen);
}

static void test_reserve(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * CB, .reservation_shards = 4 };
        uint32_t s;
        uint64_t a;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 1, 1, &s) == 0);

        /* Before any generation there is nothing to reserve. */
        expect_reserve(h, "no generation", 0, 0, 0);

        CHECK(heap_alloc(h, s, 8 * P, 0, &a) == 0);
        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        CHECK_EQ_U64(heap_test_hdr(h)->reservation_bytes, 2 * CB);
        expect_ranges(h, "gen 1", 1, (const uint64_t[][2]) { { 0, 8 * CB } });

        expect_reserve(h, "first", 6 * CB, 8 * CB, 1);
        expect_reserve(h, "second", 4 * CB, 6 * CB, 1);
        expect_ranges(h, "after two", 1, (const uint64_t[][2]) { { 0, 4 * CB } });
        heap_scavenge_unreserve(h, 4 * CB, 6 * CB, 1);
        expect_ranges(h, "unreserved", 1, (const uint64_t[][2]) { { 0, 6 * CB } });
        /* Another generation's reservation does not come back. */
        heap_scavenge_unreserve(h, 6 * CB, 8 * CB, 0);
        expect_ranges(h, "stale unreserve", 1, (const uint64_t[][2]) { { 0, 6 * CB } });
        /* A hole between two unreserved ranges stays one: ranges are kept merged and sorted. */
        expect_reserve(h, "third", 4 * CB, 6 * CB, 1);
        expect_reserve(h, "fourth", 2 * CB, 4 * CB, 1);
        heap_scavenge_unreserve(h, 4 * CB, 6 * CB, 1);
        expect_ranges(h, "split", 2, (const uint64_t[][2]) { { 0, 2 * CB }, { 4 * CB, 6 * CB } });
        heap_scavenge_unreserve(h, 2 * CB, 4 * CB, 1);
        expect_ranges(h, "merged", 1, (const uint64_t[][2]) { { 0, 6 * CB } });

        /* An unaligned top (a generation started mid-chunk) is reserved down to a chunk boundary. */
        struct heap_hdr *hd = heap_test_hdr(h);
        hd->ranges[0][1] = 5 * CB + 7 * PS;
        hd->reservation_bytes = PS;
        expect_reserve(h, "unaligned", 5 * CB, 5 * CB + 7 * PS, 1);
        expect_ranges(h, "after unaligned", 1, (const uint64_t[][2]) { { 0, 5 * CB } });
        hd->reservation_bytes = 2 * CB;

        /* heap_scavenge gives back what it did not search. */
        CHECK(heap_scavenge(h, 0, 64 * 1024) == 64 * 1024);
        expect_ranges(h, "after a quantum", 1, (const uint64_t[][2]) { { 0, 5 * CB - 64 * 1024 } });
        CHECK_EQ_U64(hd->scav_lwm, 5 * CB - 64 * 1024);
        check_heap(h, "reserve");

        /* Exhausting the generation leaves nothing to reserve, until the next one. */
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == (int64_t) (5 * CB - 64 * 1024));
        expect_reserve(h, "exhausted", 0, 0, 1);
        struct heap_gen_report rep;
        CHECK(heap_scavenge_start_gen(h, &rep) == 0);
        CHECK_EQ_U64(rep.gen, 1);
        CHECK_EQ_U64(rep.released, 5 * CB);
        CHECK_EQ_U64(hd->gen, 2);
        CHECK_EQ_U64(atomic_load(&hd->gen_released), 0);
        heap_test_free(&t);
}

static void test_watermarks(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * CB };
        struct heap_hdr *hd;
        uint32_t s;
        uint64_t a, b, e;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        hd = heap_test_hdr(h);
        CHECK(heap_slot_claim(h, 1, 1, &s) == 0);

        CHECK(heap_alloc(h, s, 7 * P, 0, &a) == 0);
        CHECK(heap_alloc(h, s, 10, 0, &b) == 0);
        CHECK_EQ_U64(b, 7 * CB);
        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK_EQ_U64(hd->free_hwm, 7 * CB - 1);

        /* gen 1 searches everything; scavenging all leaves scavLWM at the bottom. The
         * tail of chunk 7 was never used: still released since growth. */
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        CHECK_EQ_U64(hd->free_hwm, 0);
        CHECK_EQ_U64(hd->scav_lwm, UINT64_MAX);
        expect_ranges(h, "gen 1", 1, (const uint64_t[][2]) { { 0, 8 * CB } });
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == (int64_t) (7 * CB));
        CHECK_EQ_U64(hd->scav_lwm, 0);
        check_heap(h, "gen 1");

        /* gen 2: nothing freed, so it continues from scavLWM: nothing left to search. */
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        expect_ranges(h, "gen 2", 0, NULL);
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == 0);

        /* gen 3: scavLWM was never set in gen 2, so the whole heap again. */
        CHECK(heap_free(h, s, 0, b) == 0);
        CHECK_EQ_U64(hd->free_hwm, 7 * CB + 10 * PS - 1);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        expect_ranges(h, "gen 3", 1, (const uint64_t[][2]) { { 0, 8 * CB } });
        /* Only b's pages are unscavenged: scavLWM goes to b. */
        CHECK(heap_scavenge(h, 0, 64 * 1024) == (int64_t) (10 * PS));
        CHECK_EQ_U64(hd->scav_lwm, 7 * CB);
        /* A free above scavLWM: the next generation must start at freeHWM to see it. */
        CHECK(heap_alloc(h, s, 7 * P + 10, 0, &e) == 0);
        CHECK_EQ_U64(e, 0);
        CHECK(heap_free(h, s, 0, e) == 0);
        CHECK_EQ_U64(hd->free_hwm, 7 * CB + 10 * PS - 1);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        expect_ranges(h, "gen 4 (freeHWM)", 1, (const uint64_t[][2]) { { 0, 7 * CB + 10 * PS - 1 } });

        /* gen 4 scavenges a quantum from the top and frees nothing: gen 5 starts at scavLWM. */
        CHECK(heap_scavenge(h, 0, 64 * 1024) == 64 * 1024);
        CHECK_EQ_U64(hd->scav_lwm, 7 * CB + 10 * PS - 64 * 1024);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        expect_ranges(h, "gen 5 (scavLWM)", 1, (const uint64_t[][2]) { { 0, 7 * CB + 10 * PS - 64 * 1024 } });
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == (int64_t) (7 * CB + 10 * PS - 64 * 1024));
        struct heap_stats st;
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.released, 8 * CB);
        CHECK_EQ_U64(st.retained, 0);
        check_heap(h, "gen 5");
        heap_test_free(&t);
}

int main(void) {
        test_reserve();
        test_watermarks();
        return TEST_END();
}

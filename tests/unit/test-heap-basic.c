/* SPDX-License-Identifier: MIT */
/*
 * The heap core end to end on one process: layout and attach, slots, the
 * locked and cached allocation paths with their records, growth and
 * capacity, zeroing, KEEP and reclaim, scavenging with real punch-holes
 * (st_blocks), and heap_check after every step.
 */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "heap/heap.h"
#include "heap/layout.h"
#include "heap/mcache.h"
#include "heap/testing.h"
#include "../lib/test.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define MiB (UINT64_C(1) << 20)

static void check_heap(heap *h, const char *step) {
        char buf[256] = "";
        int r = heap_check(h, buf, sizeof(buf));
        CHECKF(r == 0, "%s: heap_check: %s", step, buf);
}

static uint64_t blocks_bytes(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return UINT64_MAX;
        return (uint64_t) st.st_blocks * 512;
}

static void test_layout(void) {
        struct heap_params p = { .capacity = UINT64_C(1) << 40 };
        uint64_t sz;
        CHECK(heap_meta_size(&p, &sz) == 0);
        /* 1 TiB: records are 8 bytes per 4 KiB page, the share map 4, the rest is small. */
        CHECKF(sz < (UINT64_C(1) << 40) / 4096 * 12 + 128 * MiB, "meta size %" PRIu64, sz);

        struct heap_params bad = { .capacity = 0 };
        CHECK(heap_meta_size(&bad, &sz) == -EINVAL);
        bad = (struct heap_params) { .capacity = MiB, .page_size = 1000 };
        CHECK(heap_meta_size(&bad, &sz) == -EINVAL);

        struct heap_test t;
        p = (struct heap_params) { .capacity = 16 * MiB, .max_slots = 4 };
        CHECK(heap_test_new(&p, &t) == 0);
        CHECK_EQ_U64(heap_capacity(t.h), 16 * MiB);
        CHECK_EQ_U64(heap_page_size(t.h), 4096);
        CHECK_EQ_U64(heap_max_slots(t.h), 4);

        heap *h2;
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, t.heap_fd, &h2) == 0);
        heap_detach(h2);
        CHECK(heap_attach(t.meta, t.meta_size - 4096, t.base, t.capacity, t.heap_fd, &h2) == -EBADMSG);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity - 4096, t.heap_fd, &h2) == -EBADMSG);
        struct heap_hdr *hd = t.meta;
        hd->version++;
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, t.heap_fd, &h2) == -EPROTO);
        hd->version--;
        hd->records_off += 4096;
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, t.heap_fd, &h2) == -EBADMSG);
        hd->records_off -= 4096;
        hd->magic ^= 1;
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, t.heap_fd, &h2) == -EBADMSG);
        hd->magic ^= 1;
        heap_test_free(&t);
}

static void test_alloc_free(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB, .max_slots = 4 };
        struct heap_stats st;
        uint32_t slot;
        uint64_t a, b, c;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 1000, &slot) == 0);
        CHECK(slot == 1);
        check_heap(h, "empty");

        CHECK(heap_alloc(h, slot, 0, 0, &a) == -EINVAL);
        CHECK(heap_alloc(h, slot, 1, 0x80, &a) == -EINVAL);
        CHECK(heap_alloc(h, 99, 1, 0, &a) == -EINVAL);

        CHECK(heap_alloc(h, slot, 3, 0, &a) == 0);
        CHECK_EQ_U64(a, 0);
        CHECK(heap_alloc(h, slot, 600, 0, &b) == 0);
        CHECK_EQ_U64(b, 3 * 4096);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.heap_sys, 4 * MiB); /* 603 pages: two chunks */
        CHECK_EQ_U64(st.inuse, 603 * 4096);
        CHECK_EQ_U64(st.released, 4 * MiB - 603 * 4096);
        CHECK_EQ_U64(heap_alloc_size(h, b), 600 * 4096);
        CHECK(heap_alloc_size(h, b + 4096) == -EINVAL);
        check_heap(h, "two allocations");

        /* Bad frees change nothing. */
        CHECK(heap_free(h, slot, 0, b + 4096) == -EINVAL);
        CHECK(heap_free(h, slot, 0, b + 1) == -EINVAL);
        CHECK(heap_free(h, slot, 0, 7 * MiB) == -EINVAL);
        CHECK(heap_free(h, slot, 0, a) == 0);
        CHECK(heap_free(h, slot, 0, a) == -EINVAL);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 600 * 4096);
        check_heap(h, "after bad frees");

        /* First fit: the hole at 0 is reused. */
        CHECK(heap_alloc(h, slot, 2, 0, &c) == 0);
        CHECK_EQ_U64(c, 0);
        CHECK(heap_free(h, slot, 0, c) == 0);
        CHECK(heap_free(h, 0, 0, b) == 0); /* any slot may free */
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "all freed");

        /* Capacity: 8 MiB = 2048 pages. */
        CHECK(heap_alloc(h, slot, 2049, 0, &a) == -EINVAL);
        CHECK(heap_alloc(h, slot, 2048, 0, &a) == 0);
        CHECK(heap_alloc(h, slot, 1, 0, &b) == -ENOMEM);
        check_heap(h, "full");
        CHECK(heap_free(h, slot, 0, a) == 0);
        CHECK(heap_alloc(h, slot, 1500, 0, &a) == 0);
        CHECK(heap_alloc(h, slot, 600, 0, &b) == -ENOMEM);
        CHECK(heap_alloc(h, slot, 548, 0, &b) == 0);
        CHECK(heap_free(h, slot, 0, a) == 0);
        CHECK(heap_free(h, slot, 0, b) == 0);
        check_heap(h, "after capacity");
        heap_test_free(&t);
}

static void test_cache(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB, .max_slots = 4 };
        struct heap_stats st;
        uint32_t s1, s2;
        uint64_t offs[200];

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s1) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &s2) == 0);

        for (unsigned i = 0; i < 200; i++)
                CHECK(heap_cache_alloc(h, s1, 0, 1 + i % 3, 0, &offs[i]) == 0);
        check_heap(h, "cache allocations");
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK(st.inuse >= (200 + 200) * 4096);
        for (unsigned i = 0; i < 200; i++)
                for (unsigned j = i + 1; j < 200; j++)
                        if (offs[i] == offs[j])
                                CHECKF(0, "offset %" PRIx64 " handed out twice", offs[i]);

        /* Owner frees go back to the cache; others' frees leave orphans. */
        for (unsigned i = 0; i < 200; i += 2)
                CHECK(heap_free(h, s1, 0, offs[i]) == 0);
        for (unsigned i = 1; i < 200; i += 4)
                CHECK(heap_free(h, s2, 0, offs[i]) == 0);
        for (unsigned i = 0; i < 200; i += 2)
                CHECK(heap_free(h, s1, 0, offs[i]) == -EINVAL);
        check_heap(h, "cache frees");

        /* A page freed to the cache is handed out again. */
        uint64_t x, y;
        CHECK(heap_cache_alloc(h, s1, 1, 1, 0, &x) == 0);
        CHECK(heap_free(h, s1, 1, x) == 0);
        CHECK(heap_cache_alloc(h, s1, 1, 1, 0, &y) == 0);
        CHECK_EQ_U64(x, y);
        CHECK(heap_free(h, s1, 1, y) == 0);

        for (unsigned i = 3; i < 200; i += 4)
                CHECK(heap_free(h, s1, 0, offs[i]) == 0);
        CHECK(heap_cache_flush(h, s1, 0) == 0);
        CHECK(heap_cache_flush(h, s1, 1) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "flushed");

        /* Big and KEEP allocations take the locked path. */
        CHECK(heap_cache_alloc(h, s1, 0, 40, 0, &x) == 0);
        CHECK(heap_cache_alloc(h, s1, 0, 1, HEAP_ALLOC_KEEP, &y) == 0);
        check_heap(h, "locked through cache");
        CHECK(heap_free(h, s1, 0, x) == 0);
        CHECK(heap_free(h, s1, 0, y) == 0);
        check_heap(h, "locked through cache freed");
        heap_test_free(&t);
}

/* Several blocks per cache: the owner's frees anywhere in them come back; wholly free blocks go home. */
static void test_cache_blocks(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct heap_stats st;
        static uint64_t offs[HEAP_CACHE_MAX_PAGES > 3000 ? HEAP_CACHE_MAX_PAGES : 3000];
        uint32_t s;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        for (unsigned n = 1500; n <= 3000; n += 1500) {
                for (unsigned i = 0; i < n; i++)
                        CHECK(heap_cache_alloc(h, s, 0, 1, 0, &offs[i]) == 0);
                check_heap(h, "many blocks");
                struct heap_slot_info info;
                CHECK(heap_slot_info(h, s, &info) == 0);
                CHECK_EQ_U64(info.inuse_pages, n);
                /* Free in a scattered order. */
                for (unsigned k = 0; k < 7; k++)
                        for (unsigned i = k; i < n; i += 7)
                                CHECK(heap_free(h, s, 0, offs[i]) == 0);
                check_heap(h, "many blocks freed");
                CHECK(heap_get_stats(h, &st) == 0);
                /* Only blocks still current or partly live stay cached; here at most the current one. */
                CHECKF(st.inuse <= HEAP_CACHE_PAGES * 4096, "%u: %" PRIu64 " bytes still cached", n, st.inuse);
                CHECK(heap_cache_flush(h, s, 0) == 0);
                CHECK(heap_get_stats(h, &st) == 0);
                CHECK_EQ_U64(st.inuse, 0);
        }

        /* All blocks in use and none can serve two pages: a new block evicts the one
         * with the fewest pages in use, whose free pages lie below where the search
         * for the new block ends (the search address must not pass over them). */
        unsigned n = HEAP_CACHE_MAX_PAGES;
        for (unsigned i = 0; i < n; i++)
                CHECK(heap_cache_alloc(h, s, 0, 1, 0, &offs[i]) == 0);
        for (unsigned i = 1; i < HEAP_CACHE_PAGES; i += 2)
                CHECK(heap_free(h, s, 0, offs[i]) == 0);
        uint64_t extra;
        CHECK(heap_cache_alloc(h, s, 0, 2, 0, &extra) == 0);
        check_heap(h, "after an eviction");
        CHECK(heap_free(h, s, 0, extra) == 0);
        for (unsigned i = 0; i < n; i += (i < HEAP_CACHE_PAGES ? 2 : 1))
                CHECK(heap_free(h, s, 0, offs[i]) == 0);
        CHECK(heap_cache_flush(h, s, 0) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "after freeing around an eviction");
        heap_test_free(&t);
}

static void test_zero_keep_reclaim(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB, .max_slots = 4 };
        struct heap_stats st;
        uint32_t s1;
        uint64_t a, b, k, c;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        uint8_t *base = heap_base(h);
        CHECK(heap_slot_claim(h, 100, 0, &s1) == 0);

        CHECK(heap_alloc(h, s1, 4, 0, &a) == 0);
        memset(base + a, 0xab, 4 * 4096);
        CHECK(heap_free(h, s1, 0, a) == 0);
        CHECK(heap_alloc(h, s1, 4, HEAP_ALLOC_ZERO, &b) == 0);
        CHECK_EQ_U64(b, a);
        bool zero = true;
        for (unsigned i = 0; i < 4 * 4096; i++)
                zero &= base[b + i] == 0;
        CHECK(zero);
        CHECK(heap_free(h, s1, 0, b) == 0);

        CHECK(heap_cache_alloc(h, s1, 0, 2, 0, &c) == 0);
        memset(base + c, 0xcd, 2 * 4096);
        CHECK(heap_free(h, s1, 0, c) == 0);
        CHECK(heap_cache_alloc(h, s1, 0, 2, HEAP_ALLOC_ZERO, &c) == 0);
        zero = true;
        for (unsigned i = 0; i < 2 * 4096; i++)
                zero &= base[c + i] == 0;
        CHECK(zero);

        CHECK(heap_alloc(h, s1, 10, HEAP_ALLOC_KEEP, &k) == 0);
        CHECK(heap_alloc(h, s1, 700, 0, &a) == 0);
        CHECK(heap_cache_alloc(h, s1, 3, 1, 0, &b) == 0);
        struct heap_slot_info info;
        CHECK(heap_slot_info(h, s1, &info) == 0);
        CHECK_EQ_U64(info.inuse_pages, 2 + 10 + 700 + 1);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.clients, 1);

        int64_t given = heap_slot_reclaim(h, s1);
        CHECKF(given >= 2 + 700 + 1, "given back %" PRId64, given);
        check_heap(h, "reclaimed");
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 10 * 4096);
        CHECK_EQ_U64(st.clients, 0);
        CHECK(heap_slot_info(h, s1, &info) == -ESTALE);
        CHECK(heap_slot_reclaim_for(h, s1, 100) == -ESTALE);
        /* The KEEP allocation outlives its client; anyone frees it. */
        CHECK_EQ_U64(heap_alloc_size(h, k), 10 * 4096);
        CHECK(heap_free(h, 0, 0, k) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "keep freed");

        uint32_t s;
        CHECK(heap_slot_claim(h, 200, 0, &s) == 0);
        CHECK(heap_slot_reclaim_for(h, s, 200) == 0);
        CHECK(heap_slot_reclaim_for(h, s, 201) == -ESTALE);
        uint32_t n = 1;
        while (heap_slot_claim(h, 300, 0, &s) == 0)
                n++;
        CHECK_EQ_U64(n, 3); /* slots 1..3 */
        heap_test_free(&t);
}

static void test_scavenge(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 32 * MiB, .max_slots = 4 };
        struct heap_stats st;
        struct heap_gen_report rep;
        uint32_t s1;
        uint64_t a[8];

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        uint8_t *base = heap_base(h);
        CHECK(heap_slot_claim(h, 100, 0, &s1) == 0);
        for (unsigned i = 0; i < 8; i++) {
                CHECK(heap_alloc(h, s1, 256, 0, &a[i]) == 0);
                memset(base + a[i], 1, 256 * 4096);
        }
        CHECK_EQ_U64(blocks_bytes(t.heap_fd), 8 * MiB);
        for (unsigned i = 0; i < 8; i += 2)
                CHECK(heap_free(h, s1, 0, a[i]) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.retained, 8 * MiB); /* freed pages stay backed */

        /* No generation yet: nothing to search. */
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == 0);
        CHECK(heap_scavenge_start_gen(h, &rep) == 0);
        CHECK_EQ_U64(rep.gen, 0);
        int64_t r = heap_scavenge(h, 0, 64 * 1024);
        CHECK_EQ_U64(r, 64 * 1024);
        check_heap(h, "scavenged 64 KiB");
        r = heap_scavenge(h, 0, UINT64_MAX);
        CHECK_EQ_U64(r, 4 * MiB - 64 * 1024);
        CHECK_EQ_U64(blocks_bytes(t.heap_fd), 4 * MiB);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.retained, st.inuse);
        CHECK_EQ_U64(st.gen_released, 4 * MiB);
        CHECK_EQ_U64(st.released_total, 4 * MiB);
        check_heap(h, "scavenged all");
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == 0);

        /* Scavenged pages come back zeroed and count as not released once
         * used, and as reused (the daemon's refaults without BPF). */
        uint64_t reused = st.released_reused;
        CHECK(heap_alloc(h, s1, 256, 0, &a[0]) == 0);
        CHECK(base[a[0]] == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.retained, st.inuse);
        CHECK_EQ_U64(st.released_reused - reused, MiB);

        /* A new generation finds what was freed since. */
        CHECK(heap_free(h, s1, 0, a[1]) == 0);
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == 0);
        CHECK(heap_scavenge_start_gen(h, &rep) == 0);
        CHECK_EQ_U64(rep.gen, 1);
        CHECK_EQ_U64(rep.released, 4 * MiB);
        CHECK_EQ_U64(heap_scavenge(h, 0, UINT64_MAX), MiB);
        check_heap(h, "second generation");

        /* Growth scavenging: over the goal, growing releases as much as it grew. */
        heap_set_goal(h, 0);
        uint64_t big;
        CHECK(heap_alloc(h, s1, 256, 0, &big) == 0); /* reuses scavenged space */
        memset(base + big, 1, 4096);
        CHECK(heap_free(h, s1, 0, big) == 0);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        CHECK(heap_alloc(h, s1, 2048, 0, &big) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECKF(st.growth_scavenged > 0, "growth scavenged %" PRIu64, st.growth_scavenged);
        check_heap(h, "growth scavenging");
        heap_test_free(&t);
}

/* Heap-growth scavenging runs without a generation too (outside the generation's ranges). */
static void test_growth_without_generation(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 32 * MiB };
        struct heap_stats st;
        uint64_t a, b, c;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_alloc(h, 0, 512, 0, &a) == 0);
        CHECK(heap_alloc(h, 0, 512, 0, &c) == 0);
        memset((uint8_t *) heap_base(h) + a, 1, 2 * MiB);
        CHECK(heap_free(h, 0, 0, a) == 0);
        heap_set_goal(h, 0);
        CHECK(heap_alloc(h, 0, 1024, 0, &b) == 0); /* does not fit in a's hole: grows, over a goal of 0 */
        CHECK(heap_get_stats(h, &st) == 0);
        CHECKF(st.growth_scavenged >= 2 * MiB, "growth scavenged %" PRIu64, st.growth_scavenged);
        check_heap(h, "growth without generation");
        heap_test_free(&t);
}

/* Several threads of one slot scavenging at once each get their own scavenge intent. */
static atomic_int in_release, max_in_release;
static int slow_release(heap *h, uint64_t off, uint64_t len, void *userdata) {
        int n = atomic_fetch_add(&in_release, 1) + 1;
        int m = atomic_load(&max_in_release);
        while (n > m && !atomic_compare_exchange_weak(&max_in_release, &m, n))
                ;
        char buf[256] = "";
        CHECKF(heap_check(h, buf, sizeof(buf)) == 0, "during a release: %s", buf);
        usleep(200);
        atomic_fetch_sub(&in_release, 1);
        return 0;
}

static void *scavenger_thread(void *arg) {
        heap *h = arg;
        int64_t r = heap_scavenge(h, 1, UINT64_MAX);
        CHECKF(r >= 0, "heap_scavenge: %" PRId64, r);
        return NULL;
}

static void test_concurrent_scavengers(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4, .reservation_shards = 16 };
        uint64_t a[64];
        uint32_t s;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 1, 1, &s) == 0);
        CHECK(s == 1);
        for (unsigned i = 0; i < 64; i++)
                CHECK(heap_alloc(h, 0, 128, 0, &a[i]) == 0);
        for (unsigned i = 0; i < 64; i += 2)
                CHECK(heap_free(h, 0, 0, a[i]) == 0);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        heap_set_release(h, slow_release, NULL);
        pthread_t th[4];
        for (unsigned i = 0; i < 4; i++)
                CHECK(pthread_create(&th[i], NULL, scavenger_thread, h) == 0);
        for (unsigned i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        struct heap_stats st;
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.gen_released, 32 * 128 * 4096);
        printf("concurrent scavengers of one slot: up to %d releases at once\n", atomic_load(&max_in_release));
        check_heap(h, "after concurrent scavengers");
        heap_test_free(&t);
}

static int fail_release(heap *h, uint64_t off, uint64_t len, void *userdata) {
        (*(unsigned *) userdata)++;
        return -EIO;
}

static void test_release_failure(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB };
        unsigned calls = 0;
        uint64_t a;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_alloc(h, 0, 100, 0, &a) == 0);
        CHECK(heap_free(h, 0, 0, a) == 0);
        heap_set_release(h, fail_release, &calls);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == -EIO);
        CHECK(calls == 1);
        check_heap(h, "release failed");
        heap_test_free(&t);
}

static void test_goal(void) {
        /* 1 MiB in use, 10% extra: 1.1 MiB aligned up to 4 KiB. */
        uint64_t g = heap_retained_goal(MiB, 2 * MiB, 10, 0, 4096);
        CHECK_EQ_U64(g, ALIGN_UP(MiB + MiB / 10, 4096));
        CHECK_EQ_U64(heap_retained_goal(MiB, MiB, 10, 0, 4096), HEAP_GOAL_NONE);
        /* Within one physical page of the goal: off. */
        CHECK_EQ_U64(heap_retained_goal(MiB, g + 4095, 10, 0, 4096), HEAP_GOAL_NONE);
        CHECK_EQ_U64(heap_retained_goal(MiB, g + 4096, 10, 0, 4096), g);
        /* A memory limit caps the goal at 95%. */
        CHECK_EQ_U64(heap_retained_goal(MiB, 2 * MiB, 10, MiB, 4096), ALIGN_DOWN(MiB * 95 / 100, 4096));
        /* No overflow: the goal saturates, and the heap is within a page of it. */
        CHECK_EQ_U64(heap_retained_goal(UINT64_MAX / 2, UINT64_MAX, 200, 0, 4096), HEAP_GOAL_NONE);
        CHECK_EQ_U64(heap_retained_goal(UINT64_MAX / 4, UINT64_MAX, 10, 0, 4096) % 4096, 0);
}

/* heap_check must name what is broken; each corruption is undone after. */
static void test_check_detects(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB };
        char buf[256];
        uint64_t a, b;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        struct heap_hdr *hd = t.meta;
        CHECK(heap_alloc(h, 0, 10, 0, &a) == 0);
        CHECK(heap_cache_alloc(h, 0, 0, 1, 0, &b) == 0);
        check_heap(h, "before corruption");
        _Atomic uint64_t *rec = (_Atomic uint64_t *) ((uint8_t *) t.meta + hd->records_off);
        struct heap_chunk *ch = (struct heap_chunk *) ((uint8_t *) t.meta + hd->chunks_off);

        rec[100] = HEAP_REC_MAKE(2, 1, 0);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "record at page 100"), "got: %s", buf);
        rec[100] = 0;

        rec[3] = HEAP_REC_MAKE(2, 1, 0);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "overlaps"), "got: %s", buf);
        rec[3] = 0;

        struct heap_sum *leaf = (struct heap_sum *) ((uint8_t *) t.meta + hd->level_off[hd->nlevels - 1]);
        leaf[0].max++;
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "summary of chunk 0"), "got: %s", buf);
        leaf[0].max--;

        ch[0].scav[0] |= 1;
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "both allocated and scavenged"), "got: %s", buf);
        ch[0].scav[0] &= ~UINT64_C(1);

        hd->inuse_pages++;
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "in use"), "got: %s", buf);
        hd->inuse_pages--;

        rec[0] = 0; /* the allocation at 0 loses its record: its pages are held by nobody */
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        CHECKF(strstr(buf, "nobody holds it"), "got: %s", buf);
        rec[0] = HEAP_REC_MAKE(10, 1, 0);
        check_heap(h, "after undoing");
        heap_test_free(&t);
}

/* The meta region is shared memory: scribbles must give errors, never wild writes. */
static void test_untrusted(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 8 * MiB, .max_slots = 4 };
        uint32_t s;
        uint64_t a;
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        struct heap_hdr *hd = t.meta;
        CHECK(heap_slot_claim(h, 1, 1, &s) == 0);
        CHECK(heap_alloc(h, s, 100, 0, &a) == 0);

        /* Search ranges past their array: the generation is dropped, nothing else. */
        hd->nranges = 1000;
        CHECK(heap_scavenge(h, 0, UINT64_MAX) == 0);
        CHECK(hd->nranges == 0);
        hd->nranges = 1;
        hd->ranges[0][0] = 0;
        hd->ranges[0][1] = UINT64_C(1) << 50;
        CHECK(heap_scavenge(h, 0, UINT64_MAX) >= 0);

        /* A record past the grown heap: free refuses, reclaim skips it. */
        _Atomic uint64_t *rec = (_Atomic uint64_t *) ((uint8_t *) t.meta + hd->records_off);
        rec[300] = HEAP_REC_MAKE(1u << 30, s + 1, 0);
        CHECK(heap_free(h, s, 0, 300 * 4096) < 0);
        char buf[256];
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);

        /* A cache pointing outside the heap: its owner gets -EUCLEAN. */
        struct heap_slot *sl = (struct heap_slot *) ((uint8_t *) t.meta + hd->slots_off);
        sl[s].caches[5].cur = 0;
        sl[s].caches[5].key[0] = 1u << 30;
        sl[s].caches[5].owned[0] = sl[s].caches[5].free_mask[0] = 1;
        uint64_t o;
        CHECK(heap_cache_alloc(h, s, 5, 1, 0, &o) == -EUCLEAN);
        /* Given back, it is forgotten with its masks: a block placed there later starts clean. */
        sl[s].caches[5].scav_mask[0] = 1;
        sl[s].caches[5].nonempty = 1;
        CHECK(heap_cache_flush(h, s, 5) == 0);
        CHECK(sl[s].caches[5].key[0] == 0 && sl[s].caches[5].owned[0] == 0);
        CHECK(sl[s].caches[5].free_mask[0] == 0 && sl[s].caches[5].scav_mask[0] == 0);
        CHECK(sl[s].caches[5].nonempty == 0);
        CHECK(heap_slot_reclaim(h, s) >= 0);

        /* Summaries that lie about free pages: allocation refuses and marks the heap corrupt. */
        CHECK(heap_alloc(h, 0, 100, 0, &a) == 0);
        CHECK_EQ_U64(a, 0);
        struct heap_sum *leaf = (struct heap_sum *) ((uint8_t *) t.meta + hd->level_off[hd->nlevels - 1]);
        leaf[0] = (struct heap_sum) { 512, 512, 512 };
        hd->search_page = 0;
        int r = heap_alloc(h, 0, 512, 0, &o);
        CHECKF(r == -EUCLEAN, "alloc on lying summaries: %d", r);
        CHECK(heap_alloc(h, 0, 1, 0, &o) == -EUCLEAN);
        heap_test_free(&t);
}

/* Medium caches (mcache.c): the owner's frees of 16-128-page cache allocations are CACHED records. */
static void test_medium_cache(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct heap_stats st;
        struct heap_slot_info info;
        uint32_t s1, s2;
        uint64_t a, b, x[12];
        char buf[256];

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        uint8_t *base = heap_base(h);
        CHECK(heap_slot_claim(h, 100, 0, &s1) == 0);
        CHECK(heap_slot_claim(h, 101, 0, &s2) == 0);

        /* Rounded up to the size class; freed by the owner: CACHED, still in use. */
        CHECK(heap_cache_alloc(h, s1, 0, 17, 0, &a) == 0);
        CHECK(heap_alloc_size(h, a) == 20 * 4096);
        memset(base + a, 0xab, 20 * 4096);
        CHECK(heap_free(h, s1, 0, a) == 0);
        CHECK(heap_alloc_size(h, a) == -EINVAL);
        CHECK(heap_free(h, s1, 0, a) == -EINVAL); /* double free */
        CHECK(heap_free(h, s2, 0, a) == -EINVAL); /* and by another client */
        CHECK(heap_free(h, s1, 1, a) == -EINVAL);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 20 * 4096);
        CHECK(heap_slot_info(h, s1, &info) == 0);
        CHECK_EQ_U64(info.cached_pages, 20);
        CHECK_EQ_U64(info.inuse_pages, 0);
        check_heap(h, "medium cached");

        /* The next allocation of the class takes it back, cleared when asked. */
        CHECK(heap_cache_alloc(h, s1, 0, 19, HEAP_ALLOC_ZERO, &b) == 0);
        CHECK_EQ_U64(b, a);
        CHECK(heap_alloc_size(h, b) == 20 * 4096);
        bool zero = true;
        for (unsigned i = 0; i < 20 * 4096; i++)
                zero &= base[b + i] == 0;
        CHECK(zero);
        /* Another class does not. */
        CHECK(heap_free(h, s1, 0, b) == 0);
        CHECK(heap_cache_alloc(h, s1, 0, 33, 0, &x[0]) == 0);
        CHECK(x[0] != a);
        CHECK(heap_alloc_size(h, x[0]) == 40 * 4096);
        /* Another client's free of a live one takes the lock; the owner's
         * thread cache, active, keeps it as an orphan (its owner may be
         * freeing it at that moment without a lock): refused as a live
         * allocation from then on, in use until the owner's next miss of
         * the class takes it into its list, or a reap gives it back. */
        CHECK(heap_free(h, s2, 0, x[0]) == 0);
        CHECK(heap_free(h, s1, 0, x[0]) == -EINVAL);
        CHECK(heap_alloc_size(h, x[0]) == -EINVAL);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, (20 + 40) * 4096);
        check_heap(h, "medium freed by another client");
        CHECK(heap_cache_alloc(h, s1, 0, 40, 0, &b) == 0);
        CHECK_EQ_U64(b, x[0]);
        CHECK(heap_free(h, s2, 0, b) == 0);
        struct heap_reap_report rr;
        CHECK(heap_cache_reap(h, HEAP_REAP_ALL, &rr) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "orphan reaped");
        CHECK(heap_cache_alloc(h, s1, 0, 19, 0, &a) == 0); /* a miss: its batch is cached too */
        CHECK(heap_free(h, s1, 0, a) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK(heap_slot_info(h, s1, &info) == 0);
        CHECK_EQ_U64(info.inuse_pages, 0);
        CHECK(info.cached_pages >= 20 && info.cached_pages % 20 == 0);
        CHECK_EQ_U64(st.inuse, info.cached_pages * 4096);
        check_heap(h, "medium other class");

        /* Flush gives it back. */
        CHECK(heap_cache_flush(h, s1, 0) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        CHECK(heap_free(h, s1, 0, a) == -EINVAL);
        check_heap(h, "medium flushed");

        /* Locked allocations are never cached. */
        CHECK(heap_alloc(h, s1, 20, 0, &a) == 0);
        CHECK(heap_free(h, s1, 0, a) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);

        /* Bounded: 1/16 of this 64 MiB heap, 1,024 pages, eight of 128. The
         * ninth free finds it full and gives back down to three quarters
         * (six), the tenth and eleventh fill it again, the twelfth gives back. */
        for (unsigned i = 0; i < 12; i++)
                CHECK(heap_cache_alloc(h, s1, 2, 128, 0, &x[i]) == 0);
        for (unsigned i = 0; i < 12; i++) {
                CHECK(heap_free(h, s1, 2, x[i]) == 0);
                CHECK(heap_slot_info(h, s1, &info) == 0);
                CHECKF(info.cached_pages <= 1024, "free %u: %" PRIu64 " pages cached", i, info.cached_pages);
        }
        CHECK(heap_slot_info(h, s1, &info) == 0);
        CHECK_EQ_U64(info.cached_pages, 1024 * HEAP_MCACHE_EVICT_KEEP / 4);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, info.cached_pages * 4096);
        check_heap(h, "medium at its bound");

        /* A forged CACHED record is caught. */
        uint64_t page = x[0] / 4096, rec = atomic_load(&h->records[page]);
        atomic_store(&h->records[page], rec & ~HEAP_REC_MEDIUM);
        CHECK(heap_check(h, buf, sizeof(buf)) == -EUCLEAN);
        atomic_store(&h->records[page], rec);
        check_heap(h, "medium record restored");

        /* A killed client's cached allocations come back with its slot. */
        CHECK(heap_slot_reclaim(h, s1) >= (int64_t) (1024 * HEAP_MCACHE_EVICT_KEEP / 4));
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "medium reclaimed");
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                uint32_t s;
                uint64_t y[3];
                if (heap_slot_claim(h, (uint32_t) getpid(), 0, &s) < 0)
                        _exit(1);
                for (unsigned i = 0; i < 3; i++)
                        if (heap_cache_alloc(h, s, 1, 40, 0, &y[i]) < 0)
                                _exit(2);
                for (unsigned i = 0; i < 3; i++)
                        if (heap_free(h, s, 1, y[i]) < 0)
                                _exit(3);
                raise(SIGKILL);
                _exit(4);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Its three blocks, and what its misses cached besides (backed pages
         * freed above make a miss cache a second block of the class). */
        CHECK(heap_get_stats(h, &st) == 0);
        CHECKF(st.inuse >= 120 * 4096 && st.inuse <= 240 * 4096 && st.inuse % (40 * 4096) == 0,
               "in use %" PRIu64, st.inuse);
        check_heap(h, "killed client's medium cache");
        uint32_t dead = UINT32_MAX;
        for (uint32_t s = 1; s < 4; s++) {
                struct heap_slot_info si;
                if (heap_slot_info(h, s, &si) == 0 && si.pid == (uint32_t) pid) {
                        dead = s;
                        CHECK_EQ_U64(si.cached_pages * 4096, st.inuse);
                        CHECK_EQ_U64(si.inuse_pages, 0);
                }
        }
        CHECK(dead != UINT32_MAX);
        if (dead != UINT32_MAX)
                CHECK(heap_slot_reclaim(h, dead) == (int64_t) (st.inuse / 4096));
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "killed client reclaimed");
        heap_test_free(&t);
}

/*
 * Two frees of one allocation that race: the owner's, without the lock
 * (a plain store of the record: into its page cache for one page, into its
 * thread lists for 2 to 30), and another thread's through the lock (which
 * makes a list allocation an orphan of the owner's cache). Both may return
 * 0; the pages must still be freed exactly once.
 */
struct race {
        heap *h;
        uint32_t slot;
        _Atomic uint64_t off;     /* UINT64_MAX: stop */
        _Atomic unsigned arrived, round, wins; /* arrived: 4 a round, two per thread */
};

/* A spinning barrier that yields: on a loaded machine the other thread may not be running. */
static void race_spin_until(_Atomic unsigned *v, unsigned want) {
        for (unsigned spins = 0; atomic_load(v) < want; spins++)
                if (spins > 1000)
                        sched_yield();
}

static void race_wait(struct race *rc, unsigned want) {
        atomic_fetch_add(&rc->arrived, 1);
        race_spin_until(&rc->arrived, want);
}

static void *race_other(void *arg) {
        struct race *rc = arg;
        for (unsigned round = 1;; round++) {
                race_spin_until(&rc->round, round);
                uint64_t off = atomic_load(&rc->off);
                if (off == UINT64_MAX)
                        return NULL;
                race_wait(rc, 4 * round - 2); /* both here: free at once */
                if (heap_free(rc->h, rc->slot, 1, off) == 0)
                        atomic_fetch_add(&rc->wins, 1);
                race_wait(rc, 4 * round); /* both done */
        }
}

static void test_racing_frees(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 64 * MiB, .max_slots = 4 };
        struct heap_stats st;
        struct race rc = {};
        uint32_t s;
        unsigned both = 0, rounds = 20000;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        rc.h = h;
        rc.slot = s;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, race_other, &rc) == 0);
        for (unsigned round = 1; round <= rounds; round++) {
                uint64_t off;
                CHECK(heap_cache_alloc(h, s, 0, round % 3 == 0 ? 1 : 2 + round % 29, 0, &off) == 0);
                atomic_store(&rc.off, off);
                atomic_store(&rc.wins, 0);
                atomic_store(&rc.round, round);
                race_wait(&rc, 4 * round - 2);
                if (heap_free(h, s, 0, off) == 0)
                        atomic_fetch_add(&rc.wins, 1);
                race_wait(&rc, 4 * round);
                unsigned w = atomic_load(&rc.wins);
                CHECKF(w >= 1, "round %u: neither free succeeded", round);
                both += w == 2;
                CHECK(heap_free(h, s, 0, off) == -EINVAL); /* ordered now: refused */
                if (round % 2000 == 0)
                        check_heap(h, "racing frees");
        }
        atomic_store(&rc.off, UINT64_MAX);
        atomic_store(&rc.round, rounds + 1);
        pthread_join(th, NULL);
        /* Every page once: nothing live, nothing left over once the cache is given back. */
        struct heap_slot_info info;
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.inuse_pages, 0);
        CHECK(heap_cache_flush(h, s, 0) == 0);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(h, "after racing frees");
        printf("racing frees: %u rounds, both succeeded in %u\n", rounds, both);
        CHECK(heap_slot_reclaim(h, s) >= 0);
        heap_test_free(&t);
}

/* Backs [0, bytes) of a fresh heap and frees it again: free, backed memory for the batches. */
static void back_and_free(heap *h, uint32_t slot, uint64_t bytes) {
        uint64_t off;
        CHECK(heap_alloc(h, slot, bytes / 4096, 0, &off) == 0);
        memset(heap_base(h) + off, 1, bytes);
        CHECK(heap_free(h, slot, 0, off) == 0);
}

/* The medium cache's batches, borrowing and collection (mcache.c). */
static void test_medium_cache_batches(void) {
        struct heap_test t;
        struct heap_params p = { .capacity = 256 * MiB, .max_slots = 4 };
        struct heap_slot_info info;
        uint64_t a, b, c, x[64];
        uint32_t s;

        /* Released memory is never batched: a miss on a fresh heap caches nothing more. */
        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        CHECK(heap_cache_alloc(h, s, 0, 40, 0, &a) == 0);
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.cached_pages, 0);
        CHECK_EQ_U64(info.inuse_pages, 40);
        check_heap(h, "miss on released memory");
        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK(heap_slot_reclaim(h, s) == 40);
        heap_test_free(&t);

        /* Backed: a miss takes HEAP_MCACHE_BATCH blocks of its class under one lock hold. */
        CHECK(heap_test_new(&p, &t) == 0);
        h = t.h;
        CHECK(heap_slot_claim(h, 100, 0, &s) == 0);
        back_and_free(h, s, 32 * MiB);
        CHECK(heap_cache_alloc(h, s, 0, 40, 0, &a) == 0);
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.inuse_pages, 40);
        CHECK_EQ_U64(info.cached_pages, (HEAP_MCACHE_BATCH - 1) * 40);
        check_heap(h, "batched miss");
        /* The next allocations of the class take the batch, without the heap. */
        for (unsigned i = 1; i < HEAP_MCACHE_BATCH; i++) {
                CHECK(heap_cache_alloc(h, s, 0, 33 + i, 0, &x[i]) == 0);
                CHECK(x[i] != a);
                CHECK(heap_alloc_size(h, x[i]) == 40 * 4096);
        }
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.cached_pages, 0);
        CHECK_EQ_U64(info.inuse_pages, HEAP_MCACHE_BATCH * 40);
        for (unsigned i = 1; i < HEAP_MCACHE_BATCH; i++)
                CHECK(heap_free(h, s, 0, x[i]) == 0);
        CHECK(heap_free(h, s, 0, a) == 0);
        CHECK(heap_cache_flush(h, s, 0) == 0);
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.cached_pages + info.inuse_pages, 0);
        check_heap(h, "batch given back");

        /* Borrowing: class 20 empty, a 24-page block cached: a 17-page request
         * takes it (two classes up at most); a 16-page one does not take 28. */
        CHECK(heap_cache_alloc(h, s, 1, 24, 0, &a) == 0);
        CHECK(heap_cache_flush(h, s, 1) == 0); /* only a, no batch, in the cache below */
        CHECK(heap_free(h, s, 1, a) == 0);
        CHECK(heap_cache_alloc(h, s, 1, 17, 0, &b) == 0);
        CHECK_EQ_U64(b, a);
        CHECK(heap_alloc_size(h, b) == 24 * 4096);
        check_heap(h, "borrowed a larger block");
        CHECK(heap_free(h, s, 1, b) == 0);
        CHECK(heap_cache_flush(h, s, 1) == 0);
        CHECK(heap_cache_alloc(h, s, 1, 28, 0, &a) == 0);
        CHECK(heap_cache_flush(h, s, 1) == 0);
        CHECK(heap_free(h, s, 1, a) == 0);
        CHECK(heap_cache_alloc(h, s, 1, 16, 0, &c) == 0);
        CHECK(c != a);
        CHECK(heap_alloc_size(h, c) == 16 * 4096);
        CHECK(heap_free(h, s, 1, c) == 0);
        CHECK(heap_cache_flush(h, s, 1) == 0);
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECK_EQ_U64(info.cached_pages + info.inuse_pages, 0);

        /* Collection (the reaper, heap_cache_reap, on the daemon's
         * generations): 32 blocks of 64 pages cached and never asked for
         * again while the thread cycles another class: the first reap finds
         * them used since the last (they were freed then) and keeps them,
         * the next gives them all back and keeps what the thread cycles. */
        for (unsigned i = 0; i < 32; i++)
                CHECK(heap_cache_alloc(h, s, 2, 64, 0, &x[i]) == 0);
        for (unsigned i = 0; i < 32; i++)
                CHECK(heap_free(h, s, 2, x[i]) == 0);
        CHECK(heap_slot_info(h, s, &info) == 0);
        uint64_t held = info.cached_pages;
        CHECKF(held >= 32 * 64, "%" PRIu64 " pages cached", held);
        CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0);
        for (unsigned round = 0; round < 2; round++) {
                for (unsigned i = 0; i < 1000; i++) {
                        CHECK(heap_cache_alloc(h, s, 2, 20, 0, &a) == 0);
                        CHECK(heap_free(h, s, 2, a) == 0);
                }
                CHECK(heap_cache_reap(h, HEAP_REAP_GEN, NULL) == 0);
        }
        CHECK(heap_slot_info(h, s, &info) == 0);
        CHECKF(info.cached_pages <= 2 * 20, "still %" PRIu64 " pages cached after the reaps", info.cached_pages);
        check_heap(h, "collected");
        CHECK(heap_slot_reclaim(h, s) >= 0);
        struct heap_stats st;
        CHECK(heap_get_stats(h, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        heap_test_free(&t);
}

int main(void) {
        test_layout();
        test_untrusted();
        test_check_detects();
        test_alloc_free();
        test_cache();
        test_cache_blocks();
        test_medium_cache();
        test_medium_cache_batches();
        test_racing_frees();
        test_zero_keep_reclaim();
        test_scavenge();
        test_release_failure();
        test_growth_without_generation();
        test_concurrent_scavengers();
        test_goal();
        return TEST_END();
}

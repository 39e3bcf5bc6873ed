/* SPDX-License-Identifier: MIT */
/*
 * Ports TestPageAllocScavenge (mgcscavenge_test.go, Go commit d29f5247):
 * end-to-end scavenging on a page allocator set up from bitmaps, every case,
 * for physical pages of 1, 2 and 4 pages (minPages; Go runs the machine's)
 * and with and without huge pages to preserve (256 pages, Go's 2 MiB over
 * 8 KiB pages). Chunks are mapped onto our contiguous heap as in
 * test-pagealloc.c (gaps become one fully allocated separator chunk, which
 * has nothing to scavenge). Requests and results are in bytes, as in Go;
 * ~0 asks for everything.
 */

#include <string.h>

#include "../lib/test.h"
#include "heap/layout.h"
#include "heap/testing.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define ALL UINT64_MAX
#define MAXC 3

struct test {
        const char *name;
        unsigned n;
        uint64_t idx[MAXC];
        heap_test_ranges before_alloc[MAXC], before_scav[MAXC], after_scav[MAXC];
        struct {
                uint64_t request, expect;
        } expect[4];
        unsigned nexpect;
};

/* Builds the table for one minPages, as Go does with its minPages variable. */
static unsigned build(struct test *tests, uint32_t m) {
        uint64_t ps = 4096;
        unsigned n = 0;
        tests[n++] = (struct test) {
                "AllFreeUnscavExhaust", 3, { 0, 1, 2 }, { {}, {}, {} }, { {}, {}, {} },
                { { { 0, P } }, { { 0, P } }, { { 0, P } } }, { { ALL, 3 * P * ps } }, 1,
        };
        tests[n++] = (struct test) {
                "NoneFreeUnscavExhaust", 3, { 0, 1, 2 }, { { { 0, P } }, {}, { { 0, P } } },
                { {}, { { 0, P } }, {} }, { {}, { { 0, P } }, {} }, { { ALL, 0 } }, 1,
        };
        tests[n++] = (struct test) {
                "ScavHighestPageFirst", 1, { 0 }, { {} }, { { { m, P - 2 * m } } }, { { { m, P - m } } },
                { { 1, m * ps } }, 1,
        };
        tests[n++] = (struct test) {
                "ScavMultiple", 1, { 0 }, { {} }, { { { m, P - 2 * m } } }, { { { 0, P } } },
                { { m * ps, m * ps }, { m * ps, m * ps } }, 2,
        };
        tests[n++] = (struct test) {
                "ScavMultiple2", 2, { 0, 1 }, { {}, {} }, { { { m, P - 2 * m } }, { { 0, P - 2 * m } } },
                { { { 0, P } }, { { 0, P } } }, { { 2 * m * ps, 2 * m * ps }, { m * ps, m * ps }, { m * ps, m * ps } }, 3,
        };
        tests[n++] = (struct test) {
                "ScavDiscontiguous", 2, { 0, 0xe }, { {}, {} }, { { { m, P - 2 * m } }, { { 2 * m, P - 2 * m } } },
                { { { 0, P } }, { { 0, P } } }, { { 2 * m * ps, 2 * m * ps }, { ALL, 2 * m * ps }, { ALL, 0 } }, 3,
        };
        tests[n++] = (struct test) {
                "ScavAllVeryDiscontiguous", 2, { 0, 0x1000 }, { {}, {} }, { {}, {} }, { { { 0, P } }, { { 0, P } } },
                { { ALL, 2 * P * ps }, { ALL, 0 } }, 2,
        };
        return n;
}

int main(void) {
        static const uint32_t phys[] = { 4096, 8192, 16384 };
        static const uint32_t huge[] = { 0, 1u << 20 };
        unsigned ran = 0;

        for (size_t pi = 0; pi < ELEMENTSOF(phys); pi++)
                for (size_t hi = 0; hi < ELEMENTSOF(huge); hi++) {
                        uint32_t m = phys[pi] / 4096;
                        struct test tests[8];
                        unsigned n = build(tests, m);
                        struct heap_params p = { .capacity = 1, .phys_page_size = phys[pi],
                                                 .huge_page_size = huge[hi], .max_slots = 2 };
                        for (unsigned t = 0; t < n; t++) {
                                const struct test *v = &tests[t];
                                struct heap_test ht;
                                uint64_t map[MAXC];
                                char buf[256] = "";
                                int r = heap_test_new_sparse(&p, v->n, v->idx, v->before_alloc, v->before_scav, &ht, map);
                                CHECKF(r == 0, "%s/min%u/huge%u: setup: %d", v->name, m, huge[hi], r);
                                if (r < 0)
                                        continue;
                                for (unsigned k = 0; k < v->nexpect; k++) {
                                        int64_t got = heap_scavenge(ht.h, 0, v->expect[k].request);
                                        CHECKF((uint64_t) got == v->expect[k].expect,
                                               "%s/min%u/huge%u: bad scavenge #%u: got %" PRId64 ", want %" PRIu64, v->name,
                                               m, huge[hi], k + 1, got, v->expect[k].expect);
                                }
                                r = heap_test_expect_sparse(ht.h, v->n, map, v->before_alloc, v->after_scav, buf,
                                                            sizeof(buf));
                                CHECKF(r == 0, "%s/min%u/huge%u: %s", v->name, m, huge[hi], buf);
                                heap_test_free(&ht);
                                ran++;
                        }
                }
        CHECK(ran == 3 * 2 * 7);
        return TEST_END();
}

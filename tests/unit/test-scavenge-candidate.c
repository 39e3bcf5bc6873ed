/* SPDX-License-Identifier: MIT */
/*
 * Ports TestPallocDataFindScavengeCandidate (mgcscavenge_test.go, Go commit
 * d29f5247): every named case, for every min from 1 to 64, and the
 * huge-page-preserving cases for several huge page sizes (Go runs them with
 * the machine's; we pass pages-per-huge-page in: 256 is Go's 2 MiB over
 * 8 KiB pages, 64 a smaller one, 512 a huge page as big as a chunk, 1024
 * one bigger than a chunk). hasScavengeCandidate is checked against every
 * case too: it must agree on whether there is a candidate.
 */

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "../lib/test.h"
#include "heap/palloc.h"
#include "heap/scavenge.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define MAXR 4

struct range {
        unsigned i, n;
};

struct test {
        char name[64];
        struct range alloc[MAXR], scav[MAXR];
        uint64_t min, max, huge;
        struct range want;
};

static struct test tests[512];
static unsigned ntests;

static struct test *add(const char *name, unsigned m) {
        struct test *t = &tests[ntests++];
        assert(ntests <= ELEMENTSOF(tests));
        memset(t, 0, sizeof(*t));
        if (m)
                snprintf(t->name, sizeof(t->name), "%sMin%u", name, m);
        else
                snprintf(t->name, sizeof(t->name), "%s", name);
        t->min = m;
        return t;
}

#define R(...) { __VA_ARGS__ }
#define SET(dst, ...)                                            \
        do {                                                     \
                const struct range _r[MAXR] = { __VA_ARGS__ };  \
                memcpy(dst, _r, sizeof(_r));                     \
        } while (0)

static void build_tests(void) {
        struct test *t;

        t = add("MixedMin1", 0);
        SET(t->alloc, { 0, 40 }, { 42, P - 42 });
        SET(t->scav, { 0, 41 }, { 42, P - 42 });
        t->min = 1, t->max = P, t->want = (struct range) { 41, 1 };

        t = add("MultiMin1", 0);
        SET(t->alloc, { 0, 63 }, { 65, 20 }, { 87, P - 87 });
        SET(t->scav, { 86, 1 });
        t->min = 1, t->max = P, t->want = (struct range) { 85, 1 };

        for (unsigned m = 1; m <= 64; m *= 2) {
                t = add("AllFree", m);
                t->max = P, t->want = (struct range) { 0, P };

                t = add("AllScavenged", m);
                SET(t->scav, { 0, P });
                t->max = P, t->want = (struct range) { 0, 0 };

                t = add("NoneFree", m);
                SET(t->alloc, { 0, P });
                SET(t->scav, { P / 2, P / 2 });
                t->max = P, t->want = (struct range) { 0, 0 };

                t = add("StartFree", m);
                SET(t->alloc, { m, P - m });
                t->max = P, t->want = (struct range) { 0, m };

                t = add("EndFree", m);
                SET(t->alloc, { 0, P - m });
                t->max = P, t->want = (struct range) { P - m, m };

                t = add("Straddle64", m);
                SET(t->alloc, { 0, 64 - m }, { 64 + m, P - (64 + m) });
                t->max = 2 * m, t->want = (struct range) { 64 - m, 2 * m };

                t = add("BottomEdge64WithFull", m);
                SET(t->alloc, { 64, 64 }, { 128 + 3 * m, P - (128 + 3 * m) });
                SET(t->scav, { 1, 10 });
                t->max = 3 * m, t->want = (struct range) { 128, 3 * m };

                t = add("BottomEdge64WithPocket", m);
                SET(t->alloc, { 64, 62 }, { 127, 1 }, { 128 + 3 * m, P - (128 + 3 * m) });
                SET(t->scav, { 1, 10 });
                t->max = 3 * m, t->want = (struct range) { 128, 3 * m };

                t = add("Max0", m);
                SET(t->scav, { 0, P - m });
                t->max = 0, t->want = (struct range) { P - m, m };

                if (m <= 8) {
                        /* Go names these without a suffix, so only m = 8 survives its map; we run all. */
                        t = add("OneFree", m);
                        SET(t->alloc, { 0, 40 }, { 40 + m, P - (40 + m) });
                        t->max = P, t->want = (struct range) { 40, m };

                        t = add("OneScavenged", m);
                        SET(t->alloc, { 0, 40 }, { 40 + m, P - (40 + m) });
                        SET(t->scav, { 40, 1 });
                        t->max = P, t->want = (struct range) { 0, 0 };
                }
                if (m > 1) {
                        t = add("MaxUnaligned", m);
                        SET(t->scav, { 0, P - (m * 2 - 1) });
                        t->max = m - 2, t->want = (struct range) { P - m, m };

                        t = add("SkipSmall", m);
                        SET(t->alloc, { 0, 64 - m }, { 64, 5 }, { 70, 11 }, { 82, P - 82 });
                        t->max = m, t->want = (struct range) { 64 - m, m };

                        t = add("SkipMisaligned", m);
                        SET(t->alloc, { 0, 64 - m }, { 64, 63 }, { 127 + m, P - (127 + m) });
                        t->max = m, t->want = (struct range) { 64 - m, m };

                        t = add("MaxLessThan", m);
                        SET(t->scav, { 0, P - m });
                        t->max = 1, t->want = (struct range) { P - m, m };
                }
        }

        const unsigned huge_sizes[] = { 256, 64, 512, 1024 };
        for (size_t k = 0; k < ELEMENTSOF(huge_sizes); k++) {
                unsigned bits = huge_sizes[k];
                char name[64];
                if (bits < P) {
                        snprintf(name, sizeof(name), "PreserveHugePageBottom/%u", bits);
                        t = add(name, 0);
                        SET(t->alloc, { bits + 2, P - (bits + 2) });
                        t->min = 1, t->max = 3, t->huge = bits, t->want = (struct range) { 0, bits + 2 };
                        if (3 * bits < P) {
                                snprintf(name, sizeof(name), "PreserveHugePageMiddle/%u", bits);
                                t = add(name, 0);
                                SET(t->alloc, { 0, bits - 10 }, { 2 * bits + 10, P - (2 * bits + 10) });
                                t->min = 1, t->max = 12, t->huge = bits, t->want = (struct range) { bits, bits + 10 };
                        }
                        snprintf(name, sizeof(name), "PreserveHugePageTop/%u", bits);
                        t = add(name, 0);
                        SET(t->alloc, { 0, P - bits });
                        t->min = 1, t->max = 1, t->huge = bits, t->want = (struct range) { P - bits, bits };
                } else if (bits == P) {
                        t = add("PreserveHugePageAll", 0);
                        t->min = 1, t->max = 1, t->huge = bits, t->want = (struct range) { 0, P };
                } else {
                        /* Bigger than a chunk: cannot be preserved; the heap core passes 0 then. */
                        t = add("PreserveHugePageNone", 0);
                        t->min = 1, t->max = 1, t->huge = 0, t->want = (struct range) { P - 1, 1 };
                }
        }
}

/* Go's makePallocData: alloc ranges (clearing scavenged), then scavenged ranges. */
static void make_palloc_data(struct heap_chunk *c, const struct test *t) {
        memset(c, 0, sizeof(*c));
        for (unsigned k = 0; k < MAXR; k++)
                if (t->alloc[k].n)
                        heap_chunk_alloc_range(c, t->alloc[k].i, t->alloc[k].n);
        for (unsigned k = 0; k < MAXR; k++)
                if (t->scav[k].n)
                        heap_bits_set_range(c->scav, t->scav[k].i, t->scav[k].n);
}

int main(void) {
        build_tests();
        for (unsigned k = 0; k < ntests; k++) {
                const struct test *t = &tests[k];
                struct heap_chunk c;
                unsigned start;
                make_palloc_data(&c, t);
                unsigned size = heap_find_scavenge_candidate(&c, P - 1, t->min, t->max, t->huge, &start);
                if (!(size == 0 && t->want.n == 0))
                        CHECKF(start == t->want.i && size == t->want.n,
                               "%s: candidate mismatch: got {%u, %u}, want {%u, %u}", t->name, start, size,
                               t->want.i, t->want.n);
                bool has = heap_has_scavenge_candidate(&c, t->min);
                CHECKF(has == (t->want.n != 0), "%s: hasScavengeCandidate = %d, want %d", t->name, has,
                       t->want.n != 0);
        }
        printf("%u cases\n", ntests);
        CHECK(ntests > 100);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * Ports mpallocbits_test.go (Go commit d29f5247): the tables of
 * TestPallocBitsAllocRange, TestMallocBitsPopcntRange,
 * TestPallocBitsSummarize (+ the random one against a slow summarize),
 * TestPallocBitsAlloc, TestPallocBitsFree and TestFindBitRange64.
 * A bitmap is HEAP_CHUNK_WORDS words, 1 = allocated. Go's ^uint(0) "not
 * found" is HEAP_FIND_NONE.
 */

#include <string.h>

#include "../lib/test.h"
#include "heap/palloc.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define NONE HEAP_FIND_NONE
#define MAXR 32

struct range {
        unsigned i, n;
};

typedef uint64_t bits_t[HEAP_CHUNK_WORDS];

static void make_bits(uint64_t *b, const struct range *r) {
        memset(b, 0, sizeof(bits_t));
        for (unsigned k = 0; k < MAXR; k++)
                if (r[k].n)
                        heap_bits_set_range(b, r[k].i, r[k].n);
}

static void invert(uint64_t *b) {
        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                b[w] = ~b[w];
}

static void check_bits(const char *name, const uint64_t *got, const uint64_t *want) {
        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                CHECKF(got[w] == want[w], "%s: word %u: got %016" PRIx64 ", want %016" PRIx64, name, w,
                       got[w], want[w]);
}

static void test_alloc_range(void) {
        static const struct {
                const char *name;
                unsigned i, n;
                uint64_t want[HEAP_CHUNK_WORDS];
        } tests[] = {
                { "OneLow", 0, 1, { [0] = 0x1 } },
                { "OneHigh", P - 1, 1, { [P / 64 - 1] = UINT64_C(1) << 63 } },
                { "Inner", 129, 5, { [2] = 0x3e } },
                { "Aligned", 128, 128, { [2] = UINT64_MAX, [3] = UINT64_MAX } },
                { "Begin", 0, 321, { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, 0x1 } },
                { "End", P - (64 * 3 + 1), 64 * 3 + 1,
                  { [P / 64 - 1] = UINT64_MAX, [P / 64 - 2] = UINT64_MAX, [P / 64 - 3] = UINT64_MAX,
                    [P / 64 - 4] = UINT64_C(1) << 63 } },
                { "All", 0, P, { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX } },
        };
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                bits_t b = {};
                heap_bits_set_range(b, tests[t].i, tests[t].n);
                check_bits(tests[t].name, b, tests[t].want);
                /* clearRange undoes it. */
                heap_bits_clear_range(b, tests[t].i, tests[t].n);
                bits_t zero = {};
                check_bits(tests[t].name, b, zero);
        }
}

static void test_popcnt_range(void) {
        struct pt {
                unsigned i, n, want;
        };
        static const struct {
                const char *name;
                struct range init[MAXR];
                struct pt tests[12];
        } tests[] = {
                { "None", {}, { { 0, 1, 0 }, { 5, 3, 0 }, { 2, 11, 0 }, { P / 4 + 1, P / 2, 0 }, { 0, P, 0 } } },
                { "All", { { 0, P } },
                  { { 0, 1, 1 }, { 5, 3, 3 }, { 2, 11, 11 }, { P / 4 + 1, P / 2, P / 2 }, { 0, P, P } } },
                { "Half", { { P / 2, P / 2 } },
                  { { 0, 1, 0 }, { 5, 3, 0 }, { 2, 11, 0 }, { P / 2 - 1, 1, 0 }, { P / 2, 1, 1 },
                    { P / 2 + 10, 1, 1 }, { P / 2 - 1, 2, 1 }, { P / 4, P / 4, 0 }, { P / 4, P / 4 + 1, 1 },
                    { P / 4 + 1, P / 2, P / 4 + 1 }, { 0, P, P / 2 } } },
                { "OddBound", { { 0, 111 } },
                  { { 0, 1, 1 }, { 5, 3, 3 }, { 2, 11, 11 }, { 110, 2, 1 }, { 99, 50, 12 }, { 110, 1, 1 },
                    { 111, 1, 0 }, { 99, 1, 1 }, { 120, 1, 0 }, { P / 2, P / 2, 0 }, { 0, P, 111 } } },
                { "Scattered",
                  { { 1, 3 }, { 5, 1 }, { 7, 1 }, { 10, 2 }, { 13, 1 }, { 15, 4 }, { 21, 1 }, { 23, 1 },
                    { 26, 2 }, { 30, 5 }, { 36, 2 }, { 40, 3 }, { 44, 6 }, { 51, 1 }, { 53, 2 }, { 58, 3 },
                    { 63, 1 }, { 67, 2 }, { 71, 10 }, { 84, 1 }, { 89, 7 }, { 99, 2 }, { 103, 1 }, { 107, 2 },
                    { 111, 1 }, { 113, 1 }, { 115, 1 }, { 118, 1 }, { 120, 2 }, { 125, 5 } },
                  { { 0, 11, 6 }, { 0, 64, 39 }, { 13, 64, 40 }, { 64, 64, 34 }, { 0, 128, 73 }, { 1, 128, 74 },
                    { 0, P, 75 } } },
        };
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                bits_t b;
                make_bits(b, tests[t].init);
                for (unsigned k = 0; k < 12 && tests[t].tests[k].n; k++) {
                        const struct pt *h = &tests[t].tests[k];
                        unsigned got = heap_bits_popcnt_range(b, h->i, h->n);
                        CHECKF(got == h->want, "%s: popcnt(i=%u, n=%u): got %u, want %u", tests[t].name, h->i,
                               h->n, got, h->want);
                }
        }
}

/* Go's SummarizeSlow: walks the bits one by one. */
static struct heap_sum summarize_slow(const uint64_t *b) {
        unsigned start = 0, max = 0, end = 0, cur = 0;
        bool start_done = false;
        for (unsigned i = 0; i < P; i++) {
                bool alloc = (b[i / 64] >> (i % 64)) & 1;
                if (alloc) {
                        if (!start_done) {
                                start = cur;
                                start_done = true;
                        }
                        if (cur > max)
                                max = cur;
                        cur = 0;
                } else
                        cur++;
        }
        if (!start_done)
                return heap_sum_make(P, P, P);
        if (cur > max)
                max = cur;
        end = cur;
        return heap_sum_make(start, max, end);
}

static void check_sum(const char *name, struct heap_sum got, struct heap_sum want) {
        CHECKF(heap_sum_eq(got, want), "%s: got (start %u, max %u, end %u), want (%u, %u, %u)", name, got.start,
               got.max, got.end, want.start, want.max, want.end);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15;
static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void test_summarize(void) {
        static const struct {
                const char *name;
                struct range free[MAXR];
                struct heap_sum want;
        } tests[] = {
                { "NoneFree", {}, { 0, 0, 0 } },
                { "OnlyStart", { { 0, 10 } }, { 10, 10, 0 } },
                { "OnlyEnd", { { P - 40, 40 } }, { 0, 40, 40 } },
                { "StartAndEnd", { { 0, 11 }, { P - 23, 23 } }, { 11, 23, 23 } },
                { "StartMaxEnd", { { 0, 4 }, { 50, 100 }, { P - 4, 4 } }, { 4, 100, 4 } },
                { "OnlyMax", { { 1, 20 }, { 35, 241 }, { P - 50, 30 } }, { 0, 241, 0 } },
                { "MultiMax", { { 35, 2 }, { 40, 5 }, { 100, 5 } }, { 0, 5, 0 } },
                { "One", { { 2, 1 } }, { 0, 1, 0 } },
                { "AllFree", { { 0, P } }, { P, P, P } },
        };
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                bits_t b;
                make_bits(b, tests[t].free);
                invert(b);
                check_sum(tests[t].name, heap_palloc_summarize(b), tests[t].want);
        }

        /* TestPallocBitsSummarizeRandom, plus the patterns of BenchmarkPallocBitsSummarize. */
        for (unsigned i = 0; i < 1000; i++) {
                bits_t b;
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                        b[w] = rng();
                check_sum("Random", heap_palloc_summarize(b), summarize_slow(b));
                /* Sparser and denser variants reach the in-word search harder. */
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                        b[w] = rng() & rng() & rng();
                check_sum("RandomSparse", heap_palloc_summarize(b), summarize_slow(b));
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                        b[w] = rng() | rng() | rng();
                check_sum("RandomDense", heap_palloc_summarize(b), summarize_slow(b));
        }
        static const uint64_t patterns[] = {
                0, UINT64_MAX, 0xaa, 0xaaaaaaaaaaaaaaaa, 0x80000000aaaaaaaa, 0xaaaaaaaa00000001,
                0xbbbbbbbbbbbbbbbb, 0x80000000bbbbbbbb, 0xbbbbbbbb00000001, 0xcccccccccccccccc,
                0x4444444444444444, 0x4040404040404040, 0x4000400040004000, 0x1000404044ccaaff,
        };
        for (size_t k = 0; k < ELEMENTSOF(patterns); k++) {
                bits_t b;
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                        b[w] = patterns[k];
                char name[64];
                snprintf(name, sizeof(name), "Unpacked%02" PRIX64, patterns[k]);
                check_sum(name, heap_palloc_summarize(b), summarize_slow(b));
        }
}

/* Not in Go: the incremental summary after freeing or allocating a range agrees with summarize. */
static void test_summarize_after(void) {
        unsigned checked = 0;
        for (unsigned iter = 0; iter < 20000; iter++) {
                bits_t b;
                uint64_t density = rng() % 3;
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++)
                        b[w] = density == 0 ? rng() : density == 1 ? (rng() & rng() & rng()) : (rng() | rng() | rng());
                if (rng() % 8 == 0)
                        memset(b, rng() % 2 ? 0xff : 0, sizeof(b));
                unsigned i = (unsigned) (rng() % P), n = 1 + (unsigned) (rng() % (rng() % 2 ? 8 : P));
                if (i + n > P)
                        n = P - i;
                bool alloc = rng() % 2;
                /* Make [i, i+n) wholly the opposite of what the operation makes it. */
                if (alloc)
                        heap_bits_clear_range(b, i, n);
                else
                        heap_bits_set_range(b, i, n);
                struct heap_sum sum = heap_palloc_summarize(b);
                if (alloc)
                        heap_bits_set_range(b, i, n);
                else
                        heap_bits_clear_range(b, i, n);
                heap_palloc_summarize_after(b, &sum, i, n, alloc);
                struct heap_sum want = heap_palloc_summarize(b);
                CHECKF(heap_sum_eq(sum, want), "%s [%u, +%u): got (%u, %u, %u), want (%u, %u, %u)",
                       alloc ? "alloc" : "free", i, n, sum.start, sum.max, sum.end, want.start, want.max, want.end);
                checked++;
        }
        CHECK(checked == 20000);
}

static void test_alloc(void) {
        static const struct {
                const char *name;
                struct range before[MAXR];
                struct range after[MAXR];
                unsigned npages;
                unsigned hits[8];
                unsigned nhits;
        } tests[] = {
                { "AllFree1", {}, { { 0, 6 } }, 1, { 0, 1, 2, 3, 4, 5 }, 6 },
                { "AllFree2", {}, { { 0, 12 } }, 2, { 0, 2, 4, 6, 8, 10 }, 6 },
                { "AllFree5", {}, { { 0, 25 } }, 5, { 0, 5, 10, 15, 20 }, 5 },
                { "AllFree64", {}, { { 0, 192 } }, 64, { 0, 64, 128 }, 3 },
                { "AllFree65", {}, { { 0, 195 } }, 65, { 0, 65, 130 }, 3 },
                { "SomeFree64", { { 0, 32 }, { 64, 32 }, { 100, P - 100 } },
                  { { 0, 32 }, { 64, 32 }, { 100, P - 100 } }, 64, { NONE }, 1 },
                { "NoneFree1", { { 0, P } }, { { 0, P } }, 1, { NONE, NONE }, 2 },
                { "NoneFree2", { { 0, P } }, { { 0, P } }, 2, { NONE, NONE }, 2 },
                { "NoneFree5", { { 0, P } }, { { 0, P } }, 5, { NONE, NONE }, 2 },
                { "NoneFree65", { { 0, P } }, { { 0, P } }, 65, { NONE, NONE }, 2 },
                { "ExactFit1", { { 0, P / 2 - 3 }, { P / 2 - 2, P / 2 + 2 } }, { { 0, P } }, 1, { P / 2 - 3, NONE }, 2 },
                { "ExactFit2", { { 0, P / 2 - 3 }, { P / 2 - 1, P / 2 + 1 } }, { { 0, P } }, 2, { P / 2 - 3, NONE }, 2 },
                { "ExactFit5", { { 0, P / 2 - 3 }, { P / 2 + 2, P / 2 - 2 } }, { { 0, P } }, 5, { P / 2 - 3, NONE }, 2 },
                { "ExactFit65", { { 0, P / 2 - 31 }, { P / 2 + 34, P / 2 - 34 } }, { { 0, P } }, 65,
                  { P / 2 - 31, NONE }, 2 },
                { "SomeFree161", { { 0, 185 }, { 331, 1 } }, { { 0, 185 }, { 331, 162 } }, 161, { 332 }, 1 },
        };
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                bits_t b, want;
                make_bits(b, tests[t].before);
                for (unsigned k = 0; k < tests[t].nhits; k++) {
                        unsigned a = heap_palloc_find(b, tests[t].npages, 0, NULL);
                        CHECKF(a == tests[t].hits[k], "%s: find #%u picked wrong index: got %u, want %u",
                               tests[t].name, k + 1, a, tests[t].hits[k]);
                        if (a != tests[t].hits[k])
                                break;
                        if (a != NONE)
                                heap_bits_set_range(b, a, tests[t].npages);
                }
                make_bits(want, tests[t].after);
                check_bits(tests[t].name, b, want);
        }
}

static void test_free(void) {
        static const struct {
                const char *name;
                struct range before_inv[MAXR];
                struct range after_inv[MAXR];
                unsigned frees[8];
                unsigned nfrees;
                unsigned npages;
        } tests[] = {
                { "SomeFree", { { 0, 32 }, { 64, 32 }, { 100, 1 } }, { { 0, 33 }, { 64, 32 }, { 100, 1 } }, { 32 }, 1, 1 },
                { "NoneFree1", {}, { { 0, 6 } }, { 0, 1, 2, 3, 4, 5 }, 6, 1 },
                { "NoneFree2", {}, { { 0, 12 } }, { 0, 2, 4, 6, 8, 10 }, 6, 2 },
                { "NoneFree5", {}, { { 0, 25 } }, { 0, 5, 10, 15, 20 }, 5, 5 },
                { "NoneFree64", {}, { { 0, 192 } }, { 0, 64, 128 }, 3, 64 },
                { "NoneFree65", {}, { { 0, 195 } }, { 0, 65, 130 }, 3, 65 },
        };
        for (size_t t = 0; t < ELEMENTSOF(tests); t++) {
                bits_t b, want;
                make_bits(b, tests[t].before_inv);
                invert(b);
                for (unsigned k = 0; k < tests[t].nfrees; k++)
                        heap_bits_clear_range(b, tests[t].frees[k], tests[t].npages);
                make_bits(want, tests[t].after_inv);
                invert(want);
                check_bits(tests[t].name, b, want);
        }
}

static void check_find_bit_range(uint64_t x, unsigned n, unsigned want) {
        unsigned i = heap_find_bit_range64(x, n);
        if (want == NONE)
                CHECKF(i >= 64, "findBitRange64(%016" PRIx64 ", %u): got %u, want failure", x, n, i);
        else
                CHECKF(i == want, "findBitRange64(%016" PRIx64 ", %u): got %u, want %u", x, n, i, want);
}

static void test_find_bit_range64(void) {
        for (unsigned i = 1; i <= 64; i++)
                check_find_bit_range(UINT64_MAX, i, 0);
        for (unsigned i = 1; i <= 64; i++)
                check_find_bit_range(0, i, NONE);
        check_find_bit_range(0x8000000000000000, 1, 63);
        check_find_bit_range(0xc000010001010000, 2, 62);
        check_find_bit_range(0xc000010001030000, 2, 16);
        check_find_bit_range(0xe000030001030000, 3, 61);
        check_find_bit_range(0xe000030001070000, 3, 16);
        check_find_bit_range(0xffff03ff01070000, 16, 48);
        check_find_bit_range(0xffff03ff0107ffff, 16, 0);
        check_find_bit_range(0x0fff03ff01079fff, 16, NONE);
}

int main(void) {
        test_alloc_range();
        test_popcnt_range();
        test_summarize();
        test_summarize_after();
        test_alloc();
        test_free();
        test_find_bit_range64();
        return TEST_END();
}

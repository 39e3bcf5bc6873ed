/* SPDX-License-Identifier: MIT */
/*
 * Ports TestFillAligned (mgcscavenge_test.go, Go commit d29f5247): for
 * every m from 1 to 64 (powers of two), fillAligned against a naive
 * version on the fixed words of Go's table, on 1000 random words, and on
 * 1000 words built from m-groups that are either zero or random.
 */

#include "../lib/test.h"
#include "heap/scavenge.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

static uint64_t fill_aligned_slow(uint64_t x, unsigned m) {
        if (m == 1)
                return x;
        uint64_t out = 0;
        for (unsigned i = 0; i < 64; i += m)
                for (unsigned j = 0; j < m; j++)
                        if (x & (UINT64_C(1) << (i + j))) {
                                out |= (m == 64 ? UINT64_MAX : (UINT64_C(1) << m) - 1) << i;
                                break;
                        }
        return out;
}

static unsigned checked;

static void check(uint64_t x, unsigned m) {
        uint64_t want = fill_aligned_slow(x, m), got = heap_fill_aligned(x, m);
        checked++;
        CHECKF(got == want, "fillAligned(%016" PRIx64 ", %u): got %016" PRIx64 ", want %016" PRIx64, x, m,
               got, want);
}

static uint64_t rng_state = 0x2545f4914f6cdd1d;
static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

int main(void) {
        /* The example of Go's comment. */
        CHECK_EQ_U64(heap_fill_aligned(0x0100a3, 8), 0xff00ff);

        for (unsigned m = 1; m <= 64; m *= 2) {
                const uint64_t tests[] = {
                        0x0000000000000000, 0x00000000ffffffff, 0xffffffff00000000, 0x8000000000000001,
                        0xf00000000000000f, 0xf00000010050000f, 0xffffffffffffffff, 0x0000000000000001,
                        0x0000000000000002, 0x0000000000000008, UINT64_C(1) << (m - 1),
                        m < 64 ? UINT64_C(1) << m : 0, /* Go's 1<<64 is 0 */
                        0xb02b9effcf137016, 0x3975a076a9fbff18, 0x0f8c88ec3b81506e, 0x60f14d80ef2fa0e6,
                };
                for (size_t i = 0; i < ELEMENTSOF(tests); i++)
                        check(tests[i], m);
                for (unsigned i = 0; i < 1000; i++) {
                        check(rng(), m);
                        if (m > 1) {
                                /* Each m-group either zero or random. */
                                uint64_t val = 0;
                                for (unsigned n = 0; n < 64; n += m)
                                        if (rng() % 2 == 0)
                                                val |= (rng() & (m == 64 ? UINT64_MAX : (UINT64_C(1) << m) - 1)) << n;
                                check(val, m);
                        }
                }
        }
        CHECKF(checked > 7 * 1000, "only %u words checked", checked);
        return TEST_END();
}

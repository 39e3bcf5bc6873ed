/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The smallest harness that does the job: a test program counts its failed
 * checks, prints each with file:line and what it got, and exits non-zero if
 * any failed (77 = skipped, with a line saying why). Table-driven tests print
 * the case name with the failure, as Go's do.
 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int test_failures;

/* splitmix64's output function: a good 64-bit hash of x, and a generator as
 * test_rnd below (small, fast, every seed a good one). */
static inline uint64_t test_mix64(uint64_t x) {
        x += UINT64_C(0x9e3779b97f4a7c15);
        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

/* splitmix64: the next number of the sequence whose state is *state. */
static inline uint64_t test_rnd(uint64_t *state) {
        uint64_t x = *state;
        *state += UINT64_C(0x9e3779b97f4a7c15);
        return test_mix64(x);
}

#define TEST_DEFINE_GLOBALS int test_failures

#define CHECK(cond)                                                                  \
        do {                                                                         \
                if (!(cond)) {                                                       \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
                                __LINE__, #cond);                                    \
                        test_failures++;                                             \
                }                                                                    \
        } while (0)

#define CHECKF(cond, ...)                                                            \
        do {                                                                         \
                if (!(cond)) {                                                       \
                        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__,       \
                                __LINE__, #cond);                                    \
                        fprintf(stderr, __VA_ARGS__);                                \
                        fputc('\n', stderr);                                         \
                        test_failures++;                                             \
                }                                                                    \
        } while (0)

#define CHECK_EQ_U64(got, want)                                                      \
        do {                                                                         \
                uint64_t _g = (uint64_t) (got), _w = (uint64_t) (want);              \
                if (_g != _w) {                                                      \
                        fprintf(stderr, "%s:%d: %s = %" PRIu64 " (0x%" PRIx64        \
                                "), want %" PRIu64 " (0x%" PRIx64 ")\n",             \
                                __FILE__, __LINE__, #got, _g, _g, _w, _w);           \
                        test_failures++;                                             \
                }                                                                    \
        } while (0)

#define TEST_SKIP(...)                                                               \
        do {                                                                         \
                printf("SKIP: ");                                                    \
                printf(__VA_ARGS__);                                                 \
                printf("\n");                                                        \
                exit(77);                                                            \
        } while (0)

/* Ends main(): prints a summary line and returns the exit status. */
#define TEST_END()                                                                   \
        ({                                                                           \
                if (test_failures)                                                   \
                        fprintf(stderr, "%d check(s) failed\n", test_failures);      \
                else                                                                 \
                        printf("all checks passed\n");                               \
                test_failures ? 1 : 0;                                               \
        })

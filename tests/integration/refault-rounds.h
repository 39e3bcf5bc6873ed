/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The refault tests' workload (test-kernel-daemon-refaults counts the
 * faults with BPF, test-daemon-refaults without it): a client keeps
 * REFAULT_KEEP_MIB and, round after round, allocates, touches and frees
 * REFAULT_CYCLE_MIB more, pausing between rounds long enough for a daemon
 * with generation_interval 100 ms and a 50% budget to release what it
 * freed, so that each round touches released pages again. The last
 * generations' pacing lines are written before it returns. Failures are
 * checks (test.h); returns 0 or the first failed allocation's error.
 * refault_summary then prints the figures and checks what both tests
 * expect: something released, and a pacing line with a raised goal.
 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

#define REFAULT_KEEP_MIB 16
#define REFAULT_CYCLE_MIB 16
#define REFAULT_MiB (UINT64_C(1) << 20)

/* n MiB blocks into offs, each written with byte: 0 or the first failed allocation's error. */
static inline int refault_fill(scav_pool *p, uint64_t *offs, unsigned n, int byte) {
        for (unsigned i = 0; i < n; i++) {
                int r = scav_alloc(p, REFAULT_MiB, 0, &offs[i]);
                CHECKF(r == 0, "scav_alloc: %s", strerror(-r));
                if (r < 0)
                        return r;
                memset(scav_ptr(p, offs[i]), byte, REFAULT_MiB);
        }
        return 0;
}

/* *released_before: released_total once the kept memory is in place. */
static inline int refault_rounds(scav_pool *p, unsigned rounds, uint64_t *released_before) {
        uint64_t keep[REFAULT_KEEP_MIB], cyc[REFAULT_CYCLE_MIB];
        struct scav_stats st;
        int r;

        r = refault_fill(p, keep, REFAULT_KEEP_MIB, 1);
        if (r < 0)
                return r;
        CHECK(scav_stats(p, &st) == 0);
        *released_before = st.released_total;

        for (unsigned round = 0; round < rounds; round++) {
                r = refault_fill(p, cyc, REFAULT_CYCLE_MIB, 2);
                if (r < 0)
                        return r;
                usleep(50000);
                for (int i = 0; i < REFAULT_CYCLE_MIB; i++)
                        CHECK(scav_free(p, cyc[i]) == 0);
                usleep(400000);
        }
        usleep(300000);
        return 0;
}

/* What both tests say and check first, after the rounds; the pool's statistics in *st. */
static inline void refault_summary(struct test_daemon *d, scav_pool *p, unsigned rounds,
                                       uint64_t released_before, struct scav_stats *st) {
        unsigned raised;

        CHECK(scav_stats(p, st) == 0);
        raised = test_daemon_log_count(d, "pacing:", "goal +");
        printf("%u rounds of %d MiB: released %" PRIu64 " MiB, faults %" PRIu64 ", refaults %" PRIu64
               " pages (%.1f MiB), %u pacing lines with a raised goal\n", rounds, REFAULT_CYCLE_MIB,
               (st->released_total - released_before) / REFAULT_MiB, st->faults, st->refaults,
               (double) st->refaults * 4096 / REFAULT_MiB, raised);
        CHECKF(st->released_total > released_before, "nothing released between rounds");
        CHECKF(raised > 0, "no pacing line raised the goal for refaults");
}

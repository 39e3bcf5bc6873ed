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
 */

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../lib/test.h"
#include "scav.h"

#define REFAULT_KEEP_MIB 16
#define REFAULT_CYCLE_MIB 16
#define REFAULT_MiB (UINT64_C(1) << 20)

/* *released_before: released_total once the kept memory is in place. */
static inline int refault_rounds(scav_pool *p, unsigned rounds, uint64_t *released_before) {
        uint64_t keep[REFAULT_KEEP_MIB], cyc[REFAULT_CYCLE_MIB];
        struct scav_stats st;
        int r;

        for (int i = 0; i < REFAULT_KEEP_MIB; i++) {
                r = scav_alloc(p, REFAULT_MiB, 0, &keep[i]);
                CHECKF(r == 0, "scav_alloc: %s", strerror(-r));
                if (r < 0)
                        return r;
                memset(scav_ptr(p, keep[i]), 1, REFAULT_MiB);
        }
        CHECK(scav_stats(p, &st) == 0);
        *released_before = st.released_total;

        for (unsigned round = 0; round < rounds; round++) {
                for (int i = 0; i < REFAULT_CYCLE_MIB; i++) {
                        r = scav_alloc(p, REFAULT_MiB, 0, &cyc[i]);
                        CHECKF(r == 0, "scav_alloc: %s", strerror(-r));
                        if (r < 0)
                                return r;
                        memset(scav_ptr(p, cyc[i]), 2, REFAULT_MiB);
                }
                usleep(50000);
                for (int i = 0; i < REFAULT_CYCLE_MIB; i++)
                        CHECK(scav_free(p, cyc[i]) == 0);
                usleep(400000);
        }
        usleep(300000);
        return 0;
}

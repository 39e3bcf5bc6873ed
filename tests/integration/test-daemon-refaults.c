/* SPDX-License-Identifier: MIT */
/*
 * Refaults without BPF: the heap itself counts the released pages that
 * allocation takes back (each faults when first written), and the daemon
 * takes that count where BPF cannot count faults (bpf = off, no privileges,
 * an old kernel), with the workload of test-kernel-daemon-refaults
 * (refault-rounds.h). The refaults must be counted (scav_stats, scavctl
 * status) and must raise the pool's goal ("goal +" on a pacing line), with
 * no page fault counted.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "refault-rounds.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define MiB REFAULT_MiB
#define POOL "rf"
#define ROUNDS 8

static const char config[] =
        "[daemon]\n"
        "scavtrace = 2\n"
        "scavenge_percent = 50\n"
        "generation_interval = 100ms\n"
        "bpf = off\n"
        "pressure = off\n"
        "\n"
        "[pool " POOL "]\n"
        "capacity = 256M\n";

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        scav_pool *p = NULL;
        uint64_t released_before;
        char out[8192];
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = test_daemon_start(&d, config);
        if (r < 0) {
                fprintf(stderr, "test_daemon_start: %s\n", strerror(-r));
                return 1;
        }
        r = scav_open(POOL, &p);
        CHECKF(r == 0, "scav_open: %s", strerror(-r));
        if (r < 0 || refault_rounds(p, ROUNDS, &released_before) < 0)
                goto out;

        refault_summary(&d, p, ROUNDS, released_before, &st);
        CHECKF(st.faults == 0, "faults %" PRIu64 " counted with bpf = off", st.faults);
        /* Each round after the first takes back what the daemon released. */
        CHECKF(st.refaults * 4096 >= REFAULT_CYCLE_MIB * MiB, "refaults %" PRIu64 " pages: less than one round",
               st.refaults);
        /* Not more than the rounds allocated (growth is not a refault). */
        CHECKF(st.refaults * 4096 <= (uint64_t) ROUNDS * REFAULT_CYCLE_MIB * MiB,
               "refaults %" PRIu64 " pages: more than allocated", st.refaults);

        CHECK(test_scavctl(&d, out, sizeof(out), "--json", "status", POOL, NULL) == 0);
        CHECKF(strstr(out, "\"refaults\":") && !strstr(out, "\"refaults\":0"), "json: %s", out);
        CHECK(test_pool_check(&d, POOL));
out:
        if (p)
                scav_close(p);
        if (test_failures)
                test_daemon_dump_log(&d);
        CHECK(test_daemon_stop(&d) == 0);
        test_daemon_cleanup(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * Refaults (issue 6): memory the scavenger releases and the client touches
 * again at once shows up as faults beyond the heap's growth, is counted per
 * pool (scav_stats, scavctl status), and raises the pool's goal (the pacing
 * line of the trace says "refaults N, goal +X%").
 *
 * A client keeps 16 MiB and, for a few seconds, repeatedly allocates,
 * touches and frees 16 MiB more, pausing between rounds long enough for the
 * daemon (generation_interval 100 ms, 50% budget) to release the freed
 * memory: each round touches released pages again.
 */

#include "test-kernel-daemon.h"
#include <systemd/sd-event.h>

#include "../../daemon/kernel.h"
#include "refault-rounds.h"

TEST_DEFINE_GLOBALS;

#define ROUNDS 12

static const char config[] =
        "[daemon]\n"
        "scavtrace = 2\n"
        "scavenge_percent = 50\n"
        "generation_interval = 100ms\n"
        "bpf = on\n"
        "pressure = off\n"
        "\n"
        "[pool " KD_POOL "]\n"
        "capacity = 256M\n";

int main(void) {
        sd_event *e = NULL;
        kernel_watch *k = NULL;
        struct test_daemon d;
        struct scav_stats st;
        scav_pool *p = NULL;
        uint64_t released_before;
        char out[8192];
        int r;

        /* Can this process have BPF at all? Else the daemon with bpf = on cannot. */
        CHECK(sd_event_new(&e) >= 0);
        r = kernel_watch_new(e, CONFIG_ON, PRESSURE_OFF, NULL, NULL, &k);
        kernel_watch_free(k);
        sd_event_unref(e);
        if (r < 0)
                TEST_SKIP("no BPF here: page faults cannot be counted (%s)", strerror(-r));

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = test_daemon_start(&d, config);
        if (r < 0) {
                fprintf(stderr, "test_daemon_start: %s\n", strerror(-r));
                return 1;
        }
        r = scav_open(KD_POOL, &p);
        CHECKF(r == 0, "scav_open: %s", strerror(-r));
        if (r < 0 || refault_rounds(p, ROUNDS, &released_before) < 0)
                goto out;

        refault_summary(&d, p, ROUNDS, released_before, &st);
        /* Every page released and touched again is a refault; growth is not. */
        CHECKF(st.refaults > 0, "no refaults counted (faults %" PRIu64 ")", st.faults);
        CHECKF(st.faults >= st.refaults, "refaults %" PRIu64 " > faults %" PRIu64, st.refaults, st.faults);

        /* scavctl shows them, in the table as well as in JSON. */
        CHECK(test_scavctl(&d, out, sizeof(out), "status", KD_POOL, NULL) == 0);
        CHECKF(strstr(out, "REFAULTS") && strstr(out, "FAULTS") && strstr(out, "PRESSURE"), "table: %s", out);
        CHECK(test_scavctl(&d, out, sizeof(out), "--json", "status", KD_POOL, NULL) == 0);
        CHECKF(kd_json_u64(out, "refaults") >= st.refaults, "json: %s", out);
        CHECK(test_pool_check(&d, KD_POOL));
out:
        if (p)
                scav_close(p);
        if (test_failures)
                test_daemon_dump_log(&d);
        CHECK(test_daemon_stop(&d) == 0);
        test_daemon_cleanup(&d);
        return TEST_END();
}

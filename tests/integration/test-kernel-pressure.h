/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The test both pressure programs run: a kernel_watch in the given modes
 * must call back with want_why (NULL: any reason) within deadline_usec of
 * the reader starting. Skips when the watch cannot have want_mode or the
 * machine cannot make memcg pressure.
 */
#include "../../daemon/kernel.h"
#include "../lib/test.h"
#include "test-kernel-memcg.h"

struct pressure_state {
        const char *want_why;
        uint64_t first_usec;
        unsigned hits, other;
};

static void on_pressure(const char *why, void *userdata) {
        struct pressure_state *s = userdata;

        if (s->want_why && strcmp(why, s->want_why) != 0) {
                s->other++;
                return;
        }
        if (s->hits++ == 0)
                s->first_usec = now_usec();
}

static int pressure_test(enum config_tristate bpf, enum config_pressure pressure, const char *want_mode,
                         const char *want_why, enum memcg_load load, uint64_t deadline_usec) {
        sd_event *e = NULL;
        kernel_watch *k = NULL;
        struct pressure_state s = { .want_why = want_why };
        struct memcg_pressure m;
        uint64_t start, hits_at_first, window_usec = 300000;
        int r;

        r = sd_event_new(&e);
        if (r < 0) {
                fprintf(stderr, "sd_event_new: %s\n", strerror(-r));
                return 1;
        }
        r = kernel_watch_new(e, bpf, pressure, on_pressure, &s, &k);
        if (r == -EOPNOTSUPP)
                TEST_SKIP("kernel_watch_new cannot have pressure from %s here", want_mode);
        if (r < 0) {
                fprintf(stderr, "kernel_watch_new: %s\n", strerror(-r));
                return 1;
        }
        CHECKF(strcmp(kernel_watch_mode(k), want_mode) == 0, "mode %s, want %s", kernel_watch_mode(k), want_mode);

        r = memcg_pressure_setup_or_skip(&m);
        if (r > 0)
                goto out;

        r = memcg_pressure_start(&m, load);
        CHECKF(r == 0, "starting the reader: %s", strerror(r));
        if (r > 0)
                goto out;
        start = now_usec();

        while (!s.hits && now_usec() - start < deadline_usec) {
                r = sd_event_run(e, deadline_usec - (now_usec() - start));
                if (r < 0) {
                        fprintf(stderr, "sd_event_run: %s\n", strerror(-r));
                        break;
                }
        }
        CHECKF(s.hits > 0, "no %s pressure callback within %" PRIu64 " ms (%u of other reasons, %" PRIu64
               " reclaim entries seen by BPF)", want_why ? want_why : "", deadline_usec / 1000, s.other,
               kernel_watch_reclaim_seen(k));
        if (!s.hits)
                goto out;
        printf("%s: first \"%s\" callback %.1f ms after the reader started\n", want_mode,
               want_why ? want_why : "pressure", (s.first_usec - start) / 1000.0);

        /* Keep reclaiming for a while: the callbacks must stay rate-limited
         * (BPF: one per reason per 10 ms) while the kernel reclaims far more
         * often. */
        hits_at_first = s.hits;
        start = now_usec();
        while (now_usec() - start < window_usec)
                if (sd_event_run(e, window_usec - (now_usec() - start)) < 0)
                        break;
        window_usec = now_usec() - start;
        printf("%s: %u callbacks in the next %.0f ms, %" PRIu64 " events, %" PRIu64 " reclaim entries seen\n",
               want_mode, s.hits - (unsigned) hits_at_first, window_usec / 1000.0,
               kernel_watch_pressure_events(k), kernel_watch_reclaim_seen(k));
        if (strcmp(want_mode, "bpf") == 0) {
                CHECKF(s.hits - hits_at_first <= window_usec / 10000 + 5,
                       "%u callbacks in %" PRIu64 " ms: not rate-limited", s.hits - (unsigned) hits_at_first,
                       window_usec / 1000);
                CHECK(kernel_watch_reclaim_seen(k) >= s.hits);
        }
        CHECK(kernel_watch_pressure_events(k) >= s.hits);

out:
        memcg_pressure_cleanup(&m);
        kernel_watch_free(k);
        sd_event_unref(e);
        return TEST_END();
}

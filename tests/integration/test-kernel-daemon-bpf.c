/* SPDX-License-Identifier: MIT */
/*
 * Reclaim to release through BPF, end to end (issue 6): the daemon runs
 * with bpf = on, pressure = bpf, scavenge_percent = 0; this process holds
 * 256 MiB of a pool free but backed; a reader thrashing a 64 MiB memory
 * cgroup makes the kernel reclaim. The daemon must release the pool's free
 * memory promptly after the first reclaim event, which this process times
 * with its own kernel_watch on the same tracepoint: the median of three
 * rounds is printed (issue 6's figure: under 200 ms on a quiet machine)
 * and checked against a bound a loaded machine keeps too (1 s; with
 * scavenge_percent = 0 nothing but pressure releases at all). Along the way: the daemon counted this client's page faults
 * in the pool and its slot, and reports the pressure events (scavctl).
 */

#include "../../daemon/kernel.h"
#include "test-kernel-daemon.h"

TEST_DEFINE_GLOBALS;

#define ROUNDS 3
#define BAR_USEC 1000000
#define ROUND_TIMEOUT_USEC (5 * 1000000ULL)

static const char config[] =
        "[daemon]\n"
        "scavtrace = 1\n"
        "scavenge_percent = 0\n"
        "bpf = on\n"
        "pressure = bpf\n"
        "\n"
        "[pool " KD_POOL "]\n"
        "capacity = 1G\n"
        "scavenge_percent = 0\n";

struct first_event {
        uint64_t usec;
        unsigned hits;
};

static void on_reclaim(const char *why, void *userdata) {
        struct first_event *f = userdata;

        if (strcmp(why, "memcg reclaim") == 0 && f->hits++ == 0)
                f->usec = now_usec();
}

/* One round: returns the latency from the first memcg reclaim event to the
 * release in *latency, 1 if something else released the pool first (retry),
 * 0 on success, negative on failure. */
static int round_once(sd_event *e, struct first_event *f, struct memcg_pressure *m, scav_pool *p,
                      uint64_t *latency) {
        uint64_t before, start, released_usec = 0, began_usec = 0, backed = 0;
        int r;

        r = kd_fill_free_backed(p, &before);
        if (r < 0)
                return r;

        /* Whatever reclaim happened before this round is not ours. */
        while (sd_event_run(e, 0) > 0)
                ;
        *f = (struct first_event) {};
        usleep(20000);
        if (kd_backed(p) + (KD_FREE - KD_LEFT) <= before)
                return 1;
        while (sd_event_run(e, 0) > 0)
                ;
        if (f->hits)
                return 1;       /* someone else's memcg is reclaiming: try again */

        r = memcg_pressure_start(m, MEMCG_READ);
        if (r > 0)
                return -r;
        start = now_usec();
        while (now_usec() - start < ROUND_TIMEOUT_USEC) {
                (void) sd_event_run(e, 1000);
                backed = kd_backed(p);
                if (!began_usec && backed + MiB <= before)
                        began_usec = now_usec();
                if (backed + (KD_FREE - KD_LEFT) <= before) {
                        released_usec = now_usec();
                        break;
                }
        }
        memcg_pressure_stop(m);
        /* Late ring buffer records of this round. */
        while (sd_event_run(e, 0) > 0)
                ;

        if (!released_usec) {
                fprintf(stderr, "not released within %llu s: %" PRIu64 " of %" PRIu64 " MiB still backed, "
                        "%u memcg reclaim events seen here\n", ROUND_TIMEOUT_USEC / 1000000, backed / MiB,
                        before / MiB, f->hits);
                return -ETIMEDOUT;
        }
        if (!f->hits) {
                fprintf(stderr, "released, but this process saw no memcg reclaim event\n");
                return -ENOMSG;
        }
        *latency = released_usec > f->usec ? released_usec - f->usec : 0;
        printf("round: released %" PRIu64 " MiB %.1f ms after the first memcg reclaim event "
               "(%.1f ms after the reader started; releasing began at %.1f ms)\n", (before - backed) / MiB,
               *latency / 1000.0, (released_usec - start) / 1000.0,
               ((began_usec > f->usec ? began_usec - f->usec : 0)) / 1000.0);
        return 0;
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        kernel_watch *k = NULL;
        struct first_event f = {};
        struct memcg_pressure m;
        struct test_daemon d;
        uint64_t faults, pressure, my_faults;
        uint64_t lat[ROUNDS];
        unsigned n = 0, attempts = 0;
        scav_pool *p = NULL;
        int r;

        CHECK(sd_event_new(&e) >= 0);
        r = kernel_watch_new(e, CONFIG_AUTO, PRESSURE_BPF, on_reclaim, &f, &k);
        if (r == -EOPNOTSUPP)
                TEST_SKIP("no BPF here: reclaim tracepoints cannot be watched");
        CHECKF(r == 0, "kernel_watch_new: %s", strerror(-r));
        if (r < 0)
                return TEST_END();

        r = memcg_pressure_setup_or_skip(&m);
        if (r > 0)
                goto out;

        r = test_daemon_start(&d, config);
        CHECKF(r == 0, "starting the daemon with bpf = on: %s", strerror(-r));
        if (r < 0)
                goto out;

        r = scav_open(KD_POOL, &p);
        CHECKF(r == 0, "scav_open: %s", strerror(-r));
        if (r < 0)
                goto stop;

        while (n < ROUNDS && attempts++ < ROUNDS + 3) {
                r = round_once(e, &f, &m, p, &lat[n]);
                if (r == 1) {
                        printf("round: pool released or reclaim seen before the reader started; again\n");
                        continue;
                }
                CHECKF(r == 0, "round %u: %s", n, strerror(-r));
                if (r < 0)
                        break;
                n++;
        }
        CHECKF(n == ROUNDS, "%u of %u rounds done", n, ROUNDS);
        if (n > 0) {
                qsort(lat, n, sizeof(lat[0]), kd_cmp_u64);
                printf("median of %u rounds: %.1f ms (issue 6: under 200 ms on a quiet machine; checked: under "
                       "%d ms)\n", n, lat[n / 2] / 1000.0, BAR_USEC / 1000);
                CHECKF(lat[n / 2] < BAR_USEC, "median %.1f ms from reclaim to release", lat[n / 2] / 1000.0);
        }

        r = kd_daemon_counters(&d, &faults, &pressure, &my_faults);
        CHECKF(r == 0, "reading the daemon's counters: %s", strerror(-r));
        if (r == 0) {
                printf("daemon: %" PRIu64 " faults in the pool (%" PRIu64 " in this client's slot), %" PRIu64
                       " pressure events\n", faults, my_faults, pressure);
                /* The first round touched 256 MiB of fresh memory, each later
                 * one at least what the round before released. */
                uint64_t want = n ? KD_FREE / 4096 + (n - 1) * ((KD_FREE - KD_LEFT) / 4096) : 0;

                CHECKF(faults != UINT64_MAX && faults >= want, "pool faults %" PRIu64 ", want >= %" PRIu64,
                       faults, want);
                CHECKF(my_faults != UINT64_MAX && my_faults >= want, "slot faults %" PRIu64 ", want >= %" PRIu64,
                       my_faults, want);
                CHECKF(pressure != UINT64_MAX && pressure >= n, "pressure events %" PRIu64, pressure);
        }

        CHECKF(test_daemon_log_count(&d, "scav " KD_POOL " ", "(forced") >= n, "%u forced trace lines for %u rounds",
               test_daemon_log_count(&d, "scav " KD_POOL " ", "(forced"), n);
        if (!test_daemon_log_count(&d, "scav " KD_POOL " ", "memcg reclaim"))
                printf("NOTE: the forced trace lines do not say why (\"memcg reclaim\"): "
                       "trace_gen has no reason field yet\n");

        scav_close(p);
stop:
        r = test_daemon_stop(&d);
        CHECKF(r == 0, "daemon exit status %d", r);
        if (test_failures)
                test_daemon_dump_log(&d);
        test_daemon_cleanup(&d);
out:
        memcg_pressure_cleanup(&m);
        kernel_watch_free(k);
        return TEST_END();
}

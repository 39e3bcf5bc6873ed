/* SPDX-License-Identifier: MIT */
/*
 * Sharing across real processes that die: producers and consumers of a
 * ring of named frames (tests/lib/ring.c) run against the real daemon
 * while the test SIGKILLs one of them every few milliseconds, wherever it
 * is (inside a reference, a publish, an unpublish, the heap lock), and
 * starts another. Every frame carries a checksum that consumers verify,
 * hold and verify again: none may change under a reference. Once every
 * process is gone and the names are drained, nothing is in use, heap_check
 * passes, and the background scavenger gives the pages back (st_blocks).
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/ring.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define PRODUCERS 3
#define CONSUMERS 3
#define TOUCHERS 2
#define KIDS (PRODUCERS + CONSUMERS + TOUCHERS)
#define MIN_FRAMES 1200
#define MIN_KILLS 150
#define MIN_RECOVERIES 3

static const char config[] =
        "[daemon]\n"
        "generation_interval = 200ms\n"
        "[pool ring]\n"
        "capacity = 256M\n"
        "max_clients = 32\n"
        "max_names = 64\n";

static struct ring_shm *shm;
static int hp[2];
static pid_t kids[KIDS];
static uint64_t rng = 20261203;

static pid_t spawn(unsigned i) {
        uint64_t seed = test_rnd(&rng);
        pid_t pid = fork();
        if (pid == 0) {
                if (i < PRODUCERS)
                        ring_producer(shm, "ring", seed, hp[1]);
                if (i < PRODUCERS + CONSUMERS)
                        ring_consumer(shm, "ring", seed, hp[0]);
                ring_toucher(shm, "ring", seed);
        }
        return pid;
}

/* Kills that landed inside the heap lock (mid-ref, mid-publish, mid-unref...)
 * each left a recovery to the next locker. */
static uint64_t pool_recoveries(const struct test_daemon *d) {
        char out[4096] = "";
        if (test_scavctl(d, out, sizeof(out), "--json", "status", "ring", NULL) != 0)
                return 0;
        const char *rec = strstr(out, "\"recoveries\":");
        return rec ? strtoull(rec + strlen("\"recoveries\":"), NULL, 10) : 0;
}

static bool wait_clients(scav_pool *p, uint64_t want, unsigned timeout_ms) {
        struct scav_stats st;
        for (unsigned t = 0; t < timeout_ms; t += 10) {
                if (scav_stats(p, &st) == 0 && st.clients == want)
                        return true;
                usleep(10000);
        }
        return false;
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        unsigned kills = 0;
        scav_pool *p;

        CHECK(test_daemon_start(&d, config) == 0);
        shm = ring_shm_new();
        CHECK(shm != NULL);
        CHECK(ring_handle_pipe(hp) == 0);
        if (test_failures)
                return TEST_END();

        for (unsigned i = 0; i < KIDS; i++)
                kids[i] = spawn(i);

        uint64_t start = test_now_usec(), recoveries = 0;
        while (atomic_load(&shm->consumed) < MIN_FRAMES || kills < MIN_KILLS || recoveries < MIN_RECOVERIES) {
                if (test_now_usec() - start > 90 * 1000000ull || atomic_load(&shm->failures))
                        break;
                if (kills % 50 == 49)
                        recoveries = pool_recoveries(&d);
                usleep(2000 + (unsigned) (test_rnd(&rng) % 8000));
                /* Half the kills for the touchers: they are mostly inside the heap lock. */
                unsigned i = test_rnd(&rng) % 2 ? PRODUCERS + CONSUMERS + (unsigned) (test_rnd(&rng) % TOUCHERS)
                                                : (unsigned) (test_rnd(&rng) % (PRODUCERS + CONSUMERS));
                kill(kids[i], SIGKILL);
                int status;
                CHECK(waitpid(kids[i], &status, 0) == kids[i]);
                if (!WIFSIGNALED(status))
                        fprintf(stderr, "ring process %u exited with status %#x before it was killed\n", i, status);
                CHECK(WIFSIGNALED(status));
                kills++;
                kids[i] = spawn(i);
        }
        for (unsigned i = 0; i < KIDS; i++) {
                kill(kids[i], SIGKILL);
                waitpid(kids[i], NULL, 0);
        }
        printf("%u kills in %.1f s; %" PRIu64 " frames published, %" PRIu64 " consumed, %" PRIu64
               " handles redeemed, %" PRIu64 " stale, %" PRIu64 " lookups waited, %" PRIu64 " references touched\n",
               kills, (double) (test_now_usec() - start) / 1e6, atomic_load(&shm->produced),
               atomic_load(&shm->consumed), atomic_load(&shm->redeemed), atomic_load(&shm->stale),
               atomic_load(&shm->waited), atomic_load(&shm->touches));
        CHECKF(atomic_load(&shm->failures) == 0, "%" PRIu64 " failures, the first: %s",
               atomic_load(&shm->failures), shm->failure);
        CHECKF(atomic_load(&shm->consumed) >= MIN_FRAMES, "only %" PRIu64 " frames consumed",
               atomic_load(&shm->consumed));
        CHECK(kills >= MIN_KILLS);
        CHECK(atomic_load(&shm->redeemed) > 0);

        /* Everyone is gone: once the daemon has reclaimed them, only the names hold frames. */
        CHECK(scav_open("ring", &p) == 0);
        CHECKF(wait_clients(p, 1, 30000), "the killed clients' slots were not all reclaimed");
        CHECK(scav_stats(p, &st) == 0);
        recoveries = pool_recoveries(&d);
        printf("left: %" PRIu64 " names, %" PRIu64 " shared, %" PRIu64 " references, %" PRIu64
               " bytes in use; %" PRIu64 " recoveries after deaths in the heap lock\n",
               st.names, st.shared, st.refs, st.inuse, recoveries);
        CHECKF(recoveries > 0, "no kill landed inside the heap lock");
        CHECKF(st.refs == st.names, "%" PRIu64 " references left for %" PRIu64 " names", st.refs, st.names);
        int n = ring_drain(p);
        CHECKF(n >= 0 && (uint64_t) n == st.names, "drained %d names of %" PRIu64, n, st.names);
        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse == 0 && st.shared == 0 && st.refs == 0 && st.names == 0,
               "after the drain: %" PRIu64 " bytes in use, %" PRIu64 " shared, %" PRIu64 " refs, %" PRIu64 " names",
               st.inuse, st.shared, st.refs, st.names);
        CHECK(test_pool_check(&d, "ring"));

        /* The background scavenger gives it all back (the drain's frees woke it). */
        int64_t blocks = -1;
        for (unsigned t = 0; t < 600; t++) {
                blocks = test_fd_blocks(scav_heap_fd(p));
                if (blocks == 0)
                        break;
                usleep(50000);
        }
        CHECKF(blocks == 0, "the heap memfd still has %" PRId64 " KiB backed", blocks / 2);
        scav_close(p);
        CHECK(test_daemon_stop(&d) == 0);
        test_daemon_cleanup(&d);
        return TEST_END();
}

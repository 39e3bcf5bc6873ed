/* SPDX-License-Identifier: MIT */
/*
 * Row 8 driver (issue 13): what client threads' caches keep after a burst,
 * and how soon the daemon takes it back once the threads go idle. Through
 * libscav and a real scavd ($SCAVD_SOCKET, pool $PEER_POOL or "bench",
 * nothing else live in it).
 *
 * Each thread allocates and frees for --seconds: sizes of 1 to 128 pages
 * (every thread cache size class, page cache and lists), 256 live, the
 * first byte of each written; then frees what it holds and blocks (idle,
 * not exited: a thread's exit would give its caches back itself). Then the
 * pool's in use is what the caches keep. It is read every 5 ms until it
 * is 0 (at most --window seconds).
 *
 * One line: "threads=N held_bytes=B held_per_thread_bytes=B back_s=S
 * back_gens=G" (back_s -1 if it never came back in the window; back_gens:
 * generations started between going idle and the cache coming back).
 *
 *   peer-tcache-scav [--threads N] [--seconds S] [--window S]
 */

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "peer-util.h"
#include "scav.h"

#define LIVE 256
#define MAX_THREADS 16

struct worker {
        pthread_t thread;
        scav_pool *p;
        double seconds;
        uint64_t seed;
        int err;
};

static int ready[2], go[2];

static void *work(void *arg) {
        struct worker *w = arg;
        uint64_t live[LIVE] = {}, x = w->seed, t_end = peer_now_ns() + (uint64_t) (w->seconds * 1e9);
        char c;

        for (unsigned n = 0; w->err == 0; n++) {
                unsigned i = n % LIVE;
                if (i == 0 && peer_now_ns() >= t_end)
                        break;
                if (live[i] && scav_free(w->p, live[i] - 1) < 0)
                        w->err = 1;
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t bytes = (size_t) (1 + x % 128) * 4096;
                uint64_t off;
                if (scav_alloc(w->p, bytes, 0, &off) < 0) {
                        w->err = 2;
                        break;
                }
                *(volatile char *) scav_ptr(w->p, off) = 1;
                live[i] = off + 1;
        }
        for (unsigned i = 0; i < LIVE; i++)
                if (live[i] && scav_free(w->p, live[i] - 1) < 0)
                        w->err = 3;
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
                w->err = 4;
        return NULL;
}

int main(int argc, char **argv) {
        const char *pool = getenv("PEER_POOL") ? getenv("PEER_POOL") : "bench";
        unsigned nthreads = 2;
        double seconds = 0.5, window = 10.0;
        struct worker w[MAX_THREADS];
        struct scav_stats st;
        uint64_t held, gen0, t_idle;
        double back_s = -1;
        scav_pool *p;
        int r, err = 0;
        char c;

        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--threads") == 0)
                        nthreads = (unsigned) atoi(argv[i + 1]);
                else if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
                else if (strcmp(argv[i], "--window") == 0)
                        window = atof(argv[i + 1]);
        }
        if (nthreads < 1 || nthreads > MAX_THREADS) {
                fprintf(stderr, "--threads: 1 to %d\n", MAX_THREADS);
                return 1;
        }
        if ((r = scav_open(pool, &p)) < 0) {
                fprintf(stderr, "scav_open %s: %s\n", pool, strerror(-r));
                return 1;
        }
        if (pipe(ready) < 0 || pipe(go) < 0)
                return 1;
        for (unsigned i = 0; i < nthreads; i++) {
                w[i] = (struct worker) { .p = p, .seconds = seconds, .seed = 0x9e3779b97f4a7c15ull * (i + 1) };
                if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0)
                        return 1;
        }
        for (unsigned i = 0; i < nthreads; i++)
                if (read(ready[0], &c, 1) != 1)
                        return 1;

        /* Every thread is idle now: in use is what their caches keep. */
        t_idle = peer_now_ns();
        if ((r = scav_stats(p, &st)) < 0) {
                fprintf(stderr, "scav_stats: %s\n", strerror(-r));
                return 1;
        }
        held = st.inuse;
        gen0 = st.gen;
        while (st.inuse > 0 && peer_now_ns() - t_idle < (uint64_t) (window * 1e9)) {
                usleep(5000);
                if (scav_stats(p, &st) < 0)
                        break;
        }
        if (st.inuse == 0)
                back_s = (double) (peer_now_ns() - t_idle) / 1e9;

        for (unsigned i = 0; i < nthreads; i++)
                if (write(go[1], "g", 1) != 1)
                        return 1;
        for (unsigned i = 0; i < nthreads; i++) {
                pthread_join(w[i].thread, NULL);
                if (w[i].err)
                        err = w[i].err;
        }
        if (err) {
                fprintf(stderr, "a worker failed (step %d)\n", err);
                return 1;
        }
        printf("threads=%u held_bytes=%" PRIu64 " held_per_thread_bytes=%" PRIu64 " back_s=%.3f back_gens=%" PRIu64
               "\n", nthreads, held, held / nthreads, back_s, st.gen - gen0);
        scav_close(p);
        return 0;
}

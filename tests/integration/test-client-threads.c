/* SPDX-License-Identifier: MIT */
/*
 * libscav's threads: many threads allocate concurrently from per-thread
 * page caches (more threads than caches: the rest share one under a lock),
 * in two pools at once; every thread's data stays its own; a thread's cache
 * goes back when it exits (in-use returns to exactly what is still
 * allocated); and allocation goes on with the daemon stopped (SIGSTOP):
 * the daemon is on no allocation's path.
 */

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define THREADS 24  /* more than the 15 caches a slot gives threads */
#define ROUNDS 3000

static const char config[] =
        "[pool one]\ncapacity = 256M\n"
        "[pool two]\ncapacity = 256M\n";

static scav_pool *pools[2];
/* Every thread holds its cache until all are done: 24 at once, so 9 of
 * them share the last cache. */
static pthread_barrier_t all_done;

struct worker {
        pthread_t t;
        unsigned id;
        int errors;
        uint64_t kept_off;  /* one allocation left live at exit (pool one) */
};

static void *work(void *arg) {
        struct worker *w = arg;
        uint64_t offs[32] = {};
        size_t lens[32] = {};
        unsigned seed = w->id * 7919 + 1;

        for (unsigned i = 0; i < ROUNDS; i++) {
                unsigned k = (seed = seed * 1103515245 + 12345) >> 16 & 31;
                scav_pool *p = pools[k & 1];
                if (lens[k]) {
                        const uint8_t *b = scav_ptr(p, offs[k]);
                        for (size_t j = 0; j < lens[k]; j += 512)
                                if (b[j] != (uint8_t) (w->id + k)) {
                                        w->errors++;
                                        break;
                                }
                        if (scav_free(p, offs[k]) < 0)
                                w->errors++;
                        lens[k] = 0;
                        continue;
                }
                size_t n = 1 + (seed >> 8) % (i % 10 == 0 ? 40 : 8);
                if (scav_alloc(p, n * 4096, 0, &offs[k]) < 0) {
                        w->errors++;
                        continue;
                }
                lens[k] = n * 4096;
                memset(scav_ptr(p, offs[k]), w->id + k, lens[k]);
        }
        for (unsigned k = 0; k < 32; k++)
                if (lens[k] && scav_free(pools[k & 1], offs[k]) < 0)
                        w->errors++;
        /* Leave one page allocated: it must survive the thread, its cache must not. */
        if (scav_alloc(pools[0], 4096, 0, &w->kept_off) < 0)
                w->errors++;
        pthread_barrier_wait(&all_done);
        return NULL;
}

/* Context switches of this process's threads but the calling one. */
static uint64_t other_threads_switches(void) {
        char path[300], line[256];
        uint64_t total = 0;
        struct dirent *de;
        DIR *dir = opendir("/proc/self/task");
        pid_t self = gettid();

        while (dir && (de = readdir(dir))) {
                FILE *f;
                if (de->d_name[0] == '.' || atoi(de->d_name) == self)
                        continue;
                snprintf(path, sizeof(path), "/proc/self/task/%s/status", de->d_name);
                f = fopen(path, "re");
                while (f && fgets(line, sizeof(line), f)) {
                        unsigned long long v;
                        if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
                            sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
                                total += v;
                }
                if (f)
                        fclose(f);
        }
        if (dir)
                closedir(dir);
        return total;
}

int main(void) {
        struct test_daemon d;
        struct worker w[THREADS];
        struct scav_stats st;
        uint64_t t0, off;
        int errors = 0, n = 0;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("one", &pools[0]) == 0);
        CHECK(scav_open("two", &pools[1]) == 0);

        /* Idle, the library's reconnect thread sleeps without a timeout. */
        {
                uint64_t w0, w1;
                usleep(200000);  /* let it take in the opens */
                w0 = other_threads_switches();
                usleep(500000);
                w1 = other_threads_switches();
                printf("library thread wake-ups in 0.5 s idle: %" PRIu64 "\n", w1 - w0);
                CHECKF(w1 == w0, "the library's thread woke %" PRIu64 " times while idle", w1 - w0);
        }

        pthread_barrier_init(&all_done, NULL, THREADS);
        t0 = test_now_usec();
        for (unsigned i = 0; i < THREADS; i++) {
                w[i] = (struct worker) { .id = i };
                CHECK(pthread_create(&w[i].t, NULL, work, &w[i]) == 0);
        }
        for (unsigned i = 0; i < THREADS; i++) {
                pthread_join(w[i].t, NULL);
                errors += w[i].errors;
        }
        printf("%d threads x %d rounds over two pools: %.1f ms, %d errors\n", THREADS, ROUNDS,
               (double) (test_now_usec() - t0) / 1000, errors);
        CHECKF(errors == 0, "%d allocation/data errors in the threads", errors);

        /* Every thread has exited: their caches are back, only the kept pages remain. */
        CHECK(scav_stats(pools[0], &st) == 0);
        CHECKF(st.inuse == THREADS * 4096ull, "pool one inuse %" PRIu64 ", want %u (one page a thread)",
               st.inuse, THREADS * 4096);
        CHECK(scav_stats(pools[1], &st) == 0);
        CHECKF(st.inuse == 0, "pool two inuse %" PRIu64 ", want 0", st.inuse);
        for (unsigned i = 0; i < THREADS; i++)
                CHECK(scav_free(pools[0], w[i].kept_off) == 0);
        CHECK(scav_stats(pools[0], &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        CHECK(test_pool_check(&d, "one"));
        CHECK(test_pool_check(&d, "two"));

        /* The daemon stopped: allocation is in shared memory only. */
        CHECK(kill(d.pid, SIGSTOP) == 0);
        for (int i = 0; i < 20000; i++) {
                if (scav_alloc(pools[i & 1], (size_t) (1 + i % 20) * 4096, 0, &off) == 0 &&
                    scav_free(pools[i & 1], off) == 0)
                        n++;
        }
        CHECK(kill(d.pid, SIGCONT) == 0);
        CHECKF(n == 20000, "%d of 20000 alloc+free worked with the daemon stopped", n);

        scav_close(pools[0]);
        scav_close(pools[1]);
        test_daemon_finish(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * The allocation-throughput workload shared by every allocator's driver
 * (issue 7, rows 1, 2 and 5). Each driver is one small file that defines
 *
 *      static const char *be_name;
 *      static int be_init(size_t max_live_bytes);       0 or -errno
 *      static int be_alloc(size_t size, struct blk *b); fills b->ptr (and b->h)
 *      static void be_free(struct blk *b);
 *      static void be_fini(void);
 *
 * and then includes this file, which supplies main(). The backend calls are
 * static and inlined, so no allocator pays for an indirect call the others
 * do not.
 *
 * Workload: `live` slots (default 1,000) are filled first; then each step
 * picks a slot at random, frees what it holds, allocates a block of the
 * next size and writes its first byte. Random indices come from a multiply
 * and a shift, not a division, so that the loop costs little next to the
 * fastest allocator it drives. Sizes are fixed (8K, 64K, 512K) or
 * "mixed": a whole number of 4 KiB pages drawn uniformly from 2..128
 * (8 KiB..512 KiB). The random sequence is the same for every allocator.
 * One step is one alloc+free pair; the driver prints pairs per second over
 * `seconds` of steps after a warm-up.
 *
 *   DRIVER SIZE [--seconds S] [--live N] [--cpu C] [--start-at MONO_NS] [--seed N] [--threads N] [--pairs N]
 *
 * --pairs N runs exactly N measured pairs per thread instead of `seconds`
 * (rounded up to the 256 of one timing step): instruction counts under
 * callgrind are then repeatable.
 *
 * With --threads N, N threads (thread i pinned to CPU (C + i) mod CPUs, C
 * default 0) each run the workload on their own live set and random
 * sequence, started together; pairs are summed. The backend must be
 * thread-safe for that (every one here is).
 *
 * Output, one line: "alloc=NAME size=SIZE pairs=N seconds=S pairs_per_s=R ns_per_pair=T threads=N".
 */

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t loop_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static inline uint64_t loop_rand(uint64_t *s) {
        /* xorshift64*: cheap next to any allocator, and the same sequence everywhere. */
        uint64_t x = *s;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * UINT64_C(2685821657736338717);
}

/* A random index below n (n < 2^32) without a division: the high half of
 * the random number scaled by n (Lemire's reduction). A 64-bit division
 * costs more than some allocators' whole free. */
static inline size_t loop_index(uint64_t r, size_t n) {
        return (size_t) (((r >> 32) * (uint64_t) n) >> 32);
}

static inline size_t loop_size(size_t fixed, uint64_t *s) {
        if (fixed > 0)
                return fixed;
        return (size_t) (2 + loop_index(loop_rand(s), 127)) * 4096u;
}

static int loop_parse_size(const char *arg, size_t *ret) {
        char *end;
        unsigned long v;

        if (strcmp(arg, "mixed") == 0) {
                *ret = 0;
                return 0;
        }
        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno != 0 || end == arg)
                return -EINVAL;
        if (*end == 'k' || *end == 'K')
                v *= 1024, end++;
        else if (*end == 'm' || *end == 'M')
                v *= 1024 * 1024, end++;
        if (*end != '\0' || v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

struct loop_thread {
        pthread_t tid;
        int cpu;
        size_t fixed, live;
        uint64_t seed, start_at;
        double seconds;
        uint64_t max_pairs; /* 0: run for seconds */
        pthread_barrier_t *ready;
        /* results */
        uint64_t pairs, ns;
        int r;
};

static void loop_sleep_until(uint64_t t) {
        struct timespec ts;

        if (t <= loop_now_ns())
                return;
        ts.tv_sec = (time_t) (t / 1000000000u);
        ts.tv_nsec = (long) (t % 1000000000u);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void *loop_run(void *arg) {
        struct loop_thread *t = (struct loop_thread *) arg;
        uint64_t seed = t->seed, pairs = 0, t0, t1, deadline;
        size_t fixed = t->fixed, live = t->live;
        struct blk *slots;
        int r;

        if (t->cpu >= 0) {
                cpu_set_t set;

                CPU_ZERO(&set);
                CPU_SET(t->cpu, &set);
                if (sched_setaffinity(0, sizeof(set), &set) < 0) {
                        t->r = -errno;
                        fprintf(stderr, "sched_setaffinity(%d): %s\n", t->cpu, strerror(errno));
                        pthread_barrier_wait(t->ready);
                        return NULL;
                }
        }
        slots = (struct blk *) calloc(live, sizeof(*slots));
        if (!slots) {
                t->r = -ENOMEM;
                pthread_barrier_wait(t->ready);
                return NULL;
        }

        for (size_t i = 0; i < live; i++) {
                r = be_alloc(loop_size(fixed, &seed), &slots[i]);
                if (r < 0) {
                        fprintf(stderr, "%s: alloc failed while filling: %s\n", be_name, strerror(-r));
                        t->r = r;
                        pthread_barrier_wait(t->ready);
                        return NULL;
                }
                *(volatile char *) slots[i].ptr = 1;
        }

        /* Warm-up: four times the live set, so caches and free lists reach their steady state. */
        for (size_t i = 0; i < 4 * live; i++) {
                struct blk *b = &slots[loop_index(loop_rand(&seed), live)];

                be_free(b);
                r = be_alloc(loop_size(fixed, &seed), b);
                if (r < 0) {
                        fprintf(stderr, "%s: alloc failed: %s\n", be_name, strerror(-r));
                        t->r = r;
                        pthread_barrier_wait(t->ready);
                        return NULL;
                }
                *(volatile char *) b->ptr = 2;
        }

        /* All threads filled and warmed up: start together. With --start-at,
         * say so first ("armed"), so a runner may act before the start. */
        if (pthread_barrier_wait(t->ready) == PTHREAD_BARRIER_SERIAL_THREAD && t->start_at > 0) {
                printf("armed t=%llu\n", (unsigned long long) loop_now_ns());
                fflush(stdout);
        }
        loop_sleep_until(t->start_at);

        t0 = t1 = loop_now_ns();
        deadline = t->max_pairs ? UINT64_MAX : t0 + (uint64_t) (t->seconds * 1e9);
        for (;;) {
                for (unsigned k = 0; k < 256; k++) {
                        struct blk *b = &slots[loop_index(loop_rand(&seed), live)];

                        be_free(b);
                        r = be_alloc(loop_size(fixed, &seed), b);
                        if (r < 0) {
                                fprintf(stderr, "%s: alloc failed: %s\n", be_name, strerror(-r));
                                t->r = r;
                                return NULL;
                        }
                        *(volatile char *) b->ptr = 3;
                }
                pairs += 256;
                t1 = loop_now_ns();
                if (t1 >= deadline || (t->max_pairs && pairs >= t->max_pairs))
                        break;
        }
        t->pairs = pairs;
        t->ns = t1 - t0;

        for (size_t i = 0; i < live; i++)
                be_free(&slots[i]);
        free(slots);
        return NULL;
}

int main(int argc, char **argv) {
        double seconds = 0.4;
        size_t fixed, live = 1000, max_live;
        uint64_t seed = 0x9e3779b97f4a7c15u, start_at = 0, pairs = 0, ns = 0, max_pairs = 0;
        int cpu = -1, threads = 1, ncpu, r;
        struct loop_thread *ts;
        pthread_barrier_t ready;

        if (argc < 2 || loop_parse_size(argv[1], &fixed) < 0) {
                fprintf(stderr, "usage: %s 8k|64k|512k|mixed [--seconds S] [--live N] [--cpu C] "
                        "[--start-at MONO_NS] [--seed N] [--threads N] [--pairs N]\n", argv[0]);
                return 2;
        }
        for (int i = 2; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
                else if (strcmp(argv[i], "--live") == 0)
                        live = strtoul(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--cpu") == 0)
                        cpu = atoi(argv[i + 1]);
                else if (strcmp(argv[i], "--start-at") == 0)
                        start_at = strtoull(argv[i + 1], NULL, 10);
                else if (strcmp(argv[i], "--seed") == 0)
                        seed = strtoull(argv[i + 1], NULL, 10) | 1;
                else if (strcmp(argv[i], "--threads") == 0)
                        threads = atoi(argv[i + 1]);
                else if (strcmp(argv[i], "--pairs") == 0)
                        max_pairs = strtoull(argv[i + 1], NULL, 10);
                else {
                        fprintf(stderr, "unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        if (live == 0 || live >= (UINT64_C(1) << 32) || seconds <= 0 || threads < 1 || threads > 64) {
                fprintf(stderr, "bad --live, --seconds or --threads\n");
                return 2;
        }
        ncpu = (int) sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpu < 1)
                ncpu = 1;

        max_live = live * (fixed > 0 ? fixed : 128 * 4096) * (size_t) threads;
        r = be_init(max_live);
        if (r < 0) {
                fprintf(stderr, "%s: init failed: %s\n", be_name, strerror(-r));
                return 1;
        }

        ts = (struct loop_thread *) calloc((size_t) threads, sizeof(*ts));
        if (!ts)
                return 1;
        pthread_barrier_init(&ready, NULL, (unsigned) threads);
        for (int i = 0; i < threads; i++) {
                ts[i].cpu = cpu >= 0 || threads > 1 ? ((cpu >= 0 ? cpu : 0) + i) % ncpu : -1;
                ts[i].fixed = fixed;
                ts[i].live = live;
                /* Thread 0 draws exactly the single-threaded sequence. */
                ts[i].seed = (seed + (uint64_t) i * UINT64_C(0x632be59bd9b4e019)) | 1;
                ts[i].start_at = start_at;
                ts[i].seconds = seconds;
                ts[i].max_pairs = max_pairs;
                ts[i].ready = &ready;
                r = pthread_create(&ts[i].tid, NULL, loop_run, &ts[i]);
                if (r != 0) {
                        fprintf(stderr, "pthread_create: %s\n", strerror(r));
                        return 1;
                }
        }
        for (int i = 0; i < threads; i++) {
                pthread_join(ts[i].tid, NULL);
                if (ts[i].r < 0)
                        return 1;
                pairs += ts[i].pairs;
                if (ts[i].ns > ns)
                        ns = ts[i].ns;
        }
        be_fini();

        /* Each thread's rate, summed: the threads ran over the same window. */
        double rate = 0;
        for (int i = 0; i < threads; i++)
                rate += (double) ts[i].pairs * 1e9 / (double) ts[i].ns;
        printf("alloc=%s size=%s pairs=%llu seconds=%.6f pairs_per_s=%.1f ns_per_pair=%.2f threads=%d\n",
               be_name, argv[1], (unsigned long long) pairs, (double) ns / 1e9, rate, 1e9 / rate, threads);
        free(ts);
        return 0;
}

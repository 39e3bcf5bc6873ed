/* SPDX-License-Identifier: MIT */
/*
 * The burst trace of row 4 (returning memory after a burst), shared by the
 * scavd and jemalloc drivers; tests/bench/peer-trace.go is the same trace in
 * Go. A driver defines struct blk, be_name, be_init(), be_alloc(),
 * be_free(), be_describe() (its own goal and state, one line) and
 * be_heap_fd() (-1 when the footprint is the process's anonymous RSS), then
 * includes this file.
 *
 * The trace, driven by tests/bench/peer-bench.py over stdin/stdout:
 *   1. prints "ready pid=P heap_fd=F", waits for a line on stdin;
 *   2. burst: allocates --burst bytes in --obj blocks, writes every page;
 *   3. frees all but --keep bytes; prints "freed t=MONO_NS app_cpu_ns=N";
 *   4. active: every --churn-ms allocates --churn bytes, writes every page,
 *      frees them; idle: does nothing at all (blocks in poll on stdin);
 *   5. on a line on stdin (or after --window seconds) prints
 *      "done t=MONO_NS app_cpu_ns=N" and be_describe()'s line, and exits.
 * app_cpu_ns is the CPU time of the application's own thread, so that what
 * an allocator spends in other threads can be told apart.
 */

#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "peer-util.h"

static int trace_wait_stdin(int timeout_ms) {
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        char buf[64];
        int r;

        r = poll(&pfd, 1, timeout_ms);
        if (r > 0) {
                if (read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
                        return 1; /* EOF: the runner is gone; stop too */
                return 1;
        }
        return 0;
}

int main(int argc, char **argv) {
        uint64_t burst = UINT64_C(1) << 30, obj = 256 << 10, keep = 64 << 20, churn = 1 << 20;
        double window = 15;
        int churn_ms = 10, active, r;
        size_t n, nkeep;
        struct blk *blocks, cb;
        uint64_t deadline;

        if (argc < 2 || (strcmp(argv[1], "active") != 0 && strcmp(argv[1], "idle") != 0)) {
                fprintf(stderr, "usage: %s active|idle [--burst B] [--obj B] [--keep B] [--churn B] "
                        "[--churn-ms MS] [--window S]\n", argv[0]);
                return 2;
        }
        active = strcmp(argv[1], "active") == 0;
        for (int i = 2; i + 1 < argc; i += 2) {
                const char *k = argv[i], *v = argv[i + 1];

                if (strcmp(k, "--burst") == 0)
                        r = peer_parse_size(v, &burst);
                else if (strcmp(k, "--obj") == 0)
                        r = peer_parse_size(v, &obj);
                else if (strcmp(k, "--keep") == 0)
                        r = peer_parse_size(v, &keep);
                else if (strcmp(k, "--churn") == 0)
                        r = peer_parse_size(v, &churn);
                else if (strcmp(k, "--churn-ms") == 0)
                        r = (churn_ms = atoi(v)) > 0 ? 0 : -EINVAL;
                else if (strcmp(k, "--window") == 0)
                        r = (window = atof(v)) > 0 ? 0 : -EINVAL;
                else
                        r = -EINVAL;
                if (r < 0) {
                        fprintf(stderr, "bad option %s %s\n", k, v);
                        return 2;
                }
        }
        if (obj == 0 || burst < obj || keep > burst) {
                fprintf(stderr, "need 0 < obj <= burst and keep <= burst\n");
                return 2;
        }
        n = burst / obj;
        nkeep = keep / obj;

        r = be_init();
        if (r < 0) {
                fprintf(stderr, "%s: init failed: %s\n", be_name, strerror(-r));
                return 1;
        }
        blocks = calloc(n, sizeof(*blocks));
        if (!blocks)
                return 1;

        printf("ready pid=%d heap_fd=%d\n", (int) getpid(), be_heap_fd());
        fflush(stdout);
        trace_wait_stdin(-1);

        for (size_t i = 0; i < n; i++) {
                r = be_alloc(obj, &blocks[i]);
                if (r < 0) {
                        fprintf(stderr, "%s: burst alloc %zu failed: %s\n", be_name, i, strerror(-r));
                        return 1;
                }
                peer_touch_pages(blocks[i].ptr, obj, (unsigned char) i);
        }
        printf("burst t=%llu\n", (unsigned long long) peer_now_ns());
        /* Keep every (n / nkeep)th block, spread over the heap as a real
         * program's survivors would be, free the rest. */
        for (size_t i = 0, kept = 0; i < n; i++) {
                if (nkeep > 0 && kept < nkeep && i % (n / nkeep) == 0) {
                        kept++;
                        continue;
                }
                be_free(&blocks[i]);
        }
        printf("freed t=%llu app_cpu_ns=%llu\n", (unsigned long long) peer_now_ns(),
               (unsigned long long) peer_thread_cpu_ns());
        fflush(stdout);

        deadline = peer_now_ns() + (uint64_t) (window * 1e9);
        for (;;) {
                uint64_t now = peer_now_ns();
                int left_ms = now >= deadline ? 0 : (int) ((deadline - now) / 1000000u);

                if (left_ms == 0)
                        break;
                if (trace_wait_stdin(active && churn_ms < left_ms ? churn_ms : left_ms))
                        break;
                if (!active)
                        continue;
                r = be_alloc(churn, &cb);
                if (r < 0) {
                        fprintf(stderr, "%s: churn alloc failed: %s\n", be_name, strerror(-r));
                        return 1;
                }
                peer_touch_pages(cb.ptr, churn, 7);
                be_free(&cb);
        }

        printf("done t=%llu app_cpu_ns=%llu\n", (unsigned long long) peer_now_ns(),
               (unsigned long long) peer_thread_cpu_ns());
        be_describe();
        fflush(stdout);
        return 0;
}

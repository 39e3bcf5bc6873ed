/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: fill a pool with 512 MiB through several clients, touch every
 * page, free it all, force a scavenge: the heap memfd's st_blocks (what the
 * kernel really backs) drops to under 1% of what it was.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "scav.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

#define CLIENTS 4
#define PER_CLIENT (128ull << 20)

static const char config[] =
        "[daemon]\n"
        "scavtrace = 1\n"
        "[pool fill]\n"
        "capacity = 1G\n";

/*
 * One client: allocates its share in pieces of every size class (cached
 * single pages, small runs, large runs), touches every byte, says "full" on
 * the pipe, waits for "free", frees everything, says "freed", closes.
 */
static int client(int to_parent, int from_parent) {
        static uint64_t offs[1 << 16];
        uint64_t total = 0;
        size_t n = 0;
        scav_pool *p;
        char c;
        int r;

        r = scav_open("fill", &p);
        if (r < 0) {
                fprintf(stderr, "client %d: scav_open: %s\n", getpid(), strerror(-r));
                return 1;
        }
        while (total < PER_CLIENT) {
                /* 1 page, 5 pages, 1 MiB: the cache path and the locked path. */
                size_t sz = (n % 3 == 0) ? 4096 : (n % 3 == 1) ? 5 * 4096 : 1 << 20;
                r = scav_alloc(p, sz, 0, &offs[n]);
                if (r < 0) {
                        fprintf(stderr, "client %d: scav_alloc(%zu): %s\n", getpid(), sz, strerror(-r));
                        return 1;
                }
                memset(scav_ptr(p, offs[n]), 0x5a, sz);
                total += sz;
                n++;
        }
        if (write(to_parent, "f", 1) != 1 || read(from_parent, &c, 1) != 1)
                return 1;
        for (size_t i = 0; i < n; i++) {
                r = scav_free(p, offs[i]);
                if (r < 0) {
                        fprintf(stderr, "client %d: scav_free: %s\n", getpid(), strerror(-r));
                        return 1;
                }
        }
        scav_close(p);
        return write(to_parent, "d", 1) == 1 ? 0 : 1;
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        int up[2], down[2], status, fd;
        int64_t full_blocks, after_blocks, released;
        pid_t kids[CLIENTS];
        scav_pool *p;
        char c, out[4096];

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();

        CHECK(pipe(up) == 0 && pipe(down) == 0);
        for (int i = 0; i < CLIENTS; i++) {
                kids[i] = fork();
                if (kids[i] == 0)
                        _exit(client(up[1], down[0]));
        }
        for (int i = 0; i < CLIENTS; i++)
                CHECK(read(up[0], &c, 1) == 1 && c == 'f');

        CHECK(scav_open("fill", &p) == 0);
        fd = scav_heap_fd(p);
        CHECK(fd >= 0);
        CHECK(scav_stats(p, &st) == 0);
        printf("full: inuse %" PRIu64 " MiB, heap_sys %" PRIu64 " MiB, clients %" PRIu64 "\n",
               st.inuse >> 20, st.heap_sys >> 20, st.clients);
        CHECKF(st.inuse >= CLIENTS * PER_CLIENT, "inuse %" PRIu64, st.inuse);
        full_blocks = test_fd_blocks(fd);
        printf("full: heap st_blocks %" PRId64 " (%" PRId64 " MiB backed)\n", full_blocks,
               full_blocks * 512 >> 20);
        CHECKF(full_blocks * 512 >= (int64_t) (CLIENTS * PER_CLIENT), "st_blocks %" PRId64, full_blocks);

        /* Everyone frees. */
        for (int i = 0; i < CLIENTS; i++)
                CHECK(write(down[1], "x", 1) == 1);
        for (int i = 0; i < CLIENTS; i++)
                CHECK(read(up[0], &c, 1) == 1 && c == 'd');
        for (int i = 0; i < CLIENTS; i++) {
                CHECK(waitpid(kids[i], &status, 0) == kids[i]);
                CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client %d status 0x%x", i, status);
        }
        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse == 0, "inuse after every free: %" PRIu64, st.inuse);

        /* Force a scavenge through the API (the daemon does it, unpaced). */
        released = scav_scavenge(p, 0);
        printf("scav_scavenge released %" PRId64 " MiB\n", released >> 20);
        CHECKF(released >= 0, "scav_scavenge: %s", strerror((int) -released));
        after_blocks = test_fd_blocks(fd);
        printf("after scavenge: heap st_blocks %" PRId64 " (%.2f%% of full)\n", after_blocks,
               full_blocks > 0 ? 100.0 * (double) after_blocks / (double) full_blocks : 0.0);
        CHECKF(after_blocks * 100 < full_blocks, "st_blocks %" PRId64 " not under 1%% of %" PRId64,
               after_blocks, full_blocks);
        CHECK(scav_stats(p, &st) == 0);
        printf("after scavenge: released %" PRIu64 " MiB, retained %" PRIu64 " KiB\n", st.released >> 20,
               st.retained >> 10);

        CHECK(test_scavctl(&d, out, sizeof(out), "status", "fill", NULL) == 0);
        printf("%s", out);
        CHECK(test_pool_check(&d, "fill"));

        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: data written by one process at an offset is read by another;
 * SCAV_ALLOC_KEEP data survives its writer's exit (and anyone may free it)
 * while the writer's other allocations are reclaimed; SCAV_ALLOC_ZERO after
 * reuse reads zero, on the cached and the locked path, after our own dirty
 * frees and after another process's.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

static const char config[] =
        "[pool share]\n"
        "capacity = 256M\n";

struct msg {
        uint64_t keep_off, plain_off;
        uint64_t keep_len, plain_len;
};

static uint8_t pattern(uint64_t i, unsigned seed) {
        return (uint8_t) ((i * 131 + seed) ^ (i >> 12));
}

static bool buffer_is(scav_pool *p, uint64_t off, uint64_t len, unsigned seed) {
        const uint8_t *b = scav_ptr(p, off);

        for (uint64_t i = 0; i < len; i++)
                if (b[i] != pattern(i, seed)) {
                        fprintf(stderr, "byte %" PRIu64 " of offset 0x%" PRIx64 ": 0x%02x, want 0x%02x\n",
                                i, off, b[i], pattern(i, seed));
                        return false;
                }
        return true;
}

static void fill(scav_pool *p, uint64_t off, uint64_t len, unsigned seed) {
        uint8_t *b = scav_ptr(p, off);

        for (uint64_t i = 0; i < len; i++)
                b[i] = pattern(i, seed);
}

static bool all_zero(scav_pool *p, uint64_t off, uint64_t len) {
        const uint8_t *b = scav_ptr(p, off);

        for (uint64_t i = 0; i < len; i++)
                if (b[i]) {
                        fprintf(stderr, "offset 0x%" PRIx64 " + %" PRIu64 " reads 0x%02x, want 0\n", off, i, b[i]);
                        return false;
                }
        return true;
}

/* The writer: two allocations with known data, one KEEP; passes their
 * offsets, waits for the reader to have checked them, then exits without
 * scav_close (the daemon reclaims it on hang-up). */
static int writer(int to_parent, int from_parent) {
        struct msg m = { .keep_len = 3 << 20, .plain_len = 5 * 4096 };
        scav_pool *p;
        char c;

        if (scav_open("share", &p) < 0)
                return 1;
        if (scav_alloc(p, m.keep_len, SCAV_ALLOC_KEEP, &m.keep_off) < 0 ||
            scav_alloc(p, m.plain_len, 0, &m.plain_off) < 0)
                return 2;
        fill(p, m.keep_off, m.keep_len, 7);
        fill(p, m.plain_off, m.plain_len, 9);
        if (write(to_parent, &m, sizeof(m)) != sizeof(m))
                return 3;
        if (read(from_parent, &c, 1) != 1)
                return 4;
        /* The reader wrote back into our plain allocation: we see it. */
        if (!buffer_is(p, m.plain_off, m.plain_len, 11))
                return 5;
        _exit(0);
}

/* Dirties npages, frees them, then allocates the same size with ZERO. */
static void zero_after_reuse(scav_pool *p, uint64_t npages, const char *what) {
        uint64_t a, b;
        uint64_t len = npages * 4096;

        CHECK(scav_alloc(p, len, 0, &a) == 0);
        memset(scav_ptr(p, a), 0xa5, len);
        CHECK(scav_free(p, a) == 0);
        CHECK(scav_alloc(p, len, SCAV_ALLOC_ZERO, &b) == 0);
        CHECKF(all_zero(p, b, len), "%s: %" PRIu64 " pages (reused offset: %s)", what, npages,
               a == b ? "same" : "other");
        CHECK(scav_free(p, b) == 0);
}

static void wait_clients(scav_pool *p, uint64_t want) {
        struct scav_stats st;
        uint64_t deadline = test_now_usec() + 20 * 1000000ull;

        do {
                CHECK(scav_stats(p, &st) == 0);
                if (st.clients == want)
                        return;
                usleep(2000);
        } while (test_now_usec() < deadline);
        CHECKF(st.clients == want, "clients %" PRIu64 ", want %" PRIu64, st.clients, want);
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st0, st;
        int up[2], down[2], status;
        scav_pool *p;
        struct msg m;
        pid_t pid;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("share", &p) == 0);
        CHECK(scav_stats(p, &st0) == 0);

        /* One process writes, the other reads, both alive. */
        CHECK(pipe(up) == 0 && pipe(down) == 0);
        pid = fork();
        if (pid == 0)
                _exit(writer(up[1], down[0]));
        CHECK(read(up[0], &m, sizeof(m)) == sizeof(m));
        CHECKF(buffer_is(p, m.keep_off, m.keep_len, 7), "KEEP buffer as the writer wrote it");
        CHECKF(buffer_is(p, m.plain_off, m.plain_len, 9), "plain buffer as the writer wrote it");
        fill(p, m.plain_off, m.plain_len, 11);
        CHECK(write(down[1], "x", 1) == 1);
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status 0x%x", status);

        /* The writer is gone: its slot is reclaimed, KEEP data stays. */
        wait_clients(p, 1);
        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse == st0.inuse + m.keep_len, "inuse %" PRIu64 ", want %" PRIu64 " (KEEP only)",
               st.inuse, st0.inuse + m.keep_len);
        CHECKF(buffer_is(p, m.keep_off, m.keep_len, 7), "KEEP buffer after its writer exited");
        CHECKF(scav_free(p, m.plain_off) == -EINVAL, "the writer's plain allocation was reclaimed");
        CHECK(scav_free(p, m.keep_off) == 0);
        CHECK(scav_free(p, m.keep_off) == -EINVAL);
        CHECK(scav_stats(p, &st) == 0);
        CHECK_EQ_U64(st.inuse, st0.inuse);
        CHECK(test_pool_check(&d, "share"));

        /* ZERO after reuse: cached sizes and locked sizes, then after a scavenge
         * (released pages read zero without clearing), then another process's
         * dirty pages. */
        for (uint64_t n = 1; n <= 64; n = n * 2 + 1) {
                zero_after_reuse(p, n, "own dirty pages");
        }
        CHECK(scav_scavenge(p, 0) >= 0);
        zero_after_reuse(p, 300, "after scavenge");

        pid = fork();
        if (pid == 0) {
                /* A second process dirties pages and frees them. */
                scav_pool *q;
                uint64_t offs[64];
                if (scav_open("share", &q) < 0)
                        _exit(1);
                for (int i = 0; i < 64; i++) {
                        if (scav_alloc(q, (size_t) (i % 20 + 1) * 4096, 0, &offs[i]) < 0)
                                _exit(2);
                        memset(scav_ptr(q, offs[i]), 0xee, (size_t) (i % 20 + 1) * 4096);
                }
                for (int i = 0; i < 64; i++)
                        if (scav_free(q, offs[i]) < 0)
                                _exit(3);
                scav_close(q);
                _exit(0);
        }
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "dirtying child status 0x%x", status);
        {
                /* Take back everything it dirtied, zeroed. */
                uint64_t offs[256];
                int n = 0;
                for (; n < 256; n++) {
                        size_t len = (size_t) (n % 20 + 1) * 4096;
                        CHECK(scav_alloc(p, len, SCAV_ALLOC_ZERO, &offs[n]) == 0);
                        CHECKF(all_zero(p, offs[n], len), "ZERO allocation %d after another process's frees", n);
                }
                for (int i = 0; i < n; i++)
                        CHECK(scav_free(p, offs[i]) == 0);
        }
        CHECK(test_pool_check(&d, "share"));

        /* A client killed while a child it forked lives on: the child holds
         * no copy of its parent's session, so the daemon sees the hang-up
         * and reclaims the parent's slot at once. */
        {
                int ready[2], hold[2];
                pid_t a, b = 0;
                char c;

                CHECK(scav_stats(p, &st0) == 0);
                CHECK(pipe(ready) == 0 && pipe(hold) == 0);
                a = fork();
                if (a == 0) {
                        scav_pool *q;
                        uint64_t o;
                        pid_t kid;
                        if (scav_open("share", &q) < 0 || scav_alloc(q, 1 << 20, 0, &o) < 0)
                                _exit(1);
                        kid = fork();
                        if (kid == 0) {
                                close(hold[1]);
                                while (read(hold[0], &c, 1) > 0)
                                        ;
                                _exit(0);
                        }
                        (void) !write(ready[1], &kid, sizeof(kid));
                        pause();
                        _exit(0);
                }
                close(hold[0]);
                CHECK(read(ready[0], &b, sizeof(b)) == sizeof(b));
                CHECK(scav_stats(p, &st) == 0);
                CHECKF(st.clients == st0.clients + 1, "clients %" PRIu64 " with the forking client", st.clients);
                CHECK(kill(a, SIGKILL) == 0);
                CHECK(waitpid(a, &status, 0) == a);
                wait_clients(p, st0.clients);
                CHECK(scav_stats(p, &st) == 0);
                CHECKF(st.inuse == st0.inuse, "inuse %" PRIu64 " after the parent died (its child lives), want %" PRIu64,
                       st.inuse, st0.inuse);
                CHECKF(b > 0 && kill(b, 0) == 0, "the grandchild is still alive");
                close(hold[1]);
                close(ready[0]);
                close(ready[1]);
                CHECK(test_pool_check(&d, "share"));
        }

        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

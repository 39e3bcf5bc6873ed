/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: 500 connect/disconnect cycles leave the daemon's open
 * descriptors (/proc/PID/fd) and memory (VmRSS) where they started, and
 * the client's own descriptors too. Half the cycles close properly
 * (scav_close), half are child processes that just exit (hang-up).
 *
 * And a client that opens while another one's close is on its way to the
 * daemon gets a slot of its own (test_open_during_close).
 */

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "heap/heap.h"
#include "scav-internal.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define CYCLES 500
/* VmRSS may wobble by allocator caches; a leak of even 2 KiB a cycle
 * (1 MiB over 500 cycles) shows. */
#define RSS_SLACK_KB 768

static const char config[] =
        "[pool cycle]\n"
        "capacity = 64M\n";

static int one_cycle(bool in_child) {
        scav_pool *p;
        uint64_t off;
        int r;

        if (in_child) {
                pid_t pid = fork();
                int status;
                if (pid == 0) {
                        if (scav_open("cycle", &p) < 0 || scav_alloc(p, 4096, 0, &off) < 0)
                                _exit(1);
                        _exit(0);  /* no scav_close: the daemon sees the hang-up */
                }
                if (waitpid(pid, &status, 0) != pid)
                        return -errno;
                return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
        }
        r = scav_open("cycle", &p);
        if (r < 0)
                return r;
        r = scav_alloc(p, 3 * 4096, 0, &off);
        scav_close(p);
        return r;
}

static bool settle(scav_pool *watch, uint64_t clients) {
        struct scav_stats st;
        uint64_t deadline = test_now_usec() + 20 * 1000000ull;

        do {
                if (scav_stats(watch, &st) == 0 && st.clients == clients)
                        return true;
                usleep(2000);
        } while (test_now_usec() < deadline);
        return false;
}

/*
 * The daemon's descriptors once they stay put: scav_stats asks the daemon
 * for its kernel counters on a connection of its own, which the daemon
 * closes when it sees the hang-up, a moment after scav_stats returned. A
 * leaked descriptor stays, so waiting for a stable count hides no leak.
 */
static int quiet_fds(pid_t pid) {
        int a = test_proc_fd_count(pid), b;

        for (int i = 0; i < 100; i++) {
                usleep(50000);
                b = test_proc_fd_count(pid);
                if (a == b)
                        return b;
                a = b;
        }
        return a;
}

/*
 * scav_close() gives its slot back in the heap, then hangs up; the daemon
 * reclaims the slot number when it sees the hang-up. A scav_open() whose
 * HELLO the daemon takes in between must not get that slot: the reclaim
 * would take it, and the new client's allocations, from under it (two
 * processes of a multiprocessing pool once ended up sharing one slot this
 * way, and the pool hung). Here the close is cut in two, as a busy daemon
 * sees it.
 */
static void test_open_during_close(const struct test_daemon *d) {
        scav_pool *a, *b, *c;
        uint32_t slot_a, slot_b;
        size_t size;
        uint64_t off;
        char line[64];

        CHECK(scav_open("cycle", &a) == 0);
        slot_a = atomic_load(&a->slot);
        CHECK(heap_slot_reclaim(a->heap, slot_a) >= 0); /* scav_close's first half */
        CHECK(scav_open("cycle", &b) == 0);
        slot_b = atomic_load(&b->slot);
        CHECKF(slot_b != slot_a, "slot %u given to a new client before the daemon saw its owner close it",
               slot_a);
        CHECK(scav_alloc(b, 5 * 4096, 0, &off) == 0);
        scav_close(a); /* the rest: the hang-up, and a reclaim of slot_a by the daemon */
        snprintf(line, sizeof(line), "(slot %u) hung up", slot_a);
        CHECKF(test_daemon_wait_log(d, line, 20), "the daemon did not see slot %u hang up", slot_a);
        /* b's slot and allocation are b's still. */
        CHECK(scav_size(b, off, &size) == 0 && size == 5 * 4096);
        CHECK(scav_open("cycle", &c) == 0);
        CHECKF(atomic_load(&c->slot) != slot_b, "slot %u of a live client given out again", slot_b);
        scav_close(c);
        CHECK(scav_free(b, off) == 0);
        scav_close(b);
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        int fd0, fd1, self0, self1, fails = 0;
        int64_t rss0, rss1;
        uint64_t t0, t1;
        scav_pool *watch;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("cycle", &watch) == 0);

        /* Warm up: the daemon's allocator and the library's thread settle. */
        for (int i = 0; i < 50; i++)
                CHECK(one_cycle(i % 2) == 0);
        CHECK(settle(watch, 1));
        fd0 = quiet_fds(d.pid);
        rss0 = test_proc_vmrss_kb(d.pid);
        self0 = test_proc_fd_count(getpid());

        t0 = test_now_usec();
        for (int i = 0; i < CYCLES; i++)
                if (one_cycle(i % 2) < 0)
                        fails++;
        t1 = test_now_usec();
        CHECKF(fails == 0, "%d of %d cycles failed", fails, CYCLES);
        CHECK(settle(watch, 1));

        fd1 = quiet_fds(d.pid);
        rss1 = test_proc_vmrss_kb(d.pid);
        self1 = test_proc_fd_count(getpid());
        printf("%d cycles in %.2f s (%.0f us each)\n", CYCLES, (double) (t1 - t0) / 1e6,
               (double) (t1 - t0) / CYCLES);
        printf("daemon fds %d -> %d, VmRSS %" PRId64 " -> %" PRId64 " KiB; our fds %d -> %d\n", fd0, fd1,
               rss0, rss1, self0, self1);
        CHECKF(fd1 == fd0, "daemon descriptors %d -> %d", fd0, fd1);
        CHECKF(rss1 - rss0 <= RSS_SLACK_KB, "daemon VmRSS grew %" PRId64 " KiB", rss1 - rss0);
        CHECKF(self1 == self0, "client descriptors %d -> %d", self0, self1);

        /* Connecting and mapping (issue 3's bar: under 1 ms median). Printed,
         * not checked: a loaded machine must not fail a test on timing. */
        {
                uint64_t us[101];
                for (int i = 0; i < 101; i++) {
                        scav_pool *q;
                        uint64_t a = test_now_usec();
                        CHECK(scav_open("cycle", &q) == 0);
                        us[i] = test_now_usec() - a;
                        scav_close(q);
                }
                for (int i = 0; i < 101; i++)
                        for (int j = i + 1; j < 101; j++)
                                if (us[j] < us[i]) {
                                        uint64_t t = us[i];
                                        us[i] = us[j];
                                        us[j] = t;
                                }
                printf("scav_open (connect, HELLO, map, MAPPED): median %" PRIu64 " us, 90th %" PRIu64
                       " us\n", us[50], us[90]);
        }

        test_open_during_close(&d);

        CHECK(scav_stats(watch, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        CHECK(test_pool_check(&d, "cycle"));
        scav_close(watch);
        test_daemon_finish(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * Issue 13: what client threads keep in their caches (medium lists, page
 * caches) counts as in use, and the daemon takes it back: from a thread
 * that went idle, within the generation after (its thread need not exit);
 * from every thread at once on a forced scavenge (what pressure does); and
 * from a client killed with full lists, with its slot. The thread goes on
 * allocating afterwards as before. Generations are counted, not seconds.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define PAGE 4096ull
#define BLOCKS 24

static const char config[] =
        "[daemon]\n"
        "generation_interval = 100ms\n"
        "scavenge_percent = 10\n"
        "pressure = off\n"
        "bpf = off\n"
        "[pool reap]\n"
        "capacity = 256M\n";

/* One thread's cache, filled: BLOCKS medium blocks and some small runs
 * allocated, written and freed (its lists and page cache keep them), one
 * allocation left live. */
struct filler {
        scav_pool *p;
        uint64_t live;
        int err;
        int filled[2], go[2]; /* pipes: "filled" to the test, "go" (exit) from it */
};

static void fill(struct filler *f) {
        uint64_t offs[BLOCKS + 16];
        for (unsigned i = 0; i < BLOCKS + 16; i++) {
                size_t n = i < BLOCKS ? 16 + 4 * (i % 8) : 1 + i % 7;
                if (scav_alloc(f->p, n * PAGE, 0, &offs[i]) < 0) {
                        f->err = 1;
                        return;
                }
                memset(scav_ptr(f->p, offs[i]), (int) i, n * PAGE);
        }
        for (unsigned i = 0; i < BLOCKS + 16; i++)
                if (scav_free(f->p, offs[i]) < 0)
                        f->err = 2;
        if (scav_alloc(f->p, 3 * PAGE, 0, &f->live) < 0)
                f->err = 3;
}

/* Fills its cache, says so, and stays idle (blocked, not exited: a thread's
 * exit would give its caches back) until told to go. */
static void *fill_thread(void *arg) {
        struct filler *f = arg;
        char c;
        fill(f);
        if (write(f->filled[1], "f", 1) != 1 || read(f->go[0], &c, 1) != 1)
                f->err = 4;
        return NULL;
}

static int filler_start(struct filler *f, scav_pool *p, pthread_t *t) {
        char c;
        *f = (struct filler) { .p = p };
        if (pipe(f->filled) < 0 || pipe(f->go) < 0 || pthread_create(t, NULL, fill_thread, f) != 0)
                return -1;
        return read(f->filled[0], &c, 1) == 1 ? 0 : -1;
}

static void filler_stop(struct filler *f, pthread_t t) {
        if (write(f->go[1], "g", 1) == 1)
                pthread_join(t, NULL);
        for (int i = 0; i < 2; i++) {
                close(f->filled[i]);
                close(f->go[i]);
        }
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        scav_pool *p;
        pthread_t t;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("reap", &p) == 0);

        /* A thread fills its cache and goes idle (it does not exit). */
        struct filler a;
        CHECK(filler_start(&a, p, &t) == 0);
        CHECK_EQ_U64(a.err, 0);
        CHECK(scav_stats(p, &st) == 0);
        uint64_t g0 = st.gen;
        CHECKF(st.inuse > (BLOCKS * 16 + 3) * PAGE, "in use %" PRIu64 ": the cache counts as in use", st.inuse);
        printf("idle thread holds %" PRIu64 " KiB (3 pages live) at generation %" PRIu64 "\n", st.inuse >> 10, g0);
        bool back = test_wait_inuse(p, 3 * PAGE, &st);
        uint64_t g = st.gen;
        CHECKF(back, "in use still %" PRIu64 " at generation %" PRIu64 ": the idle thread's cache never came back",
               st.inuse, st.gen);
        /* Within one generation: reaps come every third of a generation,
         * and the second one after the thread's last operation finds it
         * idle. At the latest that is in the generation after the one it
         * went idle in. */
        CHECKF(g <= g0 + 1, "came back at generation %" PRIu64 ", went idle at %" PRIu64, g, g0);
        printf("given back at generation %" PRIu64 "\n", g);
        CHECK(test_pool_check(&d, "reap"));

        /* A forced scavenge (what memory pressure does) takes even a thread's
         * cache that has not been idle for a generation. */
        struct filler b = { .p = p };
        fill(&b); /* this thread, which goes on below */
        CHECK_EQ_U64(b.err, 0);
        CHECK(scav_stats(p, &st) == 0);
        CHECK(st.inuse > (BLOCKS * 16 + 6) * PAGE);
        CHECK(scav_scavenge(p, 0) >= 0);
        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse == 6 * PAGE, "in use %" PRIu64 " after a forced scavenge, want the 6 live pages", st.inuse);
        /* The thread allocates on as before. */
        uint64_t x;
        CHECK(scav_alloc(p, 20 * PAGE, 0, &x) == 0);
        memset(scav_ptr(p, x), 1, 20 * PAGE);
        CHECK(scav_free(p, x) == 0);
        CHECK(scav_free(p, a.live) == 0);
        CHECK(scav_free(p, b.live) == 0);
        filler_stop(&a, t);
        CHECK_EQ_U64(a.err, 0);
        CHECK(test_pool_check(&d, "reap"));

        /* A client killed with full lists in several threads: every page comes back. */
        int up[2];
        CHECK(pipe(up) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                scav_pool *q;
                struct filler f[3];
                pthread_t th[3];
                if (scav_open("reap", &q) < 0)
                        _exit(1);
                for (int i = 0; i < 3; i++)
                        if (filler_start(&f[i], q, &th[i]) < 0)
                                _exit(2);
                struct filler mine = { .p = q };
                fill(&mine);
                if (write(up[1], "f", 1) != 1)
                        _exit(3);
                pause();
                _exit(4);
        }
        char c;
        CHECK(read(up[0], &c, 1) == 1);
        /* The daemon's reaper may already have found the first threads
         * idle (two reaps, 67 ms here, after their last operation: a
         * loaded machine's fork and fills take that long); the last one
         * to fill has its lists full. (test-tcache kills a client with
         * every list full, without a reaper.) */
        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse >= (BLOCKS * 16 + 4 * 3) * PAGE, "in use %" PRIu64 " with the client's lists full", st.inuse);
        printf("killed client holds %" PRIu64 " KiB\n", st.inuse >> 10);
        CHECK(kill(pid, SIGKILL) == 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(test_wait_inuse(p, 0, &st), "in use %" PRIu64 " after the client was killed", st.inuse);
        CHECK(test_pool_check(&d, "reap"));

        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

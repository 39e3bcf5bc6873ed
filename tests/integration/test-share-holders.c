/* SPDX-License-Identifier: MIT */
/*
 * References across real processes and the real daemon:
 *
 * - one allocation referenced by every client slot of a pool at once (the
 *   pool is then full: one more client is refused), its holders SIGKILLed
 *   one by one: it lives, unchanged, exactly until the last one dies;
 * - handles between processes: redeemed while the allocation lives; -ESTALE
 *   once it was freed, and once it was freed and allocated again at the
 *   same offset (ABA); -EXDEV for a handle of another pool; -ESTALE for a
 *   pool created anew (another pool id);
 * - names between processes: a lookup that waits is woken by another
 *   process's publish.
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

#define CLIENTS 12
#define SIZE (1u << 20)

static const char config[] =
        "[pool hold]\n"
        "capacity = 64M\n"
        "max_clients = 12\n"
        "[pool other]\n"
        "capacity = 8M\n";

static void fill(void *p, size_t n, uint64_t seed) {
        uint64_t *w = p;
        for (size_t i = 0; i < n / 8; i++)
                w[i] = test_mix64(seed + i);
}

static bool intact(const void *p, size_t n, uint64_t seed) {
        const uint64_t *w = p;
        for (size_t i = 0; i < n / 8; i++)
                if (w[i] != test_mix64(seed + i))
                        return false;
        return true;
}

/* A holder: opens the pool, redeems the handle from the pipe, says so, sleeps until killed. */
static _Noreturn void holder(int rfd, int wfd) {
        struct scav_handle h;
        scav_pool *p;
        uint64_t off;
        char ok = 'y';

        if (read(rfd, &h, sizeof(h)) != (ssize_t) sizeof(h) || scav_open("hold", &p) < 0 ||
            scav_ref_handle(p, &h, &off) < 0 || off != h.off || !intact(scav_ptr(p, off), SIZE, 42))
                ok = 'n';
        (void) !write(wfd, &ok, 1);
        for (;;)
                pause();
}

static bool wait_stats(scav_pool *p, uint64_t clients, uint64_t refs, struct scav_stats *st) {
        for (unsigned t = 0; t < 3000; t++) {
                if (scav_stats(p, st) == 0 && st->clients == clients && st->refs == refs)
                        return true;
                usleep(10000);
        }
        return false;
}

static void test_every_slot(void) {
        struct scav_handle h;
        struct scav_stats st;
        pid_t kids[CLIENTS - 1];
        scav_pool *p, *extra;
        uint64_t off;
        size_t bytes;
        int down[2], up[2];

        CHECK(pipe(down) == 0 && pipe(up) == 0);
        CHECK(scav_open("hold", &p) == 0);
        CHECK(scav_alloc(p, SIZE, 0, &off) == 0);
        fill(scav_ptr(p, off), SIZE, 42);
        CHECK(scav_make_handle(p, off, &h) == 0);
        CHECK(strcmp(h.pool, "hold") == 0 && h.off == off && h.tag != 0);

        /* Every other slot of the pool takes a reference. */
        for (unsigned i = 0; i < CLIENTS - 1; i++) {
                kids[i] = fork();
                if (kids[i] == 0)
                        holder(down[0], up[1]);
                CHECK(write(down[1], &h, sizeof(h)) == (ssize_t) sizeof(h));
                char c = 0;
                CHECK(read(up[0], &c, 1) == 1);
                CHECKF(c == 'y', "holder %u could not take its reference", i);
        }
        CHECK(wait_stats(p, CLIENTS, CLIENTS, &st));
        CHECKF(st.shared == 1 && st.refs == CLIENTS, "%" PRIu64 " shared, %" PRIu64 " references", st.shared, st.refs);
        CHECKF(scav_open("hold", &extra) == -EUSERS, "every slot is taken, yet one more client got in");

        /* Ours goes first: the others hold it. */
        CHECK(scav_free(p, off) == 0);
        CHECK(scav_free(p, off) == -EBUSY);
        CHECK(scav_unref(p, off) == -ENOENT);
        CHECK(scav_size(p, off, &bytes) == 0 && bytes == SIZE);

        for (unsigned i = 0; i < CLIENTS - 1; i++) {
                kill(kids[i], SIGKILL);
                CHECK(waitpid(kids[i], NULL, 0) == kids[i]);
                uint64_t left = CLIENTS - 2 - i;
                CHECKF(wait_stats(p, left + 1, left, &st), "after holder %u died: %" PRIu64 " clients, %" PRIu64
                       " references, want %" PRIu64 " and %" PRIu64, i, st.clients, st.refs, left + 1, left);
                if (left) {
                        CHECKF(scav_size(p, off, &bytes) == 0 && bytes == SIZE, "freed with %" PRIu64 " holders left", left);
                        CHECKF(intact(scav_ptr(p, off), SIZE, 42), "changed with %" PRIu64 " holders left", left);
                        CHECKF(st.inuse == SIZE, "%" PRIu64 " bytes in use", st.inuse);
                } else {
                        CHECKF(scav_size(p, off, &bytes) == -EINVAL, "outlived its last holder");
                        CHECKF(st.inuse == 0 && st.shared == 0, "%" PRIu64 " bytes in use, %" PRIu64 " shared after the last holder",
                               st.inuse, st.shared);
                }
        }
        scav_close(p);
        close(down[0]), close(down[1]), close(up[0]), close(up[1]);
}

static void test_handles(void) {
        struct scav_handle h, h2, bad;
        scav_pool *p, *q;
        uint64_t off, again, got;
        int fds[2], back[2];

        CHECK(pipe(fds) == 0 && pipe(back) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                /* The sender: a handle, then the allocation freed and made again at the same offset. */
                scav_pool *c;
                char go;
                if (scav_open("hold", &c) < 0 || scav_alloc(c, SIZE, 0, &off) < 0 || scav_make_handle(c, off, &h) < 0)
                        _exit(1);
                if (write(fds[1], &h, sizeof(h)) != (ssize_t) sizeof(h) || read(back[0], &go, 1) != 1)
                        _exit(2);
                if (scav_free(c, off) < 0 || scav_alloc(c, SIZE, 0, &again) < 0 || scav_make_handle(c, again, &h2) < 0)
                        _exit(3);
                if (write(fds[1], &h2, sizeof(h2)) != (ssize_t) sizeof(h2) || read(back[0], &go, 1) != 1)
                        _exit(4);
                scav_close(c);
                _exit(0);
        }
        CHECK(scav_open("hold", &p) == 0);
        CHECK(read(fds[0], &h, sizeof(h)) == (ssize_t) sizeof(h));
        /* While it lives: a reference. */
        CHECK(scav_ref_handle(p, &h, &got) == 0 && got == h.off);
        CHECK(scav_unref(p, got) == 0);
        CHECK(write(back[1], "g", 1) == 1);
        CHECK(read(fds[0], &h2, sizeof(h2)) == (ssize_t) sizeof(h2));
        CHECKF(h2.off == h.off, "the allocation was not made again at the same offset (%#" PRIx64 " vs %#" PRIx64 ")",
               h2.off, h.off);
        CHECKF(scav_ref_handle(p, &h, &got) == -ESTALE, "a handle led to memory allocated again (ABA)");
        CHECK(scav_ref_handle(p, &h2, &got) == 0 && got == h2.off);
        CHECK(write(back[1], "g", 1) == 1);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* The sender closed: its reference went, ours holds the allocation. */
        size_t bytes;
        CHECK(scav_size(p, got, &bytes) == 0 && bytes == SIZE);
        CHECK(scav_unref(p, got) == 0);
        CHECK(scav_ref_handle(p, &h2, &got) == -ESTALE); /* freed */

        /* Another pool's handle; a pool created anew; a handle that is not one. */
        CHECK(scav_open("other", &q) == 0);
        CHECK(scav_alloc(q, 4096, 0, &off) == 0);
        CHECK(scav_make_handle(q, off, &bad) == 0);
        CHECK(scav_ref_handle(p, &bad, &got) == -EXDEV);
        memcpy(bad.pool, "hold", 5);
        CHECK(scav_ref_handle(p, &bad, &got) == -ESTALE);
        bad.magic ^= 1;
        CHECK(scav_ref_handle(q, &bad, &got) == -EINVAL);
        bad = h2;
        memset(bad.pool, 'x', sizeof(bad.pool));
        CHECK(scav_ref_handle(p, &bad, &got) == -EINVAL);
        CHECK(scav_make_handle(q, off + 4096, &bad) == -EINVAL);
        scav_close(q);
        scav_close(p);
}

static void test_wait(void) {
        scav_pool *p;
        uint64_t got;
        int go[2];

        CHECK(pipe(go) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                scav_pool *c;
                uint64_t off;
                char x;
                if (scav_open("hold", &c) < 0 || scav_alloc(c, 8192, SCAV_ALLOC_ZERO, &off) < 0 ||
                    read(go[0], &x, 1) != 1)
                        _exit(1);
                usleep(100000); /* the parent is asleep in its lookup by now */
                memcpy(scav_ptr(c, off), "hello", 6);
                if (scav_publish(c, "greeting", off) < 0 || scav_free(c, off) < 0)
                        _exit(2);
                scav_close(c);
                _exit(0);
        }
        CHECK(scav_open("hold", &p) == 0);
        CHECK(scav_lookup(p, "greeting", &got) == -ENOENT);
        CHECK(scav_lookup_wait(p, "greeting", 0, &got) == -ENOENT);
        CHECK(write(go[1], "g", 1) == 1);
        int r = scav_lookup_wait(p, "greeting", 30000, &got);
        CHECKF(r == 0, "scav_lookup_wait: %d", r);
        if (r == 0)
                CHECK(strcmp(scav_ptr(p, got), "hello") == 0);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* The publisher is gone; the name and our reference hold it. */
        CHECK(scav_unpublish(p, "greeting") == 0);
        CHECK(strcmp(scav_ptr(p, got), "hello") == 0);
        CHECK(scav_unref(p, got) == 0);
        CHECK(scav_lookup_wait(p, "greeting", 50, &got) == -ETIMEDOUT);
        CHECK(scav_lookup_wait(p, "bad name", 50, &got) == -EINVAL);
        scav_close(p);
}

int main(void) {
        struct test_daemon d;

        if (test_daemon_start(&d, config) < 0)
                return TEST_END();
        test_every_slot();
        test_handles();
        test_wait();
        CHECK(test_pool_check(&d, "hold"));
        CHECK(test_daemon_stop(&d) == 0);
        test_daemon_cleanup(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * The heap as a process that must not trust the meta region sees it
 * (heap_set_untrusted, heap_verify_header, heap_get_stats_checked):
 *
 *  - its locks exclude clients that lock with pthread_mutex_lock, in other
 *    processes, and the other way round;
 *  - a client that overwrites the mutex's robust-list links while the
 *    untrusted handle holds the lock does not make its unlock write
 *    anywhere (glibc's unlock would: SIGSEGV);
 *  - a process that dies holding the untrusted lock hands EOWNERDEAD to a
 *    client's pthread_mutex_lock (the kernel walked its robust list), and
 *    the untrusted handle recovers from a client that died holding it;
 *  - a wait is published with the holder's thread id, and cleared;
 *  - a mutex marked not recoverable gives -EUCLEAN and is released;
 *  - magic, version and every size of the header changed after creation
 *    are named by heap_verify_header and fail heap_check;
 *  - statistics out of bounds fail heap_get_stats_checked.
 */

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heap/layout.h"
#include "heap/testing.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static const struct heap_params params = {
        .capacity = 64u << 20,
        .max_slots = 8,
};

/* Shared with children: a counter only the lock holder touches. */
struct shared {
        uint64_t counter;
        _Atomic int go;
        _Atomic int tid;
};

static struct shared *shared_new(void) {
        struct shared *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        CHECK(s != MAP_FAILED);
        memset(s, 0, sizeof(*s));
        return s;
}

static int wait_child(pid_t pid) {
        int status;
        if (waitpid(pid, &status, 0) != pid)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define ROUNDS 20000

/* Two processes with glibc locks and this one with untrusted locks increment one counter. */
static void test_exclusion(void) {
        struct heap_test t;
        struct shared *s = shared_new();
        pid_t kids[2];
        heap *d;

        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
        heap_set_untrusted(d, NULL);
        for (int k = 0; k < 2; k++) {
                kids[k] = fork();
                if (kids[k] == 0) {
                        while (!atomic_load(&s->go))
                                ;
                        for (int i = 0; i < ROUNDS; i++) {
                                if (heap_lock(t.h) < 0)
                                        _exit(1);
                                s->counter++;
                                heap_unlock(t.h);
                        }
                        _exit(0);
                }
        }
        atomic_store(&s->go, 1);
        for (int i = 0; i < ROUNDS; i++) {
                CHECK(heap_lock(d) == 0);
                s->counter++;
                heap_unlock(d);
        }
        for (int k = 0; k < 2; k++)
                CHECK(wait_child(kids[k]) == 0);
        CHECK_EQ_U64(s->counter, 3 * ROUNDS);
        CHECK(heap_check(d, NULL, 0) == 0);
        heap_detach(d);
        heap_test_free(&t);
}

/* The robust-list links inside the mutex are the client's to write. */
static void test_scribbled_links(void) {
        struct heap_test t;
        heap *d;

        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
        heap_set_untrusted(d, NULL);
        for (int i = 0; i < 2; i++) {
                pthread_mutex_t *m = i == 0 ? &heap_test_hdr(t.h)->heap_lock : &heap_test_hdr(t.h)->scav_lock;
                CHECK((i == 0 ? heap_lock(d) : heap_scav_lock(d)) == 0);
                m->__data.__list.__next = (void *) 0x1230;
                m->__data.__list.__prev = (void *) 0x4560;
                if (i == 0)
                        heap_unlock(d);
                else
                        heap_scav_unlock(d);
                CHECK_EQ_U64(__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED), 0);
        }
        /* A glibc client takes the locks as usual afterwards (its lock writes the links anew). */
        CHECK(heap_lock(t.h) == 0);
        heap_unlock(t.h);
        CHECK(heap_check(d, NULL, 0) == 0);
        heap_detach(d);
        heap_test_free(&t);
}

/* Deaths while holding, both ways. */
static void test_owner_died(void) {
        struct heap_test t;
        uint64_t off;
        heap *d;
        pid_t pid;

        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
        heap_set_untrusted(d, NULL);
        CHECK(heap_alloc(t.h, 1, 3, 0, &off) == 0);

        /* An untrusted holder dies: the client's pthread_mutex_lock sees EOWNERDEAD. */
        pid = fork();
        if (pid == 0) {
                heap *c;
                if (heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &c) < 0)
                        _exit(1);
                heap_set_untrusted(c, NULL);
                if (heap_lock(c) < 0)
                        _exit(2);
                _exit(0); /* holding it */
        }
        CHECK(wait_child(pid) == 0);
        CHECK(__atomic_load_n(&heap_test_hdr(t.h)->heap_lock.__data.__lock, __ATOMIC_RELAXED) & FUTEX_OWNER_DIED);
        uint64_t rec_before = heap_test_hdr(t.h)->recoveries;
        CHECK(heap_lock(t.h) == 0); /* recovered */
        heap_unlock(t.h);
        CHECK_EQ_U64(heap_test_hdr(t.h)->recoveries, rec_before + 1);

        /* A client dies holding it: the untrusted handle recovers. */
        pid = fork();
        if (pid == 0) {
                if (heap_lock(t.h) < 0)
                        _exit(2);
                _exit(0);
        }
        CHECK(wait_child(pid) == 0);
        CHECK(heap_lock(d) == 0);
        heap_unlock(d);
        CHECK_EQ_U64(heap_test_hdr(t.h)->recoveries, rec_before + 2);
        /* And the mutex is consistent for glibc again. */
        CHECK(heap_lock(t.h) == 0);
        heap_unlock(t.h);
        CHECK(heap_check(d, NULL, 0) == 0);
        heap_detach(d);
        heap_test_free(&t);
}

struct waiter {
        heap *d;
        struct heap_lock_wait w;
        _Atomic int done;
};

static void *waiter_main(void *arg) {
        struct waiter *wt = arg;
        if (heap_lock(wt->d) == 0)
                heap_unlock(wt->d);
        atomic_store(&wt->done, 1);
        return NULL;
}

/* A wait on a holder that does not let go is published, with its thread id. */
static void test_wait_published(void) {
        struct heap_test t;
        struct shared *s = shared_new();
        struct waiter wt = {};
        pthread_t th;
        pid_t pid;

        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &wt.d) == 0);
        heap_set_untrusted(wt.d, &wt.w);
        pid = fork();
        if (pid == 0) {
                if (heap_lock(t.h) < 0)
                        _exit(1);
                atomic_store(&s->tid, (int) syscall(SYS_gettid));
                while (!atomic_load(&s->go))
                        usleep(1000);
                heap_unlock(t.h);
                _exit(0);
        }
        while (!atomic_load(&s->tid))
                usleep(1000);
        CHECK(pthread_create(&th, NULL, waiter_main, &wt) == 0);
        for (int i = 0; i < 5000 && !atomic_load(&wt.w.since_ns); i++)
                usleep(1000);
        CHECK(atomic_load(&wt.w.since_ns) != 0);
        CHECK_EQ_U64(atomic_load(&wt.w.lock), HEAP_LOCK_HEAP);
        CHECK_EQ_U64(atomic_load(&wt.w.holder), (uint64_t) atomic_load(&s->tid));
        CHECK(!atomic_load(&wt.done));
        atomic_store(&s->go, 1);
        CHECK(pthread_join(th, NULL) == 0);
        CHECK(atomic_load(&wt.done));
        CHECK_EQ_U64(atomic_load(&wt.w.since_ns), 0);
        CHECK(wait_child(pid) == 0);
        heap_detach(wt.d);
        heap_test_free(&t);
}

static void test_not_recoverable(void) {
        struct heap_test t;
        heap *d;

        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
        heap_set_untrusted(d, NULL);
        heap_test_hdr(t.h)->heap_lock.__data.__owner = INT_MAX - 1;
        CHECK(heap_lock(d) == -EUCLEAN);
        CHECK_EQ_U64(__atomic_load_n(&heap_test_hdr(t.h)->heap_lock.__data.__lock, __ATOMIC_RELAXED), 0);
        heap_detach(d);
        heap_test_free(&t);
}

/* Every read-only header field, changed after creation. */
static void test_header(void) {
        static const struct {
                const char *name;
                size_t off;
                const char *want;
        } cases[] = {
                { "magic", offsetof(struct heap_hdr, magic), "header magic changed" },
                { "version", offsetof(struct heap_hdr, version), "header version changed" },
                { "hdr_size", offsetof(struct heap_hdr, hdr_size), "header hdr_size changed" },
                { "meta_size", offsetof(struct heap_hdr, meta_size), "header meta_size changed" },
                { "capacity", offsetof(struct heap_hdr, capacity), "header capacity changed" },
                { "page_size", offsetof(struct heap_hdr, page_size), "header page_size changed" },
                { "max_slots", offsetof(struct heap_hdr, max_slots), "header max_slots changed" },
                { "nchunks_max", offsetof(struct heap_hdr, nchunks_max), "header nchunks_max changed" },
                { "records_off", offsetof(struct heap_hdr, records_off), "header records_off changed" },
                { "level_off[1]", offsetof(struct heap_hdr, level_off) + 8, "header level_off changed" },
                { "level_entries[0]", offsetof(struct heap_hdr, level_entries), "header level_entries changed" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct heap_test t;
                struct heap_stats st;
                char why[256] = "";
                heap *d;

                CHECK(heap_test_new(&params, &t) == 0);
                CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
                heap_set_untrusted(d, NULL);
                CHECK(heap_verify_header(d, why, sizeof(why)) == 0);
                ((uint8_t *) t.meta)[cases[i].off] ^= 0x10;
                int r = heap_verify_header(d, why, sizeof(why));
                CHECKF(r == -EUCLEAN && strstr(why, cases[i].want), "%s: %d \"%s\", want \"%s\"", cases[i].name, r,
                       why, cases[i].want);
                CHECKF(heap_check(d, why, sizeof(why)) == -EUCLEAN && strstr(why, cases[i].want), "%s: check: %s",
                       cases[i].name, why);
                CHECKF(heap_get_stats_checked(d, NULL, &st, why, sizeof(why)) == -EUCLEAN, "%s: stats", cases[i].name);
                heap_detach(d);
                heap_test_free(&t);
        }
}

static void test_stats(void) {
        static const struct {
                const char *name;
                size_t off;
                uint64_t value;
                const char *want;
        } cases[] = {
                { "grown chunks", offsetof(struct heap_hdr, nchunks), 1u << 20, "grown chunks" },
                { "in use", offsetof(struct heap_hdr, inuse_pages), UINT64_C(1) << 52, "out of bounds" },
                { "released", offsetof(struct heap_hdr, released_pages), 100000, "out of bounds" },
                { "peak", offsetof(struct heap_hdr, peak_inuse_pages), 1u << 30, "out of bounds" },
                { "gen_released", offsetof(struct heap_hdr, gen_released), UINT64_C(1) << 40, "gen_released" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct heap_test t;
                struct heap_stats st, prev;
                char why[256] = "";
                uint64_t off;
                heap *d;

                CHECK(heap_test_new(&params, &t) == 0);
                CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
                heap_set_untrusted(d, NULL);
                CHECK(heap_alloc(t.h, 1, 100, 0, &off) == 0);
                CHECK(heap_get_stats_checked(d, NULL, &prev, why, sizeof(why)) == 0);
                CHECK_EQ_U64(prev.inuse, 100 * 4096);
                memcpy((uint8_t *) t.meta + cases[i].off, &cases[i].value, sizeof(uint64_t));
                int r = heap_get_stats_checked(d, &prev, &st, why, sizeof(why));
                CHECKF(r == -EUCLEAN && strstr(why, cases[i].want), "%s: %d \"%s\"", cases[i].name, r, why);
                heap_detach(d);
                heap_test_free(&t);
        }

        /* A counter that goes backwards. */
        struct heap_test t;
        struct heap_stats st, prev;
        char why[256] = "";
        heap *d;
        CHECK(heap_test_new(&params, &t) == 0);
        CHECK(heap_attach(t.meta, t.meta_size, t.base, t.capacity, -1, &d) == 0);
        heap_set_untrusted(d, NULL);
        heap_test_hdr(t.h)->gen = 5;
        CHECK(heap_get_stats_checked(d, NULL, &prev, why, sizeof(why)) == 0);
        heap_test_hdr(t.h)->gen = 4;
        CHECK(heap_get_stats_checked(d, &prev, &st, why, sizeof(why)) == -EUCLEAN && strstr(why, "gen"));
        heap_detach(d);
        heap_test_free(&t);
}

int main(void) {
        test_exclusion();
        test_scribbled_links();
        test_owner_died();
        test_wait_published();
        test_not_recoverable();
        test_header();
        test_stats();
        return TEST_END();
}

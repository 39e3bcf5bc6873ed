/* SPDX-License-Identifier: MIT */
/*
 * Shared references, handles and names in the heap core (share.c, names.c):
 * who holds what, when an allocation goes, what bad input gets, the limits,
 * and a lookup that waits. Every step ends with heap_check.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/test.h"
#include "heap/layout.h"
#include "heap/testing.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define PS 4096u

static void check_ok(heap *h, const char *when) {
        char buf[256] = "";
        CHECKF(heap_check(h, buf, sizeof(buf)) == 0, "%s: %s", when, buf);
}

static uint64_t inuse(heap *h) {
        struct heap_stats st;
        CHECK(heap_get_stats(h, &st) == 0);
        return st.inuse;
}

static struct heap_stats stats(heap *h) {
        struct heap_stats st = {};
        CHECK(heap_get_stats(h, &st) == 0);
        return st;
}

struct fixture {
        struct heap_test t;
        heap *h;
        uint32_t a, b, c; /* three client slots */
};

static void setup(struct fixture *f, uint32_t max_shares, uint32_t max_names) {
        struct heap_params p = { .capacity = 64u << 20, .max_slots = 8, .max_shares = max_shares,
                                 .max_names = max_names };
        CHECK(heap_test_new(&p, &f->t) == 0);
        f->h = f->t.h;
        CHECK(heap_slot_claim(f->h, 100, 0, &f->a) == 0);
        CHECK(heap_slot_claim(f->h, 101, 0, &f->b) == 0);
        CHECK(heap_slot_claim(f->h, 102, 0, &f->c) == 0);
}

/* The allocating client holds the first reference; the last to let go frees it, whoever. */
static void test_refs(void) {
        struct fixture f;
        uint64_t off, before;
        struct heap_slot_info info;

        setup(&f, 0, 0);
        heap *h = f.h;
        before = inuse(h);
        CHECK(heap_alloc(h, f.a, 10, 0, &off) == 0);
        memset(heap_base(h) + off, 0x5a, 10 * PS);
        CHECK(heap_ref(h, f.b, off) == 0);
        CHECK(heap_ref(h, f.b, off) == 0); /* several of one client */
        check_ok(h, "two refs of b");
        CHECK_EQ_U64(stats(h).shared, 1);
        CHECK_EQ_U64(stats(h).refs, 3);
        CHECK(heap_slot_info(h, f.b, &info) == 0);
        CHECK_EQ_U64(info.refs, 2);
        CHECK_EQ_U64(info.shared, 1);

        /* The owner lets go: still b's. */
        CHECK(heap_free(h, f.a, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == 10 * PS);
        CHECK(heap_free(h, f.a, 0, off) == -EBUSY); /* a holds none, b does */
        CHECK(heap_unref(h, f.a, 0, off) == -ENOENT);
        CHECK(heap_unref(h, f.c, 0, off) == -ENOENT);
        CHECK(((uint8_t *) heap_base(h))[off + 5 * PS] == 0x5a);
        check_ok(h, "owner let go");

        CHECK(heap_unref(h, f.b, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == 10 * PS);
        CHECK(heap_unref(h, f.b, 0, off) == 0); /* the last one */
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        CHECK_EQ_U64(inuse(h), before);
        CHECK_EQ_U64(stats(h).shared, 0);
        CHECK_EQ_U64(stats(h).refs, 0);
        CHECK(heap_unref(h, f.b, 0, off) == -EINVAL); /* no longer an allocation */
        CHECK(heap_ref(h, f.b, off) == -EINVAL);
        CHECK(heap_free(h, f.b, 0, off) == -EINVAL);
        check_ok(h, "last let go");

        /* Unshared: unref by the owner is a free; by anyone else -ENOENT. */
        CHECK(heap_alloc(h, f.a, 3, 0, &off) == 0);
        CHECK(heap_unref(h, f.b, 0, off) == -ENOENT);
        CHECK(heap_unref(h, f.a, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        /* Bad offsets. */
        CHECK(heap_ref(h, f.a, 1) == -EINVAL);
        CHECK(heap_ref(h, f.a, UINT64_MAX & ~(uint64_t) (PS - 1)) == -EINVAL);
        CHECK(heap_ref(h, 99, 0) == -EINVAL);
        check_ok(h, "bad input");
        heap_test_free(&f.t);
}

/* A page-cache allocation shared by another client: the owner's free takes the lock, not its cache. */
static void test_cached(void) {
        struct fixture f;
        uint64_t off, before;

        setup(&f, 0, 0);
        heap *h = f.h;
        before = inuse(h);
        CHECK(heap_cache_alloc(h, f.a, 0, 2, 0, &off) == 0);
        CHECK(heap_ref(h, f.b, off) == 0);
        CHECK(heap_free(h, f.a, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == 2 * PS); /* b still holds it */
        check_ok(h, "cached, shared, owner freed");
        CHECK(heap_unref(h, f.b, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        check_ok(h, "cached, last let go");
        /* Its pages stayed in a's cache (only a gives them back). */
        CHECK(heap_cache_flush(h, f.a, 0) == 0);
        CHECK_EQ_U64(inuse(h), before);

        /* A medium-cache allocation, likewise: freed for real, not cached. */
        CHECK(heap_cache_alloc(h, f.a, 0, 40, 0, &off) == 0);
        CHECK(heap_ref(h, f.b, off) == 0);
        CHECK(heap_unref(h, f.b, 0, off) == 0);
        CHECK(heap_free(h, f.a, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        CHECK(heap_free(h, f.a, 0, off) == -EINVAL);
        check_ok(h, "medium, shared");
        CHECK(heap_cache_flush(h, f.a, 0) == 0);
        CHECK_EQ_U64(inuse(h), before);
        heap_test_free(&f.t);
}

/* KEEP: the pool's reference, dropped by an explicit free of anyone. */
static void test_keep(void) {
        struct fixture f;
        uint64_t off, before;

        setup(&f, 0, 0);
        heap *h = f.h;
        before = inuse(h);
        CHECK(heap_alloc(h, f.a, 4, HEAP_ALLOC_KEEP, &off) == 0);
        CHECK(heap_ref(h, f.b, off) == 0);
        CHECK(heap_unref(h, f.a, 0, off) == -ENOENT); /* the pool's, not a's */
        CHECK(heap_slot_reclaim(h, f.a) >= 0);
        CHECK(heap_alloc_size(h, off) == 4 * PS);
        CHECK(heap_slot_reclaim(h, f.b) >= 0); /* b's reference goes; the pool's stays */
        CHECK(heap_alloc_size(h, off) == 4 * PS);
        check_ok(h, "keep after both clients");
        CHECK(heap_free(h, f.c, 0, off) == 0); /* anyone drops the pool's */
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        CHECK_EQ_U64(inuse(h), before);
        check_ok(h, "keep freed");
        heap_test_free(&f.t);
}

/* Reclaim drops exactly the slot's references. */
static void test_reclaim(void) {
        struct fixture f;
        uint64_t x, y, before;

        setup(&f, 0, 0);
        heap *h = f.h;
        before = inuse(h);
        CHECK(heap_alloc(h, f.a, 8, 0, &x) == 0);
        CHECK(heap_alloc(h, f.b, 8, 0, &y) == 0);
        CHECK(heap_ref(h, f.b, x) == 0);
        CHECK(heap_ref(h, f.c, x) == 0);
        CHECK(heap_ref(h, f.c, x) == 0);
        CHECK(heap_ref(h, f.a, y) == 0);
        CHECK(heap_slot_reclaim(h, f.a) >= 0); /* x: b 1, c 2; y: b 1 */
        CHECK(heap_alloc_size(h, x) == 8 * PS);
        CHECK(heap_alloc_size(h, y) == 8 * PS);
        CHECK_EQ_U64(stats(h).refs, 4);
        check_ok(h, "a reclaimed");
        int64_t given = heap_slot_reclaim(h, f.c);
        CHECK(given == 0);
        CHECK(heap_alloc_size(h, x) == 8 * PS);
        given = heap_slot_reclaim(h, f.b);
        CHECKF(given == 16, "reclaim of the last holder gave %" PRId64 " pages, want 16", given);
        CHECK(heap_alloc_size(h, x) == -EINVAL);
        CHECK(heap_alloc_size(h, y) == -EINVAL);
        CHECK_EQ_U64(inuse(h), before);
        CHECK_EQ_U64(stats(h).shared, 0);
        check_ok(h, "all reclaimed");
        heap_test_free(&f.t);
}

/* Handles: the tag outlives nothing. */
static void test_handles(void) {
        struct fixture f;
        uint64_t off, off2, tag, tag2;

        setup(&f, 0, 0);
        heap *h = f.h;
        CHECK(heap_alloc(h, f.a, 5, 0, &off) == 0);
        CHECK(heap_share_tag(h, f.a, off, &tag) == 0);
        CHECK(tag != 0);
        CHECK(heap_share_tag(h, f.b, off, &tag2) == 0);
        CHECK_EQ_U64(tag2, tag); /* one allocation, one tag */
        CHECK(heap_ref_tagged(h, f.b, off, tag) == 0);
        CHECK(heap_ref_tagged(h, f.b, off, tag + 1) == -ESTALE);
        CHECK(heap_ref_tagged(h, f.b, off, 0) == -ESTALE);
        CHECK(heap_ref_tagged(h, f.b, off + PS, tag) == -ESTALE); /* inside: no allocation starts there */
        CHECK(heap_unref(h, f.b, 0, off) == 0);
        check_ok(h, "handle taken and dropped");

        /* ABA: freed and allocated again at the same offset between send and receive. */
        CHECK(heap_free(h, f.a, 0, off) == 0);
        CHECK(heap_ref_tagged(h, f.b, off, tag) == -ESTALE);
        CHECK(heap_alloc(h, f.c, 5, 0, &off2) == 0);
        CHECK_EQ_U64(off2, off);
        CHECK(heap_ref_tagged(h, f.b, off, tag) == -ESTALE);
        CHECK(heap_share_tag(h, f.c, off2, &tag2) == 0); /* shared again: a new tag */
        CHECK(tag2 != tag);
        CHECK(heap_ref_tagged(h, f.b, off, tag) == -ESTALE);
        CHECK(heap_ref_tagged(h, f.b, off, tag2) == 0);
        CHECK(heap_pool_id(h) != 0);
        check_ok(h, "aba");
        heap_test_free(&f.t);
}

/* Limits: a slot's count, the table; each refused with nothing changed. */
static void test_limits(void) {
        struct fixture f;
        uint64_t off[5];
        struct heap_stats before;

        setup(&f, 4, 0);
        heap *h = f.h;
        for (unsigned i = 0; i < 5; i++)
                CHECK(heap_alloc(h, f.a, 1, 0, &off[i]) == 0);
        for (unsigned i = 0; i < 4; i++)
                CHECK(heap_ref(h, f.b, off[i]) == 0);
        before = stats(h);
        CHECK(heap_ref(h, f.b, off[4]) == -ENOSPC);
        uint64_t tag;
        CHECK(heap_share_tag(h, f.b, off[4], &tag) == -ENOSPC);
        struct heap_stats after = stats(h);
        CHECK(memcmp(&before, &after, sizeof(before)) == 0);
        check_ok(h, "share table full");
        /* A freed entry is used again. */
        CHECK(heap_free(h, f.a, 0, off[0]) == 0);
        CHECK(heap_alloc_size(h, off[0]) == 4096);
        CHECK(heap_unref(h, f.b, 0, off[0]) == 0);
        CHECK(heap_alloc_size(h, off[0]) == -EINVAL);
        CHECK(heap_ref(h, f.b, off[4]) == 0);

        /* A slot's count stops at HEAP_SHARE_SLOT_MAX. */
        unsigned n = 1; /* b already holds one on off[1] */
        while (n < HEAP_SHARE_SLOT_MAX && heap_ref(h, f.b, off[1]) == 0)
                n++;
        CHECKF(n == HEAP_SHARE_SLOT_MAX, "took %u references", n);
        before = stats(h);
        CHECK(heap_ref(h, f.b, off[1]) == -ETOOMANYREFS);
        CHECK(heap_ref(h, f.c, off[1]) == 0); /* another slot still may */
        CHECK_EQ_U64(stats(h).refs, before.refs + 1);
        check_ok(h, "slot count at its limit");
        heap_test_free(&f.t);
}

/* Names: bind, find, refuse, unbind; a name holds a reference. */
static void test_names(void) {
        struct fixture f;
        uint64_t off, got, before;
        struct heap_name_info ni;

        setup(&f, 0, 3);
        heap *h = f.h;
        before = inuse(h);
        CHECK(heap_alloc(h, f.a, 6, 0, &off) == 0);
        CHECK(heap_publish(h, f.a, "frame/1", off) == 0);
        CHECK(heap_publish(h, f.b, "frame/1", off) == -EEXIST);
        CHECK(heap_publish(h, f.b, "frame/2", off) == 0); /* two names, one allocation */
        CHECK(heap_free(h, f.a, 0, off) == 0);           /* the names hold it */
        CHECK(heap_alloc_size(h, off) == 6 * PS);
        check_ok(h, "published");

        const char *bad[] = { "", "a b", "tab\t", "\x7f", "\xc3\xa9", NULL };
        for (unsigned i = 0; i < ELEMENTSOF(bad); i++) {
                CHECKF(heap_publish(h, f.a, bad[i], off) == -EINVAL, "name #%u", i);
                CHECKF(heap_lookup(h, f.a, bad[i], 0, &got) == -EINVAL, "name #%u", i);
        }
        char longname[HEAP_NAME_MAX + 1];
        memset(longname, 'x', sizeof(longname) - 1);
        longname[HEAP_NAME_MAX] = 0;
        CHECK(heap_publish(h, f.a, longname, off) == -EINVAL);
        longname[HEAP_NAME_MAX - 1] = 0; /* 63 bytes: the longest */
        CHECK(heap_publish(h, f.a, longname, off) == 0);
        CHECK(heap_publish(h, f.a, "one-too-many", off) == -ENOSPC);
        CHECK(heap_unpublish(h, f.a, longname) == 0);
        CHECK(heap_publish(h, f.a, "x", off + PS) == -EINVAL); /* not an allocation's start */
        check_ok(h, "refusals");

        CHECK(heap_lookup(h, f.c, "frame/2", 0, &got) == 0);
        CHECK_EQ_U64(got, off);
        CHECK(heap_lookup(h, f.c, "frame/3", 0, &got) == -ENOENT);
        CHECK(heap_lookup(h, f.c, "frame/3", 20 * 1000000, &got) == -ETIMEDOUT);
        bool seen = false;
        for (uint32_t i = 0; i < heap_max_names(h); i++)
                if (heap_name_info(h, i, &ni) == 0 && strcmp(ni.name, "frame/2") == 0) {
                        seen = true;
                        CHECK_EQ_U64(ni.off, off);
                        CHECK_EQ_U64(ni.bytes, 6 * PS);
                        CHECK_EQ_U64(ni.refs, 3); /* two names and c */
                }
        CHECK(seen);
        CHECK(heap_name_info(h, heap_max_names(h), &ni) == -ERANGE);
        CHECK(heap_name_info(h, 3, &ni) == -ERANGE); /* three places used of three */
        CHECK_EQ_U64(stats(h).names, 2);

        CHECK(heap_unpublish(h, f.b, "frame/1") == 0);
        CHECK(heap_unpublish(h, f.b, "frame/1") == -ENOENT);
        CHECK(heap_unpublish(h, f.b, "frame/2") == 0);
        CHECK(heap_alloc_size(h, off) == 6 * PS); /* c still holds it */
        CHECK(heap_lookup(h, f.c, "frame/2", 0, &got) == -ENOENT);
        CHECK(heap_unref(h, f.c, 0, off) == 0);
        CHECK(heap_alloc_size(h, off) == -EINVAL);
        CHECK_EQ_U64(inuse(h), before);
        CHECK_EQ_U64(stats(h).names, 0);
        check_ok(h, "unpublished");

        /* Many names through a small index: deletions keep every other findable. */
        heap_test_free(&f.t);
        setup(&f, 0, 64);
        h = f.h;
        uint64_t offs[64];
        char name[16];
        for (unsigned i = 0; i < 64; i++) {
                CHECK(heap_alloc(h, f.a, 1, 0, &offs[i]) == 0);
                snprintf(name, sizeof(name), "n%u", i);
                CHECK(heap_publish(h, f.a, name, offs[i]) == 0);
                CHECK(heap_free(h, f.a, 0, offs[i]) == 0);
        }
        for (unsigned i = 0; i < 64; i += 3) {
                snprintf(name, sizeof(name), "n%u", i);
                CHECK(heap_unpublish(h, f.b, name) == 0);
                CHECK(heap_alloc_size(h, offs[i]) == -EINVAL);
        }
        for (unsigned i = 0; i < 64; i++) {
                snprintf(name, sizeof(name), "n%u", i);
                int r = heap_lookup(h, f.b, name, 0, &got);
                CHECKF(i % 3 == 0 ? r == -ENOENT : r == 0 && got == offs[i], "lookup %s: %d", name, r);
        }
        check_ok(h, "many names");
        heap_test_free(&f.t);
}

struct waiter {
        heap *h;
        uint32_t slot;
        int64_t timeout_ns;
        uint64_t off;
        int r;
};

static void *wait_thread(void *arg) {
        struct waiter *w = arg;
        w->r = heap_lookup(w->h, w->slot, "later", w->timeout_ns, &w->off);
        return NULL;
}

static void on_alarm(int sig) {
}

/* A signal ends a waiting lookup with -EINTR, as it ends poll(). */
static void test_wait_signal(void) {
        struct fixture f;
        uint64_t got;

        setup(&f, 0, 0);
        struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART: the kernel would restart the wait */
        CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
        CHECK(setitimer(ITIMER_REAL, &(struct itimerval) { .it_value = { .tv_usec = 50000 } }, NULL) == 0);
        int r = heap_lookup(f.h, f.b, "never", -1, &got);
        CHECKF(r == -EINTR, "a waiting lookup interrupted by a signal: %d", r);
        CHECK_EQ_U64(heap_test_hdr(f.h)->names_waiters, 0);
        signal(SIGALRM, SIG_DFL);
        heap_test_free(&f.t);
}

/* A lookup that waits is woken by the publish (no polling: it sleeps on the futex). */
static void test_wait(void) {
        struct fixture f;
        uint64_t off;
        pthread_t th[2];
        struct waiter w[2];

        setup(&f, 0, 0);
        heap *h = f.h;
        CHECK(heap_alloc(h, f.a, 1, 0, &off) == 0);
        w[0] = (struct waiter) { .h = h, .slot = f.b, .timeout_ns = -1 };
        w[1] = (struct waiter) { .h = h, .slot = f.c, .timeout_ns = 60 * INT64_C(1000000000) };
        for (unsigned i = 0; i < 2; i++)
                CHECK(pthread_create(&th[i], NULL, wait_thread, &w[i]) == 0);
        /* Let them sleep, then publish something else first: they must keep waiting. */
        usleep(50000);
        CHECK(heap_publish(h, f.a, "other", off) == 0);
        usleep(20000);
        CHECK(heap_publish(h, f.a, "later", off) == 0);
        for (unsigned i = 0; i < 2; i++) {
                CHECK(pthread_join(th[i], NULL) == 0);
                CHECKF(w[i].r == 0 && w[i].off == off, "waiter %u: %d", i, w[i].r);
        }
        CHECK_EQ_U64(heap_test_hdr(h)->names_waiters, 0);
        check_ok(h, "waited");
        heap_test_free(&f.t);
}

/* The owner's lock-free free racing a share: the entry outlives its
 * allocation. It leads nowhere, heap_check passes over it, and a full table
 * collects it. (The race is simulated: the free's plain store of the record.) */
static void test_stale(void) {
        struct fixture f;
        uint64_t off, off2, tag, got;

        setup(&f, 2, 0);
        heap *h = f.h;
        CHECK(heap_cache_alloc(h, f.a, 0, 1, 0, &off) == 0);
        CHECK(heap_share_tag(h, f.b, off, &tag) == 0);
        /* What heap_cache_free_fast does when it read the record just before the share. */
        atomic_store(&h->records[off / PS], 0);
        CHECK(heap_ref_tagged(h, f.b, off, tag) == -ESTALE);
        CHECK(heap_ref(h, f.b, off) == -EINVAL);
        check_ok(h, "a stale entry");
        CHECK_EQ_U64(stats(h).shared, 1); /* counted until collected */

        /* The table has two entries: the stale one is taken back when needed. */
        CHECK(heap_alloc(h, f.a, 1, 0, &off) == 0);
        CHECK(heap_alloc(h, f.a, 1, 0, &off2) == 0);
        CHECK(heap_ref(h, f.b, off) == 0);
        CHECK(heap_ref(h, f.b, off2) == 0);
        CHECK_EQ_U64(stats(h).shared, 2);
        CHECK(heap_lookup(h, f.b, "nothing", 0, &got) == -ENOENT);
        check_ok(h, "stale entry collected");
        heap_test_free(&f.t);
}

int main(void) {
        test_refs();
        test_cached();
        test_keep();
        test_reclaim();
        test_handles();
        test_limits();
        test_names();
        test_wait();
        test_wait_signal();
        test_stale();
        return TEST_END();
}

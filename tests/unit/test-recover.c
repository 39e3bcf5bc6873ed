/* SPDX-License-Identifier: MIT */
/*
 * Crash safety: a child process sharing the heap is killed with SIGKILL
 * inside each kind of heap-locked critical section, right after it wrote
 * the intent record and right before it would clear it (a test hook stops
 * it there, or half way through), and once while releasing pages with the lock dropped. The
 * next locker gets EOWNERDEAD, rolls the intent forward and verifies the
 * heap; then heap_check passes, the dead client's slot is reclaimed, and
 * no page is lost: after every allocation is freed, one allocation of the
 * whole capacity succeeds. Thread caches (issue 13): a child killed while
 * its thread exit gives its lists back, and a reaper killed while it gives
 * another client's lists back.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/test.h"
#include "heap/layout.h"
#include "heap/testing.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define P HEAP_CHUNK_PAGES
#define CAP_CHUNKS 6

struct scenario {
        const char *name;
        enum heap_op op;   /* where the child dies (HEAP_OP_NONE: in the release function) */
        enum heap_stage stage;
        void (*setup)(heap *h, uint32_t child, uint64_t *offs);
        void (*child)(heap *h, uint32_t child, uint64_t *offs);
        /* After the child's slot was reclaimed: checks what must hold, frees what is left. */
        void (*after)(heap *h, const char *name, uint64_t *offs);
};

/* offs[] of the sharing scenarios. */
enum {
        OFF_CHILD,    /* an allocation of the child's */
        OFF_OTHER,    /* an allocation of another client's */
        OFF_SLOT = 4, /* that client's slot */
        OFF_DEAD,     /* a slot whose owner is gone, reclaimed by the child */
};

struct kill_at {
        enum heap_op op;
        enum heap_stage stage;
};

static void die_hook(heap *h, enum heap_op op, enum heap_stage stage, void *userdata) {
        const struct kill_at *k = userdata;
        if (op == k->op && stage == k->stage)
                raise(SIGKILL);
}

static int die_release(heap *h, uint64_t off, uint64_t len, void *userdata) {
        raise(SIGKILL);
        return 0;
}

/* Scenarios. offs[] carries offsets from setup to the child and the parent's cleanup. */

static void setup_none(heap *h, uint32_t child, uint64_t *offs) {
}

static void setup_child_block(heap *h, uint32_t child, uint64_t *offs) {
        CHECK(heap_alloc(h, child, 100, 0, &offs[0]) == 0);
}

static void setup_free_unscavenged(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t a;
        CHECK(heap_alloc(h, 0, 300, 0, &a) == 0);
        CHECK(heap_free(h, 0, 0, a) == 0);
        CHECK(heap_scavenge_start_gen(h, NULL) == 0);
}

static void setup_keep(heap *h, uint32_t child, uint64_t *offs) {
        uint32_t other;
        CHECK(heap_slot_claim(h, 4242, 0, &other) == 0);
        CHECK(heap_alloc(h, other, 7, HEAP_ALLOC_KEEP, &offs[1]) == 0);
        CHECK(heap_alloc(h, other, 9, 0, &offs[2]) == 0);
        offs[3] = other;
}

static void child_alloc(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t a;
        heap_alloc(h, child, 50, HEAP_ALLOC_ZERO, &a);
}

static void child_grow(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t a;
        heap_alloc(h, child, 2 * P + 1, 0, &a);
}

static void child_free(heap *h, uint32_t child, uint64_t *offs) {
        heap_free(h, child, 0, offs[0]);
}

static void child_cache_fill(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t a;
        heap_cache_alloc(h, child, 2, 1, 0, &a);
}

static void child_cache_flush(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t a, b;
        struct kill_at *k = h->test_hook_userdata;
        enum heap_op op = k->op;
        k->op = HEAP_OP_NONE; /* survive the fill */
        heap_cache_alloc(h, child, 2, 1, 0, &a);
        heap_cache_alloc(h, child, 2, 3, 0, &b);
        heap_free(h, child, 2, a);
        k->op = op;
        heap_cache_flush(h, child, 2);
}

static void child_scavenge(heap *h, uint32_t child, uint64_t *offs) {
        heap_scavenge(h, child, UINT64_MAX);
}

static void child_scavenge_release(heap *h, uint32_t child, uint64_t *offs) {
        heap_set_release(h, die_release, NULL);
        heap_scavenge(h, child, UINT64_MAX);
}

static void child_reclaim_keep(heap *h, uint32_t child, uint64_t *offs) {
        heap_slot_reclaim(h, (uint32_t) offs[3]);
}

/* Sharing: another client O, whose allocations and references must come through. */
static uint32_t claim_other(heap *h, uint64_t *offs) {
        uint32_t o;
        CHECK(heap_slot_claim(h, 4343, 0, &o) == 0);
        offs[OFF_SLOT] = o;
        return o;
}

static void setup_other_block(heap *h, uint32_t child, uint64_t *offs) {
        CHECK(heap_alloc(h, claim_other(h, offs), 30, 0, &offs[OFF_OTHER]) == 0);
}

static void setup_other_shared(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t tag;
        setup_other_block(h, child, offs);
        CHECK(heap_share_tag(h, (uint32_t) offs[OFF_SLOT], offs[OFF_OTHER], &tag) == 0);
}

/* The child's allocation, referenced by O too (held), or only by the child (last). */
static void setup_child_shared_held(heap *h, uint32_t child, uint64_t *offs) {
        CHECK(heap_alloc(h, child, 12, 0, &offs[OFF_CHILD]) == 0);
        CHECK(heap_ref(h, claim_other(h, offs), offs[OFF_CHILD]) == 0);
}

static void setup_child_shared_last(heap *h, uint32_t child, uint64_t *offs) {
        setup_child_shared_held(h, child, offs);
        CHECK(heap_unref(h, (uint32_t) offs[OFF_SLOT], 0, offs[OFF_CHILD]) == 0);
}

static void setup_published(heap *h, uint32_t child, uint64_t *offs) {
        setup_other_block(h, child, offs);
        CHECK(heap_publish(h, (uint32_t) offs[OFF_SLOT], "frame", offs[OFF_OTHER]) == 0);
}

/* O's allocation held only by the name "frame". */
static void setup_published_only(heap *h, uint32_t child, uint64_t *offs) {
        setup_published(h, child, offs);
        CHECK(heap_free(h, (uint32_t) offs[OFF_SLOT], 0, offs[OFF_OTHER]) == 0);
}

static void setup_dead_holder(heap *h, uint32_t child, uint64_t *offs) {
        uint32_t d;
        setup_other_block(h, child, offs);
        CHECK(heap_slot_claim(h, 4444, 0, &d) == 0);
        offs[OFF_DEAD] = d;
        CHECK(heap_ref(h, d, offs[OFF_OTHER]) == 0);
        CHECK(heap_ref(h, d, offs[OFF_OTHER]) == 0);
}

static void child_ref_other(heap *h, uint32_t child, uint64_t *offs) {
        heap_ref(h, child, offs[OFF_OTHER]);
}

static void child_free_own(heap *h, uint32_t child, uint64_t *offs) {
        heap_free(h, child, 0, offs[OFF_CHILD]);
}

static void child_publish(heap *h, uint32_t child, uint64_t *offs) {
        heap_publish(h, child, "frame", offs[OFF_OTHER]);
}

static void child_lookup(heap *h, uint32_t child, uint64_t *offs) {
        uint64_t off;
        heap_lookup(h, child, "frame", 0, &off);
}

static void child_unpublish(heap *h, uint32_t child, uint64_t *offs) {
        heap_unpublish(h, child, "frame");
}

static void child_reclaim_dead(heap *h, uint32_t child, uint64_t *offs) {
        heap_slot_reclaim(h, (uint32_t) offs[OFF_DEAD]);
}

/* O's allocation survived the child, with O's reference only; O's free ends it. */
static void after_other_held(heap *h, const char *name, uint64_t *offs) {
        uint32_t o = (uint32_t) offs[OFF_SLOT];
        uint64_t off;
        if (offs[OFF_DEAD]) {
                int64_t g = heap_slot_reclaim(h, (uint32_t) offs[OFF_DEAD]);
                CHECKF(g == 0 || g == -ESTALE, "%s: finishing the dead slot's reclaim: %" PRId64, name, g);
        }
        if (heap_lookup(h, o, "frame", 0, &off) == 0) {
                CHECKF(off == offs[OFF_OTHER], "%s: the name leads elsewhere", name);
                CHECK(heap_unref(h, o, 0, off) == 0);
                CHECK(heap_unpublish(h, o, "frame") == 0);
        }
        CHECKF(heap_alloc_size(h, offs[OFF_OTHER]) == 30 * 4096, "%s: O's allocation lost", name);
        CHECKF(heap_free(h, o, 0, offs[OFF_OTHER]) == 0, "%s: O's free", name);
        CHECKF(heap_alloc_size(h, offs[OFF_OTHER]) == -EINVAL, "%s: O's allocation outlived O's reference", name);
}

/* The child's allocation, still held by O. */
static void after_child_held(heap *h, const char *name, uint64_t *offs) {
        uint32_t o = (uint32_t) offs[OFF_SLOT];
        CHECKF(heap_alloc_size(h, offs[OFF_CHILD]) == 12 * 4096, "%s: freed while O held it", name);
        CHECK(heap_unref(h, o, 0, offs[OFF_CHILD]) == 0);
        CHECKF(heap_alloc_size(h, offs[OFF_CHILD]) == -EINVAL, "%s: outlived its last reference", name);
}

/* The child held the last reference: gone. */
static void after_child_gone(heap *h, const char *name, uint64_t *offs) {
        CHECKF(heap_alloc_size(h, offs[OFF_CHILD]) == -EINVAL, "%s: outlived its last reference", name);
}

/* Only the name held O's allocation: gone if the unpublish got through, else still named. */
static void after_name_only(heap *h, const char *name, uint64_t *offs) {
        uint32_t o = (uint32_t) offs[OFF_SLOT];
        uint64_t off;
        if (heap_lookup(h, o, "frame", 0, &off) == 0) {
                CHECK(heap_unpublish(h, o, "frame") == 0);
                CHECK(heap_unref(h, o, 0, off) == 0);
        }
        CHECKF(heap_alloc_size(h, offs[OFF_OTHER]) == -EINVAL, "%s: outlived its name", name);
}

/* Medium blocks allocated and freed by (slot, cache): its lists hold them. */
static void fill_lists(heap *h, uint32_t slot, uint32_t cache) {
        uint64_t x[3];
        for (unsigned i = 0; i < 3; i++)
                CHECK(heap_cache_alloc(h, slot, cache, 20 + 10 * i, 0, &x[i]) == 0);
        for (unsigned i = 0; i < 3; i++)
                CHECK(heap_free(h, slot, cache, x[i]) == 0);
}

/* The thread's exit gives its lists back (each a FREE), and it dies doing it. */
static void child_lists_flush(heap *h, uint32_t child, uint64_t *offs) {
        struct kill_at *k = h->test_hook_userdata;
        enum heap_op op = k->op;
        k->op = HEAP_OP_NONE; /* survive the allocations */
        fill_lists(h, child, 2);
        k->op = op;
        heap_cache_flush(h, child, 2);
}

/* Another client's lists, full; its thread idle. */
static void setup_other_lists(heap *h, uint32_t child, uint64_t *offs) {
        uint32_t other;
        CHECK(heap_slot_claim(h, 4243, 0, &other) == 0);
        fill_lists(h, other, 0);
        offs[2] = other;
}

/* The reaper dies giving the other client's lists back. */
static void child_reap(heap *h, uint32_t child, uint64_t *offs) {
        heap_cache_reap(h, HEAP_REAP_ALL, NULL);
}

static void cleanup_other(heap *h, uint64_t *offs) {
        CHECK(heap_slot_reclaim(h, (uint32_t) offs[2]) >= 0);
}

static const struct scenario scenarios[] = {
        { "alloc/early", HEAP_OP_ALLOC, HEAP_STAGE_EARLY, setup_none, child_alloc, NULL },
        { "alloc/mid", HEAP_OP_ALLOC, HEAP_STAGE_MID, setup_none, child_alloc, NULL },
        { "alloc/late", HEAP_OP_ALLOC, HEAP_STAGE_LATE, setup_none, child_alloc, NULL },
        { "grow/early", HEAP_OP_GROW, HEAP_STAGE_EARLY, setup_none, child_grow, NULL },
        { "grow/mid", HEAP_OP_GROW, HEAP_STAGE_MID, setup_none, child_grow, NULL },
        { "grow/late", HEAP_OP_GROW, HEAP_STAGE_LATE, setup_none, child_grow, NULL },
        { "free/early", HEAP_OP_FREE, HEAP_STAGE_EARLY, setup_child_block, child_free, NULL },
        { "free/mid", HEAP_OP_FREE, HEAP_STAGE_MID, setup_child_block, child_free, NULL },
        { "free/late", HEAP_OP_FREE, HEAP_STAGE_LATE, setup_child_block, child_free, NULL },
        { "cache-fill/early", HEAP_OP_CACHE_FILL, HEAP_STAGE_EARLY, setup_none, child_cache_fill, NULL },
        { "cache-fill/mid", HEAP_OP_CACHE_FILL, HEAP_STAGE_MID, setup_none, child_cache_fill, NULL },
        { "cache-fill/late", HEAP_OP_CACHE_FILL, HEAP_STAGE_LATE, setup_none, child_cache_fill, NULL },
        { "cache-flush/early", HEAP_OP_CACHE_FLUSH, HEAP_STAGE_EARLY, setup_none, child_cache_flush, NULL },
        { "cache-flush/mid", HEAP_OP_CACHE_FLUSH, HEAP_STAGE_MID, setup_none, child_cache_flush, NULL },
        { "cache-flush/late", HEAP_OP_CACHE_FLUSH, HEAP_STAGE_LATE, setup_none, child_cache_flush, NULL },
        { "scav-mark/early", HEAP_OP_SCAV_MARK, HEAP_STAGE_EARLY, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-mark/mid", HEAP_OP_SCAV_MARK, HEAP_STAGE_MID, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-mark/late", HEAP_OP_SCAV_MARK, HEAP_STAGE_LATE, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-free/early", HEAP_OP_SCAV_FREE, HEAP_STAGE_EARLY, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-free/mid", HEAP_OP_SCAV_FREE, HEAP_STAGE_MID, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-free/late", HEAP_OP_SCAV_FREE, HEAP_STAGE_LATE, setup_free_unscavenged, child_scavenge, NULL },
        { "scav-release (unlocked)", HEAP_OP_NONE, HEAP_STAGE_EARLY, setup_free_unscavenged, child_scavenge_release, NULL },
        { "reclaim-keep/early", HEAP_OP_RECORD, HEAP_STAGE_EARLY, setup_keep, child_reclaim_keep, NULL },
        { "reclaim-keep/late", HEAP_OP_RECORD, HEAP_STAGE_LATE, setup_keep, child_reclaim_keep, NULL },
#define SHARE_STAGES(name, op, setup, child, after)                      \
        { name "/early", op, HEAP_STAGE_EARLY, setup, child, after },    \
        { name "/mid", op, HEAP_STAGE_MID, setup, child, after },        \
        { name "/late", op, HEAP_STAGE_LATE, setup, child, after }
        SHARE_STAGES("share-new", HEAP_OP_SHARE, setup_other_block, child_ref_other, after_other_held),
        SHARE_STAGES("share-ref", HEAP_OP_SHARE, setup_other_shared, child_ref_other, after_other_held),
        SHARE_STAGES("unref-held", HEAP_OP_SHARE, setup_child_shared_held, child_free_own, after_child_held),
        SHARE_STAGES("unref-last", HEAP_OP_SHARE, setup_child_shared_last, child_free_own, after_child_gone),
        SHARE_STAGES("unref-last-free", HEAP_OP_FREE, setup_child_shared_last, child_free_own, after_child_gone),
        SHARE_STAGES("publish", HEAP_OP_NAME, setup_other_block, child_publish, after_other_held),
        SHARE_STAGES("lookup", HEAP_OP_SHARE, setup_published, child_lookup, after_other_held),
        SHARE_STAGES("unpublish", HEAP_OP_NAME, setup_published_only, child_unpublish, after_name_only),
        SHARE_STAGES("unpublish-last", HEAP_OP_SHARE, setup_published_only, child_unpublish, after_name_only),
        SHARE_STAGES("reclaim-refs", HEAP_OP_SHARE, setup_dead_holder, child_reclaim_dead, after_other_held),
};

/* Thread caches (issue 13); cleanup runs after the child's slot is reclaimed. */
static const struct {
        struct scenario sc;
        void (*cleanup)(heap *h, uint64_t *offs);
} tc_scenarios[] = {
        { { "lists-flush/early", HEAP_OP_FREE, HEAP_STAGE_EARLY, setup_none, child_lists_flush, NULL }, NULL },
        { { "lists-flush/mid", HEAP_OP_FREE, HEAP_STAGE_MID, setup_none, child_lists_flush, NULL }, NULL },
        { { "lists-flush/late", HEAP_OP_FREE, HEAP_STAGE_LATE, setup_none, child_lists_flush, NULL }, NULL },
        { { "reap/early", HEAP_OP_FREE, HEAP_STAGE_EARLY, setup_other_lists, child_reap, NULL }, cleanup_other },
        { { "reap/mid", HEAP_OP_FREE, HEAP_STAGE_MID, setup_other_lists, child_reap, NULL }, cleanup_other },
        { { "reap/late", HEAP_OP_FREE, HEAP_STAGE_LATE, setup_other_lists, child_reap, NULL }, cleanup_other },
};

static void run(const struct scenario *sc, void (*cleanup)(heap *h, uint64_t *offs)) {
        struct heap_test t;
        struct heap_params p = { .capacity = CAP_CHUNKS * (uint64_t) 4096 * P, .max_slots = 6 };
        struct heap_stats st;
        char buf[256] = "";
        uint64_t offs[8] = {};
        uint64_t parent_blk;
        uint32_t child;
        int r;

        CHECK(heap_test_new(&p, &t) == 0);
        heap *h = t.h;
        CHECK(heap_slot_claim(h, 1000, 0, &child) == 0);
        /* Something of the parent's, so that losing or freeing it wrongly shows. */
        CHECK(heap_alloc(h, 0, 20, 0, &parent_blk) == 0);
        sc->setup(h, child, offs);

        pid_t pid = fork();
        if (pid == 0) {
                struct kill_at k = { sc->op, sc->stage };
                heap_set_test_hook(h, die_hook, &k);
                sc->child(h, child, offs);
                _exit(3); /* the hook did not fire */
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: child was not killed in the act (status %#x)",
               sc->name, status);

        r = heap_check(h, buf, sizeof(buf));
        CHECKF(r == 0, "%s: after the crash: %s", sc->name, buf);
        CHECK(heap_get_stats(h, &st) == 0);
        CHECKF(st.recoveries == (sc->op == HEAP_OP_NONE ? 0u : 1u), "%s: %" PRIu64 " recoveries", sc->name,
               st.recoveries);
        CHECKF(heap_recover_problem(h)[0] == '\0', "%s: a recovery that worked says \"%s\"", sc->name,
               heap_recover_problem(h));

        CHECKF(heap_slot_reclaim(h, child) >= 0, "%s: reclaim", sc->name);
        if (sc->after) {
                sc->after(h, sc->name, offs);
                CHECKF(heap_slot_reclaim(h, (uint32_t) offs[OFF_SLOT]) >= 0, "%s: reclaim of O", sc->name);
                CHECK(heap_get_stats(h, &st) == 0);
                CHECKF(st.shared == 0 && st.refs == 0 && st.names == 0, "%s: %" PRIu64 " shared, %" PRIu64
                       " references, %" PRIu64 " names left", sc->name, st.shared, st.refs, st.names);
        } else if (offs[3]) {
                /* The reclaim the child died in: finish it. */
                int64_t g = heap_slot_reclaim(h, (uint32_t) offs[3]);
                CHECKF(g >= 0 || g == -ESTALE, "%s: reclaim of the KEEP owner: %" PRId64, sc->name, g);
                CHECKF(heap_alloc_size(h, offs[1]) == 7 * 4096, "%s: KEEP allocation lost", sc->name);
                CHECK(heap_free(h, 0, 0, offs[1]) == 0);
                CHECKF(heap_alloc_size(h, offs[2]) == -EINVAL, "%s: reclaimed allocation still live", sc->name);
        }
        if (cleanup)
                cleanup(h, offs);
        r = heap_check(h, buf, sizeof(buf));
        CHECKF(r == 0, "%s: after reclaim: %s", sc->name, buf);

        /* No page lost: all that is left is the parent's block. */
        CHECK(heap_get_stats(h, &st) == 0);
        CHECKF(st.inuse == 20 * 4096, "%s: %" PRIu64 " bytes in use, want the parent's 20 pages", sc->name, st.inuse);
        CHECKF(heap_alloc_size(h, parent_blk) == 20 * 4096, "%s: parent's block lost", sc->name);
        CHECK(heap_free(h, 0, 0, parent_blk) == 0);
        uint64_t all;
        r = heap_alloc(h, 0, CAP_CHUNKS * P, 0, &all);
        CHECKF(r == 0, "%s: the whole capacity cannot be allocated: %d", sc->name, r);
        if (r == 0)
                CHECK(heap_free(h, 0, 0, all) == 0);
        r = heap_check(h, buf, sizeof(buf));
        CHECKF(r == 0, "%s: at the end: %s", sc->name, buf);
        heap_test_free(&t);
}

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(scenarios); i++)
                run(&scenarios[i], NULL);
        for (size_t i = 0; i < ELEMENTSOF(tc_scenarios); i++)
                run(&tc_scenarios[i].sc, tc_scenarios[i].cleanup);

        /* Dying with the scav lock held: its state is only a hint, validated and reset. */
        {
                struct heap_test t;
                struct heap_params p = { .capacity = 2 * (uint64_t) 4096 * P };
                uint64_t a;
                CHECK(heap_test_new(&p, &t) == 0);
                CHECK(heap_alloc(t.h, 0, 100, 0, &a) == 0);
                CHECK(heap_free(t.h, 0, 0, a) == 0);
                CHECK(heap_scavenge_start_gen(t.h, NULL) == 0);
                pid_t pid = fork();
                if (pid == 0) {
                        heap_scav_lock(t.h);
                        struct heap_hdr *hd = heap_test_hdr(t.h);
                        hd->nranges = 3;
                        hd->ranges[1][0] = 5; /* unsorted, unaligned, overlapping */
                        raise(SIGKILL);
                }
                int status;
                waitpid(pid, &status, 0);
                CHECK(heap_scavenge(t.h, 0, UINT64_MAX) == 0); /* the generation was dropped */
                CHECK(heap_scavenge_start_gen(t.h, NULL) == 0);
                CHECK(heap_scavenge(t.h, 0, UINT64_MAX) == 100 * 4096);
                char buf[256] = "";
                CHECKF(heap_check(t.h, buf, sizeof(buf)) == 0, "after scav lock owner died: %s", buf);
                heap_test_free(&t);
        }

        /* A heap whose intent makes no sense is quarantined, not trusted. */
        struct heap_test t;
        struct heap_params p = { .capacity = (uint64_t) 4096 * P };
        CHECK(heap_test_new(&p, &t) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                heap_lock(t.h);
                struct heap_hdr *hd = heap_test_hdr(t.h);
                hd->intent = (struct heap_intent) { .op = HEAP_OP_ALLOC, .base = 1u << 30, .npages = 5 };
                raise(SIGKILL);
        }
        int status;
        waitpid(pid, &status, 0);
        uint64_t a;
        CHECK(heap_alloc(t.h, 0, 1, 0, &a) == -EUCLEAN);
        /* Said to the caller (the daemon logs it), not printed by the library. */
        CHECKF(strstr(heap_recover_problem(t.h), "intent record cannot be completed"), "why: \"%s\"",
               heap_recover_problem(t.h));
        CHECK(heap_free(t.h, 0, 0, 0) == -EUCLEAN);
        char buf[128];
        CHECK(heap_check(t.h, buf, sizeof(buf)) == -EUCLEAN);
        heap_test_free(&t);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * The daemon's work on a pool's shared memory (see poolwork.h). Each
 * function is what one kind of job runs on the pool's worker.
 */

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "macro.h"
#include "poolwork.h"

static int64_t thread_cpu_ns(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int poolwork_snapshot(heap *h, const struct heap_stats *prev, struct heap_stats *ret, char *why, size_t len) {
        return heap_get_stats_checked(h, prev, ret, why, len);
}

int poolwork_check(heap *h, char *why, size_t len) {
        return heap_check(h, why, len);
}

int poolwork_claim(heap *h, uint32_t n_slots, const uint64_t *busy, uint32_t pid, uint32_t uid, uint32_t *ret_slot,
                   char *why, size_t len) {
        uint32_t slot;
        int r;

        r = heap_slot_claim_except(h, pid, uid, busy, busy ? n_slots : 0, &slot);
        if (r < 0)
                return r;
        if (slot == 0 || slot >= n_slots) {
                /* The heap handed out a slot beyond what it told us: do not index with it. */
                (void) heap_slot_reclaim(h, slot);
                snprintf(why, len, "heap returned client slot %u, not in 1..%u", slot, n_slots - 1);
                return -EUCLEAN;
        }
        *ret_slot = slot;
        return 0;
}

int poolwork_reclaim_for(heap *h, uint32_t slot, uint32_t pid, uint32_t uid, char *why, size_t len) {
        struct heap_slot_info info;
        int r;

        r = heap_slot_info_checked(h, slot, &info, why, len);
        if (r == -EUCLEAN)
                return r;
        if (r < 0 || info.uid != uid)
                return -ESTALE;
        return heap_slot_reclaim_for(h, slot, pid);
}

int64_t poolwork_reclaim(heap *h, uint32_t slot) {
        return heap_slot_reclaim(h, slot);
}

int poolwork_live_slots(heap *h, uint32_t n_slots, struct heap_slot_info *ret, uint32_t max, uint32_t *ret_live,
                        char *why, size_t len) {
        uint32_t n = 0, live = 0;

        for (uint32_t slot = 1; slot < n_slots; slot++) {
                struct heap_slot_info info;
                int r = heap_slot_info_checked(h, slot, &info, why, len);

                if (r == -EUCLEAN)
                        return r;
                if (r < 0)
                        continue;
                live++;
                if (n < max)
                        ret[n++] = info;
        }
        *ret_live = live;
        return (int) n;
}

int poolwork_names(heap *h, uint64_t from, struct heap_name_info *ret, uint32_t max, uint64_t *ret_next) {
        uint32_t n = 0, end = heap_max_names(h), i;

        for (i = from < end ? (uint32_t) from : end; i < end && n < max; i++) {
                struct heap_name_info ni;
                int r = heap_name_info(h, i, &ni);

                if (r == -ENOENT)
                        continue;
                if (r == -ERANGE) {
                        i = end;
                        break;
                }
                if (r < 0)
                        return r;
                ni.name[sizeof(ni.name) - 1] = 0; /* NUL-terminated whatever it read */
                ret[n++] = ni;
        }
        *ret_next = i < end ? i : 0;
        return (int) n;
}

struct burst_ctx {
        heap *h;
        struct poolwork_burst *w;
};

/*
 * One quantum for pacer_run_for. A scavenge that returns less than asked
 * has nothing more this generation (the seed's "heap exhausted"). The time
 * is the thread's CPU time: what the budget limits is CPU, and on a loaded
 * machine the wall clock would count others' time as ours. Before each
 * quantum, pacer_pick's test: still over the goal (retained is a number
 * bounded by the grown heap, compared and nothing else).
 */
static int64_t burst_quantum(void *userdata, uint64_t nbytes, int64_t *ret_ns) {
        struct burst_ctx *ctx = userdata;
        int64_t r, t0, t1;

        if (ctx->w->exhausted || heap_retained(ctx->h) <= ctx->w->goal)
                return 0;
        t0 = thread_cpu_ns();
        r = heap_scavenge(ctx->h, POOLWORK_DAEMON_SLOT, nbytes);
        t1 = thread_cpu_ns();
        if (r < 0)
                return r;
        if ((uint64_t) r < nbytes)
                ctx->w->exhausted = true;
        *ret_ns = t1 > t0 ? t1 - t0 : 0;
        return r;
}

void poolwork_burst(heap *h, struct poolwork_burst *w) {
        struct burst_ctx ctx = { .h = h, .w = w };

        w->exhausted = false;
        pacer_run_for(&w->b, w->budget_ns, PACER_DAEMON_QUANTUM, burst_quantum, &ctx, w->phys_page_size ?: 4096);
        if (w->b.error)
                w->exhausted = true;
}

/* Issue 13: what the pool's client threads keep in their caches comes back
 * first (heap_cache_reap): an idle thread's all of it, a busy one's what it
 * did not use; everyone's with HEAP_REAP_ALL. */
static int reap_caches(heap *h, unsigned how, bool *ret_held) {
        struct heap_reap_report rr = {};
        int r = heap_cache_reap(h, how, &rr);

        if (r < 0)
                return r;
        if (ret_held)
                *ret_held = rr.held_pages > 0 || rr.deferred > 0;
        return 0;
}

int poolwork_start_gen(heap *h, uint64_t memory_limit, struct heap_gen_report *ret, bool *ret_tc_held) {
        heap_set_memory_limit(h, memory_limit);
        int r = reap_caches(h, HEAP_REAP_GEN, ret_tc_held);
        if (r < 0)
                return r;
        return heap_scavenge_start_gen(h, ret);
}

int poolwork_reap_caches(heap *h, bool *ret_tc_held) {
        return reap_caches(h, HEAP_REAP_GEN, ret_tc_held);
}

int poolwork_force(heap *h, struct poolwork_force *f, const _Atomic bool *stop, char *why, size_t len) {
        uint64_t want = f->bytes ? f->bytes : UINT64_MAX;
        int64_t t0, r;

        f->skipped = f->gen_started = false;
        f->released = f->cpu_ns = 0;
        heap_set_memory_limit(h, f->memory_limit);
        r = reap_caches(h, HEAP_REAP_ALL, NULL); /* a forced scavenge takes the thread caches too */
        if (r < 0)
                return (int) r;
        if (f->if_free) {
                r = heap_get_stats_checked(h, NULL, &f->gen_stats, why, len);
                if (r < 0)
                        return (int) r;
                if (f->gen_stats.retained <= f->gen_stats.inuse) {
                        f->skipped = true;
                        return 0;
                }
        }
        r = heap_scavenge_start_gen(h, &f->rep);
        if (r < 0)
                return (int) r;
        r = heap_get_stats_checked(h, NULL, &f->gen_stats, why, len);
        if (r < 0)
                return (int) r;
        f->gen_started = true;

        t0 = thread_cpu_ns();
        while ((uint64_t) f->released < want && !(stop && atomic_load(stop))) {
                uint64_t piece = MIN(want - (uint64_t) f->released, POOLWORK_FORCE_PIECE);
                r = heap_scavenge(h, POOLWORK_DAEMON_SLOT, piece);
                if (r < 0) {
                        if (f->released == 0) {
                                f->cpu_ns = thread_cpu_ns() - t0;
                                return (int) r;
                        }
                        break;
                }
                f->released += r;
                if ((uint64_t) r < piece)
                        break;
        }
        f->cpu_ns = thread_cpu_ns() - t0;
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Thread caches: what a thread keeps for itself (its page cache's free
 * pages, its medium lists) counts as in use and the scavenger cannot
 * release it. heap_cache_reap, called by the daemon at each generation's
 * start and under pressure, takes it back: from a thread that did nothing
 * since the last reap, everything (the cache becomes inactive); from the
 * others, what their lists kept unused since the last reap (jemalloc's
 * tcache GC, on the scavenger's clock) and their wholly free blocks; with
 * the pool over its goal or its limit, or under pressure, everything from
 * everyone.
 *
 * The owner changes its cache without the lock, so the reaper may only
 * touch it while the owner is outside any operation (tcache.h). The owner
 * brackets each operation with plain stores: seq odd on entry, then a load
 * of state, and seq even on exit. The reaper, under the heap lock, stores
 * HEAP_TC_REAP in state, drops the lock and calls
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which makes every running
 * thread of every process registered for it (heap_tc_register) execute a
 * full barrier; then, under the lock again, it reads seq. Even: the owner
 * is outside and any operation it starts from now on sees HEAP_TC_REAP
 * and waits for the lock (heap_tc_settle), so the reaper reaps. Odd: the
 * owner is inside, and its next operation does the reap itself. The owner
 * pays two plain stores and a load per operation, no locked instruction
 * (membarrier is the asymmetric fence of liburcu and folly). A process that
 * cannot register fences its every operation instead and says so in its
 * caches (fenced), which the reaper then takes without membarrier.
 *
 * A dead owner needs none of this: reclaim of its slot takes everything.
 */

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heap/alloc.h"
#include "heap/mcache.h"
#include "heap/tcache.h"

static int membarrier(int cmd) {
        return syscall(__NR_membarrier, cmd, 0, 0) < 0 ? negative_errno() : 0;
}

void heap_tc_register(heap *h) {
        h->tc_fenced = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) < 0;
}

/* An active cache is always in the slot's mask (heap_check): the bit is set
 * before and cleared after, so that a process killed in between leaves a
 * mask that only says too much. Heap lock. */
static void tc_set_state(heap *h, uint32_t slot, uint32_t cache, uint32_t state) {
        struct heap_slot *sl = &h->slots[slot];
        if (state != HEAP_TC_INACTIVE)
                sl->tc_mask |= UINT32_C(1) << cache;
        atomic_signal_fence(memory_order_seq_cst);
        atomic_store_explicit(&sl->tc[cache].state, state, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        if (state == HEAP_TC_INACTIVE)
                sl->tc_mask &= ~(UINT32_C(1) << cache);
}

void heap_tc_request_locked(heap *h, uint32_t slot, uint32_t cache, unsigned mode) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        if (atomic_load_explicit(&t->state, memory_order_relaxed) != HEAP_TC_ACTIVE)
                return; /* inactive, or a reap is asked already (which takes the orphans too) */
        t->reap_mode = mode;
        atomic_store_explicit(&t->state, HEAP_TC_REAP, memory_order_relaxed);
}

uint64_t heap_tc_reap_locked(heap *h, uint32_t slot, uint32_t cache, unsigned mode) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t given = heap_mcache_orphans_locked(h, slot, cache, mode == HEAP_TC_REAP_ORPHANS);

        if (mode == HEAP_TC_REAP_ORPHANS)
                ;
        else if (mode == HEAP_TC_REAP_TRIM)
                given += heap_mcache_trim_locked(h, slot, cache) + heap_cache_trim_locked(h, slot, cache);
        else
                given += heap_mcache_flush_locked(h, slot, cache) + heap_cache_flush_locked(h, slot, cache);
        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                t->low[k] = t->count[k];
        t->reap_seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
        tc_set_state(h, slot, cache, mode == HEAP_TC_REAP_IDLE ? HEAP_TC_INACTIVE : HEAP_TC_ACTIVE);
        return given;
}

int heap_tc_settle(heap *h, uint32_t slot, uint32_t cache) {
        struct heap_tcache *t = heap_tc(h, slot, cache);
        int r = heap_lock(h);
        if (r < 0)
                return r;
        uint32_t state = atomic_load_explicit(&t->state, memory_order_relaxed);
        if (state == HEAP_TC_REAP) {
                /* Asked while this thread was busy: it is not idle (it is here). */
                unsigned mode = t->reap_mode == HEAP_TC_REAP_TRIM || t->reap_mode == HEAP_TC_REAP_ORPHANS
                                        ? t->reap_mode
                                        : HEAP_TC_REAP_ALL;
                heap_tc_reap_locked(h, slot, cache, mode);
        } else if (state != HEAP_TC_ACTIVE) {
                /* Inactive (or scribbled on): this thread owns it from now on. */
                t->fenced = h->tc_fenced;
                t->reap_seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
                tc_set_state(h, slot, cache, HEAP_TC_ACTIVE);
        }
        heap_unlock(h);
        return 0;
}

uint64_t heap_tc_held_locked(heap *h, uint32_t slot, uint32_t cache) {
        const struct heap_cache *c = &h->slots[slot].caches[cache];
        const struct heap_tcache *t = heap_tc(h, slot, cache);
        uint64_t n = t->pages + t->norphans + t->orphans_lost; /* orphans: at least a page each */
        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++)
                n += (uint64_t) __builtin_popcountll(atomic_load_explicit(&c->free_mask[b], memory_order_relaxed));
        return n;
}

void heap_tc_recount_locked(heap *h, uint32_t slot) {
        struct heap_slot *sl = &h->slots[slot];
        sl->tc_mask = 0;
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++)
                if (atomic_load_explicit(&sl->tc[c].state, memory_order_relaxed) != HEAP_TC_INACTIVE)
                        sl->tc_mask |= UINT32_C(1) << c;
}

void heap_tc_reset_locked(heap *h, uint32_t slot) {
        struct heap_slot *sl = &h->slots[slot];
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                struct heap_tcache *t = &sl->tc[c];
                atomic_store_explicit(&t->seq, 0, memory_order_relaxed);
                atomic_store_explicit(&t->state, HEAP_TC_INACTIVE, memory_order_relaxed);
                t->pages = 0;
                for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                        t->count[k] = t->low[k] = 0;
                t->reap_mode = t->reap_seq = t->fenced = t->run_chunk = 0;
                t->norphans = t->orphans_lost = 0;
        }
        sl->tc_mask = 0;
}

/* Phase 1: asks every active thread cache for a reap. Returns how many. Heap lock. */
static unsigned reap_ask_locked(heap *h, bool all) {
        unsigned asked = 0;
        for (uint32_t s = 0; s < h->max_slots; s++) {
                struct heap_slot *sl = &h->slots[s];
                if (!sl->tc_mask || atomic_load_explicit(&sl->state, memory_order_relaxed) != HEAP_SLOT_LIVE)
                        continue;
                for (uint32_t m = sl->tc_mask; m; m &= m - 1) {
                        uint32_t c = (uint32_t) __builtin_ctz(m);
                        if (c >= HEAP_SLOT_CACHES)
                                break;
                        struct heap_tcache *t = &sl->tc[c];
                        uint32_t state = atomic_load_explicit(&t->state, memory_order_relaxed);
                        if (state == HEAP_TC_INACTIVE) {
                                sl->tc_mask &= ~(UINT32_C(1) << c);
                                continue;
                        }
                        uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
                        t->reap_mode = seq == t->reap_seq ? HEAP_TC_REAP_IDLE
                                       : all              ? HEAP_TC_REAP_ALL
                                                          : HEAP_TC_REAP_TRIM;
                        atomic_store_explicit(&t->state, HEAP_TC_REAP, memory_order_relaxed);
                        asked++;
                }
        }
        return asked;
}

/* Phase 2: reaps the caches whose owners are outside any operation. Heap lock. */
static void reap_do_locked(heap *h, bool barrier_ok, struct heap_reap_report *rep) {
        for (uint32_t s = 0; s < h->max_slots; s++) {
                struct heap_slot *sl = &h->slots[s];
                if (!sl->tc_mask || atomic_load_explicit(&sl->state, memory_order_relaxed) != HEAP_SLOT_LIVE)
                        continue;
                for (uint32_t m = sl->tc_mask; m; m &= m - 1) {
                        uint32_t c = (uint32_t) __builtin_ctz(m);
                        if (c >= HEAP_SLOT_CACHES)
                                break;
                        struct heap_tcache *t = &sl->tc[c];
                        uint32_t seq = atomic_load_explicit(&t->seq, memory_order_acquire);
                        if (atomic_load_explicit(&t->state, memory_order_relaxed) == HEAP_TC_REAP && !(seq & 1) &&
                            (barrier_ok || t->fenced)) {
                                rep->given_pages += heap_tc_reap_locked(h, s, c, t->reap_mode);
                                rep->reaped++;
                        } else if (atomic_load_explicit(&t->state, memory_order_relaxed) == HEAP_TC_REAP)
                                rep->deferred++; /* its owner's next operation does it */
                        rep->held_pages += heap_tc_held_locked(h, s, c);
                }
        }
}

int heap_cache_reap(heap *h, unsigned how, struct heap_reap_report *ret) {
        struct heap_reap_report rep = {};
        bool all = how == HEAP_REAP_ALL;
        int r;

        if (how != HEAP_REAP_GEN && how != HEAP_REAP_ALL)
                return -EINVAL;
        r = heap_lock(h);
        if (r < 0)
                return r;
        if (how == HEAP_REAP_GEN) {
                uint64_t goal = atomic_load_explicit(&h->hdr->retained_goal, memory_order_relaxed);
                uint64_t limit = atomic_load_explicit(&h->hdr->memory_limit, memory_order_relaxed);
                uint64_t retained = heap_retained(h);
                all = (goal != HEAP_GOAL_NONE && retained > goal) || (limit && retained > limit);
        }
        unsigned asked = reap_ask_locked(h, all);
        heap_unlock(h);
        if (asked) {
                /* Every owner's bracket store is now visible, or it will see HEAP_TC_REAP. */
                bool barrier_ok = membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) >= 0;
                atomic_thread_fence(memory_order_seq_cst); /* for fenced owners: ours */
                r = heap_lock(h);
                if (r < 0)
                        return r;
                reap_do_locked(h, barrier_ok, &rep);
                heap_unlock(h);
        }
        rep.all = all;
        if (ret)
                *ret = rep;
        return 0;
}

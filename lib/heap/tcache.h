/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Thread caches (reap.c): the owner's operation bracket, and how others
 * take an idle owner's cached pages back. Shared by alloc.c, cache.c,
 * mcache.c, slot.c and check.c.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"
#include "macro.h"

/* What a reap asks of a thread cache (reap_mode). */
enum {
        HEAP_TC_REAP_TRIM = 1, /* give back what its lists kept unused since the last reap, and wholly free blocks */
        HEAP_TC_REAP_ALL = 2,  /* give back every cached page (pressure, over the goal) */
        HEAP_TC_REAP_IDLE = 3, /* its owner did nothing since the last reap: all, and the cache becomes inactive */
        HEAP_TC_REAP_ORPHANS = 4, /* asked by other threads' frees: take the orphans (mcache.c) */
};
/* Every reap takes the cache's orphans first: back to the heap, or into
 * the lists when its owner does it for HEAP_TC_REAP_ORPHANS. */

static inline struct heap_tcache *heap_tc(heap *h, uint32_t slot, uint32_t cache) {
        return &h->slots[slot].tc[cache];
}

/*
 * seq is written by its owner alone, so a bump needs no locked instruction:
 * on x86 one add to memory, which other threads see whole (an aligned
 * 32-bit store) and which, as any x86 store, is a release store. The
 * compiler keeps it where it is (volatile) but may move other memory
 * accesses across it: the callers say which must not.
 */
static inline void tc_seq_bump(struct heap_tcache *t) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ volatile("addl $1, %0" : "+m"(*(uint32_t *) &t->seq));
#else
        atomic_store_explicit(&t->seq, atomic_load_explicit(&t->seq, memory_order_relaxed) + 1,
                              memory_order_relaxed);
#endif
}

/*
 * Enters an operation of t's owner (the only thread that uses t's page
 * cache and lists without the lock). True when t is active: the operation
 * may go on without the lock. Else the caller, still inside, calls
 * heap_tc_settle first. Every enter is paired with a heap_tc_leave.
 *
 * No locked instruction: seq is the owner's, and a reaper that wants to
 * know the owner outside any operation stores HEAP_TC_REAP in state and
 * then makes every thread of every registered process execute a full
 * barrier (membarrier, reap.c) before it reads seq. Either the reaper
 * then sees seq odd, or this load of state sees HEAP_TC_REAP (Dekker's
 * pattern with the owner's barrier moved to the reaper). A process that
 * could not register fences here instead (t->fenced tells the reaper).
 */
static inline bool heap_tc_enter_fenced(struct heap_tcache *t, bool fenced) {
        tc_seq_bump(t);
        if (_unlikely_(fenced))
                atomic_thread_fence(memory_order_seq_cst);
        /* The compiler keeps the store above before the load below, and
         * nothing else: a full compiler barrier would make it reload every
         * field of the heap handle. The CPU may still load before its store
         * is visible; the reaper's membarrier is what covers that. */
        __asm__ volatile("" : "+m"(t->state) : "m"(t->seq));
        /* Acquire: what the operation reads comes after this. */
        return atomic_load_explicit(&t->state, memory_order_acquire) == HEAP_TC_ACTIVE;
}

static inline bool heap_tc_enter(heap *h, struct heap_tcache *t) {
        return heap_tc_enter_fenced(t, h->tc_fenced);
}

/* Leaves the operation: what it wrote is visible to whoever then reads seq even. */
static inline void heap_tc_leave(struct heap_tcache *t) {
#if defined(__x86_64__) || defined(__i386__)
        /* A compiler barrier before it; x86 keeps stores in order. */
        __asm__ volatile("" ::: "memory");
        tc_seq_bump(t);
#else
        atomic_store_explicit(&t->seq, atomic_load_explicit(&t->seq, memory_order_relaxed) + 1,
                              memory_order_release);
#endif
}

/* The owner, inside an operation that found t not active: activates it, or
 * first does what a reaper asked. Takes the heap lock. */
int heap_tc_settle(heap *h, uint32_t slot, uint32_t cache);

/* Gives back what mode asks of thread cache (slot, cache): pages given back.
 * Called with heap lock held, by the owner inside an operation or by a
 * reaper that knows the owner outside any. */
uint64_t heap_tc_reap_locked(heap *h, uint32_t slot, uint32_t cache, unsigned mode);

/* Asks the owner of active thread cache (slot, cache) for mode at its next operation. Heap lock. */
void heap_tc_request_locked(heap *h, uint32_t slot, uint32_t cache, unsigned mode);

/* Pages thread cache (slot, cache) holds free: its lists' and its page cache's. Heap lock. */
uint64_t heap_tc_held_locked(heap *h, uint32_t slot, uint32_t cache);

/* Empties the slot's thread caches' state for a new or reclaimed slot (their
 * pages were given back before). Called with heap lock held. */
void heap_tc_reset_locked(heap *h, uint32_t slot);

/* Recomputes the slot's mask of active thread caches (recovery). Heap lock. */
void heap_tc_recount_locked(heap *h, uint32_t slot);

/* Registers this process for the reaper's barrier (heap_create, heap_attach). */
void heap_tc_register(heap *h);

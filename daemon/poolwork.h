/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the daemon does to a pool's shared memory, one function per kind of
 * work. Called only on the pool's worker thread (pool.h's jobs), and by the
 * fuzz target (tests/fuzz/fuzz-pool.c), which runs them over a meta region
 * it scribbles on between calls: nothing here but lib/heap and pacer.c, no
 * sd-event, no sockets. The heap handle is untrusted (heap_set_untrusted).
 * Results are private copies, checked; -EUCLEAN, with the reason in why,
 * means the pool is broken.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap/heap.h"
#include "pacer.h"

/* The daemon's slot in every heap: the scavenger's crash intent lives there. */
#define POOLWORK_DAEMON_SLOT 0u
/* A forced scavenge works in pieces of this much, so that a pool being
 * dropped or quarantined stops within one. */
#define POOLWORK_FORCE_PIECE (UINT64_C(64) << 20)

/* The figures every job ends with: heap_get_stats_checked. */
int poolwork_snapshot(heap *h, const struct heap_stats *prev, struct heap_stats *ret, char *why, size_t len);
/* heap_check, header included. */
int poolwork_check(heap *h, char *why, size_t len);

/* A new client's slot, below n_slots (what the daemon was told at attach),
 * and none whose bit is set in busy (n_slots bits; NULL: none). */
int poolwork_claim(heap *h, uint32_t n_slots, const uint64_t *busy, uint32_t pid, uint32_t uid, uint32_t *ret_slot,
                   char *why, size_t len);
/* Re-claiming slot after a daemon restart: still live, of uid and pid. -ESTALE if not. */
int poolwork_reclaim_for(heap *h, uint32_t slot, uint32_t pid, uint32_t uid, char *why, size_t len);
/* Gives slot back (heap_slot_reclaim): pages given back, -ESTALE, or an error. */
int64_t poolwork_reclaim(heap *h, uint32_t slot);
/* The live client slots below n_slots, checked, into ret (n_slots - 1 entries at most); their number. */
int poolwork_live_slots(heap *h, uint32_t n_slots, struct heap_slot_info *ret, uint32_t max, uint32_t *ret_live,
                        char *why, size_t len);

/* One pool's part of a background burst: quanta of PACER_DAEMON_QUANTUM while the
 * worker thread's CPU time is under budget_ns and retained is over goal. */
struct poolwork_burst {
        double budget_ns;
        uint64_t goal;
        uint32_t phys_page_size;
        struct pacer_burst b;      /* out */
        bool exhausted;            /* out: a quantum found less than it asked for */
};
void poolwork_burst(heap *h, struct poolwork_burst *w);

/* A generation ends (scavengeStartGen), the memory limit set first. */
/* The pool's names from index from on (scavctl names): up to max into ret;
 * *ret_next = where the next call starts, 0 at the end. */
int poolwork_names(heap *h, uint64_t from, struct heap_name_info *ret, uint32_t max, uint64_t *ret_next);

/* ret_tc_held: client threads' caches still hold pages after the reap that goes first. */
int poolwork_start_gen(heap *h, uint64_t memory_limit, struct heap_gen_report *ret, bool *ret_tc_held);
/* The same reap alone, a third and two thirds of the way to the next generation (scavenger.c). */
int poolwork_reap_caches(heap *h, bool *ret_tc_held);

/* Ports mheap.scavengeAll: a generation, then release of bytes (0: all), unpaced. */
struct poolwork_force {
        uint64_t memory_limit;
        uint64_t bytes;
        bool if_free;              /* only if the pool has free memory now */
        bool skipped;              /* out: it had none, nothing done */
        bool gen_started;          /* out: rep and gen_stats are valid */
        struct heap_gen_report rep;
        struct heap_stats gen_stats; /* right after the generation started */
        int64_t released, cpu_ns;  /* out */
};
/* stop: checked between pieces. */
int poolwork_force(heap *h, struct poolwork_force *f, const _Atomic bool *stop, char *why, size_t len);

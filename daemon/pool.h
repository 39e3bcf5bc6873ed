/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A pool as the daemon holds it: its configuration, its memfds and mappings,
 * the heap handle, its worker thread, its clients, and its figures as last
 * validated. Created from configuration or adopted from the file
 * descriptor store.
 *
 * The meta region is untrusted input, and only the pool's worker reads it:
 * every piece of work on it is a pool job (pool_job_new, pool_post), which
 * ends with the statistics read under the heap lock and checked
 * (heap_get_stats_checked). The event loop sees those checked copies only
 * (p->view). A job that finds the pool broken (-EUCLEAN, a failed check, a
 * header changed after creation) quarantines it; so does a lock a client
 * holds for longer than lock_timeout (the pool is then also stuck). A
 * quarantined pool is not worked on again: its jobs are cancelled, its
 * figures stay the last validated ones.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "heap/heap.h"
#include "macro.h"
#include "worker.h"

enum pool_slot_state {
        POOL_SLOT_FREE,
        POOL_SLOT_LIVE,        /* a session holds it, or it waits for its client (orphan) */
        POOL_SLOT_RECLAIMING,  /* given back: a reclaim is queued on the worker */
};

/* What the daemon keeps per client slot, beside what the heap keeps. */
struct pool_slot {
        enum pool_slot_state state;
        uint32_t pid, uid;         /* of its session (SO_PEERCRED) or of the orphan's heap slot */
        uint64_t token;            /* secret of the slot's session; 0 = unknown (adopted pool) */
        void *conn;                /* the session holding the slot, or NULL */
        void *orphan;              /* adopted live slot with no session yet: watch on its pid */
};

struct pool {
        struct pool_config cfg;
        uint32_t id;               /* stable small number, for BPF maps */
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size, base_size; /* bytes mapped at meta and base */
        heap *heap;                /* the worker's: see above */
        struct worker *worker;
        struct heap_lock_wait lock_wait; /* the worker's lock waits, for the watchdog */

        struct heap_stats view;    /* the figures as last validated */
        uint64_t goal;             /* the retained goal the daemon set (HEAP_GOAL_NONE: none) */
        unsigned n_clients;        /* connected sessions */
        unsigned n_claiming;       /* HELLOs waiting for the worker to claim a slot */
        bool draining;             /* removed from configuration: dropped when the last client leaves */
        bool dropping;             /* being freed: its cancelled jobs must not drop it again */
        bool quarantined;          /* broken or stuck: served no more, reported */
        bool stuck;                /* quarantined because a lock was held past lock_timeout */
        uint32_t stuck_pid;        /* the holder, when known (0: not known) */
        bool scavenging;           /* registered with the scavenger */
        void *scav;                /* per-pool state of daemon/scavenger.c */
        uint64_t refaults;         /* pages faulted beyond the heap's growth, summed over generations */
        uint32_t n_slots;          /* heap_max_slots() */
        struct pool_slot *slots;
        char check_error[256];     /* why it is quarantined */

        /* Told when the pool is quarantined (manager.c). */
        void (*on_quarantine)(struct pool *p, void *userdata);
        void *userdata;

        struct pool *abandoned_next; /* pool_free left it behind with its stuck worker */
        struct pool_job *spare_jobs[8]; /* POOL_JOB_SPARES, for pool_job_new */
        unsigned n_spare_jobs;

        /* The worker's own (never read elsewhere). */
        struct heap_stats wk_prev; /* last checked statistics: counters may only grow */
        bool wk_have_prev;
        _Atomic bool wk_stop;      /* quarantined: jobs still queued do nothing */
};

/* Creates a pool's memfds (heap sealed against shrink and grow), lays out its heap, starts its worker. */
int pool_new(const struct pool_config *cfg, uint32_t id, workers *ws, struct pool **ret);
/* Adopts memfds from the fd store: validates the layout (one copy of the
 * header); the caller then checks the heap on the worker. */
int pool_adopt(const struct pool_config *cfg, uint32_t id, workers *ws, int meta_fd, int heap_fd,
               struct pool **ret);
/* Stops the worker. A worker stuck on a lock is left behind, and with it
 * everything it may touch: the pool is then not freed (the process ends
 * with it). */
struct pool *pool_free(struct pool *p, uint64_t timeout_usec);

/* Heap parameters a configuration asks for. */
void pool_config_to_params(const struct pool_config *cfg, struct heap_params *ret);

/* Serves the pool no more: logs why (once), cancels its jobs (their done
 * callbacks see cancelled), tells on_quarantine. */
void pool_quarantine(struct pool *p, const char *fmt, ...) _printf_(2, 3);

/* Live slots of one user (for the per-user limit; its claims under way are session.c's to count). */
unsigned pool_slots_of_uid(struct pool *p, uint32_t uid);
/* Live slots and claims under way (for max_clients and reserved_clients). */
unsigned pool_slots_used(struct pool *p);
/* Whether any slot is in the daemon's hands: live, being claimed or reclaimed, or not yet known (adoption). */
bool pool_busy(struct pool *p);

/*
 * A piece of work on the pool's shared memory. run: on the worker, with
 * p->heap; sets error (< 0), and problem when the pool is broken. After
 * run, the statistics are read and checked into stats (unless no_stats).
 * done: on the event loop, after the pool took the result (quarantined on
 * -EUCLEAN, view updated); cancelled: the pool was quarantined before the
 * job could finish, and nothing of run's may be used.
 */
#define POOL_JOB_BLOCK 1024u
#define POOL_JOB_SPARES 8u
struct pool_job {
        struct job job;
        struct pool *pool;
        bool block;                /* POOL_JOB_BLOCK bytes: kept for reuse */
        void (*run)(struct pool_job *j);
        void (*done)(struct pool_job *j);
        bool no_stats;
        bool check_on_error;       /* an error no sound pool gives (not -ESTALE, -EIO): heap_check decides */
        bool cancelled;
        int error;
        char problem[256];
        struct heap_stats stats;
        bool have_stats;
};

/* A zeroed job of size bytes (a struct that starts with struct pool_job), or NULL. */
void *pool_job_new(struct pool *p, size_t size, void (*run)(struct pool_job *j), void (*done)(struct pool_job *j));
void pool_post(struct pool_job *j);

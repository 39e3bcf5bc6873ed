/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * libscav's private state: the pool handle, the process's registry of open
 * pools (for thread-exit cache flushes, fork and the reconnect thread), and
 * the per-thread page cache indexes.
 *
 * Lock order: registry lock before a pool's shared-cache lock. The session
 * socket of a registered pool belongs to the reconnect thread alone, which
 * works from a copy of what it needs and applies the result under the
 * registry lock only if the pool is still open.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "heap/fast.h"
#include "heap/heap.h"
#include "macro.h"
#include "proto.h"
#include "scav.h"

/* The last cache index of a slot is shared, under a lock, by the threads
 * that came after the others were taken. */
#define SCAV_SHARED_CACHE (HEAP_SLOT_CACHES - 1)

struct scav_pool {
        uint64_t id;                  /* unique in the process: TLS entries name pools by it */
        unsigned fork_gen;            /* scav_fork_gen when opened: another value means a child */
        char name[SCAV_POOL_NAME_MAX];
        char socket[108];             /* the daemon's socket when opened: reconnects go there */

        heap *heap;
        void *meta, *base;
        uint64_t meta_size, capacity;
        uint32_t page_size, page_shift;
        uint64_t fast_max;            /* largest size the thread caches serve (HEAP_MCACHE_MAX_PAGES pages) */
        int meta_fd, heap_fd;
        dev_t heap_dev;               /* the heap memfd's identity, to know it again */
        ino_t heap_ino;

        _Atomic uint32_t slot;        /* changes only if a reconnect had to take a new slot */
        /* What a thread's TLS entry must hold for the fast paths to use its
         * cache: unique in the process, renewed (registry lock) after a
         * reconnect stored the slot, and when the pool is lost. One compare
         * then says pool, incarnation, slot and not lost (scav_tls_fast). */
        _Atomic uint64_t fast_key;
        uint64_t token;
        int sock;                     /* session; -1 while the daemon is away */
        atomic_bool lost;             /* the daemon came back with another heap */

        _Atomic uint32_t caches_used; /* bit i: cache i belongs to a thread */
        /* What the fast paths of the thread that owns cache i need (heap/fast.h):
         * written by that thread when it claims the cache (or its slot changed). */
        struct heap_tctx tctx[HEAP_SLOT_CACHES];
        pthread_mutex_t shared_lock;  /* cache SCAV_SHARED_CACHE */
        _Atomic uint32_t shared_users;/* threads on it: the last one to exit flushes it */
        pthread_mutex_t scavenge_lock;/* one local scavenger per slot (its intent) */
        _Atomic int64_t wake_sent_ms; /* CLOCK_MONOTONIC_COARSE of the last WAKE sent */

        /* scav_stats' kernel counters, asked of the daemon (see scav_stats). */
        pthread_mutex_t kstats_lock;
        uint64_t kstats_at_ms;        /* CLOCK_MONOTONIC; 0 = never */
        uint64_t faults, refaults, pressure_events;

        /* Under the registry lock. */
        struct scav_pool *next;
        bool disconnected;
        unsigned backoff_ms;
        uint64_t retry_at_ms;         /* CLOCK_MONOTONIC */
};

extern _Atomic unsigned scav_fork_gen;

static inline bool scav_pool_forked(scav_pool *p) {
        return p->fork_gen != atomic_load_explicit(&scav_fork_gen, memory_order_relaxed);
}

/* scav-registry.c: the process's open pools, fork handling, reconnect thread. */
int scav_registry_add(scav_pool *p);
/* Unlinks p: from then on no thread-exit destructor or reconnect touches it. */
void scav_registry_remove(scav_pool *p);
/* The process freed memory in p: tells the daemon (WAKE on the session
 * socket) unless it was told less than SCAV_WAKE_INTERVAL_MS ago. */
void scav_wake_daemon(scav_pool *p);
/* Tells the reconnect thread its list changed (scav_close shut a session). */
void scav_registry_changed(void);
void scav_registry_lock(void);
void scav_registry_unlock(void);
/* Called with the registry lock held. NULL if no open pool has that id. */
scav_pool *scav_registry_find_locked(uint64_t id);

/* scav-cache.c: each thread's page cache index per pool, in a small TLS
 * table naming pools by their process-unique id (never dereferencing a pool
 * it did not get from the caller, so a closed pool's entries are merely
 * stale). Read inline on the allocation path. */
#define SCAV_TLS_POOLS 8 /* pools one thread holds caches in; more share one */
struct scav_tls_entry {
        uint64_t key;           /* the pool's fast_key when this thread last armed its cache; 0: not armed */
        uint64_t id;            /* the pool's id (never reused); 0: a free entry */
        const struct heap_tctx *x; /* &pool->tctx[cache] (the fast paths), NULL for the shared cache */
        uint32_t cache;
};
extern _hidden_ __thread struct scav_tls_entry scav_tls_entries[SCAV_TLS_POOLS] __attribute__((tls_model("initial-exec")));

static inline struct scav_tls_entry *scav_tls_find(const scav_pool *p) {
        /* Most threads use one pool: its entry is the first, one compare. */
        if (_likely_(scav_tls_entries[0].id == p->id))
                return &scav_tls_entries[0];
        for (unsigned i = 1; i < SCAV_TLS_POOLS; i++)
                if (scav_tls_entries[i].id == p->id)
                        return &scav_tls_entries[i];
        return NULL;
}

/* The fast paths' lookup: the context of this thread's cache in p, if its
 * entry is armed for p as it is now (p->fast_key; only the slow paths arm
 * one, scav_thread_cache_arm, and never the shared cache's), or NULL. Keys
 * are never 0 and never reused, so an entry of a closed pool, of the slot
 * before a reconnect, or of a pool since lost never matches. The context,
 * not the entry: its load then addresses TLS directly. */
static inline const struct heap_tctx *scav_tls_fast(const scav_pool *p) {
        uint64_t key = atomic_load_explicit(&p->fast_key, memory_order_relaxed);

        if (_likely_(scav_tls_entries[0].key == key)) {
                const struct heap_tctx *x = scav_tls_entries[0].x;
                if (!x) /* an armed entry has its context: no test for it */
                        __builtin_unreachable();
                return x;
        }
        for (unsigned i = 1; i < SCAV_TLS_POOLS; i++)
                if (scav_tls_entries[i].key == key)
                        return scav_tls_entries[i].x;
        return NULL;
}

/* Arms this thread's entry for p, if it has a cache of its own: its
 * context for the current slot, and the current key (slow paths). */
void scav_thread_cache_arm(scav_pool *p);

/* Claims a page cache for this thread (its first allocation from p). */
uint32_t scav_thread_cache_claim(scav_pool *p, bool *shared);

/* Which page cache of the slot this thread uses. Sets *shared when it is
 * the shared one (the caller takes p->shared_lock). */
static inline uint32_t scav_thread_cache(scav_pool *p, bool *shared) {
        const struct scav_tls_entry *e = scav_tls_find(p);
        if (_unlikely_(!e))
                return scav_thread_cache_claim(p, shared);
        *shared = e->cache == SCAV_SHARED_CACHE;
        return e->cache;
}

/* The cache this thread already has, without claiming one (the shared one if none). */
static inline uint32_t scav_thread_cache_peek(scav_pool *p, bool *shared) {
        const struct scav_tls_entry *e = scav_tls_find(p);
        *shared = !e || e->cache == SCAV_SHARED_CACHE;
        return e ? e->cache : SCAV_SHARED_CACHE;
}
/* Forgets this thread's entry for p (scav_close). */
void scav_thread_cache_drop(scav_pool *p);
/* Forgets every entry of this thread (a fork's child: the caches are the
 * parent's, and without an entry scav_alloc and scav_free take the path
 * that checks for a fork). */
void scav_thread_caches_forget(void);
/* Called with the registry lock held: flushes and frees the caches this
 * thread holds in registered pools (thread exit). */
void scav_thread_caches_release_locked(void);

/* scav-session.c: HELLO (new or re-claiming slot), MAPPED. */
struct scav_session {
        int sock, meta_fd, heap_fd;
        uint32_t slot, page_size;
        uint64_t token, meta_size, capacity;
};
int scav_session_hello(const char *socket, const char *pool, uint32_t slot, uint64_t token,
                       int timeout_ms, struct scav_session *ret);
int scav_session_mapped(int sock, const void *addr, uint64_t len, int timeout_ms);
void scav_session_close(struct scav_session *s);
/* What re-establishing a session needs, copied from the pool. */
struct scav_reconnect {
        char name[SCAV_POOL_NAME_MAX];
        char socket[108];
        uint32_t slot;
        uint64_t token;
        dev_t heap_dev;
        ino_t heap_ino;
        uint64_t meta_size, capacity;
        void *base;
};
/* Re-establishes a session after the daemon went away (reconnect thread).
 * -ESTALE: the daemon came back with another heap. */
int scav_session_reconnect(const struct scav_reconnect *rc, struct scav_session *ret);

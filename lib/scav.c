/* SPDX-License-Identifier: MIT */
/*
 * libscav's public functions (scav.h): open a pool through the daemon, then
 * allocate in shared memory with no round trip. Small allocations go through
 * the calling thread's page cache (no lock), the rest through the heap lock.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "scav-conn.h"
#include "scav-internal.h"

#define SCAV_ALLOC_FLAGS (SCAV_ALLOC_ZERO | SCAV_ALLOC_KEEP)

static void pool_unmap(scav_pool *p) {
        if (p->heap)
                heap_detach(p->heap);
        if (p->base && p->base != MAP_FAILED)
                munmap(p->base, p->capacity);
        if (p->meta && p->meta != MAP_FAILED)
                munmap(p->meta, p->meta_size);
        closep(&p->meta_fd);
        closep(&p->heap_fd);
        pthread_mutex_destroy(&p->shared_lock);
        pthread_mutex_destroy(&p->scavenge_lock);
        pthread_mutex_destroy(&p->kstats_lock);
        free(p);
}

_public_ int scav_open(const char *pool, scav_pool **out) {
        struct scav_session s;
        struct stat hst;
        scav_pool *p;
        int r;

        if (!out || !pool)
                return -EINVAL;
        if (!scav_pool_name_valid(pool))
                return -EINVAL;

        if (strlen(scav_socket_path()) >= sizeof(p->socket))
                return -EINVAL;
        r = scav_session_hello(scav_socket_path(), pool, SCAV_SLOT_NONE, 0, SCAV_CONN_TIMEOUT_MS, &s);
        if (r < 0)
                return r;

        p = calloc(1, sizeof(*p));
        if (!p) {
                scav_session_close(&s);
                return -ENOMEM;
        }
        strncpy(p->name, pool, sizeof(p->name) - 1);
        strncpy(p->socket, scav_socket_path(), sizeof(p->socket) - 1);
        pthread_mutex_init(&p->shared_lock, NULL);
        pthread_mutex_init(&p->scavenge_lock, NULL);
        pthread_mutex_init(&p->kstats_lock, NULL);
        p->meta_fd = TAKE_FD(s.meta_fd);
        p->heap_fd = TAKE_FD(s.heap_fd);
        p->sock = -1;
        if (fstat(p->heap_fd, &hst) < 0) {
                r = negative_errno();
                goto fail;
        }
        p->heap_dev = hst.st_dev;
        p->heap_ino = hst.st_ino;
        p->meta_size = s.meta_size;
        p->capacity = s.capacity;
        p->page_size = s.page_size;
        p->token = s.token;
        atomic_init(&p->slot, s.slot);
        atomic_init(&p->wake_sent_ms, -(int64_t) SCAV_WAKE_INTERVAL_MS);

        /* The pool may be terabytes of address space: reserve nothing. */
        p->meta = mmap(NULL, p->meta_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                       p->meta_fd, 0);
        if (p->meta == MAP_FAILED) {
                r = negative_errno();
                goto fail;
        }
        p->base = mmap(NULL, p->capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                       p->heap_fd, 0);
        if (p->base == MAP_FAILED) {
                r = negative_errno();
                goto fail;
        }
        r = heap_attach(p->meta, p->meta_size, p->base, p->capacity, p->heap_fd, &p->heap);
        if (r < 0)
                goto fail;
        if (heap_page_size(p->heap) != p->page_size || heap_capacity(p->heap) != p->capacity ||
            s.slot == 0 || s.slot >= heap_max_slots(p->heap)) {
                r = -EPROTO;
                goto fail;
        }
        p->page_shift = (uint32_t) __builtin_ctz(p->page_size); /* a power of two: heap_attach checked */
        p->fast_max = MIN((uint64_t) HEAP_MCACHE_MAX_PAGES << p->page_shift, p->capacity);

        r = scav_session_mapped(s.sock, p->base, p->capacity, SCAV_CONN_TIMEOUT_MS);
        if (r < 0)
                goto fail;

        p->sock = TAKE_FD(s.sock);
        scav_registry_add(p);
        *out = p;
        return 0;
fail:
        /* Hanging up gives the slot back: the daemon reclaims it. */
        scav_session_close(&s);
        pool_unmap(p);
        return r;
}

_public_ void scav_close(scav_pool *p) {
        bool child;

        if (!p)
                return;
        scav_registry_remove(p);
        scav_thread_cache_drop(p);
        child = scav_pool_forked(p);

        if (!child) {
                /* Give the slot back ourselves, so that scav_close() returning
                 * means the memory is free; the daemon sees the hang-up after. */
                (void) heap_slot_reclaim(p->heap, atomic_load(&p->slot));
                if (p->sock >= 0) {
                        shutdown(p->sock, SHUT_RDWR);
                        close(p->sock);
                }
                scav_registry_changed();
        }
        /* A child only drops its view: the slot and session are the parent's. */
        pool_unmap(p);
}

static inline unsigned heap_flags(unsigned flags) {
        return (flags & SCAV_ALLOC_ZERO ? HEAP_ALLOC_ZERO : 0) |
               (flags & SCAV_ALLOC_KEEP ? HEAP_ALLOC_KEEP : 0);
}

static _noinline_ int scav_alloc_slow(scav_pool *p, size_t size, unsigned flags, uint64_t *off) {
        uint64_t npages;
        uint32_t slot, cache;
        bool shared;
        int r;

        if (!p || !off || size == 0 || (flags & ~SCAV_ALLOC_FLAGS))
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        if (_unlikely_(atomic_load_explicit(&p->lost, memory_order_relaxed)))
                return -ESTALE;
        if (size > p->capacity)
                return -ENOMEM;

        npages = ((uint64_t) size + p->page_size - 1) >> p->page_shift; /* size <= capacity: no overflow */
        slot = atomic_load_explicit(&p->slot, memory_order_relaxed);

        /* KEEP allocations outlive the slot: never from a cache. Everything
         * else goes through this thread's caches; heap_cache_alloc itself
         * sends what no cache serves (more than 128 pages) to heap_alloc. */
        if (flags & SCAV_ALLOC_KEEP)
                return heap_alloc(p->heap, slot, npages, heap_flags(flags), off);

        cache = scav_thread_cache(p, &shared);
        if (_likely_(!shared)) {
                /* The next calls take the fast path (a first call, a reconnect). */
                scav_thread_cache_arm(p);
                return heap_cache_alloc(p->heap, slot, cache, npages, heap_flags(flags), off);
        }
        pthread_mutex_lock(&p->shared_lock);
        r = heap_cache_alloc(p->heap, slot, cache, npages, heap_flags(flags), off);
        pthread_mutex_unlock(&p->shared_lock);
        return r;
}

/*
 * The common case inline (heap/fast.h): a thread whose cache in p is armed
 * (scav_tls_fast: one compare says the pool, its slot and that it is not
 * lost), no flags, at most HEAP_MCACHE_MAX_PAGES pages. A thread's entry
 * exists only in the process that made it (a fork's child forgets them), so
 * the fork check is the slow path's; everything else goes there too, by a
 * tail call, so that the fast path needs no frame.
 */
_public_ int scav_alloc(scav_pool *p, size_t size, unsigned flags, uint64_t *off) {
        const struct heap_tctx *x;

        /* One test each: combined, they cost a flag computation each. */
        if (_unlikely_(!p))
                return scav_alloc_slow(p, size, flags, off);
        if (_unlikely_(flags))
                return scav_alloc_slow(p, size, flags, off);
        if (_unlikely_(!off))
                return scav_alloc_slow(p, size, flags, off);
        if (_likely_(size - 1 < p->fast_max && (x = scav_tls_fast(p))) &&
            _likely_(heap_fast_alloc(x, (((uint64_t) size - 1) >> x->page_shift) + 1, off, true) == 0))
                return 0;
        /* No flags here: the tail call has three arguments to keep, not four. */
        return scav_alloc_slow(p, size, 0, off);
}

/* Frees this thread has left before it looks at the clock again, minus
 * one: a countdown that goes negative on the first free and then on every
 * SCAV_WAKE_EVERY-th, so that the hot path is one decrement of TLS memory
 * and a branch on its sign. */
static __thread int tls_frees_left __attribute__((tls_model("initial-exec")));
#define SCAV_WAKE_EVERY 64

static inline bool free_tick(void) {
        if (_likely_(--tls_frees_left >= 0))
                return false;
        tls_frees_left = SCAV_WAKE_EVERY - 1;
        return true;
}

/*
 * A free may give the daemon work while its pool is parked. Telling it costs
 * the hot path one thread-local decrement: the first free of a thread and
 * then every 64th read the coarse clock, and at most one WAKE per pool per
 * 250 ms is sent (scav_wake_daemon).
 */
static inline void free_note(scav_pool *p) {
        if (_unlikely_(free_tick()))
                scav_wake_daemon(p);
}

static _noinline_ int scav_free_slow(scav_pool *p, uint64_t off) {
        uint32_t slot, cache;
        bool shared;
        int r;

        if (!p)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        if (off >= p->capacity || (off & (p->page_size - 1)))
                return -EINVAL;

        slot = atomic_load_explicit(&p->slot, memory_order_relaxed);
        cache = scav_thread_cache_peek(p, &shared);
        if (_likely_(!shared)) {
                scav_thread_cache_arm(p); /* a thread that only frees gets its fast path back after a reconnect */
                r = heap_free(p->heap, slot, cache, off);
        } else {
                pthread_mutex_lock(&p->shared_lock);
                r = heap_free(p->heap, slot, cache, off);
                pthread_mutex_unlock(&p->shared_lock);
        }
        if (_likely_(r == 0))
                free_note(p);
        return r;
}

static _noinline_ int scav_free_wake(scav_pool *p) {
        scav_wake_daemon(p);
        return 0;
}

/* What a fast free leaves to do: give a block back, tell the daemon, or the
 * whole path. The cache is looked up again (by the pool's id, which a
 * reconnect meanwhile does not change) rather than passed, so that the
 * fast path keeps one value less for the call. */
static _noinline_ int scav_free_rest(scav_pool *p, uint64_t off, int r) {
        const struct scav_tls_entry *e;

        if (r == HEAP_FAST_SLOW)
                return scav_free_slow(p, off);
        if (r < 0)
                return r;
        if (r >= HEAP_FAST_GIVEBACK && (e = scav_tls_find(p)))
                heap_cache_block_giveback(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), e->cache,
                                          (uint32_t) (r - HEAP_FAST_GIVEBACK));
        free_note(p);
        return 0;
}

/* The common case inline, as scav_alloc: this thread's own allocation. */
_public_ int scav_free(scav_pool *p, uint64_t off) {
        const struct heap_tctx *x;
        int r;

        if (_unlikely_(!p || off >= p->capacity || (off & (p->page_size - 1)) || !(x = scav_tls_fast(p))))
                return scav_free_slow(p, off);
        r = heap_fast_free(x, off, true);
        if (_likely_(r == 0)) {
                if (_likely_(!free_tick()))
                        return 0;
                return scav_free_wake(p);
        }
        return scav_free_rest(p, off, r);
}

_public_ void *scav_ptr(scav_pool *p, uint64_t off) {
        if (!p || off >= p->capacity)
                return NULL;
        return (uint8_t *) p->base + off;
}

_public_ int scav_offset(scav_pool *p, const void *ptr, uint64_t *off) {
        uintptr_t a = (uintptr_t) ptr, b;

        if (!p || !off)
                return -EINVAL;
        b = (uintptr_t) p->base;
        if (a < b || a - b >= p->capacity)
                return -EINVAL;
        *off = a - b;
        return 0;
}

/* How long the kernel counters of scav_stats are reused, and how long the
 * daemon may take to give them. */
#define SCAV_KSTATS_MAX_AGE_MS 100
#define SCAV_KSTATS_TIMEOUT_MS 100

/*
 * Page faults, refaults and pressure events are counted by the daemon (BPF
 * maps, its own counters), not in the heap's shared statistics: until the
 * heap header gets fields for them, they cost a STATUS round trip, at most
 * one per pool per SCAV_KSTATS_MAX_AGE_MS (so that a caller polling
 * scav_stats does not load the daemon), with a short timeout. A daemon that
 * is away or slow gives 0.
 */
static void kernel_counters(scav_pool *p, struct scav_stats *st) {
        union {
                struct scav_msg_reply rep;
                char buf[SCAV_MSG_MAX];
        } u;
        struct timespec ts;
        uint64_t now;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;

        pthread_mutex_lock(&p->kstats_lock);
        if (p->kstats_at_ms == 0 || now - p->kstats_at_ms >= SCAV_KSTATS_MAX_AGE_MS) {
                p->faults = p->refaults = p->pressure_events = 0;
                r = scav_ctl_request_timeout(p->socket, SCAV_MSG_STATUS, p->name, 0, &u, sizeof(u),
                                             SCAV_KSTATS_TIMEOUT_MS);
                if (r >= (int) (sizeof(u.rep) + sizeof(struct scav_msg_pool_status)) && u.rep.count == 1) {
                        struct scav_msg_pool_status ps;

                        memcpy(&ps, u.buf + sizeof(u.rep), sizeof(ps));
                        p->faults = ps.faults;
                        p->refaults = ps.refaults;
                        p->pressure_events = ps.pressure_events;
                }
                p->kstats_at_ms = now;
        }
        st->faults = p->faults;
        st->refaults = p->refaults;
        st->pressure_events = p->pressure_events;
        pthread_mutex_unlock(&p->kstats_lock);
}

_public_ int scav_stats(scav_pool *p, struct scav_stats *st) {
        struct heap_stats hs;
        int r;

        if (!p || !st)
                return -EINVAL;
        r = heap_get_stats(p->heap, &hs);
        if (r < 0)
                return r;
        *st = (struct scav_stats) {
                .capacity = hs.capacity,
                .page_size = hs.page_size,
                .heap_sys = hs.heap_sys,
                .inuse = hs.inuse,
                .released = hs.released,
                .retained = hs.retained,
                .retained_goal = hs.retained_goal,
                .gen = hs.gen,
                .released_total = hs.released_total,
                .clients = hs.clients,
                .memory_limit = hs.memory_limit,
                .peak_inuse = hs.peak_inuse,
                .growth_scavenged = hs.growth_scavenged,
                .shared = hs.shared,
                .refs = hs.refs,
                .names = hs.names,
        };
        if (!scav_pool_forked(p))
                kernel_counters(p, st);
        return 0;
}

/*
 * Like Go's debug.FreeOSMemory. The daemon does it when it can (its own
 * slot scavenges, and the trace marks it forced); while it is away the
 * process does it itself, one scavenger at a time since a slot has a
 * single scavenge intent.
 */
_public_ int64_t scav_scavenge(scav_pool *p, size_t bytes) {
        union {
                struct scav_msg_reply rep;
                char buf[SCAV_MSG_MAX];
        } u;
        struct heap_gen_report report;
        int64_t released;
        int r;

        if (!p)
                return -EINVAL;
        if (scav_pool_forked(p))
                return -ECHILD;

        r = scav_ctl_request(p->socket, SCAV_MSG_SCAVENGE, p->name, bytes, &u, sizeof(u));
        if (r >= 0)
                return (int64_t) MIN(u.rep.value, (uint64_t) INT64_MAX);
        if (r != -ECONNREFUSED && r != -ECONNRESET && r != -EACCES && r != -EPERM)
                return r;

        /* As the daemon's forced scavenge: a fresh generation, so that the
         * whole heap is searched again, then release. */
        pthread_mutex_lock(&p->scavenge_lock);
        /* What threads keep in their caches first, as the daemon does. */
        (void) heap_cache_reap(p->heap, HEAP_REAP_ALL, NULL);
        released = heap_scavenge_start_gen(p->heap, &report);
        if (released >= 0)
                released = heap_scavenge(p->heap, atomic_load(&p->slot), bytes ? bytes : UINT64_MAX);
        pthread_mutex_unlock(&p->scavenge_lock);
        return released;
}

_public_ int scav_heap_fd(scav_pool *p) {
        if (!p)
                return -EINVAL;
        return p->heap_fd;
}

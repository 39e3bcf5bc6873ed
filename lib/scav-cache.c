/* SPDX-License-Identifier: MIT */
/*
 * Per-thread page caches. Each thread that allocates from a pool gets one of
 * the HEAP_SLOT_CACHES page caches of the process's slot, as the Go runtime
 * gives each P its own pageCache: small allocations then take no lock at
 * all. Threads past the last free index share the last cache under a mutex.
 *
 * A thread remembers its caches in a small TLS table naming pools by their
 * process-unique id (never dereferencing a pool it did not get from the
 * caller), so a closed pool's entries are merely stale. A pthread key's
 * destructor gives the caches back when the thread exits.
 */

#include <pthread.h>
#include <string.h>

#include "macro.h"
#include "scav-internal.h"

/* initial-exec: no __tls_get_addr call on the allocation path of the .so
 * (256 bytes fit the static TLS that glibc keeps for dlopen'ed libraries). */
_hidden_ __thread struct scav_tls_entry scav_tls_entries[SCAV_TLS_POOLS] __attribute__((tls_model("initial-exec")));
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static bool tls_key_ok;

static void thread_exit(void *unused) {
        scav_registry_lock();
        scav_thread_caches_release_locked();
        scav_registry_unlock();
}

static void tls_init(void) {
        tls_key_ok = pthread_key_create(&tls_key, thread_exit) == 0;
}

static uint32_t cache_claim(scav_pool *p) {
        uint32_t used = atomic_load(&p->caches_used);

        for (;;) {
                uint32_t free_bits = ~used & ((1u << SCAV_SHARED_CACHE) - 1);
                if (!free_bits)
                        return SCAV_SHARED_CACHE;
                uint32_t c = (uint32_t) __builtin_ctz(free_bits);
                if (atomic_compare_exchange_weak(&p->caches_used, &used, used | (1u << c)))
                        return c;
        }
}

static void cache_unclaim(scav_pool *p, uint32_t c) {
        if (c < SCAV_SHARED_CACHE)
                atomic_fetch_and(&p->caches_used, ~(1u << c));
}

uint32_t scav_thread_cache_claim(scav_pool *p, bool *shared) {
        struct scav_tls_entry *e = NULL;
        uint32_t c;

        pthread_once(&tls_once, tls_init);
        /* Reuse an entry of a pool that was closed since. */
        scav_registry_lock();
        for (unsigned i = 0; i < SCAV_TLS_POOLS && !e; i++) {
                struct scav_tls_entry *t = &scav_tls_entries[i];
                if (!t->id || !scav_registry_find_locked(t->id))
                        e = t;
        }
        scav_registry_unlock();

        if (!e || !tls_key_ok) {
                *shared = true;
                return SCAV_SHARED_CACHE;
        }
        c = cache_claim(p);
        if (c == SCAV_SHARED_CACHE)
                atomic_fetch_add(&p->shared_users, 1);
        /* Unarmed (key 0): the caller arms it (scav_thread_cache_arm). */
        *e = (struct scav_tls_entry) { .id = p->id, .cache = c,
                                       .x = c == SCAV_SHARED_CACHE ? NULL : &p->tctx[c] };
        /* Any non-NULL value makes the destructor run at thread exit. */
        (void) pthread_setspecific(tls_key, (void *) 1);
        *shared = c == SCAV_SHARED_CACHE;
        return c;
}

void scav_thread_cache_arm(scav_pool *p) {
        struct scav_tls_entry *e = scav_tls_find(p);
        uint64_t key;
        uint32_t slot;

        /* A process that must fence its operations (no membarrier) keeps
         * to the full paths: the inline ones are built without the fence. */
        if (!e || e->cache == SCAV_SHARED_CACHE || p->heap->tc_fenced)
                return;
        /* The key first: the registry stores the slot, or the loss, before a
         * new key, so a key read here comes with that slot and that loss. */
        key = atomic_load_explicit(&p->fast_key, memory_order_acquire);
        if (e->key == key)
                return; /* armed already: a slow free of a shared allocation, say */
        slot = atomic_load_explicit(&p->slot, memory_order_relaxed);
        if (atomic_load_explicit(&p->lost, memory_order_relaxed)) {
                e->key = 0;
                return;
        }
        if (p->tctx[e->cache].slot != slot) /* a new claim, or a reconnect took another slot */
                heap_tctx_init_table(p->heap, slot, e->cache, &p->tctx[e->cache]);
        e->key = key;
}

void scav_thread_caches_forget(void) {
        memset(scav_tls_entries, 0, sizeof(scav_tls_entries));
}

void scav_thread_cache_drop(scav_pool *p) {
        struct scav_tls_entry *e = scav_tls_find(p);

        if (e)
                memset(e, 0, sizeof(*e));
}

/* Called with the registry lock held. */
void scav_thread_caches_release_locked(void) {
        for (unsigned i = 0; i < SCAV_TLS_POOLS; i++) {
                struct scav_tls_entry *e = &scav_tls_entries[i];
                scav_pool *p;

                if (!e->id)
                        continue;
                p = scav_registry_find_locked(e->id);
                if (p && !scav_pool_forked(p)) {
                        if (e->cache != SCAV_SHARED_CACHE) {
                                (void) heap_cache_flush(p->heap, atomic_load(&p->slot), e->cache);
                                cache_unclaim(p, e->cache);
                        } else if (atomic_fetch_sub(&p->shared_users, 1) == 1) {
                                pthread_mutex_lock(&p->shared_lock);
                                (void) heap_cache_flush(p->heap, atomic_load(&p->slot), e->cache);
                                pthread_mutex_unlock(&p->shared_lock);
                        }
                }
                memset(e, 0, sizeof(*e));
        }
}

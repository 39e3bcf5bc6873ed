/* SPDX-License-Identifier: MIT */
/*
 * libscav's sharing functions (scav.h): references, handles and names, over
 * the heap core's share entries and name directory. None of them talks to
 * the daemon: like allocation, they work in shared memory under the heap
 * lock. Each needs the caller's slot, so a forked child gets -ECHILD until
 * it opens the pool itself.
 */

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "scav-internal.h"

_public_ int scav_ref(scav_pool *p, uint64_t off) {
        if (!p)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        return heap_ref(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), off);
}

_public_ int scav_unref(scav_pool *p, uint64_t off) {
        uint32_t slot, cache;
        bool shared;
        int r;

        if (!p)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        /* The owner's last reference is a free: through this thread's cache, as scav_free. */
        slot = atomic_load_explicit(&p->slot, memory_order_relaxed);
        cache = scav_thread_cache_peek(p, &shared);
        if (shared)
                pthread_mutex_lock(&p->shared_lock);
        r = heap_unref(p->heap, slot, cache, off);
        if (shared)
                pthread_mutex_unlock(&p->shared_lock);
        if (r == 0)
                scav_wake_daemon(p);
        return r;
}

_public_ int scav_size(scav_pool *p, uint64_t off, size_t *bytes) {
        if (!p || !bytes)
                return -EINVAL;
        int64_t n = heap_alloc_size(p->heap, off);
        if (n < 0)
                return (int) n;
        *bytes = (size_t) n;
        return 0;
}

_public_ int scav_make_handle(scav_pool *p, uint64_t off, struct scav_handle *h) {
        uint64_t tag;

        if (!p || !h)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        int r = heap_share_tag(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), off, &tag);
        if (r < 0)
                return r;
        *h = (struct scav_handle) {
                .magic = SCAV_HANDLE_MAGIC,
                .version = 1,
                .pool_id = heap_pool_id(p->heap),
                .off = off,
                .tag = tag,
        };
        memcpy(h->pool, p->name, sizeof(h->pool));
        return 0;
}

_public_ int scav_ref_handle(scav_pool *p, const struct scav_handle *h, uint64_t *off) {
        if (!p || !h || !off)
                return -EINVAL;
        if (h->magic != SCAV_HANDLE_MAGIC || h->version != 1 || !memchr(h->pool, 0, sizeof(h->pool)))
                return -EINVAL;
        if (strcmp(h->pool, p->name) != 0)
                return -EXDEV;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        /* The same name, another pool: it was created anew since (a restart without the fd store). */
        if (h->pool_id != heap_pool_id(p->heap))
                return -ESTALE;
        int r = heap_ref_tagged(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), h->off, h->tag);
        if (r < 0)
                return r;
        *off = h->off;
        return 0;
}

_public_ int scav_publish(scav_pool *p, const char *name, uint64_t off) {
        if (!p)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        return heap_publish(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), name, off);
}

_public_ int scav_lookup_wait(scav_pool *p, const char *name, int timeout_ms, uint64_t *off) {
        if (!p || !off || timeout_ms < -1)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        int64_t timeout_ns = timeout_ms < 0 ? -1 : (int64_t) timeout_ms * 1000000;
        return heap_lookup(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), name, timeout_ns, off);
}

_public_ int scav_lookup(scav_pool *p, const char *name, uint64_t *off) {
        return scav_lookup_wait(p, name, 0, off);
}

_public_ int scav_unpublish(scav_pool *p, const char *name) {
        if (!p)
                return -EINVAL;
        if (_unlikely_(scav_pool_forked(p)))
                return -ECHILD;
        int r = heap_unpublish(p->heap, atomic_load_explicit(&p->slot, memory_order_relaxed), name);
        if (r == 0)
                scav_wake_daemon(p);
        return r;
}

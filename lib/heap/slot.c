/* SPDX-License-Identifier: MIT */
/*
 * Client slots: who owns allocations, page caches and in-flight scavenges,
 * and giving all of it back when a client is gone.
 */

#include <errno.h>
#include <string.h>

#include "heap/palloc.h"
#include "heap/alloc.h"
#include "heap/mcache.h"
#include "heap/pagealloc.h"
#include "heap/scavenge.h"
#include "heap/share.h"
#include "heap/tcache.h"

int heap_slot_claim(heap *h, uint32_t pid, uint32_t uid, uint32_t *ret_slot) {
        return heap_slot_claim_except(h, pid, uid, NULL, 0, ret_slot);
}

int heap_slot_claim_except(heap *h, uint32_t pid, uint32_t uid, const uint64_t *busy, uint32_t nbusy,
                           uint32_t *ret_slot) {
        int r = heap_lock(h);
        if (r < 0)
                return r;
        for (uint32_t s = 1; s < h->max_slots; s++) {
                struct heap_slot *sl = &h->slots[s];
                if (atomic_load(&sl->state) != HEAP_SLOT_FREE)
                        continue;
                if (s < nbusy && (busy[s / 64] >> (s % 64)) & 1)
                        continue;
                sl->pid = pid;
                sl->uid = uid;
                memset(sl->scav, 0, sizeof(sl->scav));
                sl->cache_mask = 0;
                memset(sl->caches, 0, sizeof(sl->caches));
                heap_tc_reset_locked(h, s);
                atomic_store(&sl->state, HEAP_SLOT_LIVE);
                heap_unlock(h);
                *ret_slot = s;
                return 0;
        }
        heap_unlock(h);
        return -EUSERS;
}

int heap_slot_reclaim_for(heap *h, uint32_t slot, uint32_t pid) {
        if (slot == 0 || slot >= h->max_slots)
                return -ESTALE;
        struct heap_slot *sl = &h->slots[slot];
        if (atomic_load(&sl->state) != HEAP_SLOT_LIVE || sl->pid != pid)
                return -ESTALE;
        return 0;
}

/*
 * Completes the slot's in-flight scavenges: releases each range again (the
 * dead scavenger may or may not have) and frees it as scavenged.
 */
static int finish_slot_scavenge(heap *h, uint32_t slot) {
        struct heap_slot *sl = &h->slots[slot];
        for (uint32_t k = 0; k < HEAP_SLOT_SCAV_INTENTS; k++) {
                int r = heap_lock(h);
                if (r < 0)
                        return r;
                uint64_t base = sl->scav[k].base, n = sl->scav[k].npages;
                heap_unlock(h);
                if (n == 0)
                        continue;
                if (base + n > heap_nchunks(h) * HEAP_CHUNK_PAGES || base + n < base)
                        return -EUCLEAN;
                bool released = h->release(h, base << h->page_shift, n << h->page_shift, h->release_userdata) >= 0;
                r = heap_lock(h);
                if (r < 0)
                        return r;
                if (sl->scav[k].base == base && sl->scav[k].npages == n)
                        heap_scav_free_locked(h, slot, k, base, n, released);
                heap_unlock(h);
        }
        return 0;
}

int64_t heap_slot_reclaim(heap *h, uint32_t slot) {
        int64_t given = 0;
        int r;

        if (slot >= h->max_slots)
                return -EINVAL;
        struct heap_slot *sl = &h->slots[slot];
        if (atomic_load(&sl->state) != HEAP_SLOT_LIVE)
                return -ESTALE;

        r = heap_lock(h);
        if (r < 0)
                return r;
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                given += (int64_t) heap_cache_flush_locked(h, slot, c);
                /* Its lists; CACHED records they lost track of go with the record scan. */
                given += (int64_t) heap_mcache_flush_locked(h, slot, c);
        }
        heap_unlock(h);

        r = finish_slot_scavenge(h, slot);
        if (r < 0)
                return r;

        /* Every record the slot owns, one chunk per lock hold. */
        uint64_t p = 0;
        while (p < heap_nchunks(h) * HEAP_CHUNK_PAGES) {
                r = heap_lock(h);
                if (r < 0)
                        return r;
                uint64_t stop = (p / HEAP_CHUNK_PAGES + 1) * HEAP_CHUNK_PAGES;
                while (p < stop) {
                        uint64_t rec = atomic_load(&h->records[p]);
                        uint64_t n = HEAP_REC_NPAGES(rec);
                        if (n == 0) {
                                p++;
                                continue;
                        }
                        if (n > heap_nchunks(h) * HEAP_CHUNK_PAGES - p) {
                                p++; /* a record past the heap: skipped (heap_check reports it) */
                                continue;
                        }
                        if (HEAP_REC_OWNER(rec) == slot + 1) {
                                /* Kept, or held by others (its share entry counts this slot's
                                 * references, dropped below): ownerless. The caches were
                                 * flushed, so the owner no longer says where its pages lie. */
                                if (rec & (HEAP_REC_KEEP | HEAP_REC_SHARED)) {
                                        uint64_t nrec = HEAP_REC_MAKE(n, 0, HEAP_REC_FLAGS(rec));
                                        heap_intent_begin(h, HEAP_OP_RECORD, slot, 0, p, n, nrec, rec);
                                        uint64_t expect = rec;
                                        atomic_compare_exchange_strong(&h->records[p], &expect, nrec);
                                        heap_intent_end(h);
                                } else if (heap_free_locked(h, slot, 0, p, rec) >= 0)
                                        given += (int64_t) n;
                        }
                        p += n;
                }
                heap_unlock(h);
        }

        /* Its references on shared allocations; the last ones free them. */
        int64_t freed = heap_share_reclaim_slot(h, slot);
        if (freed < 0)
                return freed;
        given += freed;

        r = heap_lock(h);
        if (r < 0)
                return r;
        /* Frees that raced with us went into the caches as orphans. */
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++)
                given += (int64_t) heap_cache_flush_locked(h, slot, c);
        heap_tc_reset_locked(h, slot);
        sl->pid = 0;
        sl->uid = 0;
        if (slot != 0)
                atomic_store(&sl->state, HEAP_SLOT_FREE);
        heap_unlock(h);
        return given;
}

int heap_slot_info(heap *h, uint32_t slot, struct heap_slot_info *ret) {
        if (slot >= h->max_slots)
                return -EINVAL;
        struct heap_slot *sl = &h->slots[slot];
        if (atomic_load(&sl->state) != HEAP_SLOT_LIVE)
                return -ESTALE;
        struct heap_slot_info info = { .slot = slot, .pid = sl->pid, .uid = sl->uid };
        uint64_t end = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        for (uint64_t p = 0; p < end;) {
                uint64_t rec = atomic_load_explicit(&h->records[p], memory_order_relaxed);
                uint64_t n = HEAP_REC_NPAGES(rec);
                if (n == 0) {
                        p++;
                        continue;
                }
                if (HEAP_REC_OWNER(rec) == slot + 1 && (rec & HEAP_REC_CACHED))
                        info.cached_pages += n;
                else if (HEAP_REC_OWNER(rec) == slot + 1)
                        info.inuse_pages += n;
                p += n;
        }
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++)
                for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++)
                        info.cached_pages += (uint64_t) heap_popcount64(
                                atomic_load_explicit(&sl->caches[c].free_mask[b], memory_order_relaxed));
        /* A hint read without the lock, as the rest: entries below the bounded hwm only. */
        for (uint32_t i = 0, hwm = heap_share_hwm(h); i < hwm; i++) {
                const struct heap_share *e = heap_share_at(h, i);
                uint16_t n = __atomic_load_n(&e->slot_refs[slot], __ATOMIC_RELAXED);
                if (n && __atomic_load_n(&e->tag, __ATOMIC_RELAXED)) {
                        info.refs += n;
                        info.shared++;
                }
        }
        *ret = info;
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Shared references: allocations that several clients hold. An allocation's
 * first reference is implicit in its record: its owner's, or the pool's
 * with KEEP. The first time anyone else needs to count on it (heap_ref, a
 * handle, a name) it gets a share entry, which counts references per slot
 * plus the pool's and the names'; the record's SHARED bit sends every later
 * free through the heap lock. The last reference to go frees the
 * allocation, whoever drops it; reclaim of a dead slot drops exactly its
 * references. (Plasma's object store counts per client the same way, and
 * for the same reason: a client that dies drops what it held.)
 *
 * Entries change under the heap lock inside a SHARE intent. Recovery does
 * not roll them forward step by step: it recounts what follows from the
 * truth (heap_share_fixup_locked), which is idempotent. A dead caller's own
 * reference may or may not have been taken — its slot is reclaimed anyway —
 * and nobody else's count moves.
 *
 * The owner's lock-free free of an unshared allocation (cache.c) is a
 * plain store. An entry made by another thread at that very moment can
 * outlive its allocation: it is "stale" (its record is gone, or not SHARED,
 * or the share map points elsewhere). That race is the caller's, and it
 * harms nobody: a stale entry leads nowhere (handles, names and frees check
 * liveness), heap_check passes over it, and it is collected when the table
 * runs short.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/share.h"

/* Also the daemon's test of what it may free: the record must lie in the heap. */
bool heap_share_live(heap *h, uint32_t idx) {
        if (idx >= heap_share_hwm(h))
                return false;
        const struct heap_share *e = heap_share_at(h, idx);
        uint64_t page = e->page, grown = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        if (!e->tag || page >= grown)
                return false;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        return heap_rec_live(rec) && HEAP_REC_NPAGES(rec) <= grown - page && (rec & HEAP_REC_SHARED) &&
               h->share_map[page] == idx + 1;
}

/* The entry of the SHARED record at page (in the grown heap). Called with heap lock held. */
int heap_share_find_locked(heap *h, uint64_t page, uint32_t *ret_idx) {
        uint32_t v = h->share_map[page];
        if (v == 0 || !heap_share_live(h, v - 1))
                return -EUCLEAN; /* a SHARED record without its entry: heap_check names it */
        *ret_idx = v - 1;
        return 0;
}

/* The counters follow the entries; stored so that statistics read them without the lock. */
static void counters_add(heap *h, int64_t entries, int64_t refs) {
        struct heap_hdr *hd = h->hdr;
        heap_store(&hd->shares_live, hd->shares_live + (uint64_t) entries);
        heap_store(&hd->refs_total, hd->refs_total + (uint64_t) refs);
}

static void entry_push_free(heap *h, uint32_t idx) {
        struct heap_share *e = heap_share_at(h, idx);
        e->tag = 0;
        e->next = h->hdr->share_free;
        h->hdr->share_free = idx + 1;
}

/* Gives entry idx back: its allocation is gone (or it never had one). Called with heap lock held. */
static void entry_release(heap *h, uint32_t idx) {
        struct heap_share *e = heap_share_at(h, idx);
        heap_intent_begin(h, HEAP_OP_SHARE, 0, 0, e->page, 0, idx, 0);
        counters_add(h, -1, -(int64_t) e->refs);
        entry_push_free(h, idx);
        heap_intent_end(h);
}

/* Rebuilds the free list from the entries: free ones, lowest first. Called with heap lock held. */
static void free_list_rebuild(heap *h) {
        uint32_t hwm = heap_share_hwm(h);
        h->hdr->share_hwm = hwm;
        h->hdr->share_free = 0;
        for (uint32_t i = hwm; i-- > 0;)
                if (!heap_share_at(h, i)->tag)
                        entry_push_free(h, i);
}

/* A free entry: from the free list, else a new one, else one whose
 * allocation is gone. Called with heap lock held. */
static int entry_alloc(heap *h, uint32_t *ret_idx) {
        struct heap_hdr *hd = h->hdr;
        for (unsigned attempt = 0; attempt < 2; attempt++) {
                uint32_t hwm = heap_share_hwm(h), v = hd->share_free;
                if (v && v <= hwm && !heap_share_at(h, v - 1)->tag) {
                        uint32_t next = heap_share_at(h, v - 1)->next;
                        hd->share_free = next <= hwm ? next : 0;
                        *ret_idx = v - 1;
                        return 0;
                }
                if (hwm < h->max_shares) {
                        hd->share_hwm = hwm + 1;
                        *ret_idx = hwm;
                        return 0;
                }
                /* Full, or the list was scribbled on: collect stale entries, start the list over. */
                for (uint32_t i = 0; i < hwm; i++)
                        if (heap_share_at(h, i)->tag && !heap_share_live(h, i))
                                entry_release(h, i);
                free_list_rebuild(h);
        }
        return -ENOSPC;
}

/*
 * The entry of the live allocation at page (record rec), made if it has
 * none: its implicit reference moves into it (the owner's, or the pool's
 * for KEEP and ownerless records). Called with heap lock held.
 */
int heap_share_get_locked(heap *h, uint32_t slot, uint64_t page, uint64_t rec, uint32_t *ret_idx) {
        if (rec & HEAP_REC_SHARED)
                return heap_share_find_locked(h, page, ret_idx);

        uint32_t idx;
        int r = entry_alloc(h, &idx);
        if (r < 0)
                return r;
        struct heap_share *e = heap_share_at(h, idx);
        uint32_t owner = HEAP_REC_OWNER(rec);

        heap_intent_begin(h, HEAP_OP_SHARE, slot, 0, page, 0, idx, 0);
        memset(e->slot_refs, 0, (size_t) h->max_slots * sizeof(uint16_t));
        e->page = (uint32_t) page;
        e->name_refs = 0;
        e->pool_refs = 0;
        if ((rec & HEAP_REC_KEEP) || owner == 0 || owner > h->max_slots)
                e->pool_refs = 1;
        else
                e->slot_refs[owner - 1] = 1;
        e->refs = 1;
        e->tag = ++h->hdr->share_tag;
        h->share_map[page] = idx + 1;
        heap_test_point(h, HEAP_OP_SHARE, HEAP_STAGE_MID);
        /* Last: from here on no lock-free path touches the record. */
        uint64_t expect = rec;
        if (!atomic_compare_exchange_strong(&h->records[page], &expect, rec | HEAP_REC_SHARED)) {
                /* Its owner freed it meanwhile, without the lock. */
                entry_push_free(h, idx);
                heap_intent_end(h);
                return -EINVAL;
        }
        counters_add(h, 1, 1);
        heap_intent_end(h);
        *ret_idx = idx;
        return 0;
}

/* One more reference for slot. Called with heap lock held. */
int heap_share_ref_locked(heap *h, uint32_t slot, uint32_t idx) {
        struct heap_share *e = heap_share_at(h, idx);
        if (e->slot_refs[slot] == HEAP_SHARE_SLOT_MAX || e->refs == UINT32_MAX)
                return -ETOOMANYREFS;
        heap_intent_begin(h, HEAP_OP_SHARE, slot, 0, e->page, 0, idx, 0);
        e->slot_refs[slot]++;
        heap_test_point(h, HEAP_OP_SHARE, HEAP_STAGE_MID);
        e->refs++;
        counters_add(h, 0, 1);
        heap_intent_end(h);
        return 0;
}

/*
 * The last reference went: frees the allocation, then the entry (in that
 * order: an entry whose record is gone is merely stale). Returns the pages
 * given back to the heap (none when they stay in their owner's page cache,
 * given back at its flush). Called with heap lock held.
 */
static int64_t release_allocation(heap *h, uint32_t slot, uint32_t cache, uint32_t idx) {
        uint64_t before = heap_load(&h->hdr->inuse_pages);
        if (heap_share_live(h, idx)) {
                uint64_t page = heap_share_at(h, idx)->page;
                uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
                /* As any free by another: an active thread cache's list allocation
                 * becomes its orphan, a page-cache one stays in its cache. */
                (void) heap_free_other_locked(h, slot, cache, page, rec);
        }
        int64_t freed = (int64_t) (before - heap_load(&h->hdr->inuse_pages));
        entry_release(h, idx);
        return freed;
}

/* Drops one reference of `who`; the last one frees the allocation. Called with heap lock held. */
int heap_share_drop_locked(heap *h, uint32_t slot, uint32_t cache, uint32_t idx, enum heap_holder who) {
        struct heap_share *e = heap_share_at(h, idx);
        if ((who == HEAP_HOLDER_SLOT && !e->slot_refs[slot]) || (who == HEAP_HOLDER_POOL && !e->pool_refs))
                return -ENOENT;
        if ((who == HEAP_HOLDER_NAME && !e->name_refs) || e->refs == 0)
                return -EUCLEAN;

        heap_intent_begin(h, HEAP_OP_SHARE, slot, cache, e->page, 0, idx, 0);
        switch (who) {
        case HEAP_HOLDER_SLOT:
                e->slot_refs[slot]--;
                break;
        case HEAP_HOLDER_POOL:
                e->pool_refs--;
                break;
        case HEAP_HOLDER_NAME:
                e->name_refs--;
                break;
        }
        heap_test_point(h, HEAP_OP_SHARE, HEAP_STAGE_MID);
        e->refs--;
        counters_add(h, 0, -1);
        heap_intent_end(h);

        if (e->refs == 0)
                release_allocation(h, slot, cache, idx);
        return 0;
}

/*
 * heap_free of a shared allocation: drops the caller's reference if it
 * holds one, else the pool's (KEEP). Anyone may free an allocation nobody
 * else references (as before sharing); one that others hold is theirs too.
 * Called with heap lock held.
 */
int heap_share_free_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec) {
        uint32_t idx;
        int r = heap_share_find_locked(h, page, &idx);
        if (r < 0)
                return r;
        struct heap_share *e = heap_share_at(h, idx);
        if (e->slot_refs[slot])
                return heap_share_drop_locked(h, slot, cache, idx, HEAP_HOLDER_SLOT);
        if (e->pool_refs)
                return heap_share_drop_locked(h, slot, cache, idx, HEAP_HOLDER_POOL);
        return -EBUSY;
}

/* The live allocation at off: its page and record. Called with heap lock held. */
static int live_record(heap *h, uint64_t off, uint64_t *ret_page, uint64_t *ret_rec) {
        uint64_t page;
        int r = heap_off_page(h, off, &page);
        if (r < 0)
                return r;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (!heap_rec_live(rec) || HEAP_REC_NPAGES(rec) > heap_nchunks(h) * HEAP_CHUNK_PAGES - page)
                return -EINVAL;
        *ret_page = page;
        *ret_rec = rec;
        return 0;
}

/* The entry of the live allocation at off, made if it has none. Called with heap lock held. */
static int share_of_locked(heap *h, uint32_t slot, uint64_t off, uint32_t *ret_idx) {
        uint64_t page, rec;
        int r = live_record(h, off, &page, &rec);
        if (r < 0)
                return r;
        return heap_share_get_locked(h, slot, page, rec, ret_idx);
}

int heap_ref(heap *h, uint32_t slot, uint64_t off) {
        uint32_t idx;

        if (slot >= h->max_slots)
                return -EINVAL;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = share_of_locked(h, slot, off, &idx);
        if (r >= 0)
                r = heap_share_ref_locked(h, slot, idx);
        heap_unlock(h);
        return r;
}

int heap_unref(heap *h, uint32_t slot, uint32_t cache, uint64_t off) {
        uint64_t page, rec;
        uint32_t idx;

        if (slot >= h->max_slots || cache >= HEAP_SLOT_CACHES)
                return -EINVAL;
        int r = heap_off_page(h, off, &page);
        if (r < 0)
                return r;
        /* The owner's only reference is its record's: dropping it is a free,
         * which may take the lock-free path back into the owner's caches. */
        rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (heap_rec_live(rec) && !(rec & (HEAP_REC_SHARED | HEAP_REC_KEEP)) && HEAP_REC_OWNER(rec) == slot + 1)
                return heap_free(h, slot, cache, off);

        r = heap_lock(h);
        if (r < 0)
                return r;
        r = live_record(h, off, &page, &rec);
        if (r >= 0 && !(rec & HEAP_REC_SHARED))
                r = (rec & HEAP_REC_KEEP) || HEAP_REC_OWNER(rec) != slot + 1
                            ? -ENOENT
                            : heap_free_other_locked(h, slot, cache, page, rec); /* maybe another thread's */
        else if (r >= 0) {
                r = heap_share_find_locked(h, page, &idx);
                if (r >= 0)
                        r = heap_share_drop_locked(h, slot, cache, idx, HEAP_HOLDER_SLOT);
        }
        heap_unlock(h);
        return r;
}

int heap_share_tag(heap *h, uint32_t slot, uint64_t off, uint64_t *ret_tag) {
        uint32_t idx;

        if (slot >= h->max_slots)
                return -EINVAL;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = share_of_locked(h, slot, off, &idx);
        if (r >= 0)
                *ret_tag = heap_share_at(h, idx)->tag;
        heap_unlock(h);
        return r;
}

int heap_ref_tagged(heap *h, uint32_t slot, uint64_t off, uint64_t tag) {
        uint64_t page, rec;
        uint32_t idx;

        if (slot >= h->max_slots)
                return -EINVAL;
        int r = heap_off_page(h, off, &page);
        if (r < 0)
                return r;
        if (tag == 0)
                return -ESTALE;
        r = heap_lock(h);
        if (r < 0)
                return r;
        /* Freed, allocated again, shared again: each step changes what we compare. */
        if (live_record(h, off, &page, &rec) < 0 || !(rec & HEAP_REC_SHARED) ||
            heap_share_find_locked(h, page, &idx) < 0 || heap_share_at(h, idx)->tag != tag)
                r = -ESTALE;
        else
                r = heap_share_ref_locked(h, slot, idx);
        heap_unlock(h);
        return r;
}

/* How many entries reclaim looks at per lock hold. */
#define RECLAIM_BATCH 64u

int64_t heap_share_reclaim_slot(heap *h, uint32_t slot) {
        int64_t freed = 0;

        if (slot >= h->max_slots)
                return -EINVAL;
        for (uint32_t i = 0;;) {
                int r = heap_lock(h);
                if (r < 0)
                        return r;
                uint32_t hwm = heap_share_hwm(h);
                if (i >= hwm) {
                        heap_unlock(h);
                        return freed;
                }
                for (uint32_t stop = MIN(hwm, i + RECLAIM_BATCH); i < stop; i++) {
                        struct heap_share *e = heap_share_at(h, i);
                        uint32_t n = e->slot_refs[slot];
                        if (!e->tag || !n)
                                continue;
                        heap_intent_begin(h, HEAP_OP_SHARE, slot, 0, e->page, 0, i, 0);
                        e->slot_refs[slot] = 0;
                        heap_test_point(h, HEAP_OP_SHARE, HEAP_STAGE_MID);
                        n = MIN(n, e->refs);
                        e->refs -= n;
                        counters_add(h, 0, -(int64_t) n);
                        heap_intent_end(h);
                        if (e->refs == 0)
                                freed += release_allocation(h, slot, 0, i);
                }
                heap_unlock(h);
        }
}

/*
 * After a death (EOWNERDEAD): entries whose allocation is gone are freed,
 * counts of slots that are not live are dropped, every entry's references
 * are recounted from its holders (names counted from the directory), and an
 * entry nobody holds any more frees its allocation. Then the free list and
 * the counters are rebuilt. Called with heap lock held, after the intent
 * was rolled forward and before summaries and statistics are rebuilt.
 */
void heap_share_fixup_locked(heap *h) {
        struct heap_hdr *hd = h->hdr;
        uint32_t hwm = heap_share_hwm(h);
        hd->share_hwm = hwm;

        for (uint32_t i = 0; i < hwm; i++) {
                struct heap_share *e = heap_share_at(h, i);
                if (!e->tag)
                        continue;
                if (!heap_share_live(h, i))
                        e->tag = 0;
                else
                        e->name_refs = 0;
        }
        heap_names_fixup_locked(h);

        uint64_t live = 0, refs = 0;
        for (uint32_t i = 0; i < hwm; i++) {
                struct heap_share *e = heap_share_at(h, i);
                if (!e->tag)
                        continue;
                if (e->pool_refs > 1)
                        e->pool_refs = 1;
                uint64_t sum = (uint64_t) e->pool_refs + e->name_refs;
                for (uint32_t s = 0; s < h->max_slots; s++) {
                        if (e->slot_refs[s] && atomic_load(&h->slots[s].state) != HEAP_SLOT_LIVE)
                                e->slot_refs[s] = 0;
                        sum += e->slot_refs[s];
                }
                e->refs = (uint32_t) MIN(sum, (uint64_t) UINT32_MAX);
                if (e->refs == 0) {
                        uint64_t page = e->page;
                        uint64_t rec = atomic_load(&h->records[page]);
                        (void) heap_free_other_locked(h, 0, 0, page, rec);
                        e->tag = 0;
                        continue;
                }
                live++;
                refs += e->refs;
        }
        free_list_rebuild(h);
        heap_store(&hd->shares_live, live);
        heap_store(&hd->refs_total, refs);
}

/*
 * Entries, names and counters (heap_check). SHARED records are checked
 * against their entries by heap_check's record walk. Stale entries are the
 * owner's own race (see the top of this file): counted, not judged.
 * Called with heap lock held.
 */
int heap_share_check_locked(heap *h, char *buf, size_t len) {
        struct heap_hdr *hd = h->hdr;
        if (hd->share_hwm > h->max_shares)
                return heap_fail(buf, len, "share entries in use %u > %u", hd->share_hwm, h->max_shares);
        uint32_t hwm = hd->share_hwm;

        _cleanup_free_ uint32_t *names = calloc(hwm ? hwm : 1, sizeof(uint32_t));
        if (!names)
                return -ENOMEM;
        int r = heap_names_check_locked(h, names, buf, len);
        if (r < 0)
                return r;

        uint64_t entries = 0, refs = 0;
        for (uint32_t i = 0; i < hwm; i++) {
                const struct heap_share *e = heap_share_at(h, i);
                if (!e->tag)
                        continue;
                entries++;
                refs += e->refs;
                if (e->tag > hd->share_tag)
                        return heap_fail(buf, len, "share entry %u: tag %" PRIu64 " not handed out yet", i, e->tag);
                if (!heap_share_live(h, i))
                        continue;
                if (e->pool_refs > 1)
                        return heap_fail(buf, len, "share entry %u: %u references of the pool", i, e->pool_refs);
                if (e->name_refs != names[i])
                        return heap_fail(buf, len, "share entry %u: %u name references, %u names", i, e->name_refs, names[i]);
                uint64_t sum = (uint64_t) e->pool_refs + e->name_refs;
                for (uint32_t s = 0; s < h->max_slots; s++) {
                        if (e->slot_refs[s] && atomic_load(&h->slots[s].state) != HEAP_SLOT_LIVE)
                                return heap_fail(buf, len, "share entry %u: references of slot %u, which is not live", i, s);
                        sum += e->slot_refs[s];
                }
                if (sum != e->refs || sum == 0)
                        return heap_fail(buf, len, "share entry %u (page %u): %u references, its holders have %" PRIu64,
                                    i, e->page, e->refs, sum);
        }
        if (heap_load(&hd->shares_live) != entries)
                return heap_fail(buf, len, "shared allocations %" PRIu64 " != %" PRIu64 " entries in use",
                            heap_load(&hd->shares_live), entries);
        if (heap_load(&hd->refs_total) != refs)
                return heap_fail(buf, len, "references %" PRIu64 " != %" PRIu64 " counted in the entries",
                            heap_load(&hd->refs_total), refs);
        return 0;
}

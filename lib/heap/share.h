/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared references and names inside lib/heap/ (share.c, names.c). */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

static inline struct heap_share *heap_share_at(heap *h, uint32_t i) {
        return (struct heap_share *) (h->shares + (uint64_t) i * h->share_stride);
}

/* Entries in use lie below this; bounded: the header is not trusted. */
static inline uint32_t heap_share_hwm(heap *h) {
        uint32_t n = h->hdr->share_hwm;
        return n > h->max_shares ? h->max_shares : n;
}

/* A record of a live allocation: a start, not a medium cache's CACHED one. */
static inline bool heap_rec_live(uint64_t rec) {
        return HEAP_REC_NPAGES(rec) != 0 && !(rec & HEAP_REC_CACHED);
}

/* Who drops a reference. */
enum heap_holder {
        HEAP_HOLDER_SLOT,
        HEAP_HOLDER_POOL,
        HEAP_HOLDER_NAME,
};

/* share.c. Called with heap lock held. */
bool heap_share_live(heap *h, uint32_t idx);
int heap_share_find_locked(heap *h, uint64_t page, uint32_t *ret_idx);
int heap_share_get_locked(heap *h, uint32_t slot, uint64_t page, uint64_t rec, uint32_t *ret_idx);
int heap_share_ref_locked(heap *h, uint32_t slot, uint32_t idx);
int heap_share_drop_locked(heap *h, uint32_t slot, uint32_t cache, uint32_t idx, enum heap_holder who);
/* A free (heap_free) of the SHARED record rec at page. */
int heap_share_free_locked(heap *h, uint32_t slot, uint32_t cache, uint64_t page, uint64_t rec);
void heap_share_fixup_locked(heap *h);
int heap_share_check_locked(heap *h, char *buf, size_t len);

/* Drops every reference of slot, one batch of entries per lock hold (reclaim).
 * Returns the pages freed. */
int64_t heap_share_reclaim_slot(heap *h, uint32_t slot);

/* names.c. Called with heap lock held. */
/* Unbinds names that lead nowhere, counts each live entry's names into its
 * name_refs (zeroed by the caller) and rebuilds the index and free list. */
void heap_names_fixup_locked(heap *h);
/* Adds each bound name to counts[entry]; verifies names and index. */
int heap_names_check_locked(heap *h, uint32_t *counts, char *buf, size_t len);

/* The page of off if it lies in the grown heap, page-aligned. */
static inline int heap_off_page(heap *h, uint64_t off, uint64_t *ret_page) {
        if (off & (h->page_size - 1))
                return -EINVAL;
        uint64_t page = off >> h->page_shift;
        if (page >= heap_nchunks(h) * HEAP_CHUNK_PAGES)
                return -EINVAL;
        *ret_page = page;
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Statistics: kept in pages under the heap lock, stored atomically so that
 * anyone may read them without it (each field consistent on its own).
 */

#include <errno.h>

#include "heap/layout.h"

/* Called with heap lock held. */
void heap_stats_inuse_add(heap *h, int64_t pages) {
        struct heap_hdr *hd = h->hdr;
        uint64_t v = hd->inuse_pages + (uint64_t) pages;
        heap_store(&hd->inuse_pages, v);
        if (v > hd->peak_inuse_pages)
                heap_store(&hd->peak_inuse_pages, v);
}

/* Called with heap lock held. */
void heap_stats_released_add(heap *h, int64_t pages) {
        heap_store(&h->hdr->released_pages, h->hdr->released_pages + (uint64_t) pages);
}

/* Called with heap lock held. Most allocations reuse nothing released: they
 * leave the word's line (the sharing counters') alone. */
void heap_stats_reused_add(heap *h, int64_t pages) {
        if (pages)
                heap_store(&h->hdr->released_reused, h->hdr->released_reused + (uint64_t) pages);
}

/* Ports heapRetained: what the heap may have backed. */
uint64_t heap_retained(heap *h) {
        uint64_t sys = heap_nchunks(h) * h->chunk_bytes;
        uint64_t rel = heap_load(&h->hdr->released_pages) << h->page_shift;
        return rel > sys ? 0 : sys - rel;
}

void heap_set_goal(heap *h, uint64_t retained_goal) {
        atomic_store_explicit(&h->hdr->retained_goal, retained_goal, memory_order_relaxed);
}

void heap_set_memory_limit(heap *h, uint64_t limit) {
        atomic_store_explicit(&h->hdr->memory_limit, limit, memory_order_relaxed);
}

int heap_get_stats(heap *h, struct heap_stats *ret) {
        struct heap_hdr *hd = h->hdr;
        unsigned sh = h->page_shift;
        uint64_t clients = 0;

        for (uint32_t s = 1; s < h->max_slots; s++)
                if (atomic_load_explicit(&h->slots[s].state, memory_order_relaxed) == HEAP_SLOT_LIVE)
                        clients++;
        *ret = (struct heap_stats) {
                .capacity = h->capacity,
                .page_size = h->page_size,
                .heap_sys = heap_nchunks(h) * h->chunk_bytes,
                .inuse = heap_load(&hd->inuse_pages) << sh,
                .released = heap_load(&hd->released_pages) << sh,
                .retained = heap_retained(h),
                .retained_goal = atomic_load_explicit(&hd->retained_goal, memory_order_relaxed),
                .memory_limit = atomic_load_explicit(&hd->memory_limit, memory_order_relaxed),
                .peak_inuse = heap_load(&hd->peak_inuse_pages) << sh,
                .gen = heap_load(&hd->gen),
                .gen_released = atomic_load_explicit(&hd->gen_released, memory_order_relaxed),
                .released_total = heap_load(&hd->released_total),
                .growth_scavenged = heap_load(&hd->growth_scavenged),
                .released_reused = heap_pages_to_bytes_sat(heap_load(&hd->released_reused), sh),
                .clients = clients,
                .recoveries = heap_load(&hd->recoveries),
                .shared = heap_load(&hd->shares_live),
                .refs = heap_load(&hd->refs_total),
                .names = heap_load(&hd->names_bound),
                .max_shares = h->max_shares,
                .max_names = h->max_names,
        };
        return heap_checked(h);
}

/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The page allocator over the chunks and the radix tree of summaries
 * (Go's pageAlloc: mpagealloc.go). Page indices, not bytes. Every function
 * here is called with the heap lock held, except heap_summary_merge.
 */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

#define HEAP_PAGE_NONE UINT64_MAX

struct heap_sum heap_summary_merge(const struct heap_sum *sums, unsigned n,
                                   unsigned log_max_pages_per_sum);
void heap_summary_update(heap *h, uint64_t base, uint64_t npages, bool contig, bool alloc);
void heap_summary_rebuild(heap *h);
int heap_pa_find(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_search);
int heap_pa_alloc(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_scav);
bool heap_pa_range_backed(heap *h, uint64_t page, uint64_t npages);
/* Whether [page, page+npages) lies in the grown heap and is free. */
bool heap_pa_range_free(heap *h, uint64_t page, uint64_t npages);
int heap_pa_alloc_find(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_search);
uint64_t heap_pa_find_free_aligned(heap *h, uint64_t page, uint64_t npages, uint64_t scan_chunks);
uint64_t heap_pa_alloc_commit(heap *h, uint64_t page, uint64_t npages, uint64_t new_search);
uint64_t heap_pa_alloc_range(heap *h, uint64_t base, uint64_t npages);
void heap_pa_free(heap *h, uint64_t base, uint64_t npages, bool scavenged);
void heap_pa_grow(heap *h, uint64_t new_nchunks);

static inline struct heap_chunk *heap_chunk_of(heap *h, uint64_t ci) {
        return &h->chunks[ci];
}

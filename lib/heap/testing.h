/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Test-only helpers (Go's export_test.go): a heap over fresh memfds, and
 * setters for bitmaps so that tables can describe chunks directly. Not part
 * of heap.h; nothing but tests calls these.
 */

#include <stdint.h>

#include "heap/layout.h"

struct heap_test {
        heap *h;
        void *meta, *base;
        uint64_t meta_size, capacity;
        int meta_fd, heap_fd;
};

/* A heap over two memfds (mapped MAP_SHARED: survives fork). */
int heap_test_new(const struct heap_params *p, struct heap_test *ret);
void heap_test_free(struct heap_test *t);

/* Grows the heap to nchunks (free, scavenged). */
int heap_test_grow(heap *h, uint64_t nchunks);
/*
 * Sets chunk ci's bitmaps to alloc/scav (HEAP_CHUNK_WORDS words each, NULL
 * = all zero), fixing summaries and statistics; the allocated pages are
 * held by a record owned by nobody (owner 0) per run, so heap_check holds.
 */
int heap_test_set_chunk(heap *h, uint64_t ci, const uint64_t *alloc, const uint64_t *scav);
/* Reads chunk ci's bitmaps. */
void heap_test_get_chunk(heap *h, uint64_t ci, uint64_t *alloc, uint64_t *scav);
struct heap_hdr *heap_test_hdr(heap *h);

/*
 * Go's NewPageAlloc over sparse chunk indices, mapped onto our contiguous
 * heap: the listed chunks (Go's offsets from BaseChunkIdx, ascending) keep
 * their order; consecutive ones stay adjacent, and every gap between two
 * becomes one fully allocated separator chunk, so that no free run spans
 * a gap (as none can span unmapped memory in Go). map[k] receives our
 * chunk index of idx[k]. Bitmaps are laid as Go does: scavenged ranges,
 * then allocated ranges (which clear scavenged bits). No records are
 * written: these heaps are for page-allocator-level tests (heap_test_pa_*),
 * and heap_check does not hold on them; heap_test_check_summaries does.
 * A generation is started, as NewPageAlloc does, and release is a no-op
 * (Go's p.test).
 */
struct heap_bit_range {
        uint32_t i, n;
};
#define HEAP_TEST_RANGES 4u
#define HEAP_TEST_CHUNKS 40u
typedef struct heap_bit_range heap_test_ranges[HEAP_TEST_RANGES];

int heap_test_new_sparse(const struct heap_params *p, unsigned n, const uint64_t *idx,
                         const heap_test_ranges *alloc, const heap_test_ranges *scav, struct heap_test *ret,
                         uint64_t *map);
/* Go's checkPageAlloc: the bitmaps of every chunk as alloc/scav describe
 * them (separators fully allocated), and summaries consistent. Returns 0
 * or -EUCLEAN with the first difference in buf. */
int heap_test_expect_sparse(heap *h, unsigned n, const uint64_t *map, const heap_test_ranges *alloc,
                            const heap_test_ranges *scav, char *buf, size_t len);
/* Our page of Go's PageBase(BaseChunkIdx + off, page), or UINT64_MAX if off is not listed. */
uint64_t heap_test_page(unsigned n, const uint64_t *idx, const uint64_t *map, uint64_t off, uint64_t page);
/* pageAlloc.alloc / free without growth, records or statistics. alloc returns 1 and the page, or 0. */
int heap_test_pa_alloc(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_scav);
void heap_test_pa_free(heap *h, uint64_t page, uint64_t npages);
int heap_test_check_summaries(heap *h, char *buf, size_t len);

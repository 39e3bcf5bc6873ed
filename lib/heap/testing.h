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
/* Makes the scav state as after a start of generation with no history (all of the heap). */
struct heap_hdr *heap_test_hdr(heap *h);

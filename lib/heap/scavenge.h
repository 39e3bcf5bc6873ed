/* SPDX-License-Identifier: MIT */
#pragma once

/* The scavenger's internals, exposed for tests (Go's export_test.go). */

#include <stdbool.h>
#include <stdint.h>

#include "heap/layout.h"

uint64_t heap_fill_aligned(uint64_t x, unsigned m);
bool heap_has_scavenge_candidate(const struct heap_chunk *c, uint64_t min);
/* Returns the size of the candidate (0: none) and its first page in *ret_start. */
unsigned heap_find_scavenge_candidate(const struct heap_chunk *c, unsigned search_idx, uint64_t min,
                                      uint64_t max, uint64_t pages_per_huge, unsigned *ret_start);

/* Called with heap lock held: frees [base, base+n) after release, clears the slot's intent. */
void heap_scav_free_locked(heap *h, uint32_t slot, uint32_t k, uint64_t base, uint64_t n, bool released);

int64_t heap_scavenge_whole(heap *h, uint32_t slot, uint64_t nbytes);

/* Go's scavengeReserve / scavengeUnreserve over byte ranges. */
int heap_scavenge_reserve(heap *h, uint64_t *ret_base, uint64_t *ret_limit, uint64_t *ret_gen);
void heap_scavenge_unreserve(heap *h, uint64_t base, uint64_t limit, uint64_t gen);

/* Go's addrRanges operations on the scav state. Called with scav lock held. */
void heap_scav_ranges_add(struct heap_hdr *hd, uint64_t base, uint64_t limit);
void heap_scav_ranges_remove_last(struct heap_hdr *hd, uint64_t nbytes, uint64_t *ret_base,
                                  uint64_t *ret_limit);
void heap_scav_ranges_remove_greater_equal(struct heap_hdr *hd, uint64_t addr);

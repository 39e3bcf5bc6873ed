/* SPDX-License-Identifier: MIT */
/*
 * Ports mpagealloc.go: the radix tree of summaries over the chunks' bitmaps
 * and the first-fit search through it. Our tree differs from Go's only in
 * shape: the root has at most HEAP_ROOT_MAX entries (Go's has 2^14), every
 * level below it has 8 children per entry, and the leaf level has one entry
 * per chunk. Entries of chunks not grown are zero (fully allocated), so the
 * search never leaves the grown heap.
 */

#include <assert.h>
#include <errno.h>

#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "macro.h"

static void mark_corrupt(heap *h, const char *why) {
        heap_mark_corrupt(h);
        (void) why;
}

/*
 * Ports mergeSummaries: the summary of n consecutive entries that each
 * cover 2^log_max_pages_per_sum pages.
 */
static inline struct heap_sum merge(const struct heap_sum *sums, unsigned n, unsigned log_max_pages_per_sum) {
        uint64_t full = UINT64_C(1) << log_max_pages_per_sum;
        uint64_t start = sums[0].start, max = sums[0].max, end = sums[0].end;
        for (unsigned i = 1; i < n; i++) {
                uint64_t si = sums[i].start, mi = sums[i].max, ei = sums[i].end;
                /* The free run at the start continues only through wholly free entries. */
                if (start == i * full)
                        start += si;
                /* A run may join the end of what came before and the start of this one. */
                if (end + si > max)
                        max = end + si;
                if (mi > max)
                        max = mi;
                end = ei == full ? end + full : ei;
        }
        return heap_sum_make((uint32_t) start, (uint32_t) max, (uint32_t) end);
}

struct heap_sum heap_summary_merge(const struct heap_sum *sums, unsigned n,
                                   unsigned log_max_pages_per_sum) {
        return merge(sums, n, log_max_pages_per_sum);
}

static uint64_t level_entries_per_block(heap *h, unsigned l) {
        return l == 0 ? h->root_entries : (1u << HEAP_LEVEL_BITS);
}

/*
 * Ports pageAlloc.update: recomputes the leaf summaries of the chunks that
 * [base, base+npages) touches, then the levels above as far as something
 * changed. contig: the pages between the first and last chunk changed as a
 * whole, to allocated (alloc) or free.
 * Called with heap lock held.
 */
void heap_summary_update(heap *h, uint64_t base, uint64_t npages, bool contig, bool alloc) {
        uint64_t limit = base + npages - 1;
        uint64_t sc = base / HEAP_CHUNK_PAGES, ec = limit / HEAP_CHUNK_PAGES;
        struct heap_sum *leaf = heap_leaf(h);

        if (sc == ec) {
                /* Summarized in place: a struct copy of the fresh result would stall on store forwarding. */
                struct heap_sum old = leaf[sc];
                if (contig)
                        heap_palloc_summarize_after(h->chunks[sc].alloc, &leaf[sc], base % HEAP_CHUNK_PAGES,
                                                    (unsigned) npages, alloc);
                else
                        heap_palloc_summarize_into(h->chunks[sc].alloc, &leaf[sc]);
                if (heap_sum_eq(old, leaf[sc]))
                        return;
        } else if (contig) {
                heap_palloc_summarize_into(h->chunks[sc].alloc, &leaf[sc]);
                struct heap_sum whole = alloc ? heap_sum_make(0, 0, 0)
                                              : heap_sum_make(HEAP_CHUNK_PAGES, HEAP_CHUNK_PAGES,
                                                              HEAP_CHUNK_PAGES);
                for (uint64_t c = sc + 1; c < ec; c++)
                        leaf[c] = whole;
                heap_palloc_summarize_into(h->chunks[ec].alloc, &leaf[ec]);
        } else {
                for (uint64_t c = sc; c <= ec; c++)
                        heap_palloc_summarize_into(h->chunks[c].alloc, &leaf[c]);
        }

        bool changed = true;
        for (int l = (int) h->nlevels - 2; l >= 0 && changed; l--) {
                changed = false;
                unsigned log_child = heap_level_log_pages(h, (unsigned) l + 1);
                unsigned shift = heap_level_log_pages(h, (unsigned) l);
                uint64_t lo = base >> shift, hi = (limit >> shift) + 1;
                for (uint64_t i = lo; i < hi; i++) {
                        const struct heap_sum *children = &h->levels[l + 1][i << HEAP_LEVEL_BITS];
                        struct heap_sum sum = merge(children, 1u << HEAP_LEVEL_BITS, log_child);
                        if (!heap_sum_eq(h->levels[l][i], sum)) {
                                changed = true;
                                h->levels[l][i] = sum;
                        }
                }
        }
}

/* Recomputes every level from the bitmaps of the grown chunks (recovery). Called with heap lock held. */
void heap_summary_rebuild(heap *h) {
        uint64_t n = heap_nchunks(h);
        struct heap_sum *leaf = heap_leaf(h);
        for (uint64_t c = 0; c < h->level_entries[h->nlevels - 1]; c++)
                leaf[c] = c < n ? heap_palloc_summarize(h->chunks[c].alloc) : heap_sum_make(0, 0, 0);
        for (int l = (int) h->nlevels - 2; l >= 0; l--) {
                unsigned log_child = heap_level_log_pages(h, (unsigned) l + 1);
                for (uint64_t i = 0; i < h->level_entries[l]; i++)
                        h->levels[l][i] = heap_summary_merge(&h->levels[l + 1][i << HEAP_LEVEL_BITS],
                                                             1u << HEAP_LEVEL_BITS, log_child);
        }
}

struct first_free {
        uint64_t base, bound;
};

/*
 * Go's foundFree: narrows the range that must hold the first free page
 * (the next search address). A range that only partly overlaps it means
 * the summaries lie.
 */
static int found_free(struct first_free *ff, uint64_t addr, uint64_t size) {
        uint64_t last = addr + size - 1;
        if (ff->base <= addr && last <= ff->bound) {
                ff->base = addr;
                ff->bound = last;
        } else if (!(last < ff->base || ff->bound < addr))
                return -EUCLEAN;
        return 0;
}

/*
 * Ports pageAlloc.find: walks down the tree choosing, at each level, the
 * first entry whose runs can hold npages, or a run spanning the boundary of
 * consecutive entries, which then decides the address at that level. Also
 * returns the lowest page that may still be free (the new search address).
 * Called with heap lock held.
 */
int heap_pa_find(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_search) {
        struct first_free ff = { 0, HEAP_PAGE_NONE };
        uint64_t search = heap_load(&h->hdr->search_page);
        uint64_t i = 0;
        int r;

        for (unsigned l = 0; l < h->nlevels; l++) {
                uint64_t epb = level_entries_per_block(h, l);
                unsigned log_max = heap_level_log_pages(h, l);
                uint64_t full = UINT64_C(1) << log_max;
                if (l > 0)
                        i <<= HEAP_LEVEL_BITS;
                const struct heap_sum *entries = &h->levels[l][i];

                /* Entries below the search address are allocated: skip them. */
                uint64_t j0 = 0;
                if (search != HEAP_PAGE_NONE) {
                        uint64_t sidx = search >> log_max;
                        if (sidx >= i && sidx < i + epb)
                                j0 = sidx - i;
                }

                uint64_t base = 0, size = 0;
                bool descend = false;
                for (uint64_t j = j0; j < epb; j++) {
                        struct heap_sum sum = entries[j];
                        if (heap_sum_is_zero(sum)) {
                                size = 0;
                                continue;
                        }
                        r = found_free(&ff, (i + j) << log_max, full);
                        if (r < 0)
                                goto bad;
                        uint64_t s = sum.start;
                        if (size + s >= npages) {
                                /* A run ending in this entry's start is big enough. */
                                if (size == 0)
                                        base = j << log_max;
                                size += s;
                                break;
                        }
                        if (sum.max >= npages) {
                                /* The run lies inside this entry: go down. */
                                i += j;
                                descend = true;
                                break;
                        }
                        if (size == 0 || s < full) {
                                size = sum.end;
                                base = ((j + 1) << log_max) - size;
                                continue;
                        }
                        size += full;
                }
                if (descend)
                        continue;
                if (size >= npages) {
                        *ret_page = (i << log_max) + base;
                        *ret_search = ff.base;
                        return 1;
                }
                if (l == 0) {
                        *ret_search = HEAP_PAGE_NONE;
                        return 0;
                }
                goto bad;
        }

        {
                uint64_t ci = i;
                if (ci >= heap_nchunks(h))
                        goto bad;
                unsigned sidx;
                unsigned j = heap_palloc_find(h->chunks[ci].alloc, npages, 0, &sidx);
                if (j == HEAP_FIND_NONE || sidx == HEAP_FIND_NONE)
                        goto bad;
                uint64_t cbase = ci * HEAP_CHUNK_PAGES;
                r = found_free(&ff, cbase + sidx, HEAP_CHUNK_PAGES - sidx);
                if (r < 0)
                        goto bad;
                *ret_page = cbase + j;
                *ret_search = ff.base;
                return 1;
        }
bad:
        mark_corrupt(h, "bad summary data");
        return -EUCLEAN;
}

/*
 * Ports pageAlloc.allocRange: marks [base, base+npages) allocated and not
 * scavenged; returns how many pages were scavenged.
 * Called with heap lock held.
 */
uint64_t heap_pa_alloc_range(heap *h, uint64_t base, uint64_t npages) {
        uint64_t limit = base + npages - 1;
        uint64_t sc = base / HEAP_CHUNK_PAGES, ec = limit / HEAP_CHUNK_PAGES;
        unsigned si = base % HEAP_CHUNK_PAGES, ei = limit % HEAP_CHUNK_PAGES;
        uint64_t scav = 0;

        if (sc == ec)
                scav += heap_chunk_alloc_range(&h->chunks[sc], si, ei + 1 - si);
        else {
                scav += heap_chunk_alloc_range(&h->chunks[sc], si, HEAP_CHUNK_PAGES - si);
                for (uint64_t c = sc + 1; c < ec; c++)
                        scav += heap_chunk_alloc_range(&h->chunks[c], 0, HEAP_CHUNK_PAGES);
                scav += heap_chunk_alloc_range(&h->chunks[ec], 0, ei + 1);
        }
        heap_summary_update(h, base, npages, true, true);
        return scav;
}

/* Whether no bit of [page, page+npages), in the grown heap, is set in the chunks' alloc (or scav) bitmaps. */
static bool bits_clear(heap *h, uint64_t page, uint64_t npages, bool scav) {
        while (npages > 0) {
                unsigned i = page % HEAP_CHUNK_PAGES;
                unsigned k = npages < HEAP_CHUNK_PAGES - i ? (unsigned) npages : HEAP_CHUNK_PAGES - i;
                const struct heap_chunk *c = &h->chunks[page / HEAP_CHUNK_PAGES];
                if (heap_bits_popcnt_range(scav ? c->scav : c->alloc, i, k))
                        return false;
                page += k;
                npages -= k;
        }
        return true;
}

/* Whether [page, page+npages) lies in the grown heap and is free: summaries are shared memory. */
bool heap_pa_range_free(heap *h, uint64_t page, uint64_t npages) {
        if (page + npages > heap_nchunks(h) * HEAP_CHUNK_PAGES || page + npages < page)
                return false;
        return bits_clear(h, page, npages, false);
}

/*
 * The first wholly free run of npages pages aligned to npages (a divisor of
 * a chunk, at least a bitmap word: a page-cache block, a chunk) in the
 * chunks from page's on, at most scan_chunks of them, or HEAP_PAGE_NONE.
 * The summaries are shared memory: they only skip chunks, the bitmaps say.
 * Not in Go (mcache.c and cache.c keep clients apart with it). Called with
 * heap lock held.
 */
uint64_t heap_pa_find_free_aligned(heap *h, uint64_t page, uint64_t npages, uint64_t scan_chunks) {
        uint64_t first = page / HEAP_CHUNK_PAGES, end = heap_nchunks(h);
        unsigned words = (unsigned) (npages / 64);

        assert(npages >= 64 && npages <= HEAP_CHUNK_PAGES && HEAP_CHUNK_PAGES % npages == 0);
        if (first >= end)
                return HEAP_PAGE_NONE;
        end = MIN(end, first + scan_chunks);
        for (uint64_t ci = first; ci < end; ci++) {
                if (heap_leaf(h)[ci].max < npages)
                        continue;
                const uint64_t *alloc = h->chunks[ci].alloc;
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w += words) {
                        unsigned i = 0;
                        while (i < words && !alloc[w + i])
                                i++;
                        if (i == words)
                                return ci * HEAP_CHUNK_PAGES + (uint64_t) w * 64;
                }
        }
        return HEAP_PAGE_NONE;
}

/* Whether no page of [page, page+npages), in the grown heap, is released. Called with heap lock held. */
bool heap_pa_range_backed(heap *h, uint64_t page, uint64_t npages) {
        return bits_clear(h, page, npages, true);
}

/*
 * Ports the search half of pageAlloc.alloc: first the chunk of the search
 * address (most small allocations are satisfied there), then the tree.
 * Returns 1 with the first page and the new search address, 0 when nothing
 * fits. Split from the commit so that callers can publish an intent between.
 * Called with heap lock held.
 */
int heap_pa_alloc_find(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_search) {
        uint64_t search = heap_load(&h->hdr->search_page);
        uint64_t nchunks = heap_nchunks(h);
        int r;

        if (search == HEAP_PAGE_NONE || search / HEAP_CHUNK_PAGES >= nchunks)
                return 0;

        unsigned spi = search % HEAP_CHUNK_PAGES;
        uint64_t ci = search / HEAP_CHUNK_PAGES;
        if (HEAP_CHUNK_PAGES - spi >= npages && heap_leaf(h)[ci].max >= npages) {
                unsigned sidx;
                unsigned j = heap_palloc_find(h->chunks[ci].alloc, npages, spi, &sidx);
                if (j != HEAP_FIND_NONE) {
                        *ret_page = ci * HEAP_CHUNK_PAGES + j;
                        *ret_search = ci * HEAP_CHUNK_PAGES + sidx;
                        return 1;
                }
                /* The run lies below the search address; Go throws, we search the tree. */
        }
        r = heap_pa_find(h, npages, ret_page, ret_search);
        if (r == 0 && npages == 1)
                heap_store(&h->hdr->search_page, HEAP_PAGE_NONE);
        if (r > 0 && !heap_pa_range_free(h, *ret_page, npages)) {
                mark_corrupt(h, "summaries point at allocated pages");
                return -EUCLEAN;
        }
        return r;
}

/* The commit half of pageAlloc.alloc. Returns the pages that were scavenged. Called with heap lock held. */
uint64_t heap_pa_alloc_commit(heap *h, uint64_t page, uint64_t npages, uint64_t new_search) {
        uint64_t scav = heap_pa_alloc_range(h, page, npages);
        if (heap_load(&h->hdr->search_page) < new_search)
                heap_store(&h->hdr->search_page, new_search);
        return scav;
}

/* Ports pageAlloc.alloc (tests and simple callers). Called with heap lock held. */
int heap_pa_alloc(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_scav) {
        uint64_t page, search;
        int r = heap_pa_alloc_find(h, npages, &page, &search);
        if (r <= 0)
                return r;
        *ret_scav = heap_pa_alloc_commit(h, page, npages, search);
        *ret_page = page;
        return 1;
}

/*
 * Ports pageAlloc.free. Frees raise freeHWM (the scavenger's cue that
 * something it already searched is free again) unless the pages come back
 * scavenged, from the scavenger itself.
 * Called with heap lock held.
 */
void heap_pa_free(heap *h, uint64_t base, uint64_t npages, bool scavenged) {
        struct heap_hdr *hdr = h->hdr;
        uint64_t search = heap_load(&hdr->search_page);
        if (search == HEAP_PAGE_NONE || base < search)
                heap_store(&hdr->search_page, base);
        uint64_t limit = base + npages - 1;
        if (!scavenged) {
                uint64_t off_limit = ((limit + 1) << h->page_shift) - 1;
                if (hdr->free_hwm < off_limit)
                        hdr->free_hwm = off_limit;
        }
        uint64_t sc = base / HEAP_CHUNK_PAGES, ec = limit / HEAP_CHUNK_PAGES;
        unsigned si = base % HEAP_CHUNK_PAGES, ei = limit % HEAP_CHUNK_PAGES;
        if (sc == ec)
                heap_chunk_free_range(&h->chunks[sc], si, ei + 1 - si);
        else {
                heap_chunk_free_range(&h->chunks[sc], si, HEAP_CHUNK_PAGES - si);
                for (uint64_t c = sc + 1; c < ec; c++)
                        heap_chunk_free_range(&h->chunks[c], 0, HEAP_CHUNK_PAGES);
                heap_chunk_free_range(&h->chunks[ec], 0, ei + 1);
        }
        heap_summary_update(h, base, npages, true, false);
}

/*
 * Ports pageAlloc.grow: chunks [nchunks, new_nchunks) join the heap free
 * and scavenged (the memfd has never backed them).
 * Called with heap lock held.
 */
void heap_pa_grow(heap *h, uint64_t new_nchunks) {
        uint64_t old = heap_nchunks(h);
        if (new_nchunks <= old)
                return;
        for (uint64_t c = old; c < new_nchunks; c++) {
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        h->chunks[c].alloc[w] = 0;
                        h->chunks[c].scav[w] = UINT64_MAX;
                }
        }
        heap_test_point(h, HEAP_OP_GROW, HEAP_STAGE_MID);
        heap_store(&h->hdr->nchunks, new_nchunks);
        uint64_t base = old * HEAP_CHUNK_PAGES;
        uint64_t search = heap_load(&h->hdr->search_page);
        if (search == HEAP_PAGE_NONE || base < search)
                heap_store(&h->hdr->search_page, base);
        heap_summary_update(h, base, (new_nchunks - old) * HEAP_CHUNK_PAGES, true, false);
}

/* SPDX-License-Identifier: MIT */
/* Test-only helpers; see testing.h. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap/palloc.h"
#include "heap/pagealloc.h"
#include "heap/testing.h"
#include "macro.h"

int heap_test_new(const struct heap_params *p, struct heap_test *ret) {
        struct heap_test t = { .meta_fd = -1, .heap_fd = -1 };
        uint64_t meta_size;
        int r = heap_meta_size(p, &meta_size);
        if (r < 0)
                return r;
        uint64_t chunk = (uint64_t) (p->page_size ?: 4096) * HEAP_CHUNK_PAGES;
        t.capacity = ALIGN_UP(p->capacity, chunk);
        t.meta_size = meta_size;
        t.meta_fd = memfd_create("heap-test-meta", MFD_CLOEXEC);
        t.heap_fd = memfd_create("heap-test-heap", MFD_CLOEXEC);
        if (t.meta_fd < 0 || t.heap_fd < 0)
                goto fail_errno;
        if (ftruncate(t.meta_fd, (off_t) meta_size) < 0 || ftruncate(t.heap_fd, (off_t) t.capacity) < 0)
                goto fail_errno;
        t.meta = mmap(NULL, meta_size, PROT_READ | PROT_WRITE, MAP_SHARED, t.meta_fd, 0);
        if (t.meta == MAP_FAILED)
                goto fail_errno;
        t.base = mmap(NULL, t.capacity, PROT_READ | PROT_WRITE, MAP_SHARED, t.heap_fd, 0);
        if (t.base == MAP_FAILED) {
                t.base = NULL;
                goto fail_errno;
        }
        r = heap_create(t.meta, meta_size, t.base, t.heap_fd, p, &t.h);
        if (r < 0)
                goto fail;
        *ret = t;
        return 0;
fail_errno:
        r = negative_errno();
fail:
        heap_test_free(&t);
        return r;
}

void heap_test_free(struct heap_test *t) {
        if (t->h)
                heap_detach(t->h);
        if (t->meta && t->meta != MAP_FAILED)
                munmap(t->meta, t->meta_size);
        if (t->base)
                munmap(t->base, t->capacity);
        if (t->meta_fd >= 0)
                close(t->meta_fd);
        if (t->heap_fd >= 0)
                close(t->heap_fd);
        *t = (struct heap_test) { .meta_fd = -1, .heap_fd = -1 };
}

int heap_test_grow(heap *h, uint64_t nchunks) {
        int r = heap_lock(h);
        if (r < 0)
                return r;
        uint64_t old = heap_nchunks(h);
        if (nchunks > h->nchunks_max)
                r = -ENOMEM;
        else if (nchunks > old) {
                heap_pa_grow(h, nchunks);
                heap_stats_released_add(h, (int64_t) ((nchunks - old) * HEAP_CHUNK_PAGES));
        }
        heap_unlock(h);
        return r;
}

int heap_test_set_chunk(heap *h, uint64_t ci, const uint64_t *alloc, const uint64_t *scav) {
        int r = heap_lock(h);
        if (r < 0)
                return r;
        if (ci >= heap_nchunks(h)) {
                heap_unlock(h);
                return -EINVAL;
        }
        struct heap_chunk *c = &h->chunks[ci];
        uint64_t base = ci * HEAP_CHUNK_PAGES;
        int64_t d_alloc = 0, d_scav = 0;

        /* Drop the records of the chunk (tests own it), then lay new ones per run. */
        for (unsigned i = 0; i < HEAP_CHUNK_PAGES; i++)
                atomic_store(&h->records[base + i], 0);
        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                d_alloc -= heap_popcount64(c->alloc[w]);
                d_scav -= heap_popcount64(c->scav[w]);
                c->alloc[w] = alloc ? alloc[w] : 0;
                c->scav[w] = scav ? scav[w] : 0;
                d_alloc += heap_popcount64(c->alloc[w]);
                d_scav += heap_popcount64(c->scav[w]);
        }
        for (unsigned i = 0; i < HEAP_CHUNK_PAGES;) {
                if (!((c->alloc[i / 64] >> (i % 64)) & 1)) {
                        i++;
                        continue;
                }
                unsigned j = i;
                while (j < HEAP_CHUNK_PAGES && ((c->alloc[j / 64] >> (j % 64)) & 1))
                        j++;
                atomic_store(&h->records[base + i], HEAP_REC_MAKE(j - i, 0, 0));
                i = j;
        }
        heap_summary_update(h, base, HEAP_CHUNK_PAGES, false, false);
        heap_stats_inuse_add(h, d_alloc);
        heap_stats_released_add(h, d_scav);
        /* The search address may have been passed by new free pages. */
        heap_store(&h->hdr->search_page, 0);
        heap_unlock(h);
        return 0;
}

void heap_test_get_chunk(heap *h, uint64_t ci, uint64_t *alloc, uint64_t *scav) {
        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                if (alloc)
                        alloc[w] = h->chunks[ci].alloc[w];
                if (scav)
                        scav[w] = h->chunks[ci].scav[w];
        }
}

struct heap_hdr *heap_test_hdr(heap *h) {
        return h->hdr;
}

static void lay_chunk(struct heap_chunk *c, const struct heap_bit_range *alloc, const struct heap_bit_range *scav) {
        memset(c, 0, sizeof(*c));
        for (unsigned k = 0; scav && k < HEAP_TEST_RANGES; k++)
                if (scav[k].n)
                        heap_bits_set_range(c->scav, scav[k].i, scav[k].n);
        for (unsigned k = 0; alloc && k < HEAP_TEST_RANGES; k++)
                if (alloc[k].n)
                        heap_chunk_alloc_range(c, alloc[k].i, alloc[k].n);
}

static void lay_separator(struct heap_chunk *c) {
        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                c->alloc[w] = UINT64_MAX;
                c->scav[w] = 0;
        }
}

static int release_nothing(heap *h, uint64_t off, uint64_t len, void *userdata) {
        return 0;
}

int heap_test_new_sparse(const struct heap_params *p, unsigned n, const uint64_t *idx,
                         const heap_test_ranges *alloc, const heap_test_ranges *scav, struct heap_test *ret,
                         uint64_t *map) {
        if (n == 0 || n > HEAP_TEST_CHUNKS)
                return -EINVAL;
        map[0] = 0;
        for (unsigned k = 1; k < n; k++) {
                if (idx[k] <= idx[k - 1])
                        return -EINVAL;
                map[k] = map[k - 1] + (idx[k] == idx[k - 1] + 1 ? 1 : 2);
        }
        uint64_t nchunks = map[n - 1] + 1;
        struct heap_params q = *p;
        q.capacity = nchunks * (uint64_t) (p->page_size ?: 4096) * HEAP_CHUNK_PAGES;
        int r = heap_test_new(&q, ret);
        if (r < 0)
                return r;
        heap *h = ret->h;
        heap_set_release(h, release_nothing, NULL);
        r = heap_test_grow(h, nchunks);
        if (r < 0)
                return r;

        r = heap_lock(h);
        if (r < 0)
                return r;
        for (uint64_t c = 0; c < nchunks; c++)
                lay_separator(&h->chunks[c]);
        for (unsigned k = 0; k < n; k++)
                lay_chunk(&h->chunks[map[k]], alloc ? alloc[k] : NULL, scav ? scav[k] : NULL);
        heap_summary_rebuild(h);
        uint64_t a = 0, s = 0;
        for (uint64_t c = 0; c < nchunks; c++)
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        a += heap_popcount64(h->chunks[c].alloc[w]);
                        s += heap_popcount64(h->chunks[c].scav[w]);
                }
        heap_store(&h->hdr->inuse_pages, a);
        heap_store(&h->hdr->released_pages, s);
        heap_store(&h->hdr->search_page, 0);
        heap_unlock(h);
        return heap_scavenge_start_gen(h, NULL);
}

int heap_test_expect_sparse(heap *h, unsigned n, const uint64_t *map, const heap_test_ranges *alloc,
                            const heap_test_ranges *scav, char *buf, size_t len) {
        uint64_t nchunks = map[n - 1] + 1;
        for (uint64_t c = 0; c < nchunks; c++) {
                struct heap_chunk want;
                lay_separator(&want);
                for (unsigned k = 0; k < n; k++)
                        if (map[k] == c)
                                lay_chunk(&want, alloc ? alloc[k] : NULL, scav ? scav[k] : NULL);
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        if (h->chunks[c].alloc[w] != want.alloc[w]) {
                                snprintf(buf, len, "chunk %" PRIu64 " alloc word %u: got %016" PRIx64 ", want %016" PRIx64,
                                         c, w, h->chunks[c].alloc[w], want.alloc[w]);
                                return -EUCLEAN;
                        }
                        if (h->chunks[c].scav[w] != want.scav[w]) {
                                snprintf(buf, len, "chunk %" PRIu64 " scavenged word %u: got %016" PRIx64 ", want %016" PRIx64,
                                         c, w, h->chunks[c].scav[w], want.scav[w]);
                                return -EUCLEAN;
                        }
                }
        }
        return heap_test_check_summaries(h, buf, len);
}

uint64_t heap_test_page(unsigned n, const uint64_t *idx, const uint64_t *map, uint64_t off, uint64_t page) {
        for (unsigned k = 0; k < n; k++)
                if (idx[k] == off)
                        return map[k] * HEAP_CHUNK_PAGES + page;
        return UINT64_MAX;
}

int heap_test_pa_alloc(heap *h, uint64_t npages, uint64_t *ret_page, uint64_t *ret_scav) {
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = heap_pa_alloc(h, npages, ret_page, ret_scav);
        heap_unlock(h);
        return r;
}

void heap_test_pa_free(heap *h, uint64_t page, uint64_t npages) {
        if (heap_lock(h) < 0)
                return;
        heap_pa_free(h, page, npages, false);
        heap_unlock(h);
}

int heap_test_check_summaries(heap *h, char *buf, size_t len) {
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = heap_check_summaries_locked(h, buf, len);
        heap_unlock(h);
        return r;
}

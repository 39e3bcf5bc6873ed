/* SPDX-License-Identifier: MIT */
/* Test-only helpers; see testing.h. */

#include <errno.h>
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

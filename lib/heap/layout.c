/* SPDX-License-Identifier: MIT */
/*
 * The meta region as a file format: computing the layout from parameters,
 * laying out a new heap, and validating one made by someone else.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "heap/layout.h"
#include "heap/pagealloc.h"
#include "heap/tcache.h"
#include "macro.h"

static uint64_t section(uint64_t *off, uint64_t size) {
        uint64_t at = *off;
        *off = ALIGN_UP(at + size, (uint64_t) HEAP_META_ALIGN);
        return at;
}

static bool is_pow2(uint64_t x) {
        return x && !(x & (x - 1));
}

/* Fills every read-only field of the header from p (defaults applied). */
int heap_layout_compute(const struct heap_params *p, struct heap_hdr *ret) {
        struct heap_hdr hd = {};
        uint32_t page_size = p->page_size ?: 4096;
        uint32_t phys = p->phys_page_size ?: 4096;
        uint32_t slots = p->max_slots ?: 64;
        uint32_t shards = p->reservation_shards ?: HEAP_DEFAULT_RESERVATION_SHARDS;
        uint32_t max_shares = p->max_shares ?: HEAP_DEFAULT_MAX_SHARES;
        uint32_t max_names = p->max_names ?: HEAP_DEFAULT_MAX_NAMES;

        if (!is_pow2(page_size) || page_size < 4096 || page_size > (1u << 24))
                return -EINVAL;
        if (!is_pow2(phys) || phys / page_size > HEAP_MAX_PAGES_PER_PHYS_PAGE)
                return -EINVAL;
        if (p->huge_page_size && (!is_pow2(p->huge_page_size) ||
                                  (uint64_t) p->huge_page_size > (uint64_t) page_size * HEAP_CHUNK_PAGES))
                return -EINVAL; /* Go: each huge page fits in one chunk */
        if (slots < 1 || slots > 0xfffe)
                return -EINVAL;
        if (p->capacity == 0)
                return -EINVAL;
        if (max_shares > HEAP_MAX_SHARES || max_names > HEAP_MAX_NAMES)
                return -EINVAL;

        uint64_t chunk_bytes = (uint64_t) page_size * HEAP_CHUNK_PAGES;
        if (p->capacity > UINT64_MAX / 2)
                return -EINVAL;
        uint64_t capacity = ALIGN_UP(p->capacity, chunk_bytes);
        uint64_t pages = capacity / page_size;
        if (pages > HEAP_MAX_PAGES)
                return -E2BIG;
        uint64_t nchunks = capacity / chunk_bytes;

        /* Levels: leaves are chunks; each level above has 8x fewer entries, down to the root. */
        uint32_t nlevels = 1;
        uint64_t n = nchunks;
        while (n > HEAP_ROOT_MAX) {
                n = DIV_ROUND_UP(n, 1u << HEAP_LEVEL_BITS);
                nlevels++;
        }
        if (nlevels > HEAP_MAX_LEVELS)
                return -E2BIG;

        hd.magic = HEAP_MAGIC;
        hd.version = HEAP_LAYOUT_VERSION;
        hd.hdr_size = sizeof(struct heap_hdr);
        hd.capacity = capacity;
        hd.page_size = page_size;
        hd.phys_page_size = phys;
        hd.huge_page_size = p->huge_page_size;
        hd.max_slots = slots;
        hd.reservation_shards = shards;
        hd.nchunks_max = (uint32_t) nchunks;
        hd.nlevels = nlevels;
        hd.root_entries = (uint32_t) n;

        uint64_t off = 0;
        section(&off, sizeof(struct heap_hdr));
        hd.slots_off = section(&off, (uint64_t) slots * sizeof(struct heap_slot));
        hd.chunks_off = section(&off, nchunks * sizeof(struct heap_chunk));
        for (uint32_t l = 0; l < nlevels; l++) {
                hd.level_entries[l] = (uint64_t) n << (HEAP_LEVEL_BITS * l);
                hd.level_off[l] = section(&off, hd.level_entries[l] * sizeof(struct heap_sum));
        }
        hd.records_off = section(&off, pages * sizeof(uint64_t));
        /* A share entry on whole cache lines: its header and its counts are read together. */
        hd.max_shares = max_shares;
        hd.share_stride = (uint32_t) ALIGN_UP(sizeof(struct heap_share) + (uint64_t) slots * sizeof(uint16_t), 64u);
        hd.max_names = max_names;
        uint32_t index = 1;
        while (index < 2 * max_names)
                index <<= 1;
        hd.name_index_size = index;
        hd.share_map_off = section(&off, pages * sizeof(uint32_t));
        hd.shares_off = section(&off, (uint64_t) max_shares * hd.share_stride);
        hd.names_off = section(&off, (uint64_t) max_names * sizeof(struct heap_name));
        hd.name_index_off = section(&off, (uint64_t) index * sizeof(uint32_t));
        hd.meta_size = off;
        *ret = hd;
        return 0;
}

int heap_meta_size(const struct heap_params *p, uint64_t *ret) {
        struct heap_hdr hd;
        int r = heap_layout_compute(p, &hd);
        if (r < 0)
                return r;
        *ret = hd.meta_size;
        return 0;
}

/* Points the handle's sections at the meta region and copies the geometry
 * from hd: the header, or a copy of it already validated. */
static int layout_apply_from(heap *h, const struct heap_hdr *hd) {
        h->capacity = hd->capacity;
        h->page_size = hd->page_size;
        h->page_shift = (uint32_t) __builtin_ctz(hd->page_size);
        h->capacity_pages = hd->capacity >> h->page_shift;
        h->phys_page_size = hd->phys_page_size;
        h->huge_page_size = hd->huge_page_size;
        h->max_slots = hd->max_slots;
        h->reservation_shards = hd->reservation_shards;
        h->nchunks_max = hd->nchunks_max;
        h->nlevels = hd->nlevels;
        h->root_entries = hd->root_entries;
        h->chunk_bytes = (uint64_t) hd->page_size * HEAP_CHUNK_PAGES;
        h->slots = (struct heap_slot *) (h->meta + hd->slots_off);
        h->chunks = (struct heap_chunk *) (h->meta + hd->chunks_off);
        for (uint32_t l = 0; l < hd->nlevels; l++) {
                h->level_entries[l] = hd->level_entries[l];
                h->levels[l] = (struct heap_sum *) (h->meta + hd->level_off[l]);
        }
        h->records = (_Atomic uint64_t *) (h->meta + hd->records_off);
        h->pool_id = hd->pool_id;
        h->max_shares = hd->max_shares;
        h->share_stride = hd->share_stride;
        h->max_names = hd->max_names;
        h->name_index_size = hd->name_index_size;
        h->share_map = (uint32_t *) (h->meta + hd->share_map_off);
        h->shares = h->meta + hd->shares_off;
        h->names = (struct heap_name *) (h->meta + hd->names_off);
        h->name_index = (uint32_t *) (h->meta + hd->name_index_off);
        h->min_pages = h->phys_page_size > h->page_size ? h->phys_page_size / h->page_size : 1;
        /* Go: huge pages matter only when bigger than both the page and the physical page. */
        h->pages_per_huge = h->huge_page_size > h->page_size && h->huge_page_size > h->phys_page_size
                                    ? h->huge_page_size / h->page_size
                                    : 0;
        return 0;
}

int heap_layout_apply(heap *h) {
        return layout_apply_from(h, h->hdr);
}

static int release_punch_hole(heap *h, uint64_t off, uint64_t len, void *userdata) {
        if (h->heap_fd < 0)
                return 0;
        if (fallocate(h->heap_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off, (off_t) len) < 0)
                return negative_errno();
        return 0;
}

static int init_mutex(pthread_mutex_t *m) {
        pthread_mutexattr_t a;
        int r = pthread_mutexattr_init(&a);
        if (r)
                return -r;
        r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        if (!r)
                r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        if (!r)
                r = pthread_mutex_init(m, &a);
        pthread_mutexattr_destroy(&a);
        return -r;
}

static heap *handle_new(void *meta, uint64_t meta_size, void *base, int heap_fd) {
        heap *h = calloc(1, sizeof(heap));
        if (!h)
                return NULL;
        h->meta = meta;
        h->meta_size = meta_size;
        h->base = base;
        h->heap_fd = heap_fd;
        h->hdr = meta;
        h->release = release_punch_hole;
        heap_tc_register(h);
        return h;
}

int heap_create(void *meta, uint64_t meta_size, void *base, int heap_fd,
                const struct heap_params *p, heap **ret) {
        struct heap_hdr hd;
        int r;

        if (!meta || !p || !ret)
                return -EINVAL;
        r = heap_layout_compute(p, &hd);
        if (r < 0)
                return r;
        if (meta_size < hd.meta_size)
                return -ENOSPC;

        heap *h = handle_new(meta, meta_size, base, heap_fd);
        if (!h)
                return -ENOMEM;
        struct heap_hdr *hdr = meta;
        memcpy(hdr, &hd, sizeof(hd));
        r = init_mutex(&hdr->heap_lock);
        if (r >= 0)
                r = init_mutex(&hdr->scav_lock);
        if (r < 0) {
                free(h);
                return r;
        }
        /* Only tells pools apart: not a secret. */
        if (getrandom(&hdr->pool_id, sizeof(hdr->pool_id), GRND_NONBLOCK) != sizeof(hdr->pool_id)) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                hdr->pool_id = ((uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec) ^ ((uint64_t) getpid() << 40);
        }
        hdr->pool_id |= 1; /* never 0 */
        hdr->search_page = 0;
        hdr->free_hwm = HEAP_OFF_MIN;
        hdr->scav_lwm = HEAP_OFF_MAX;
        atomic_store(&hdr->retained_goal, HEAP_GOAL_NONE);
        heap_layout_apply(h);

        /* Slot 0 is the daemon's. */
        atomic_store(&h->slots[0].state, HEAP_SLOT_LIVE);
        h->slots[0].pid = (uint32_t) getpid();
        *ret = h;
        return 0;
}

int heap_attach(void *meta, uint64_t meta_size, void *base, uint64_t base_size, int heap_fd,
                heap **ret) {
        struct heap_hdr copy, want;
        const struct heap_hdr *hdr = &copy;
        int r;

        if (!meta || !ret)
                return -EINVAL;
        if (meta_size < sizeof(struct heap_hdr))
                return -EBADMSG;
        /* One copy, validated and then used: whoever else maps the meta
         * region may rewrite the header while we look at it. */
        memcpy(&copy, meta, sizeof(copy));
        if (hdr->magic != HEAP_MAGIC)
                return -EBADMSG;
        if (hdr->version != HEAP_LAYOUT_VERSION)
                return -EPROTO;
        if (hdr->hdr_size != sizeof(struct heap_hdr))
                return -EBADMSG;

        /* Recompute the layout from the parameters and insist on the same answer. */
        struct heap_params p = {
                .capacity = hdr->capacity,
                .page_size = hdr->page_size,
                .phys_page_size = hdr->phys_page_size,
                .huge_page_size = hdr->huge_page_size,
                .max_slots = hdr->max_slots,
                .reservation_shards = hdr->reservation_shards,
                .max_shares = hdr->max_shares,
                .max_names = hdr->max_names,
        };
        if (hdr->max_shares == 0 || hdr->max_names == 0)
                return -EBADMSG;
        r = heap_layout_compute(&p, &want);
        if (r < 0)
                return -EBADMSG;
        if (want.capacity != hdr->capacity || want.meta_size != hdr->meta_size ||
            want.nchunks_max != hdr->nchunks_max || want.nlevels != hdr->nlevels ||
            want.root_entries != hdr->root_entries || want.slots_off != hdr->slots_off ||
            want.chunks_off != hdr->chunks_off || want.records_off != hdr->records_off ||
            want.share_map_off != hdr->share_map_off || want.shares_off != hdr->shares_off ||
            want.names_off != hdr->names_off || want.name_index_off != hdr->name_index_off ||
            want.share_stride != hdr->share_stride || want.name_index_size != hdr->name_index_size ||
            memcmp(want.level_off, hdr->level_off, sizeof(want.level_off)) != 0 ||
            memcmp(want.level_entries, hdr->level_entries, sizeof(want.level_entries)) != 0)
                return -EBADMSG;
        if (meta_size < want.meta_size)
                return -EBADMSG;
        if (base && base_size < want.capacity)
                return -EBADMSG;

        if (hdr->pool_id == 0)
                return -EBADMSG; /* never made so: heap_create sets a bit */

        heap *h = handle_new(meta, meta_size, base, heap_fd);
        if (!h)
                return -ENOMEM;
        want.pool_id = hdr->pool_id; /* not of the layout: random at creation */
        layout_apply_from(h, &want);
        *ret = h;
        return 0;
}

void heap_detach(heap *h) {
        for (unsigned c = 0; c < HEAP_SLOT_CACHES; c++)
                free(h->home[c].chunks);
        free(h);
}

void heap_set_release(heap *h, heap_release_fn fn, void *userdata) {
        h->release = fn ?: release_punch_hole;
        h->release_userdata = userdata;
}

void heap_set_test_hook(heap *h, heap_test_hook_fn fn, void *userdata) {
        h->test_hook = fn;
        h->test_hook_userdata = userdata;
}

void *heap_base(heap *h) {
        return h->base;
}

uint64_t heap_capacity(heap *h) {
        return h->capacity;
}

uint32_t heap_page_size(heap *h) {
        return h->page_size;
}

uint32_t heap_max_slots(heap *h) {
        return h->max_slots;
}

uint64_t heap_pool_id(heap *h) {
        return h->pool_id;
}

uint32_t heap_max_names(heap *h) {
        return h->max_names;
}

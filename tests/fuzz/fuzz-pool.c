/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the daemon's work on a pool (daemon/poolwork.c, run as
 * its workers run it: an untrusted handle) over a meta region that a
 * hostile client scribbles on between the operations. Nothing may read or
 * write outside the mappings (ASan), hit undefined behaviour (UBSan), or
 * hang (libFuzzer's -timeout); a broken pool may only be reported.
 *
 * An input is a program:
 *
 *   byte 0..1   setup seed: clients in slots 1..3 allocate (page caches,
 *               thread lists, locked path, KEEP), free some, take
 *               references on others' and publish names, with the heap's
 *               own client code, before anything is scribbled on
 *   then ops    op byte, then its arguments:
 *     SCRIBBLE  offset (4 bytes, mod meta size), length (1, mod 16), bytes
 *     FIELD     field (1), index (2), value (8): a named field of the layout
 *     RECLAIM   slot (1)          poolwork_reclaim
 *     BURST     goal (1)          poolwork_burst
 *     GEN                         poolwork_start_gen
 *     FORCE     bytes (2, pages)  poolwork_force
 *     CHECK                       poolwork_check
 *     STATUS                      poolwork_snapshot, against the last one
 *     CLIENTS                     poolwork_live_slots, then poolwork_names
 *     CLAIM                       poolwork_claim
 *     REFOR     slot (1)          poolwork_reclaim_for
 *     DIED      which (1)         a lock's holder died (FUTEX_OWNER_DIED)
 *
 * A scribbled lock word that names a live holder would make the daemon's
 * worker wait (the watchdog's business, tested in test-hostile): words are
 * left free or marked as their holder died, so the recovery path is fuzzed
 * instead.
 */

#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap/layout.h"
#include "poolwork.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAPACITY (16u << 20)
#define SLOTS 5u
#define META_GUARD (UINT64_C(64) << 30)

static struct heap_params params = { .capacity = CAPACITY, .max_slots = SLOTS, .reservation_shards = 4 };
static uint8_t *meta, *base;
static uint64_t meta_size;

static int release_nothing(heap *h, uint64_t off, uint64_t len, void *userdata) {
        return 0;
}

struct input {
        const uint8_t *p, *end;
};

static uint64_t take(struct input *in, unsigned n) {
        uint64_t v = 0;
        for (unsigned i = 0; i < n && in->p < in->end; i++)
                v |= (uint64_t) *in->p++ << (8 * i);
        return v;
}

static uint64_t rnd(uint64_t *s) {
        uint64_t x = (*s += UINT64_C(0x9e3779b97f4a7c15));
        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

/* What clients leave behind: allocations of every kind, frees into caches. */
static void setup(heap *c, uint64_t seed) {
        uint64_t offs[64];
        unsigned n = 0;

        for (uint32_t s = 1; s < SLOTS - 1; s++) {
                uint32_t slot;
                if (heap_slot_claim(c, 100 + s, 1000 + s, &slot) < 0)
                        return;
        }
        for (unsigned i = 0; i < 96 && n < 64; i++) {
                uint64_t r = rnd(&seed), off;
                uint32_t slot = 1 + (uint32_t) (r % (SLOTS - 2)), cache = (uint32_t) (r >> 8) % 3;
                uint64_t npages;
                int k;

                switch ((r >> 16) % 4) {
                case 0:
                        npages = 1 + (r >> 20) % 15;
                        k = heap_cache_alloc(c, slot, cache, npages, 0, &off);
                        break;
                case 1:
                        npages = 16 + (r >> 20) % 113;
                        k = heap_cache_alloc(c, slot, cache, npages, 0, &off);
                        break;
                case 2:
                        npages = 1 + (r >> 20) % 300;
                        k = heap_alloc(c, slot, npages, (r >> 40) & 1 ? HEAP_ALLOC_KEEP : 0, &off);
                        break;
                default:
                        if (n > 0) {
                                unsigned v = (unsigned) ((r >> 20) % n);
                                (void) heap_free(c, slot, cache, offs[v]);
                                offs[v] = offs[--n];
                        }
                        continue;
                }
                if (k == 0)
                        offs[n++] = off;
        }
        /* Some are shared: references of other slots, names, handles' tags. */
        for (unsigned i = 0; i < n; i += 3) {
                uint64_t r = rnd(&seed), tag;
                char name[16];
                (void) heap_ref(c, 1 + (uint32_t) (r % (SLOTS - 2)), offs[i]);
                snprintf(name, sizeof(name), "f%u", i);
                if (r & 0x100)
                        (void) heap_publish(c, 1 + (uint32_t) ((r >> 9) % (SLOTS - 2)), name, offs[i]);
                if (r & 0x200)
                        (void) heap_share_tag(c, 1, offs[i], &tag);
        }
        /* Some go back into their owners' caches, page and medium. */
        for (unsigned i = 0; i < n; i += 2) {
                uint64_t r = rnd(&seed);
                (void) heap_free(c, 1 + (uint32_t) (r % (SLOTS - 2)), (uint32_t) (r >> 8) % 3, offs[i]);
        }
        (void) heap_scavenge_start_gen(c, NULL);
        (void) heap_scavenge(c, 1, 64u << 10);
}

/* Named fields of the layout: where a client's garbage does the most harm. */
static uint8_t *field_at(heap *d, unsigned field, uint64_t idx, unsigned *width) {
        struct heap_hdr *h = (struct heap_hdr *) meta;
        struct heap_slot *sl = &d->slots[idx % SLOTS];
        unsigned c = (unsigned) (idx >> 3) % HEAP_SLOT_CACHES, b = (unsigned) (idx >> 7) % HEAP_CACHE_BLOCKS;
        unsigned e = (unsigned) (idx >> 7) % HEAP_MCACHE_DEPTH, k = (unsigned) (idx >> 3) % HEAP_MCACHE_CLASSES;
        struct heap_tcache *t = &sl->tc[c];
        uint32_t share = (uint32_t) (idx >> 2) % d->max_shares, name = (uint32_t) (idx >> 2) % d->max_names;
        uint8_t *entry = d->shares + (uint64_t) share * d->share_stride;

        *width = 8;
        switch (field % 32) {
        case 0: return (uint8_t *) &h->nchunks;
        case 1: return (uint8_t *) &h->search_page;
        case 2: return (uint8_t *) &h->inuse_pages;
        case 3: return (uint8_t *) &h->released_pages;
        case 4: *width = 4; return (uint8_t *) &h->intent.op;
        case 5: return idx & 1 ? (uint8_t *) &h->intent.base : (uint8_t *) &h->intent.npages;
        case 6: return idx & 1 ? (uint8_t *) &h->intent.a : (uint8_t *) &h->intent.b;
        case 7: *width = 4; return idx & 1 ? (uint8_t *) &h->intent.slot : (uint8_t *) &h->intent.block;
        case 8: *width = 4; return (uint8_t *) &h->nranges;
        case 9: return (uint8_t *) &h->ranges[idx % HEAP_SCAV_RANGES][(idx >> 4) & 1];
        case 10: return idx & 1 ? (uint8_t *) &h->scav_lwm : (uint8_t *) &h->reservation_bytes;
        case 11: *width = 4; return idx & 2 ? (uint8_t *) &sl->state : (uint8_t *) &sl->cache_mask;
        case 12: return (uint8_t *) &sl->scav[(idx >> 3) % HEAP_SLOT_SCAV_INTENTS].base + ((idx >> 6) & 1) * 8;
        case 13: *width = 4; return (uint8_t *) &sl->caches[c].key[b];
        case 14: return idx & 1 ? (uint8_t *) &sl->caches[c].owned[b] : (uint8_t *) &sl->caches[c].free_mask[b];
        case 15: return idx & 1 ? (uint8_t *) &sl->caches[c].scav_mask[b] : (uint8_t *) &sl->caches[c].nonempty;
        case 16: *width = 4; return idx & 1 ? (uint8_t *) &t->seq : (uint8_t *) &t->state;
        case 17: *width = 1; return idx & 1 ? &t->count[k] : &t->low[k];
        case 18: *width = 4; return (uint8_t *) &t->page[k][e];
        case 19: *width = 4; return idx & 1 ? (uint8_t *) &t->norphans : (uint8_t *) &t->orphan[e % HEAP_TC_ORPHANS];
        case 20: *width = 4; return idx & 1 ? (uint8_t *) &t->pages : (uint8_t *) &t->reap_mode;
        /* Sharing: the header's state, share entries, the share map, names and their index. */
        case 24: *width = 4; return idx & 1 ? (uint8_t *) &h->share_hwm : (uint8_t *) &h->share_free;
        case 25: *width = 4; return idx & 1 ? (uint8_t *) &h->name_hwm : (uint8_t *) &h->name_free;
        case 26: return idx & 1 ? (uint8_t *) &h->refs_total
                      : idx & 2 ? (uint8_t *) &h->released_reused : (uint8_t *) &h->share_tag;
        case 27: return entry + ((idx >> 1) & 1) * 8; /* tag, or page and refs */
        case 28: *width = 4; return idx & 1 ? entry + 16 : entry + 20; /* name_refs, pool_refs and pad */
        case 29: *width = 2; return entry + sizeof(struct heap_share) + ((idx >> 1) % SLOTS) * 2;
        case 30: *width = 4; return (uint8_t *) &d->share_map[idx % d->capacity_pages];
        case 31: *width = 4;
                return idx & 1 ? (uint8_t *) &d->names[name].share + ((idx >> 1) & 1) * 4
                               : (uint8_t *) &d->name_index[idx % d->name_index_size];
        case 21: return (uint8_t *) &d->records[idx % d->capacity_pages];
        case 22: return (uint8_t *) &d->chunks[idx % d->nchunks_max].alloc[(idx >> 12) % HEAP_CHUNK_WORDS] +
                        ((idx >> 15) & 1) * sizeof(d->chunks[0].alloc);
        default: *width = 4; return (uint8_t *) &heap_leaf(d)[idx % d->nchunks_max].start + ((idx >> 12) % 3) * 4;
        }
}

/* The lock words: free, or their holder died. Never a live holder (see above). */
static void locks_sane(void) {
        struct heap_hdr *h = (struct heap_hdr *) meta;
        int *words[] = { &h->heap_lock.__data.__lock, &h->scav_lock.__data.__lock };

        for (unsigned i = 0; i < 2; i++) {
                unsigned v = (unsigned) __atomic_load_n(words[i], __ATOMIC_RELAXED);
                if (v != 0 && !(v & FUTEX_OWNER_DIED))
                        __atomic_store_n(words[i], (int) (v | FUTEX_OWNER_DIED), __ATOMIC_RELAXED);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct input in = { data, data + size };
        struct heap_stats prev, st;
        bool have_prev = false;
        char why[256];
        heap *c, *d;

        if (!meta) {
                uint8_t *guard;

                if (heap_meta_size(&params, &meta_size) < 0)
                        abort();
                /* The meta region between inaccessible reservations: an index
                 * read from it and not checked (a page number is 32 bits: up
                 * to 32 GiB of records) faults instead of landing in whatever
                 * is mapped nearby. */
                guard = mmap(NULL, META_GUARD + meta_size + META_GUARD, PROT_NONE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (guard == MAP_FAILED)
                        abort();
                meta = mmap(guard + META_GUARD, meta_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                            -1, 0);
                base = mmap(NULL, CAPACITY, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (meta == MAP_FAILED || base == MAP_FAILED)
                        abort();
        }
        memset(meta, 0, meta_size);
        if (heap_create(meta, meta_size, base, -1, &params, &c) < 0)
                abort();
        heap_set_release(c, release_nothing, NULL);
        setup(c, take(&in, 2));
        if (heap_check(c, why, sizeof(why)) < 0) {
                fprintf(stderr, "setup left a broken heap: %s\n", why);
                abort();
        }
        /* The daemon's handle, as pool_adopt makes it. */
        if (heap_attach(meta, meta_size, base, CAPACITY, -1, &d) < 0)
                abort();
        heap_set_release(d, release_nothing, NULL);
        heap_set_untrusted(d, NULL);

        for (unsigned ops = 0; in.p < in.end && ops < 64; ops++) {
                unsigned op = (unsigned) take(&in, 1) % 12;
                uint32_t slot;

                switch (op) {
                case 0: { /* SCRIBBLE */
                        uint64_t off = take(&in, 4) % meta_size;
                        unsigned n = 1 + (unsigned) take(&in, 1) % 16;
                        for (unsigned i = 0; i < n && off + i < meta_size; i++)
                                meta[off + i] = (uint8_t) take(&in, 1);
                        break;
                }
                case 1: { /* FIELD */
                        unsigned field = (unsigned) take(&in, 1), width;
                        uint64_t idx = take(&in, 2), v = take(&in, 8);
                        memcpy(field_at(d, field, idx, &width), &v, width);
                        break;
                }
                case 2:
                        (void) poolwork_reclaim(d, (uint32_t) take(&in, 1) % (SLOTS + 2));
                        break;
                case 3: {
                        struct poolwork_burst w = { .budget_ns = PACER_MIN_WORK_NS, .phys_page_size = 4096,
                                                    .goal = take(&in, 1) << 16 };
                        poolwork_burst(d, &w);
                        break;
                }
                case 4: {
                        struct heap_gen_report rep;
                        (void) poolwork_start_gen(d, 0, &rep, NULL);
                        break;
                }
                case 5: {
                        struct poolwork_force f = { .bytes = take(&in, 2) << 12, .if_free = in.p < in.end && *in.p & 1 };
                        (void) poolwork_force(d, &f, NULL, why, sizeof(why));
                        break;
                }
                case 6:
                        (void) poolwork_check(d, why, sizeof(why));
                        break;
                case 7:
                        if (poolwork_snapshot(d, have_prev ? &prev : NULL, &st, why, sizeof(why)) == 0) {
                                /* What the daemon would report: inside the pool. */
                                if (st.heap_sys > CAPACITY || st.inuse > st.heap_sys || st.released > st.heap_sys ||
                                    st.retained > st.heap_sys || st.peak_inuse > st.heap_sys)
                                        abort();
                                prev = st;
                                have_prev = true;
                        }
                        break;
                case 8: {
                        struct heap_slot_info live[SLOTS];
                        uint32_t n;
                        struct heap_name_info names[8];
                        uint64_t next;
                        if (poolwork_live_slots(d, SLOTS, live, SLOTS, &n, why, sizeof(why)) > (int) SLOTS)
                                abort();
                        /* What scavctl names would show: in the pool, NUL-terminated. */
                        int k = poolwork_names(d, take(&in, 1), names, 8, &next);
                        for (int i = 0; i < k; i++)
                                if (names[i].off >= CAPACITY || names[i].bytes > CAPACITY - names[i].off ||
                                    !memchr(names[i].name, 0, sizeof(names[i].name)))
                                        abort();
                        break;
                }
                case 9:
                        if (poolwork_claim(d, SLOTS, NULL, 7, 7, &slot, why, sizeof(why)) == 0 && (slot == 0 || slot >= SLOTS))
                                abort();
                        break;
                case 10:
                        (void) poolwork_reclaim_for(d, (uint32_t) take(&in, 1) % (SLOTS + 2), 101, 1001, why,
                                                    sizeof(why));
                        break;
                default: { /* DIED: a holder died, glibc's word for it */
                        struct heap_hdr *h = (struct heap_hdr *) meta;
                        int *w = take(&in, 1) & 1 ? &h->scav_lock.__data.__lock : &h->heap_lock.__data.__lock;
                        __atomic_store_n(w, (int) (FUTEX_OWNER_DIED | 12345), __ATOMIC_RELAXED);
                        break;
                }
                }
                locks_sane();
        }
        heap_detach(d);
        heap_detach(c);
        return 0;
}

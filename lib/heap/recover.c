/* SPDX-License-Identifier: MIT */
/*
 * Crash safety. Every heap-locked section that changes more than one word
 * writes the intent record first and clears it last; the next locker after
 * a death (EOWNERDEAD) rolls the recorded operation forward — every step is
 * idempotent — then rebuilds what follows from the bitmaps (summaries,
 * in-use and released counts) and verifies every invariant.
 */

#include <errno.h>
#include <stdio.h>

#include "heap/alloc.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "heap/share.h"
#include "heap/tcache.h"

void heap_intent_begin(heap *h, enum heap_op op, uint32_t slot, uint32_t cache, uint64_t base,
                       uint64_t npages, uint64_t a, uint64_t b) {
        struct heap_intent *it = &h->hdr->intent;
        it->slot = slot;
        it->cache = cache;
        it->base = base;
        it->npages = npages;
        it->a = a;
        it->b = b;
        /* Only a dying process matters here, and its stores land in program order
         * once the compiler keeps them so: a compiler barrier is enough. */
        atomic_signal_fence(memory_order_seq_cst);
        __atomic_store_n(&it->op, (uint32_t) op, __ATOMIC_RELAXED);
        atomic_signal_fence(memory_order_seq_cst);
        heap_test_point(h, op, HEAP_STAGE_EARLY);
}

/* The cache block of a CACHE_FILL/FLUSH intent; set before heap_intent_begin. */
void heap_intent_block(heap *h, uint32_t block) {
        h->hdr->intent.block = block;
}

void heap_intent_end(heap *h) {
        heap_test_point(h, (enum heap_op) h->hdr->intent.op, HEAP_STAGE_LATE);
        atomic_signal_fence(memory_order_seq_cst);
        __atomic_store_n(&h->hdr->intent.op, (uint32_t) HEAP_OP_NONE, __ATOMIC_RELAXED);
        atomic_signal_fence(memory_order_seq_cst);
}

static void bits_over_range(heap *h, uint64_t base, uint64_t n, bool alloc_set, bool scav_set,
                            bool scav_clear) {
        while (n > 0) {
                struct heap_chunk *c = &h->chunks[base / HEAP_CHUNK_PAGES];
                unsigned i = base % HEAP_CHUNK_PAGES;
                unsigned k = n < HEAP_CHUNK_PAGES - i ? (unsigned) n : HEAP_CHUNK_PAGES - i;
                if (alloc_set)
                        heap_bits_set_range(c->alloc, i, k);
                else
                        heap_bits_clear_range(c->alloc, i, k);
                if (scav_set)
                        heap_bits_set_range(c->scav, i, k);
                if (scav_clear)
                        heap_bits_clear_range(c->scav, i, k);
                base += k;
                n -= k;
        }
}

/* Rolls the interrupted operation forward. Called with heap lock held. */
static int roll_forward(heap *h, const struct heap_intent *it) {
        uint64_t grown = heap_nchunks(h) * HEAP_CHUNK_PAGES;

        /* References and names are recounted whatever the op (share.c). */
        if (it->op == HEAP_OP_NONE || it->op == HEAP_OP_SHARE || it->op == HEAP_OP_NAME)
                return 0;
        if (it->op >= _HEAP_OP_MAX || it->slot >= h->max_slots || it->cache >= HEAP_SLOT_CACHES)
                return -EUCLEAN;
        if (it->op == HEAP_OP_GROW) {
                if (it->base > it->npages || it->npages > h->nchunks_max)
                        return -EUCLEAN;
                for (uint64_t c = it->base; c < it->npages; c++)
                        for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                                h->chunks[c].alloc[w] = 0;
                                h->chunks[c].scav[w] = UINT64_MAX;
                        }
                heap_store(&h->hdr->nchunks, it->npages);
                return 0;
        }
        if (it->npages == 0 || it->base >= grown || it->npages > grown - it->base)
                return -EUCLEAN;

        struct heap_slot *sl = &h->slots[it->slot];
        struct heap_cache *c = &sl->caches[it->cache];
        uint64_t expect;
        switch ((enum heap_op) it->op) {
        case HEAP_OP_ALLOC:
                bits_over_range(h, it->base, it->npages, true, false, true);
                atomic_store(&h->records[it->base], it->a);
                break;
        case HEAP_OP_FREE:
                if (it->b)
                        break; /* left in a cache: the record alone decides */
                expect = it->a;
                atomic_compare_exchange_strong(&h->records[it->base], &expect, 0);
                if (expect == it->a || expect == 0)
                        bits_over_range(h, it->base, it->npages, false, false, false);
                break;
        case HEAP_OP_CACHE_FILL:
        case HEAP_OP_CACHE_FLUSH: {
                if (it->base % HEAP_CACHE_PAGES || it->block >= HEAP_CACHE_BLOCKS)
                        return -EUCLEAN;
                uint32_t b = it->block;
                struct heap_chunk *ch = &h->chunks[it->base / HEAP_CHUNK_PAGES];
                unsigned w = (unsigned) (it->base % HEAP_CHUNK_PAGES) / 64;
                if (it->op == HEAP_OP_CACHE_FILL) {
                        ch->alloc[w] |= it->a;
                        ch->scav[w] &= ~it->b;
                        /* The block may have held other pages already (its key
                         * is there): join them; else the position starts clean. */
                        uint32_t key = (uint32_t) (it->base / HEAP_CACHE_PAGES + 1);
                        uint64_t keep = atomic_load(&c->key[b]) == key ? UINT64_MAX : 0;
                        atomic_store(&c->free_mask[b], (atomic_load(&c->free_mask[b]) & keep) | it->a);
                        atomic_store(&c->scav_mask[b], (atomic_load(&c->scav_mask[b]) & keep) | it->b);
                        atomic_store(&c->owned[b], (atomic_load(&c->owned[b]) & keep) | it->a);
                        atomic_store(&c->key[b], key);
                } else {
                        ch->alloc[w] &= ~it->a;
                        ch->scav[w] |= it->a & it->b;
                        heap_cache_block_clear(c, b); /* nonempty is recounted below */
                }
                break;
        }
        case HEAP_OP_SCAV_MARK:
                bits_over_range(h, it->base, it->npages, true, false, true);
                if (it->block >= HEAP_SLOT_SCAV_INTENTS)
                        return -EUCLEAN;
                sl->scav[it->block].base = it->base;
                sl->scav[it->block].npages = it->npages;
                break;
        case HEAP_OP_SCAV_FREE:
                bits_over_range(h, it->base, it->npages, false, it->a != 0, false);
                if (it->block >= HEAP_SLOT_SCAV_INTENTS)
                        return -EUCLEAN;
                sl->scav[it->block].base = 0;
                sl->scav[it->block].npages = 0;
                break;
        case HEAP_OP_RECORD:
                expect = it->b;
                atomic_compare_exchange_strong(&h->records[it->base], &expect, it->a);
                break;
        default:
                return -EUCLEAN;
        }
        return 0;
}

/* Recounts what follows from the bitmaps. Called with heap lock held. */
static void recount(heap *h) {
        struct heap_hdr *hd = h->hdr;
        uint64_t alloc = 0, scav = 0, intents = 0;
        uint64_t n = heap_nchunks(h);
        for (uint64_t c = 0; c < n; c++)
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        alloc += (uint64_t) heap_popcount64(h->chunks[c].alloc[w]);
                        scav += (uint64_t) heap_popcount64(h->chunks[c].scav[w]);
                }
        for (uint32_t s = 0; s < h->max_slots; s++) {
                struct heap_slot *sl = &h->slots[s];
                for (uint32_t k = 0; k < HEAP_SLOT_SCAV_INTENTS; k++)
                        intents += sl->scav[k].npages;
                heap_tc_recount_locked(h, s);
                sl->cache_mask = 0;
                for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                        uint64_t nonempty = 0;
                        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++) {
                                if (atomic_load(&sl->caches[c].owned[b]))
                                        sl->cache_mask |= UINT32_C(1) << c;
                                if (atomic_load(&sl->caches[c].free_mask[b]))
                                        nonempty |= UINT64_C(1) << b;
                        }
                        atomic_store(&sl->caches[c].nonempty, nonempty);
                }
        }
        heap_store(&hd->inuse_pages, alloc >= intents ? alloc - intents : 0);
        heap_store(&hd->released_pages, scav);
        if (hd->peak_inuse_pages < hd->inuse_pages)
                heap_store(&hd->peak_inuse_pages, hd->inuse_pages);
        /* Hints that cannot be recomputed: the safe ends. */
        heap_store(&hd->search_page, 0);
        hd->free_hwm = n ? n * h->chunk_bytes - 1 : HEAP_OFF_MIN;
}

int heap_recover_locked(heap *h) {
        struct heap_intent it = h->hdr->intent;
        int r;

        r = roll_forward(h, &it);
        if (r < 0) {
                snprintf(h->recover_problem, sizeof(h->recover_problem),
                         "the dead lock holder's intent record cannot be completed");
                return r;
        }
        heap_intent_end(h);
        heap_share_fixup_locked(h);
        heap_summary_rebuild(h);
        recount(h);
        r = heap_check_locked(h, h->recover_problem, sizeof(h->recover_problem));
        if (r < 0)
                return r;
        h->recover_problem[0] = '\0';
        heap_store(&h->hdr->recoveries, h->hdr->recoveries + 1);
        return 0;
}

/* The scav state is only a search hint: if it is not sane, the generation is over. Called with scav lock held. */
void heap_scav_state_validate(heap *h) {
        struct heap_hdr *hd = h->hdr;
        uint64_t sys = heap_nchunks(h) * h->chunk_bytes;
        uint32_t n = __atomic_load_n(&hd->nranges, __ATOMIC_RELAXED); /* once: the loop must not read past the array */
        bool ok = n <= HEAP_SCAV_RANGES;
        for (uint32_t i = 0; ok && i < n; i++) {
                if (hd->ranges[i][0] >= hd->ranges[i][1] || hd->ranges[i][1] > sys)
                        ok = false;
                if (i > 0 && hd->ranges[i - 1][1] > hd->ranges[i][0])
                        ok = false;
        }
        if (!ok)
                hd->nranges = 0;
        if (hd->reservation_bytes > sys)
                hd->reservation_bytes = sys / h->reservation_shards;
}

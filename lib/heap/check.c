/* SPDX-License-Identifier: MIT */
/*
 * heap_check: every invariant of the shared layout, naming the first one
 * broken. Safe while clients allocate through their page caches: those only
 * change records inside their own owned sets.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/alloc.h"
#include "heap/mcache.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "heap/share.h"
#include "macro.h"

/* The reason a check failed, into buf; returns -EUCLEAN. */
int heap_fail(char *buf, size_t len, const char *fmt, ...) {
        if (buf && len) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(buf, len, fmt, ap);
                va_end(ap);
        }
        return -EUCLEAN;
}


/* Summaries at every level against the bitmaps. Called with heap lock held. */
int heap_check_summaries_locked(heap *h, char *buf, size_t len) {
        uint64_t n = heap_nchunks(h);
        const struct heap_sum *leaf = heap_leaf(h);
        for (uint64_t c = 0; c < h->level_entries[h->nlevels - 1]; c++) {
                struct heap_sum want = c < n ? heap_palloc_summarize(h->chunks[c].alloc) : heap_sum_make(0, 0, 0);
                if (!heap_sum_eq(leaf[c], want))
                        return heap_fail(buf, len, "summary of chunk %" PRIu64 " is (%u,%u,%u), bitmap says (%u,%u,%u)",
                                    c, leaf[c].start, leaf[c].max, leaf[c].end, want.start, want.max, want.end);
        }
        for (int l = (int) h->nlevels - 2; l >= 0; l--) {
                unsigned log_child = heap_level_log_pages(h, (unsigned) l + 1);
                for (uint64_t i = 0; i < h->level_entries[l]; i++) {
                        struct heap_sum want = heap_summary_merge(&h->levels[l + 1][i << HEAP_LEVEL_BITS],
                                                                  1u << HEAP_LEVEL_BITS, log_child);
                        struct heap_sum got = h->levels[l][i];
                        if (!heap_sum_eq(got, want))
                                return heap_fail(buf, len, "summary level %d entry %" PRIu64 " is (%u,%u,%u), children say (%u,%u,%u)",
                                            l, i, got.start, got.max, got.end, want.start, want.max, want.end);
                }
        }
        return 0;
}

/*
 * The thread caches of slot s (tcache.h): states, and what only their
 * owners change, as far as it holds whatever the owners are doing. An
 * inactive cache holds nothing; an active one is in the slot's mask (the
 * reaper finds it there). Heap lock.
 */
static int check_tcaches(heap *h, uint32_t s, uint32_t slot_state, char *buf, size_t len) {
        struct heap_slot *sl = &h->slots[s];
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                struct heap_tcache *t = &sl->tc[c];
                uint32_t state = atomic_load_explicit(&t->state, memory_order_relaxed);
                if (state > HEAP_TC_REAP)
                        return heap_fail(buf, len, "slot %u thread cache %u: bad state %u", s, c, state);
                if (state == HEAP_TC_INACTIVE) {
                        if (slot_state == HEAP_SLOT_FREE && atomic_load(&t->seq) != 0)
                                return heap_fail(buf, len, "free slot %u: thread cache %u was not reset", s, c);
                        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++)
                                if (atomic_load(&sl->caches[c].owned[b]))
                                        return heap_fail(buf, len, "slot %u thread cache %u is inactive but its page cache owns pages", s, c);
                        for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                                if (t->count[k])
                                        return heap_fail(buf, len, "slot %u thread cache %u is inactive but lists pages", s, c);
                        if (t->norphans || t->orphans_lost)
                                return heap_fail(buf, len, "slot %u thread cache %u is inactive but keeps orphans", s, c);
                        continue;
                }
                if (slot_state == HEAP_SLOT_FREE)
                        return heap_fail(buf, len, "free slot %u: thread cache %u is active", s, c);
                if (!(sl->tc_mask & (UINT32_C(1) << c)))
                        return heap_fail(buf, len, "slot %u thread cache %u is active but not in the slot's mask", s, c);
                for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++)
                        if (t->count[k] > HEAP_MCACHE_DEPTH)
                                return heap_fail(buf, len, "slot %u thread cache %u: list %u holds %u entries", s, c, k, t->count[k]);
                if (t->norphans > HEAP_TC_ORPHANS)
                        return heap_fail(buf, len, "slot %u thread cache %u: %u orphans listed", s, c, t->norphans);
                if (t->pages > heap_mcache_cap_pages(h))
                        return heap_fail(buf, len, "slot %u thread cache %u: lists hold %u pages, bound %" PRIu64, s, c,
                                    t->pages, heap_mcache_cap_pages(h));
        }
        return 0;
}

/* seq of every thread cache of slot s while none is inside an operation,
 * else false: what their owners change may then be compared with the records. */
static bool tcaches_quiet(heap *h, uint32_t s, uint32_t *seqs) {
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                seqs[c] = atomic_load_explicit(&h->slots[s].tc[c].seq, memory_order_acquire);
                if (seqs[c] & 1)
                        return false;
        }
        return true;
}

/*
 * Every CACHED record of a slot (orphans aside) whose thread caches stayed
 * outside any operation for the whole check is in one of their lists (a stale or
 * repeated entry is harmless: a pop checks the record). The records pass
 * counted the slot's CACHED records in cached. Heap lock.
 */
static int check_tcache_lists(heap *h, uint32_t s, const uint32_t *seqs, uint64_t cached, uint64_t *seen,
                              char *buf, size_t len) {
        struct heap_slot *sl = &h->slots[s];
        uint64_t grown = heap_nchunks(h) * HEAP_CHUNK_PAGES, listed = 0;
        for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++) {
                const struct heap_tcache *t = &sl->tc[c];
                for (unsigned k = 0; k < HEAP_MCACHE_CLASSES; k++) {
                        uint64_t n = heap_mcache_class_pages(k);
                        for (unsigned i = 0; i < MIN((unsigned) t->count[k], HEAP_MCACHE_DEPTH); i++) {
                                uint64_t page = t->page[k][i];
                                if (page + n > grown || (seen[page / 64] >> (page % 64)) & 1 ||
                                    atomic_load(&h->records[page]) != heap_mcache_cached_record(n, s, c))
                                        continue;
                                seen[page / 64] |= UINT64_C(1) << (page % 64);
                                listed++;
                        }
                }
        }
        uint32_t now[HEAP_SLOT_CACHES];
        atomic_thread_fence(memory_order_acquire);
        if (!tcaches_quiet(h, s, now) || memcmp(now, seqs, sizeof(now)) != 0)
                return 0; /* an owner moved meanwhile: nothing to conclude */
        if (listed != cached)
                return heap_fail(buf, len, "slot %u: %" PRIu64 " CACHED records, %" PRIu64 " of them in its lists", s, cached,
                            listed);
        return 0;
}

/* Called with heap lock held. */
int heap_check_locked(heap *h, char *buf, size_t len) {
        struct heap_hdr *hd = h->hdr;
        uint64_t raw = heap_load(&hd->nchunks);
        int r;

        if (raw > h->nchunks_max)
                return heap_fail(buf, len, "grown chunks %" PRIu64 " > capacity %u chunks", raw, h->nchunks_max);
        if (hd->intent.op != HEAP_OP_NONE)
                return heap_fail(buf, len, "intent record %u left behind", hd->intent.op);
        uint64_t n = raw, grown = n * HEAP_CHUNK_PAGES;

        uint64_t alloc = 0, scav = 0;
        for (uint64_t c = 0; c < n; c++)
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        const struct heap_chunk *ch = &h->chunks[c];
                        if (ch->alloc[w] & ch->scav[w])
                                return heap_fail(buf, len, "chunk %" PRIu64 " word %u: pages both allocated and scavenged (%#" PRIx64 ")",
                                            c, w, ch->alloc[w] & ch->scav[w]);
                        alloc += (uint64_t) heap_popcount64(ch->alloc[w]);
                        scav += (uint64_t) heap_popcount64(ch->scav[w]);
                }

        r = heap_check_summaries_locked(h, buf, len);
        if (r < 0)
                return r;

        /* Who holds each allocated page: a cache, a scavenge intent, or a record.
         * Bitmaps over the grown heap, so that ranges cost words, not pages. */
        size_t words = (size_t) DIV_ROUND_UP(grown, 64) + 1;
        _cleanup_free_ uint64_t *amap = calloc(words, sizeof(uint64_t));
        _cleanup_free_ uint64_t *held = calloc(words, sizeof(uint64_t));
        _cleanup_free_ uint64_t *in_cache = calloc(words, sizeof(uint64_t));
        _cleanup_free_ uint64_t *in_rec = calloc(words, sizeof(uint64_t));
        if (!amap || !held || !in_cache || !in_rec)
                return -ENOMEM;
        for (uint64_t c = 0; c < n; c++)
                memcpy(&amap[c * HEAP_CHUNK_WORDS], h->chunks[c].alloc, sizeof(h->chunks[c].alloc));

        uint64_t search = heap_load(&hd->search_page);
        uint64_t below = MIN(search, grown);
        if (below && heap_bits_popcnt_range(amap, 0, (unsigned) below) != below)
                return heap_fail(buf, len, "a page below the search address %" PRIu64 " is free", search);

        uint64_t intents = 0;
        _cleanup_free_ uint32_t *seqs = calloc((size_t) h->max_slots * HEAP_SLOT_CACHES, sizeof(uint32_t));
        _cleanup_free_ bool *quiet = calloc(h->max_slots, sizeof(bool));
        _cleanup_free_ uint64_t *ncached = calloc(h->max_slots, sizeof(uint64_t));
        if (!seqs || !quiet || !ncached)
                return -ENOMEM;
        for (uint32_t s = 0; s < h->max_slots; s++) {
                struct heap_slot *sl = &h->slots[s];
                uint32_t state = atomic_load(&sl->state);
                if (state != HEAP_SLOT_FREE && state != HEAP_SLOT_LIVE)
                        return heap_fail(buf, len, "slot %u: bad state %u", s, state);
                r = check_tcaches(h, s, state, buf, len);
                if (r < 0)
                        return r;
                quiet[s] = state == HEAP_SLOT_LIVE && tcaches_quiet(h, s, &seqs[(size_t) s * HEAP_SLOT_CACHES]);
                for (uint32_t k = 0; k < HEAP_SLOT_SCAV_INTENTS; k++) {
                        uint64_t b = sl->scav[k].base, np = sl->scav[k].npages;
                        if (!np)
                                continue;
                        if (b >= grown || np > grown - b)
                                return heap_fail(buf, len, "slot %u: scavenge intent [%" PRIu64 ", +%" PRIu64 ") outside the heap",
                                            s, b, np);
                        if (heap_bits_popcnt_range(held, (unsigned) b, (unsigned) np))
                                return heap_fail(buf, len, "slot %u: scavenge intent at page %" PRIu64 " overlaps another", s, b);
                        heap_bits_set_range(held, (unsigned) b, (unsigned) np);
                        intents += np;
                }
                for (uint32_t ci = 0; ci < HEAP_SLOT_CACHES; ci++)
                        for (uint32_t b = 0; b < HEAP_CACHE_BLOCKS; b++) {
                                struct heap_cache *c = &sl->caches[ci];
                                uint64_t owned = atomic_load(&c->owned[b]);
                                uint32_t key = atomic_load(&c->key[b]);
                                if (!owned != !key)
                                        return heap_fail(buf, len, "slot %u cache %u block %u: key %u but owned %#" PRIx64,
                                                    s, ci, b, key, owned);
                                if (!owned)
                                        continue;
                                uint64_t base = heap_cache_key_base(key);
                                if (!(sl->cache_mask & (UINT32_C(1) << ci)))
                                        return heap_fail(buf, len, "slot %u cache %u owns pages but is not in the slot's cache mask", s, ci);
                                if (state == HEAP_SLOT_FREE)
                                        return heap_fail(buf, len, "free slot %u holds page cache %u", s, ci);
                                if (base + HEAP_CACHE_PAGES > grown)
                                        return heap_fail(buf, len, "slot %u cache %u: bad base page %" PRIu64, s, ci, base);
                                if (atomic_load(&c->free_mask[b]) & ~owned)
                                        return heap_fail(buf, len, "slot %u cache %u: free pages it does not own", s, ci);
                                if (held[base / 64] & owned)
                                        return heap_fail(buf, len, "slot %u cache %u: a page at %" PRIu64 " is held twice", s, ci, base);
                                held[base / 64] |= owned;
                                in_cache[base / 64] |= owned;
                        }
        }

        for (uint64_t p = 0; p < grown; p++) {
                uint64_t rec = atomic_load_explicit(&h->records[p], memory_order_acquire);
                uint64_t np = HEAP_REC_NPAGES(rec);
                if (!np)
                        continue;
                if (p + np > grown)
                        return heap_fail(buf, len, "record at page %" PRIu64 " (%" PRIu64 " pages) past the grown heap", p, np);
                if (HEAP_REC_OWNER(rec) > h->max_slots)
                        return heap_fail(buf, len, "record at page %" PRIu64 ": owner %u out of range", p, HEAP_REC_OWNER(rec));
                if ((rec & HEAP_REC_SHARED) &&
                    ((rec & HEAP_REC_CACHED) || !h->share_map[p] || !heap_share_live(h, h->share_map[p] - 1)))
                        return heap_fail(buf, len, "record at page %" PRIu64 ": shared, but no share entry holds it", p);
                if ((rec & HEAP_REC_CACHED) &&
                    (HEAP_REC_OWNER(rec) == 0 || (rec & HEAP_REC_KEEP) || !(rec & HEAP_REC_MEDIUM) ||
                     atomic_load(&h->slots[HEAP_REC_OWNER(rec) - 1].state) != HEAP_SLOT_LIVE))
                        return heap_fail(buf, len, "record at page %" PRIu64 ": cached, but not by a live slot's allocation", p);
                if ((rec & HEAP_REC_CACHED) && !heap_mcache_is_class(np))
                        return heap_fail(buf, len, "record at page %" PRIu64 ": cached, but %" PRIu64 " pages is no size class", p, np);
                if ((rec & HEAP_REC_ORPHAN) && !(rec & HEAP_REC_CACHED))
                        return heap_fail(buf, len, "record at page %" PRIu64 ": an orphan, but not cached", p);
                if ((rec & HEAP_REC_ORPHAN) &&
                    atomic_load(&h->slots[HEAP_REC_OWNER(rec) - 1].tc[(rec & HEAP_REC_CACHE_MASK) >> HEAP_REC_CACHE_SHIFT].state) ==
                            HEAP_TC_INACTIVE)
                        return heap_fail(buf, len, "record at page %" PRIu64 ": an orphan of an inactive thread cache", p);
                if ((rec & (HEAP_REC_CACHED | HEAP_REC_ORPHAN)) == HEAP_REC_CACHED)
                        ncached[HEAP_REC_OWNER(rec) - 1]++;
                unsigned pi = (unsigned) p, ni = (unsigned) np;
                if (heap_bits_popcnt_range(in_rec, pi, ni))
                        return heap_fail(buf, len, "record at page %" PRIu64 " overlaps another", p);
                heap_bits_set_range(in_rec, pi, ni);
                if (heap_bits_popcnt_range(amap, pi, ni) != np)
                        return heap_fail(buf, len, "record at page %" PRIu64 " (%" PRIu64 " pages) covers free pages", p, np);
                unsigned cached = heap_bits_popcnt_range(in_cache, pi, ni);
                if (cached != 0 && cached != np)
                        return heap_fail(buf, len, "record at page %" PRIu64 " straddles a page cache", p);
                if (cached == 0) {
                        if (heap_bits_popcnt_range(held, pi, ni))
                                return heap_fail(buf, len, "record at page %" PRIu64 ": a page is held twice", p);
                        heap_bits_set_range(held, pi, ni);
                }
        }

        /* in_rec is done with: it marks listed pages now. */
        memset(in_rec, 0, words * sizeof(uint64_t));
        for (uint32_t s = 0; s < h->max_slots; s++)
                if (quiet[s]) {
                        r = check_tcache_lists(h, s, &seqs[(size_t) s * HEAP_SLOT_CACHES], ncached[s], in_rec, buf, len);
                        if (r < 0)
                                return r;
                }

        for (size_t w = 0; w < words; w++)
                if (amap[w] != held[w]) {
                        uint64_t p = w * 64 + (uint64_t) __builtin_ctzll(amap[w] ^ held[w]);
                        return heap_fail(buf, len, (amap[w] >> (p % 64)) & 1 ? "page %" PRIu64 " is allocated but nobody holds it"
                                                                         : "page %" PRIu64 " is held but free",
                                    p);
                }

        if (heap_load(&hd->inuse_pages) + intents != alloc)
                return heap_fail(buf, len, "in use %" PRIu64 " pages + %" PRIu64 " scavenging != %" PRIu64 " allocated",
                            heap_load(&hd->inuse_pages), intents, alloc);
        if (heap_load(&hd->released_pages) != scav)
                return heap_fail(buf, len, "released %" PRIu64 " pages != %" PRIu64 " scavenged", heap_load(&hd->released_pages), scav);
        return heap_share_check_locked(h, buf, len);
}

int heap_check(heap *h, char *buf, size_t len) {
        int r = heap_verify_header(h, buf, len);
        if (r < 0)
                return r;
        r = heap_lock(h);
        if (r < 0)
                return heap_fail(buf, len, "heap is marked corrupt");
        r = heap_check_locked(h, buf, len);
        heap_unlock(h);
        return r;
}

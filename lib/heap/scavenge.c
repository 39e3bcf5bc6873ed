/* SPDX-License-Identifier: MIT */
/*
 * The scavenger, ported function by function from the seed
 * (mgcscavenge.go at Go commit d29f5247): release free, backed pages to the
 * kernel from the top of the heap down, one generation at a time, several
 * scavengers on disjoint reservations of the address space.
 */

#include <errno.h>

#include "heap/alloc.h"
#include "heap/pagealloc.h"
#include "heap/palloc.h"
#include "heap/scavenge.h"
#include "macro.h"

static inline unsigned lz64(uint64_t x) {
        return x ? (unsigned) __builtin_clzll(x) : 64;
}

/*
 * Ports fillAligned: x with every m-aligned group of m bits that has any
 * bit set filled with ones, e.g. fillAligned(0x0100a3, 8) == 0xff00ff.
 * The first step is the "zero in word" bit trick (graphics.stanford.edu
 * bithacks#ZeroInWord) widened from bytes to groups of m bits: it leaves the
 * top bit of each all-zero group set. m must be a power of two <= 64.
 */
uint64_t heap_fill_aligned(uint64_t x, unsigned m) {
        uint64_t c;
        switch (m) {
        case 1:
                return x;
        case 2:
                c = UINT64_C(0x5555555555555555);
                break;
        case 4:
                c = UINT64_C(0x7777777777777777);
                break;
        case 8:
                c = UINT64_C(0x7f7f7f7f7f7f7f7f);
                break;
        case 16:
                c = UINT64_C(0x7fff7fff7fff7fff);
                break;
        case 32:
                c = UINT64_C(0x7fffffff7fffffff);
                break;
        case 64:
                c = UINT64_C(0x7fffffffffffffff);
                break;
        default:
                /* Not a power of two <= 64 (Go throws): no candidates. */
                return UINT64_MAX;
        }
        x = ~((((x & c) + c) | x) | c);
        /* Top bit of each all-zero group set: subtracting 1 from each group fills
         * all but its top bit; OR with x sets that too, then invert. */
        return ~((x - (x >> (m - 1))) | x);
}

/*
 * Ports pallocData.hasScavengeCandidate: whether any min-aligned group of
 * min pages is free and not scavenged.
 */
bool heap_has_scavenge_candidate(const struct heap_chunk *c, uint64_t min) {
        for (int i = HEAP_CHUNK_WORDS - 1; i >= 0; i--) {
                /* 1s are scavenged or allocated; 0s are candidates. */
                uint64_t x = heap_fill_aligned(c->scav[i] | c->alloc[i], (unsigned) min);
                if (x != UINT64_MAX)
                        return true;
        }
        return false;
}

/*
 * Ports findScavengeCandidate (mgcscavenge.go). Searches down from
 * search_idx for the highest run of free, unscavenged pages of at least min
 * pages, aligned to min; truncates it to max (aligned up to min) from the
 * top. Grows the run to a whole huge page rather than split one, since a
 * split huge page costs more in TLB misses than the bytes it frees: when
 * the cut crosses a huge page boundary and the huge page below lies wholly
 * in the free run, the whole huge page is taken.
 */
unsigned heap_find_scavenge_candidate(const struct heap_chunk *c, unsigned search_idx, uint64_t min,
                                      uint64_t max, uint64_t pages_per_huge, unsigned *ret_start) {
        /* max may not be min-aligned: align it up, so the result stays min-aligned. */
        if (max == 0)
                max = min;
        else
                max = ALIGN_UP(max, min);

        int i = (int) (search_idx / 64);
        /* Skip words with nothing free and unscavenged. */
        for (; i >= 0; i--) {
                uint64_t x = heap_fill_aligned(c->scav[i] | c->alloc[i], (unsigned) min);
                if (x != UINT64_MAX)
                        break;
        }
        if (i < 0) {
                *ret_start = 0;
                return 0;
        }

        /* The run ends in word i; find where it starts, maybe several words below. */
        uint64_t x = heap_fill_aligned(c->scav[i] | c->alloc[i], (unsigned) min);
        unsigned z1 = lz64(~x);
        unsigned run, end = (unsigned) i * 64 + (64 - z1);
        if (z1 < 64 && (x << z1) != 0)
                /* More ones after the leading ones: the run ends inside this word. */
                run = lz64(x << z1);
        else {
                /* The run reaches the bottom of the word: continue below. */
                run = 64 - z1;
                for (int j = i - 1; j >= 0; j--) {
                        uint64_t y = heap_fill_aligned(c->scav[j] | c->alloc[j], (unsigned) min);
                        run += lz64(y);
                        if (y != 0)
                                break;
                }
        }

        /* Keep the run's full length: the huge page check needs it. */
        unsigned size = run;
        if (size > max)
                size = (unsigned) max;
        unsigned start = end - size;

        if (pages_per_huge > 0) {
                /* Would [start, start+size) break a free-and-unscavenged huge page? */
                unsigned above = (unsigned) ALIGN_UP((uint64_t) start, pages_per_huge);
                if (above <= end) {
                        unsigned below = (unsigned) ALIGN_DOWN((uint64_t) start, pages_per_huge);
                        if (below >= end - run) {
                                /* The huge page below start lies in the run: take all of it. */
                                size = size + (start - below);
                                start = below;
                        }
                }
        }
        *ret_start = start;
        return size;
}

/* ---- Go's addrRanges, fixed size, on the scav state ---- */

/*
 * The number of ranges, read once: a count past the array is no count (the
 * scav state is shared memory, and only a hint), so the ranges are then
 * none. Everything below indexes with this copy, never with the field.
 */
static uint32_t ranges_count(struct heap_hdr *hd) {
        uint32_t n = __atomic_load_n(&hd->nranges, __ATOMIC_RELAXED);
        return n <= HEAP_SCAV_RANGES ? n : 0;
}

/* Index of the first of the n ranges whose base is > addr (Go's findSucc). */
static uint32_t ranges_find_succ(struct heap_hdr *hd, uint32_t n, uint64_t addr) {
        uint32_t i = 0;
        while (i < n && hd->ranges[i][0] <= addr)
                i++;
        return i;
}

/* Ports addrRanges.add: keeps ranges sorted and merged. When full, the new range is dropped (a hint). */
void heap_scav_ranges_add(struct heap_hdr *hd, uint64_t base, uint64_t limit) {
        uint32_t n = ranges_count(hd);
        if (limit <= base)
                return;
        uint32_t i = ranges_find_succ(hd, n, base);
        bool down = i > 0 && hd->ranges[i - 1][1] == base;
        bool up = i < n && limit == hd->ranges[i][0];
        if (down && up) {
                hd->ranges[i - 1][1] = hd->ranges[i][1];
                for (uint32_t k = i; k + 1 < n; k++) {
                        hd->ranges[k][0] = hd->ranges[k + 1][0];
                        hd->ranges[k][1] = hd->ranges[k + 1][1];
                }
                n--;
        } else if (down)
                hd->ranges[i - 1][1] = limit;
        else if (up)
                hd->ranges[i][0] = base;
        else {
                if (n >= HEAP_SCAV_RANGES)
                        return;
                for (uint32_t k = n; k > i; k--) {
                        hd->ranges[k][0] = hd->ranges[k - 1][0];
                        hd->ranges[k][1] = hd->ranges[k - 1][1];
                }
                hd->ranges[i][0] = base;
                hd->ranges[i][1] = limit;
                n++;
        }
        hd->nranges = n;
}

/* Ports addrRanges.removeLast: up to nbytes from the top of the last range. */
void heap_scav_ranges_remove_last(struct heap_hdr *hd, uint64_t nbytes, uint64_t *ret_base,
                                  uint64_t *ret_limit) {
        uint32_t n = ranges_count(hd);
        *ret_base = *ret_limit = 0;
        if (n == 0) {
                hd->nranges = 0;
                return;
        }
        uint64_t *r = hd->ranges[n - 1];
        uint64_t rbase = r[0], rlimit = r[1];
        if (rlimit <= rbase) {
                hd->nranges = n - 1; /* empty or upside down: not a range */
                return;
        }
        if (rlimit - rbase > nbytes) {
                uint64_t new_end = rlimit - nbytes;
                *ret_base = new_end;
                *ret_limit = rlimit;
                r[1] = new_end;
                return;
        }
        *ret_base = rbase;
        *ret_limit = rlimit;
        hd->nranges = n - 1;
}

/* Ports addrRanges.removeGreaterEqual. */
void heap_scav_ranges_remove_greater_equal(struct heap_hdr *hd, uint64_t addr) {
        uint32_t n = ranges_count(hd);
        uint32_t pivot = ranges_find_succ(hd, n, addr);
        if (pivot == 0) {
                hd->nranges = 0;
                return;
        }
        uint64_t *r = hd->ranges[pivot - 1];
        if (r[0] <= addr && addr < r[1]) {
                /* Ports addrRange.removeGreaterEqual on the range holding addr. */
                if (addr <= r[0])
                        pivot--;
                else
                        r[1] = addr;
        }
        hd->nranges = pivot;
}

/* Ports scavengeReserve: the next range from the top, base aligned down to a chunk. */
int heap_scavenge_reserve(heap *h, uint64_t *ret_base, uint64_t *ret_limit, uint64_t *ret_gen) {
        struct heap_hdr *hd = h->hdr;
        uint64_t base, limit;
        int r = heap_scav_lock(h);
        if (r < 0)
                return r;
        *ret_gen = hd->gen;
        heap_scav_state_validate(h);
        heap_scav_ranges_remove_last(hd, hd->reservation_bytes, &base, &limit);
        if (limit <= base) {
                heap_scav_unlock(h);
                *ret_base = *ret_limit = 0;
                return 0;
        }
        uint64_t new_base = ALIGN_DOWN(base, h->chunk_bytes);
        heap_scav_ranges_remove_greater_equal(hd, new_base);
        heap_scav_unlock(h);

        /* The scav state is shared memory: stay inside the grown heap. */
        uint64_t sys = heap_nchunks(h) * h->chunk_bytes;
        if (limit > sys)
                limit = sys;
        if (new_base >= limit)
                new_base = limit = 0;
        *ret_base = new_base;
        *ret_limit = limit;
        return 0;
}

/* Ports scavengeUnreserve: what was not searched goes back, if still the same generation. */
void heap_scavenge_unreserve(heap *h, uint64_t base, uint64_t limit, uint64_t gen) {
        if (limit <= base)
                return;
        if (heap_scav_lock(h) < 0)
                return;
        heap_scav_state_validate(h);
        if (gen == h->hdr->gen)
                heap_scav_ranges_add(h->hdr, base, limit);
        heap_scav_unlock(h);
}

static void set_scavenged(heap *h, uint64_t base, uint64_t n) {
        while (n > 0) {
                uint64_t ci = base / HEAP_CHUNK_PAGES;
                unsigned i = base % HEAP_CHUNK_PAGES;
                unsigned k = (unsigned) MIN(n, (uint64_t) (HEAP_CHUNK_PAGES - i));
                heap_bits_set_range(h->chunks[ci].scav, i, k);
                base += k;
                n -= k;
        }
}

/*
 * The second half of scavengeRangeLocked: the pages come back free and
 * scavenged (freeHWM untouched: nothing new to find), the slot's intent
 * goes. When the release failed the pages are still backed: free, not
 * scavenged. Called with heap lock held.
 */
void heap_scav_free_locked(heap *h, uint32_t slot, uint32_t k, uint64_t base, uint64_t n, bool released) {
        struct heap_slot *sl = &h->slots[slot];
        heap_intent_block(h, k);
        heap_intent_begin(h, HEAP_OP_SCAV_FREE, slot, 0, base, n, released, 0);
        heap_pa_free(h, base, n, true);
        heap_test_point(h, HEAP_OP_SCAV_FREE, HEAP_STAGE_MID);
        if (released) {
                set_scavenged(h, base, n);
                heap_stats_released_add(h, (int64_t) n);
                heap_store(&h->hdr->released_total, h->hdr->released_total + (n << h->page_shift));
        }
        sl->scav[k].base = 0;
        sl->scav[k].npages = 0;
        heap_intent_end(h);
}

/*
 * Ports scavengeRangeLocked: marks the range allocated so no allocator
 * takes it, drops the heap lock around the release (a system call must not
 * stall allocators), then frees it as scavenged. The slot's intent names
 * the range while it is out, so that a scavenger killed here loses nothing.
 * Called with heap lock held; returns 0 with it held, or a negative errno
 * without it.
 */
static int scavenge_range_locked(heap *h, uint32_t slot, uint64_t ci, unsigned base, unsigned npages,
                                 uint64_t *ret_addr) {
        struct heap_slot *sl = &h->slots[slot];
        uint64_t page = ci * HEAP_CHUNK_PAGES + base;
        uint64_t addr = page << h->page_shift;
        int r;

        /* A free scavenge intent of the slot: one per scavenger of it in flight. */
        uint32_t k = 0;
        while (k < HEAP_SLOT_SCAV_INTENTS && sl->scav[k].npages)
                k++;
        if (k == HEAP_SLOT_SCAV_INTENTS) {
                heap_unlock(h);
                return -EBUSY;
        }
        heap_intent_block(h, k);
        heap_intent_begin(h, HEAP_OP_SCAV_MARK, slot, 0, page, npages, 0, 0);
        if (heap_pa_alloc_range(h, page, npages) != 0) {
                /* Go throws "double scavenge": the bitmaps lie. */
                heap_mark_corrupt(h);
                heap_intent_end(h);
                heap_unlock(h);
                return -EUCLEAN;
        }
        heap_test_point(h, HEAP_OP_SCAV_MARK, HEAP_STAGE_MID);
        sl->scav[k].base = page;
        sl->scav[k].npages = npages;
        heap_intent_end(h);
        heap_unlock(h);

        /* The scavenge low watermark. */
        if (heap_scav_lock(h) >= 0) {
                if (addr < h->hdr->scav_lwm)
                        h->hdr->scav_lwm = addr;
                heap_scav_unlock(h);
        }

        bool released = h->release(h, addr, (uint64_t) npages << h->page_shift, h->release_userdata) >= 0;

        r = heap_lock(h);
        if (r < 0)
                return r;
        heap_scav_free_locked(h, slot, k, page, npages, released);
        if (!released) {
                heap_unlock(h);
                return -EIO;
        }
        *ret_addr = addr;
        return 0;
}

/* Ports scavengeOneFast: only the chunk holding the top of work. */
static int scavenge_one_fast(heap *h, uint32_t slot, uint64_t *wlimit, uint64_t min_pages,
                             uint64_t max_pages, uint64_t *ret) {
        uint64_t max_addr = *wlimit - 1;
        uint64_t max_chunk = max_addr / h->chunk_bytes;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        if (max_chunk < heap_nchunks(h) && heap_leaf(h)[max_chunk].max >= min_pages) {
                unsigned start;
                unsigned idx = (unsigned) ((max_addr >> h->page_shift) % HEAP_CHUNK_PAGES);
                unsigned n = heap_find_scavenge_candidate(&h->chunks[max_chunk], idx, min_pages,
                                                          max_pages, h->pages_per_huge, &start);
                if (n != 0) {
                        uint64_t addr;
                        r = scavenge_range_locked(h, slot, max_chunk, start, n, &addr);
                        if (r < 0)
                                return r;
                        heap_unlock(h);
                        *wlimit = addr;
                        *ret = (uint64_t) n << h->page_shift;
                        return 0;
                }
        }
        heap_unlock(h);
        *wlimit = max_chunk * h->chunk_bytes;
        *ret = 0;
        return 0;
}

/*
 * Go's findCandidate, inside scavengeOne: an optimistic search without the
 * lock, from the top of work down, for a chunk that seems to have a
 * candidate. Reads are relaxed atomics; the caller verifies under the lock.
 */
static bool find_candidate(heap *h, uint64_t wbase, uint64_t wlimit, uint64_t min_pages,
                           uint64_t *ret_ci) {
        uint64_t n = heap_nchunks(h);
        for (uint64_t i = (wlimit - 1) / h->chunk_bytes + 1; i-- > wbase / h->chunk_bytes;) {
                if (i >= n)
                        continue;
                if (__atomic_load_n(&heap_leaf(h)[i].max, __ATOMIC_RELAXED) < min_pages)
                        continue;
                struct heap_chunk copy;
                for (unsigned w = 0; w < HEAP_CHUNK_WORDS; w++) {
                        copy.alloc[w] = __atomic_load_n(&h->chunks[i].alloc[w], __ATOMIC_RELAXED);
                        copy.scav[w] = __atomic_load_n(&h->chunks[i].scav[w], __ATOMIC_RELAXED);
                }
                if (heap_has_scavenge_candidate(&copy, min_pages)) {
                        *ret_ci = i;
                        return true;
                }
        }
        return false;
}

/*
 * Ports scavengeOne: walks work [*wbase, *wlimit) from the top until it
 * scavenges something (at most max bytes, more to keep a huge page whole),
 * and shrinks work to what was not searched. *ret = bytes released.
 */
static int scavenge_one(heap *h, uint32_t slot, uint64_t *wbase, uint64_t *wlimit, uint64_t max,
                        uint64_t *ret) {
        int r;
        *ret = 0;
        if (*wlimit <= *wbase)
                return 0;
        /* alignUp(max, pageSize)/pageSize without overflowing on max = ~0. */
        uint64_t max_pages = (max >> h->page_shift) + ((max & (h->page_size - 1)) != 0);
        uint64_t min_pages = h->min_pages;

        r = scavenge_one_fast(h, slot, wlimit, min_pages, max_pages, ret);
        if (r < 0 || *ret != 0)
                return r;

        while (*wlimit > *wbase) {
                uint64_t ci;
                if (!find_candidate(h, *wbase, *wlimit, min_pages, &ci)) {
                        *wlimit = *wbase;
                        break;
                }
                r = heap_lock(h);
                if (r < 0)
                        return r;
                unsigned start;
                unsigned n = heap_find_scavenge_candidate(&h->chunks[ci], HEAP_CHUNK_PAGES - 1, min_pages,
                                                          max_pages, h->pages_per_huge, &start);
                if (n > 0) {
                        uint64_t addr;
                        r = scavenge_range_locked(h, slot, ci, start, n, &addr);
                        if (r < 0)
                                return r;
                        heap_unlock(h);
                        *wlimit = addr;
                        *ret = (uint64_t) n << h->page_shift;
                        return 0;
                }
                heap_unlock(h);
                /* Fooled by a race: continue below that chunk. */
                *wlimit = ci * h->chunk_bytes;
        }
        return 0;
}

/*
 * Ports pageAlloc.scavenge: releases nbytes of free pages, highest first,
 * continuing where the last call of this generation stopped, until the
 * generation's ranges are exhausted. Only what was neither scavenged nor
 * searched is unreserved, so every call makes progress.
 */
int64_t heap_scavenge(heap *h, uint32_t slot, uint64_t nbytes) {
        uint64_t base = 0, limit = 0, gen = 0, released = 0, reserved = 0;
        int r = 0;

        if (slot >= h->max_slots)
                return -EINVAL;
        if (heap_checked(h) < 0)
                return -EUCLEAN;

        while (released < nbytes) {
                if (limit <= base) {
                        /* A generation's ranges cover the grown heap at most: a
                         * call that reserved more is fed ranges by someone
                         * writing the scav state, and stops. */
                        if (reserved > heap_nchunks(h) * h->chunk_bytes)
                                break;
                        r = heap_scavenge_reserve(h, &base, &limit, &gen);
                        if (r < 0 || limit <= base)
                                break;
                        reserved += limit - base;
                }
                uint64_t got;
                r = scavenge_one(h, slot, &base, &limit, nbytes - released, &got);
                released += got;
                if (r < 0)
                        break;
        }
        heap_scavenge_unreserve(h, base, limit, gen);
        if (released)
                atomic_fetch_add_explicit(&h->hdr->gen_released, released, memory_order_relaxed);
        if (r < 0 && released == 0)
                return r;
        return (int64_t) released;
}

/*
 * Not in Go: scavenges up to nbytes from the top of the whole grown heap,
 * outside the generation's ranges. Heap-growth scavenging falls back to it:
 * Go starts a generation every GC cycle, so its growth scavenging always
 * has ranges to search; ours may run when the generation is exhausted, or
 * before the daemon started one.
 */
int64_t heap_scavenge_whole(heap *h, uint32_t slot, uint64_t nbytes) {
        uint64_t base = 0, limit = heap_nchunks(h) * h->chunk_bytes, released = 0;
        int r = 0;

        if (slot >= h->max_slots)
                return -EINVAL;
        while (released < nbytes && limit > base) {
                uint64_t got;
                r = scavenge_one(h, slot, &base, &limit, nbytes - released, &got);
                released += got;
                if (r < 0)
                        break;
        }
        if (released)
                atomic_fetch_add_explicit(&h->hdr->gen_released, released, memory_order_relaxed);
        if (r < 0 && released == 0)
                return r;
        return (int64_t) released;
}

/*
 * Ports scavengeStartGen: the new generation searches the whole grown heap
 * again, but only below where there is something to find: freeHWM if
 * anything was freed above the last generation's lowest scavenge (scavLWM),
 * else scavLWM, where the last generation stopped.
 */
int heap_scavenge_start_gen(heap *h, struct heap_gen_report *ret) {
        struct heap_hdr *hd = h->hdr;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        r = heap_scav_lock(h);
        if (r < 0) {
                heap_unlock(h);
                return r;
        }
        uint64_t sys = heap_nchunks(h) * h->chunk_bytes;
        if (ret)
                *ret = (struct heap_gen_report) {
                        .gen = hd->gen,
                        .released = atomic_load(&hd->gen_released),
                        .total = hd->released_pages << h->page_shift,
                        .inuse = hd->inuse_pages << h->page_shift,
                        .retained = heap_retained(h),
                        .peak_inuse = hd->peak_inuse_pages << h->page_shift,
                };

        hd->nranges = 0;
        heap_scav_ranges_add(hd, 0, sys);
        uint64_t start = hd->scav_lwm < hd->free_hwm ? hd->free_hwm : hd->scav_lwm;
        heap_scav_ranges_remove_greater_equal(hd, start);

        /* May be zero for a small heap: the scavenger is then off, as in Go. */
        hd->reservation_bytes = ALIGN_UP(sys, h->chunk_bytes) / h->reservation_shards;
        heap_store(&hd->gen, hd->gen + 1);
        atomic_store(&hd->gen_released, 0);
        hd->free_hwm = HEAP_OFF_MIN;
        hd->scav_lwm = HEAP_OFF_MAX;
        heap_store(&hd->peak_inuse_pages, hd->inuse_pages);
        heap_scav_unlock(h);
        heap_unlock(h);
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Randomized test of the heap core against a reference model, through the
 * public API of lib/heap/heap.h only.
 *
 * The model knows, per page, whether one of our allocations holds it, or it
 * is free and backed, or free and released; per allocation, its owner slot,
 * flags and the data pattern written into it. After every step heap_check()
 * must pass and the statistics must agree with the model (within the pages
 * page caches may hold, which the public API does not show); at checkpoints,
 * with every page cache flushed, they must agree exactly, and retained memory
 * must equal what the kernel says is backed (fstat(heap_fd).st_blocks).
 *
 * Releases are learned two ways: through a fake release function that checks
 * each range against the model before punching it, and, when the library's
 * own punch-hole runs, from mincore() on the heap mapping. An allocation that
 * fails with -ENOMEM is retried with every cache flushed: it must then
 * succeed exactly when the model has a free run long enough.
 *
 * Sharing is modelled too: per allocation, whether it has a share entry,
 * the references each slot holds, the pool's (KEEP) and the names'; the
 * model predicts every result of ref, unref, free, handles (stale or not),
 * publish, lookup and unpublish, and which allocations reclaim frees.
 *
 * SCAV_SEED=<n> replays a run; SCAV_STEPS=<n> changes its length.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap/heap.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

#define MAX_LIVE_SLOTS 6u
#define CACHES_USED 4u /* page caches per slot the test drives */
#define NO_OWNER UINT32_MAX
#define RECENT_FREES 64u
#define HISTORY 24u
#define MODEL_SLOTS 16u /* max_slots of every configuration */
#define NAMES 24u       /* names the test uses: more than max_names */
#define HANDLES 16u     /* handles kept to redeem later */

enum page_state {
        PAGE_RELEASED = 0, /* free, not backed (new chunks start so) */
        PAGE_BACKED,       /* free, backed: a scavenger candidate */
        PAGE_ALLOC,        /* held by one of our allocations */
};

struct alloc {
        uint64_t off, npages;
        uint32_t owner, cache;
        unsigned flags;
        uint64_t tag;
        bool via_cache;             /* from a page cache: its pages may stay there when others free it */
        /* Sharing. */
        bool shared;                /* has a share entry */
        bool pool_ref;              /* the pool's reference (KEEP) */
        uint64_t stag;              /* its share tag */
        uint32_t names;             /* names bound to it */
        uint16_t refs[MODEL_SLOTS]; /* references each slot holds */
};

struct handle {
        uint64_t off, tag;
};

struct slot {
        bool live;
        uint32_t id;
};

struct model {
        /* the heap under test */
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size, capacity, cap_pages;
        uint32_t ps, phys, huge;
        heap *h_real; /* releases with the library's punch-hole */
        heap *h_fake; /* same heap, our release function */
        heap *h;      /* the one in use */

        /* the reference */
        uint8_t *page;      /* enum page_state per page */
        int64_t *start_idx; /* index into live[] at an allocation's first page, else -1 */
        struct alloc *live;
        size_t nlive, live_max;
        uint64_t alloc_pages;    /* pages in live[] */
        uint64_t released_pages; /* PAGE_RELEASED pages below heap_sys */
        uint64_t heap_sys;
        uint64_t gen, gen_released, released_total, growth_scavenged;
        uint64_t peak_seen;
        struct slot slots[MAX_LIVE_SLOTS];
        uint64_t recent_free[RECENT_FREES];
        unsigned nrecent;
        uint64_t next_tag;
        uint32_t max_shares, max_names;
        bool name_bound[NAMES];
        uint64_t name_off[NAMES];
        struct handle handles[HANDLES];
        unsigned nhandles;

        /* what the fake release function saw during the current step */
        uint64_t cb_pages;
        uint64_t cb_ranges[256][2];
        unsigned ncb;
        int64_t scav_expect; /* bytes heap_scavenge said it released this step, or -1 */
        bool alloc_step;     /* releases this step are heap-growth scavenging */
        bool checkpoint_now;

        /* diagnosis */
        uint64_t step;
        char history[HISTORY][128];
        unsigned nhistory;
        unsigned char *mincore_vec;

        /* counters for the closing line */
        uint64_t n_alloc, n_cache_alloc, n_enomem, n_enomem_found, n_free, n_bad_free, n_scav, n_gen,
                n_claim, n_reclaim, n_flush, n_checkpoints, scav_bytes, n_real_scav, n_fake_scav,
                n_share_ops, n_stale, n_cached_backed;
        bool maybe_backed; /* the last step left the heap with fewer released pages than the model */
};

static uint64_t rng_state;

static uint64_t rnd(void) {
        return test_rnd(&rng_state);
}

static uint64_t rnd_below(uint64_t n) {
        return n ? rnd() % n : 0;
}

static bool chance(unsigned percent) {
        return rnd_below(100) < percent;
}

/* Failures stop the run at the first step that diverges: later ones only echo it. */
#define FAILF(m, ...)                                                                 \
        do {                                                                          \
                fprintf(stderr, "%s:%d: step %" PRIu64 ": ", __FILE__, __LINE__,      \
                        (m)->step);                                                   \
                fprintf(stderr, __VA_ARGS__);                                         \
                fputc('\n', stderr);                                                  \
                test_failures++;                                                      \
        } while (0)

static void note(struct model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct model *m, const char *fmt, ...) {
        va_list ap;
        char *line = m->history[m->nhistory++ % HISTORY];
        int n = snprintf(line, 128, "%" PRIu64 ": ", m->step);

        va_start(ap, fmt);
        vsnprintf(line + n, 128 - n, fmt, ap);
        va_end(ap);
}

static void print_history(struct model *m) {
        unsigned first = m->nhistory > HISTORY ? m->nhistory - HISTORY : 0;

        fprintf(stderr, "last steps:\n");
        for (unsigned i = first; i < m->nhistory; i++)
                fprintf(stderr, "  %s\n", m->history[i % HISTORY]);
}

static uint64_t *word_at(struct model *m, uint64_t off) {
        return (uint64_t *) ((char *) m->base + off);
}

/* Three words per page (start, middle, end): cheap, and catches stray zeroing. */
static uint64_t pattern(uint64_t tag, uint64_t page, unsigned pos) {
        return (tag * UINT64_C(0x100000001b3)) ^ (page << 8) ^ pos ^ UINT64_C(0xa5a5a5a500000000);
}

static void write_pattern(struct model *m, const struct alloc *a) {
        for (uint64_t i = 0; i < a->npages; i++) {
                uint64_t off = a->off + i * m->ps;
                *word_at(m, off) = pattern(a->tag, i, 0);
                *word_at(m, off + m->ps / 2) = pattern(a->tag, i, 1);
                *word_at(m, off + m->ps - 8) = pattern(a->tag, i, 2);
        }
}

static bool verify_pattern(struct model *m, const struct alloc *a, const char *when) {
        for (uint64_t i = 0; i < a->npages; i++) {
                uint64_t off = a->off + i * m->ps;
                uint64_t pos[3] = { off, off + m->ps / 2, off + m->ps - 8 };

                for (unsigned k = 0; k < 3; k++) {
                        uint64_t got = *word_at(m, pos[k]), want = pattern(a->tag, i, k);
                        if (got != want) {
                                FAILF(m,
                                      "%s: data of allocation %#" PRIx64 " (%" PRIu64
                                      " pages, owner %d, flags %#x) changed at page %" PRIu64
                                      " word %u: got %#" PRIx64 " want %#" PRIx64,
                                      when, a->off, a->npages,
                                      a->owner == NO_OWNER ? -1 : (int) a->owner, a->flags, i,
                                      k, got, want);
                                return false;
                        }
                }
        }
        return true;
}

/* A ZERO allocation reads zero: every byte of small ones, three words per page of big ones. */
static bool verify_zero(struct model *m, uint64_t off, uint64_t npages) {
        for (uint64_t i = 0; i < npages; i++) {
                const uint64_t *p = word_at(m, off + i * m->ps);
                size_t words = m->ps / 8;

                if (npages <= 4 || i == npages / 2) {
                        for (size_t w = 0; w < words; w++)
                                if (p[w] != 0) {
                                        FAILF(m, "ZERO allocation %#" PRIx64 " (%" PRIu64
                                              " pages): page %" PRIu64 " word %zu is %#" PRIx64,
                                              off, npages, i, w, p[w]);
                                        return false;
                                }
                } else if (p[0] != 0 || p[words / 2] != 0 || p[words - 1] != 0) {
                        FAILF(m, "ZERO allocation %#" PRIx64 " (%" PRIu64
                              " pages): page %" PRIu64 " is not zero",
                              off, npages, i);
                        return false;
                }
        }
        return true;
}

static int run_check(struct model *m, const char *what) {
        char buf[512] = "";
        int r = heap_check(m->h, buf, sizeof(buf));

        if (r < 0) {
                FAILF(m, "heap_check after %s: %d: %s", what, r, buf);
                return r;
        }
        return 0;
}


/*
 * The fake release function: the scavenger may only release pages that are
 * free and backed in the model. It punches the hole itself, so that the
 * kernel's view (st_blocks, mincore, zero reads) stays the truth either way.
 */
static int fake_release(heap *h, uint64_t off, uint64_t len, void *userdata) {
        struct model *m = userdata;

        if (off % m->ps || len % m->ps || len == 0 || off > m->capacity ||
            len > m->capacity - off) {
                FAILF(m, "release of a bad range [%#" PRIx64 ", +%#" PRIx64 ")", off, len);
                return -EINVAL;
        }
        for (uint64_t p = off / m->ps; p < (off + len) / m->ps; p++)
                if (m->page[p] != PAGE_BACKED) {
                        FAILF(m, "release of [%#" PRIx64 ", +%#" PRIx64 "): page %#" PRIx64
                              " is %s in the model",
                              off, len, p * m->ps,
                              m->page[p] == PAGE_ALLOC ? "allocated" : "already released");
                        return -EINVAL;
                }
        if (fallocate(m->heap_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off,
                      (off_t) len) < 0)
                return negative_errno();
        for (uint64_t p = off / m->ps; p < (off + len) / m->ps; p++)
                m->page[p] = PAGE_RELEASED;
        m->released_pages += len / m->ps;
        m->cb_pages += len / m->ps;
        if (m->ncb < ELEMENTSOF(m->cb_ranges)) {
                m->cb_ranges[m->ncb][0] = off;
                m->cb_ranges[m->ncb][1] = off + len;
        }
        m->ncb++;
        return 0;
}

static int get_stats(struct model *m, struct heap_stats *st) {
        int r = heap_get_stats(m->h, st);
        if (r < 0)
                FAILF(m, "heap_get_stats: %d", r);
        return r;
}

/*
 * Pages of the model's free pages that are `from` (PAGE_BACKED or
 * PAGE_RELEASED) and that the kernel says are the other: they become so in
 * the model. Their number, or -errno.
 */
static int64_t learn_pages(struct model *m, int from) {
        uint64_t npages = m->heap_sys / m->ps, n = 0;
        bool resident = from == PAGE_RELEASED;

        if (npages == 0)
                return 0;
        if (mincore(m->base, m->heap_sys, m->mincore_vec) < 0) {
                FAILF(m, "mincore: %m");
                return -errno;
        }
        for (uint64_t p = 0; p < npages; p++)
                if (m->page[p] == from && (bool) (m->mincore_vec[p] & 1) == resident) {
                        m->page[p] = resident ? PAGE_BACKED : PAGE_RELEASED;
                        n++;
                }
        if (resident)
                m->released_pages -= n;
        else
                m->released_pages += n;
        return (int64_t) n;
}

/* Pages of the model's free and backed pages that the kernel no longer has. */
static int64_t learn_releases(struct model *m) {
        return learn_pages(m, PAGE_BACKED);
}

/*
 * Pages of the model's released ones that the kernel has: a small class's
 * refill takes its cached blocks from one run, released pages included, and
 * backs them (mcache.c), out of the model's sight. Learned before every
 * step that may release and at checkpoints, after which the heap's
 * released count must agree with the model's exactly.
 */
static int64_t learn_cached_backings(struct model *m) {
        int64_t n = learn_pages(m, PAGE_RELEASED);
        if (n > 0)
                m->n_cached_backed += (uint64_t) n;
        return n;
}

/* Before a step that may release pages (a scavenge, an allocation's growth scavenging). */
static void learn_before_release(struct model *m) {
        if (m->maybe_backed)
                (void) learn_cached_backings(m);
}

static uint32_t live_slot_count(struct model *m) {
        uint32_t n = 0;
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++)
                n += m->slots[i].live;
        return n;
}

static struct slot *random_live_slot(struct model *m) {
        uint32_t k = (uint32_t) rnd_below(live_slot_count(m));
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++)
                if (m->slots[i].live && k-- == 0)
                        return &m->slots[i];
        return NULL;
}

static bool slot_is_live(struct model *m, uint32_t id) {
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++)
                if (m->slots[i].live && m->slots[i].id == id)
                        return true;
        return false;
}

/* Pages page caches may hold beyond our allocations (up to HEAP_CACHE_BLOCKS
 * blocks each): the model cannot see them. */
static uint64_t cache_slack_pages(struct model *m) {
        return (uint64_t) live_slot_count(m) * CACHES_USED * HEAP_CACHE_MAX_PAGES;
}

static void model_add(struct model *m, uint64_t off, uint64_t npages, uint32_t owner,
                      uint32_t cache, unsigned flags, bool via_cache) {
        struct alloc *a;

        if (m->nlive == m->live_max) {
                m->live_max = m->live_max ? m->live_max * 2 : 256;
                m->live = realloc(m->live, m->live_max * sizeof(*m->live));
                if (!m->live)
                        abort();
        }
        a = &m->live[m->nlive];
        *a = (struct alloc) { .off = off, .npages = npages, .owner = owner, .cache = cache,
                              .flags = flags, .tag = ++m->next_tag, .via_cache = via_cache };
        m->start_idx[off / m->ps] = (int64_t) m->nlive++;
        for (uint64_t p = off / m->ps; p < off / m->ps + npages; p++) {
                if (m->page[p] == PAGE_RELEASED)
                        m->released_pages--;
                m->page[p] = PAGE_ALLOC;
        }
        m->alloc_pages += npages;
        write_pattern(m, a);
}

static void model_remove(struct model *m, size_t i) {
        struct alloc a = m->live[i];

        for (uint64_t p = a.off / m->ps; p < a.off / m->ps + a.npages; p++)
                m->page[p] = PAGE_BACKED;
        m->start_idx[a.off / m->ps] = -1;
        m->alloc_pages -= a.npages;
        m->recent_free[m->nrecent++ % RECENT_FREES] = a.off;
        if (i != m->nlive - 1) {
                m->live[i] = m->live[m->nlive - 1];
                m->start_idx[m->live[i].off / m->ps] = (int64_t) i;
        }
        m->nlive--;
}

static uint64_t pick_npages(void) {
        unsigned k = (unsigned) rnd_below(100);
        if (k < 60)
                return 1 + rnd_below(HEAP_CACHE_MAX_ALLOC - 1);
        if (k < 90)
                return HEAP_CACHE_MAX_ALLOC + rnd_below(128 - HEAP_CACHE_MAX_ALLOC + 1);
        return 129 + rnd_below(1024 - 129 + 1);
}

static void flush_all(struct model *m) {
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++)
                for (uint32_t c = 0; m->slots[i].live && c < CACHES_USED; c++) {
                        int r = heap_cache_flush(m->h, m->slots[i].id, c);
                        if (r < 0)
                                FAILF(m, "heap_cache_flush(%u, %u): %d", m->slots[i].id, c, r);
                }
}

static void op_alloc(struct model *m) {
        struct slot *s = random_live_slot(m);
        uint32_t cache = (uint32_t) rnd_below(CACHES_USED);
        uint64_t npages = pick_npages(), off = UINT64_MAX;
        unsigned flags = (chance(25) ? HEAP_ALLOC_ZERO : 0) | (chance(10) ? HEAP_ALLOC_KEEP : 0);
        bool cached = chance(70);
        struct heap_stats st;
        int r;

        learn_before_release(m);
        note(m, "%s slot %u cache %u npages %" PRIu64 " flags %#x",
             cached ? "heap_cache_alloc" : "heap_alloc", s->id, cache, npages, flags);
        if (cached) {
                m->n_cache_alloc++;
                r = heap_cache_alloc(m->h, s->id, cache, npages, flags, &off);
        } else {
                m->n_alloc++;
                r = heap_alloc(m->h, s->id, npages, flags, &off);
        }
        if (r == -ENOMEM) {
                /* Capacity is a hard limit, but only that: with every cache flushed,
                 * a run the model sees free must be found. */
                uint64_t run = 0, longest = 0;

                m->n_enomem++;
                flush_all(m);
                for (uint64_t p = 0; p < m->cap_pages; p++) {
                        run = m->page[p] == PAGE_ALLOC ? 0 : run + 1;
                        longest = MAX(longest, run);
                }
                r = heap_alloc(m->h, s->id, npages, flags, &off);
                cached = false; /* exact size */
                note(m, "  -ENOMEM; caches flushed, longest free run %" PRIu64 ": retry %d", longest, r);
                if (r == -ENOMEM && longest < npages)
                        return;
                if (r == -ENOMEM) {
                        FAILF(m, "heap_alloc(%" PRIu64 " pages) = -ENOMEM with every cache flushed, "
                              "but the model has a free run of %" PRIu64 " pages", npages, longest);
                        return;
                }
                if (r == 0)
                        m->n_enomem_found++;
                if (r == 0 && longest < npages) {
                        FAILF(m, "heap_alloc(%" PRIu64 " pages) succeeded at %#" PRIx64
                              ", but the model's longest free run is %" PRIu64 " pages",
                              npages, off, longest);
                        return;
                }
        }
        if (r < 0) {
                FAILF(m, "allocating %" PRIu64 " pages: %d", npages, r);
                return;
        }
        note(m, "  -> %#" PRIx64, off);
        /* The cache rounds 16-128 pages up to a medium size class (mcache.c). */
        if (cached && !(flags & HEAP_ALLOC_KEEP) && npages >= HEAP_CACHE_MAX_ALLOC && npages <= 128) {
                int64_t got = heap_alloc_size(m->h, off);
                uint64_t want = npages <= 16 ? 16 : npages;
                if (npages > 16) {
                        uint64_t step = UINT64_C(1) << (61 - __builtin_clzll(npages - 1));
                        want = (npages + step - 1) & ~(step - 1);
                }
                /* An empty class borrows a block of up to two classes up. */
                uint64_t ok = want;
                for (unsigned up = 0; up < 2 && got != (int64_t) (ok * m->ps) && ok < 128; up++)
                        ok += UINT64_C(1) << (61 - __builtin_clzll(ok));
                if (got != (int64_t) (ok * m->ps)) {
                        FAILF(m, "heap_cache_alloc(%" PRIu64 " pages): heap_alloc_size = %" PRId64
                              ", want the class size %" PRIu64 " or up to two classes more",
                              npages, got, want * m->ps);
                        return;
                }
                npages = ok;
        }
        if (get_stats(m, &st) < 0)
                return;
        if (off % m->ps || off >= st.heap_sys || npages > (st.heap_sys - off) / m->ps) {
                FAILF(m, "allocation of %" PRIu64 " pages at %#" PRIx64
                      " is outside the grown heap (heap_sys %#" PRIx64 ")",
                      npages, off, st.heap_sys);
                return;
        }
        for (unsigned i = 0; i < m->ncb && i < ELEMENTSOF(m->cb_ranges); i++)
                if (m->cb_ranges[i][0] < off + npages * m->ps && off < m->cb_ranges[i][1]) {
                        FAILF(m, "heap-growth scavenging released [%#" PRIx64 ", %#" PRIx64
                              ") inside the allocation it made at %#" PRIx64,
                              m->cb_ranges[i][0], m->cb_ranges[i][1], off);
                        return;
                }
        for (uint64_t p = off / m->ps; p < off / m->ps + npages; p++)
                if (m->page[p] == PAGE_ALLOC) {
                        uint64_t q = p;
                        while (m->start_idx[q] < 0)
                                q--;
                        FAILF(m, "allocation [%#" PRIx64 ", +%" PRIu64
                              " pages) overlaps live allocation at %#" PRIx64 " (%" PRIu64
                              " pages, owner %d)",
                              off, npages, q * m->ps, m->live[m->start_idx[q]].npages,
                              (int) m->live[m->start_idx[q]].owner);
                        return;
                }
        if (heap_alloc_size(m->h, off) != (int64_t) (npages * m->ps)) {
                FAILF(m, "heap_alloc_size(%#" PRIx64 ") = %" PRId64 ", want %" PRIu64, off,
                      heap_alloc_size(m->h, off), npages * m->ps);
                return;
        }
        if ((flags & HEAP_ALLOC_ZERO) && !verify_zero(m, off, npages))
                return;
        model_add(m, off, npages, s->id, cache, flags, cached);
}


/* Sharing in the model. */
static uint64_t alloc_refs(const struct alloc *a) {
        uint64_t n = (uint64_t) a->pool_ref + a->names;
        for (unsigned s = 0; s < MODEL_SLOTS; s++)
                n += a->refs[s];
        return n;
}

static struct alloc *alloc_at(struct model *m, uint64_t off) {
        if (off >= m->capacity || off % m->ps || m->start_idx[off / m->ps] < 0)
                return NULL;
        return &m->live[m->start_idx[off / m->ps]];
}

static uint32_t shared_count(struct model *m) {
        uint32_t n = 0;
        for (size_t i = 0; i < m->nlive; i++)
                n += m->live[i].shared;
        return n;
}

/* Whether a may get a share entry (or has one). */
static bool share_room(struct model *m, const struct alloc *a) {
        return a->shared || shared_count(m) < m->max_shares;
}

/* a got a share entry (or had one): its implicit reference moves into it;
 * its tag is learned, and must not change while it lives. */
static bool share_made(struct model *m, struct alloc *a, uint32_t slot) {
        uint64_t tag;
        int r;

        if (!a->shared) {
                a->shared = true;
                if ((a->flags & HEAP_ALLOC_KEEP) || a->owner == NO_OWNER)
                        a->pool_ref = true;
                else
                        a->refs[a->owner] = 1;
        }
        r = heap_share_tag(m->h, slot, a->off, &tag);
        if (r < 0 || tag == 0 || (a->stag && tag != a->stag)) {
                FAILF(m, "heap_share_tag(%#" PRIx64 ") = %d, tag %" PRIu64 " (was %" PRIu64 ")", a->off, r, tag,
                      a->stag);
                return false;
        }
        a->stag = tag;
        return true;
}

/* Whether the pages of a may stay with its owner's thread cache when someone
 * else frees it (in its page cache, or as an orphan of its lists). */
static bool may_stay_cached(struct model *m, const struct alloc *a) {
        return a->via_cache && a->npages <= 128 && !(a->flags & HEAP_ALLOC_KEEP) && a->owner != NO_OWNER &&
               slot_is_live(m, a->owner);
}

/* A slot that holds a reference on a, if any (else any live slot). */
static uint32_t holder_or_any(struct model *m, const struct alloc *a) {
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++)
                if (m->slots[i].live && a->refs[m->slots[i].id] && chance(70))
                        return m->slots[i].id;
        return random_live_slot(m)->id;
}

/* The result of an operation that must either succeed or be refused with want (and change nothing). */
static bool expect_result(struct model *m, const char *what, int r, int want) {
        if (r != want) {
                FAILF(m, "%s = %d, want %d", what, r, want);
                return false;
        }
        return true;
}

/* a lost its last reference: it must be gone. */
static void model_gone(struct model *m, struct alloc *a, const char *what) {
        if (heap_alloc_size(m->h, a->off) != -EINVAL) {
                FAILF(m, "%s dropped the last reference of %#" PRIx64 " but it is still live", what, a->off);
                return;
        }
        model_remove(m, (size_t) (a - m->live));
}

static void op_ref(struct model *m) {
        struct alloc *a;
        uint32_t slot;
        int r;

        if (m->nlive == 0)
                return;
        a = &m->live[rnd_below(m->nlive)];
        slot = random_live_slot(m)->id;
        note(m, "heap_ref slot %u off %#" PRIx64 " (shared %d)", slot, a->off, a->shared);
        m->n_share_ops++;
        r = heap_ref(m->h, slot, a->off);
        if (!share_room(m, a)) {
                expect_result(m, "heap_ref with the share table full", r, -ENOSPC);
                return;
        }
        if (!expect_result(m, "heap_ref", r, 0) || !share_made(m, a, slot))
                return;
        a->refs[slot]++;
}

static void op_unref(struct model *m) {
        struct alloc *a;
        uint32_t slot, cache = (uint32_t) rnd_below(CACHES_USED);
        int r, want = 0;
        bool gone = false;

        if (m->nlive == 0)
                return;
        a = &m->live[rnd_below(m->nlive)];
        slot = holder_or_any(m, a);
        if (a->owner == slot && chance(80))
                cache = a->cache;
        if (!a->shared) {
                /* The owner's reference is its record's: unref is a free. */
                if ((a->flags & HEAP_ALLOC_KEEP) || a->owner != slot)
                        want = -ENOENT;
                else
                        gone = true;
        } else if (!a->refs[slot])
                want = -ENOENT;
        else
                gone = alloc_refs(a) == 1;
        note(m, "heap_unref slot %u cache %u off %#" PRIx64 " (shared %d, refs %" PRIu64 ")", slot, cache, a->off,
             a->shared, alloc_refs(a));
        m->n_share_ops++;
        if (gone && !verify_pattern(m, a, "before the last unref"))
                return;
        r = heap_unref(m->h, slot, cache, a->off);
        if (!expect_result(m, "heap_unref", r, want) || want)
                return;
        if (a->shared)
                a->refs[slot]--;
        if (gone)
                model_gone(m, a, "heap_unref");
}

static void op_handle(struct model *m) {
        struct alloc *a;
        uint32_t slot = random_live_slot(m)->id;
        uint64_t tag = 0;
        int r;

        if (m->nlive == 0)
                return;
        a = &m->live[rnd_below(m->nlive)];
        note(m, "heap_share_tag slot %u off %#" PRIx64, slot, a->off);
        m->n_share_ops++;
        r = heap_share_tag(m->h, slot, a->off, &tag);
        if (!share_room(m, a)) {
                expect_result(m, "heap_share_tag with the share table full", r, -ENOSPC);
                return;
        }
        if (!expect_result(m, "heap_share_tag", r, 0) || !share_made(m, a, slot))
                return;
        m->handles[m->nhandles++ % HANDLES] = (struct handle) { a->off, tag };
}

/* A handle kept from earlier: a reference if its allocation is still the one tagged, else -ESTALE. */
static void op_ref_handle(struct model *m) {
        const struct handle *hd;
        struct alloc *a;
        uint32_t slot = random_live_slot(m)->id;
        int r;

        if (m->nhandles == 0)
                return;
        hd = &m->handles[rnd_below(MIN(m->nhandles, HANDLES))];
        a = alloc_at(m, hd->off);
        bool valid = a && a->shared && a->stag == hd->tag;
        note(m, "heap_ref_tagged slot %u off %#" PRIx64 " tag %" PRIu64 " (%s)", slot, hd->off, hd->tag,
             valid ? "valid" : "stale");
        m->n_share_ops++;
        r = heap_ref_tagged(m->h, slot, hd->off, hd->tag);
        if (!expect_result(m, valid ? "heap_ref_tagged" : "heap_ref_tagged of a stale handle", r, valid ? 0 : -ESTALE))
                return;
        if (valid)
                a->refs[slot]++;
        else
                m->n_stale++;
}

static uint32_t bound_names(struct model *m) {
        uint32_t n = 0;
        for (unsigned k = 0; k < NAMES; k++)
                n += m->name_bound[k];
        return n;
}

static void op_publish(struct model *m) {
        unsigned k = (unsigned) rnd_below(NAMES);
        uint32_t slot = random_live_slot(m)->id;
        struct alloc *a;
        char name[16];
        int r, want = 0;

        if (m->nlive == 0)
                return;
        a = &m->live[rnd_below(m->nlive)];
        snprintf(name, sizeof(name), "n%u", k);
        if (m->name_bound[k])
                want = -EEXIST;
        else if (bound_names(m) == m->max_names || !share_room(m, a))
                want = -ENOSPC;
        note(m, "heap_publish slot %u %s off %#" PRIx64 " (want %d)", slot, name, a->off, want);
        m->n_share_ops++;
        r = heap_publish(m->h, slot, name, a->off);
        if (!expect_result(m, "heap_publish", r, want) || want)
                return;
        if (!share_made(m, a, slot))
                return;
        a->names++;
        m->name_bound[k] = true;
        m->name_off[k] = a->off;
}

static void op_lookup(struct model *m) {
        unsigned k = (unsigned) rnd_below(NAMES);
        uint32_t slot = random_live_slot(m)->id;
        uint64_t off = UINT64_MAX;
        char name[16];
        int r;

        snprintf(name, sizeof(name), "n%u", k);
        note(m, "heap_lookup slot %u %s (bound %d)", slot, name, m->name_bound[k]);
        m->n_share_ops++;
        r = heap_lookup(m->h, slot, name, 0, &off);
        if (!expect_result(m, "heap_lookup", r, m->name_bound[k] ? 0 : -ENOENT) || r < 0)
                return;
        struct alloc *a = alloc_at(m, off);
        if (off != m->name_off[k] || !a) {
                FAILF(m, "heap_lookup(%s) = %#" PRIx64 ", the model bound it to %#" PRIx64, name, off, m->name_off[k]);
                return;
        }
        a->refs[slot]++;
}

static void op_unpublish(struct model *m) {
        unsigned k = (unsigned) rnd_below(NAMES);
        uint32_t slot = random_live_slot(m)->id;
        char name[16];
        int r;

        snprintf(name, sizeof(name), "n%u", k);
        note(m, "heap_unpublish slot %u %s (bound %d)", slot, name, m->name_bound[k]);
        m->n_share_ops++;
        struct alloc *a = m->name_bound[k] ? alloc_at(m, m->name_off[k]) : NULL;
        if (a && alloc_refs(a) == 1 && !verify_pattern(m, a, "before its last name went"))
                return;
        r = heap_unpublish(m->h, slot, name);
        if (!expect_result(m, "heap_unpublish", r, m->name_bound[k] ? 0 : -ENOENT) || r < 0)
                return;
        m->name_bound[k] = false;
        a->names--;
        if (alloc_refs(a) == 0)
                model_gone(m, a, "heap_unpublish");
}

static void op_free(struct model *m) {
        size_t i;
        struct alloc *a;
        uint32_t slot, cache;
        int r;

        if (m->nlive == 0)
                return;
        i = rnd_below(m->nlive);
        a = &m->live[i];
        if (a->owner != NO_OWNER && slot_is_live(m, a->owner) && chance(85)) {
                slot = a->owner;
                cache = chance(80) ? a->cache : (uint32_t) rnd_below(CACHES_USED);
        } else {
                slot = random_live_slot(m)->id;
                cache = (uint32_t) rnd_below(CACHES_USED);
        }
        /* A shared allocation: the caller's reference, else the pool's, else it is others'. */
        int want = 0;
        bool gone = true;
        if (a->shared && a->refs[slot] == 0 && !a->pool_ref)
                want = -EBUSY;
        else if (a->shared)
                gone = alloc_refs(a) == 1;
        note(m, "heap_free slot %u cache %u off %#" PRIx64 " (%" PRIu64 " pages, owner %d, refs %" PRIu64 ")", slot,
             cache, a->off, a->npages, a->owner == NO_OWNER ? -1 : (int) a->owner, alloc_refs(a));
        m->n_free++;
        if (!verify_pattern(m, a, "before free"))
                return;
        r = heap_free(m->h, slot, cache, a->off);
        if (r != want) {
                FAILF(m, "heap_free of live allocation %#" PRIx64 ": %d, want %d", a->off, r, want);
                return;
        }
        if (want)
                return;
        if (a->shared && a->refs[slot])
                a->refs[slot]--;
        else if (a->shared)
                a->pool_ref = false;
        if (!gone) {
                if (heap_alloc_size(m->h, a->off) != (int64_t) (a->npages * m->ps))
                        FAILF(m, "heap_free of %#" PRIx64 " freed it while %" PRIu64 " references remain",
                              a->off, alloc_refs(a));
                return;
        }
        if (heap_alloc_size(m->h, a->off) != -EINVAL)
                FAILF(m, "heap_alloc_size(%#" PRIx64 ") after free = %" PRId64 ", want -EINVAL",
                      a->off, heap_alloc_size(m->h, a->off));
        model_remove(m, i);
}

static bool stats_equal(const struct heap_stats *a, const struct heap_stats *b) {
        return memcmp(a, b, sizeof(*a)) == 0;
}

/* A free of something that is not a live allocation start: -EINVAL, nothing changes. */
static void op_bad_free(struct model *m) {
        struct heap_stats before, after;
        uint64_t off = UINT64_MAX;
        const char *what = NULL;
        struct slot *s = random_live_slot(m);
        uint32_t slot = s->id, cache = (uint32_t) rnd_below(CACHES_USED);
        bool want_einval = true;
        int64_t keep = -1; /* a live allocation that must survive */
        unsigned variant = (unsigned) rnd_below(8);
        int r;

        switch (variant) {
        case 0: /* double free */
                if (m->nrecent > 0) {
                        off = m->recent_free[rnd_below(MIN(m->nrecent, RECENT_FREES))];
                        if (m->start_idx[off / m->ps] < 0)
                                what = "double free";
                }
                break;
        case 1: /* inside a live allocation */
                if (m->nlive > 0) {
                        keep = (int64_t) rnd_below(m->nlive);
                        if (m->live[keep].npages > 1) {
                                off = m->live[keep].off +
                                      (1 + rnd_below(m->live[keep].npages - 1)) * m->ps;
                                what = "free inside an allocation";
                        }
                }
                break;
        case 2: /* unaligned */
                if (m->nlive > 0) {
                        keep = (int64_t) rnd_below(m->nlive);
                        off = m->live[keep].off + 1 + rnd_below(m->ps - 1);
                        what = "unaligned free";
                }
                break;
        case 3: /* a page that is no allocation's start */
                if (m->heap_sys > 0) {
                        off = rnd_below(m->heap_sys / m->ps) * m->ps;
                        if (m->start_idx[off / m->ps] < 0)
                                what = "free of a page that starts nothing";
                }
                break;
        case 4: { /* out of range */
                const uint64_t offs[] = { m->heap_sys, m->capacity, m->capacity + m->ps,
                                          UINT64_MAX & ~(uint64_t) (m->ps - 1), UINT64_MAX,
                                          m->capacity * 2 };
                off = offs[rnd_below(ELEMENTSOF(offs))];
                if (off >= m->heap_sys)
                        what = "free out of range";
                break;
        }
        case 5: /* a slot that does not exist */
        case 6: /* a cache that does not exist */
                if (m->nlive > 0) {
                        keep = (int64_t) rnd_below(m->nlive);
                        if (m->live[keep].shared) {
                                keep = -1; /* its free drops a reference: not a bad free */
                                break;
                        }
                        off = m->live[keep].off;
                        if (variant == 5) {
                                slot = heap_max_slots(m->h) + (uint32_t) rnd_below(3);
                                what = "free with a bad slot";
                        } else {
                                cache = HEAP_SLOT_CACHES + (uint32_t) rnd_below(3);
                                what = "free with a bad cache";
                        }
                        want_einval = false; /* an error, or a plain free */
                }
                break;
        default: /* a free page of the grown heap */
                if (m->heap_sys > 0) {
                        uint64_t p = rnd_below(m->heap_sys / m->ps);
                        if (m->page[p] != PAGE_ALLOC) {
                                off = p * m->ps;
                                what = "free of a free page";
                        }
                }
                break;
        }
        if (!what) {
                off = m->capacity;
                what = "free at capacity";
        }
        note(m, "bad free (%s) slot %u cache %u off %#" PRIx64, what, slot, cache, off);
        m->n_bad_free++;
        if (get_stats(m, &before) < 0)
                return;
        r = heap_free(m->h, slot, cache, off);
        if (!want_einval && r == 0) {
                /* The slot and cache only pick the path; a free through a bad one
                 * may take the locked path, as long as the allocation is freed. */
                struct alloc *a = &m->live[keep];
                if (heap_alloc_size(m->h, a->off) != -EINVAL)
                        FAILF(m, "%s returned 0 but %#" PRIx64 " is still live", what, a->off);
                model_remove(m, (size_t) keep);
                return;
        }
        if (want_einval ? r != -EINVAL : r >= 0) {
                FAILF(m, "%s: heap_free(slot %u, cache %u, %#" PRIx64 ") = %d, want %s", what,
                      slot, cache, off, r, want_einval ? "-EINVAL" : "an error");
                if (r == 0 && keep >= 0)
                        model_remove(m, (size_t) keep); /* keep the model honest */
                return;
        }
        if (get_stats(m, &after) < 0)
                return;
        if (!stats_equal(&before, &after))
                FAILF(m, "%s changed the statistics (inuse %" PRIu64 " -> %" PRIu64
                      ", released %" PRIu64 " -> %" PRIu64 ")",
                      what, before.inuse, after.inuse, before.released, after.released);
        if (keep >= 0) {
                struct alloc *a = &m->live[keep];
                if (heap_alloc_size(m->h, a->off) != (int64_t) (a->npages * m->ps))
                        FAILF(m, "%s destroyed the live allocation at %#" PRIx64, what, a->off);
        }
}

static void op_bad_alloc(struct model *m) {
        struct slot *s = random_live_slot(m);
        struct heap_stats before, after;
        uint64_t off = 0;
        int r;

        if (get_stats(m, &before) < 0)
                return;
        switch (rnd_below(4)) {
        case 0:
                note(m, "heap_alloc of 0 pages");
                r = heap_alloc(m->h, s->id, 0, 0, &off);
                if (r != -EINVAL)
                        FAILF(m, "heap_alloc of 0 pages = %d, want -EINVAL", r);
                break;
        case 1:
                note(m, "heap_cache_alloc of 0 pages");
                r = heap_cache_alloc(m->h, s->id, 0, 0, 0, &off);
                if (r != -EINVAL)
                        FAILF(m, "heap_cache_alloc of 0 pages = %d, want -EINVAL", r);
                break;
        case 2:
                note(m, "heap_alloc with unknown flags");
                r = heap_alloc(m->h, s->id, 1, 1u << 7, &off);
                if (r != -EINVAL)
                        FAILF(m, "heap_alloc with flags 0x80 = %d, want -EINVAL", r);
                break;
        default:
                note(m, "heap_alloc beyond capacity");
                r = heap_alloc(m->h, s->id, m->cap_pages + 1, 0, &off);
                if (r != -ENOMEM && r != -EINVAL)
                        FAILF(m, "heap_alloc of capacity+1 pages = %d, want -ENOMEM", r);
                break;
        }
        if (r >= 0)
                return; /* reported; the model no longer knows the heap */
        if (get_stats(m, &after) < 0)
                return;
        /* A failed allocation may not change what is allocated or released. */
        if (before.inuse != after.inuse || before.released != after.released)
                FAILF(m, "a refused allocation changed inuse %" PRIu64 " -> %" PRIu64
                      " or released %" PRIu64 " -> %" PRIu64,
                      before.inuse, after.inuse, before.released, after.released);
}

static void op_scavenge(struct model *m) {
        uint32_t slot = chance(50) ? 0 : random_live_slot(m)->id;
        uint64_t nbytes, bound;
        int64_t r;

        switch (rnd_below(10)) {
        case 0:
                nbytes = UINT64_MAX;
                break;
        case 1: case 2:
                nbytes = 1 + rnd_below(3 * m->ps); /* a page or three, unaligned */
                break;
        default:
                nbytes = 1 + rnd_below(8u << 20);
                break;
        }
        learn_before_release(m);
        note(m, "heap_scavenge slot %u nbytes %#" PRIx64 " (%s)", slot, nbytes,
             m->h == m->h_fake ? "fake release" : "punch-hole");
        m->n_scav++;
        if (m->h == m->h_fake)
                m->n_fake_scav++;
        else
                m->n_real_scav++;
        r = heap_scavenge(m->h, slot, nbytes);
        if (r < 0) {
                FAILF(m, "heap_scavenge(%#" PRIx64 "): %" PRId64, nbytes, r);
                return;
        }
        note(m, "  -> %" PRId64, r);
        m->scav_bytes += (uint64_t) r;
        bound = nbytes == UINT64_MAX ? UINT64_MAX
                                     : ALIGN_UP(ALIGN_UP(nbytes, (uint64_t) m->ps), (uint64_t) m->phys) + m->huge;
        if ((uint64_t) r > bound)
                FAILF(m, "heap_scavenge(%#" PRIx64 ") released %" PRId64 " bytes, more than %" PRIu64,
                      nbytes, r, bound);
        /* post_step() checks r against what the kernel and the fake saw. */
        m->scav_expect = r;
}

static void op_start_gen(struct model *m) {
        struct heap_gen_report rep;
        struct heap_stats st;
        int r;

        note(m, "heap_scavenge_start_gen");
        m->n_gen++;
        r = heap_scavenge_start_gen(m->h, &rep);
        if (r < 0) {
                FAILF(m, "heap_scavenge_start_gen: %d", r);
                return;
        }
        if (get_stats(m, &st) < 0)
                return;
        if (rep.gen != m->gen)
                FAILF(m, "generation report: gen %" PRIu64 ", want %" PRIu64, rep.gen, m->gen);
        if (rep.released != m->gen_released)
                FAILF(m, "generation report: released %" PRIu64 ", the model saw %" PRIu64,
                      rep.released, m->gen_released);
        if (rep.total != st.released || rep.inuse != st.inuse || rep.retained != st.retained)
                FAILF(m, "generation report: total/inuse/retained %" PRIu64 "/%" PRIu64 "/%" PRIu64
                      ", stats say %" PRIu64 "/%" PRIu64 "/%" PRIu64,
                      rep.total, rep.inuse, rep.retained, st.released, st.inuse, st.retained);
        if (rep.peak_inuse < m->peak_seen)
                FAILF(m, "generation report: peak_inuse %" PRIu64 " below an in-use seen (%" PRIu64 ")",
                      rep.peak_inuse, m->peak_seen);
        m->gen++;
        m->gen_released = 0;
        m->peak_seen = st.inuse;
}

/* Reconnect after a daemon restart: only a live slot of the same pid. */
static void op_reclaim_for(struct model *m) {
        struct slot *s = random_live_slot(m);
        uint32_t pid = (uint32_t) getpid(), other;
        struct heap_stats before, after;
        int r;

        note(m, "heap_slot_reclaim_for slot %u", s->id);
        if (get_stats(m, &before) < 0)
                return;
        r = heap_slot_reclaim_for(m->h, s->id, pid + 1);
        if (r != -ESTALE)
                FAILF(m, "heap_slot_reclaim_for(%u) with another pid = %d, want -ESTALE", s->id, r);
        r = heap_slot_reclaim_for(m->h, s->id, pid);
        if (r < 0)
                FAILF(m, "heap_slot_reclaim_for(%u) of our live slot: %d", s->id, r);
        for (other = 1; other < heap_max_slots(m->h) && slot_is_live(m, other); other++)
                ;
        if (other < heap_max_slots(m->h)) {
                r = heap_slot_reclaim_for(m->h, other, pid);
                if (r != -ESTALE)
                        FAILF(m, "heap_slot_reclaim_for(%u) of a free slot = %d, want -ESTALE", other, r);
        }
        if (get_stats(m, &after) < 0)
                return;
        if (after.inuse != before.inuse || after.clients != before.clients)
                FAILF(m, "heap_slot_reclaim_for changed inuse %" PRIu64 " -> %" PRIu64
                      " or clients %" PRIu64 " -> %" PRIu64,
                      before.inuse, after.inuse, before.clients, after.clients);
}

static void op_claim(struct model *m) {
        uint32_t id = UINT32_MAX;
        unsigned i;
        int r;

        if (live_slot_count(m) > 0 && chance(30)) {
                op_reclaim_for(m);
                return;
        }

        for (i = 0; i < MAX_LIVE_SLOTS; i++)
                if (!m->slots[i].live)
                        break;
        if (i == MAX_LIVE_SLOTS)
                return;
        note(m, "heap_slot_claim");
        m->n_claim++;
        r = heap_slot_claim(m->h, (uint32_t) getpid(), (uint32_t) getuid(), &id);
        if (r < 0) {
                FAILF(m, "heap_slot_claim: %d", r);
                return;
        }
        note(m, "  -> slot %u", id);
        if (id == 0 || id >= heap_max_slots(m->h) || slot_is_live(m, id)) {
                FAILF(m, "heap_slot_claim gave slot %u (0 is the daemon's, max %u, live: %s)", id,
                      heap_max_slots(m->h), slot_is_live(m, id) ? "yes" : "no");
                return;
        }
        m->slots[i] = (struct slot) { .live = true, .id = id };
}

static void op_reclaim(struct model *m) {
        struct slot *s;
        struct heap_stats before, after;
        struct heap_slot_info info;
        uint64_t sure = 0, maybe = 0; /* pages reclaim frees; of those, pages that may stay in a cache */
        int64_t r;

        if (live_slot_count(m) < 2)
                return;
        s = random_live_slot(m);
        /* What goes: the slot's unshared allocations but KEEP ones, and shared
         * ones whose every reference is the slot's. */
        for (size_t i = 0; i < m->nlive; i++) {
                struct alloc *a = &m->live[i];
                bool goes = a->shared ? a->refs[s->id] && alloc_refs(a) == a->refs[s->id]
                                      : a->owner == s->id && !(a->flags & HEAP_ALLOC_KEEP);
                if (!goes)
                        continue;
                if (!verify_pattern(m, a, "before reclaim"))
                        return;
                if (a->owner != s->id && may_stay_cached(m, a))
                        maybe += a->npages;
                else
                        sure += a->npages;
        }
        note(m, "heap_slot_reclaim slot %u (%" PRIu64 " + %" PRIu64 " pages to go)", s->id, sure, maybe);
        m->n_reclaim++;
        if (get_stats(m, &before) < 0)
                return;
        r = heap_slot_reclaim(m->h, s->id);
        if (r < 0) {
                FAILF(m, "heap_slot_reclaim(%u): %" PRId64, s->id, r);
                return;
        }
        if (get_stats(m, &after) < 0)
                return;
        if ((uint64_t) r < sure || (uint64_t) r > sure + maybe + HEAP_SLOT_CACHES * HEAP_CACHE_MAX_PAGES)
                FAILF(m, "heap_slot_reclaim(%u) gave back %" PRId64 " pages; its allocations and references held %" PRIu64
                      " (+ %" PRIu64 " that may stay in another's cache, plus at most a page cache's worth each)",
                      s->id, r, sure, maybe);
        if (before.inuse - after.inuse != (uint64_t) r * m->ps)
                FAILF(m, "heap_slot_reclaim(%u) returned %" PRId64 " pages but inuse fell by %" PRId64
                      " pages", s->id, r, (int64_t) (before.inuse - after.inuse) / (int64_t) m->ps);
        for (size_t i = 0; i < m->nlive;) {
                struct alloc *a = &m->live[i];
                bool owned = a->owner == s->id, held = a->refs[s->id] != 0;
                if (!owned && !held) {
                        i++;
                        continue;
                }
                a->refs[s->id] = 0;
                if (owned && ((a->flags & HEAP_ALLOC_KEEP) || a->shared))
                        a->owner = NO_OWNER; /* outlives its client: ownerless */
                if (a->shared ? alloc_refs(a) > 0 : !owned || (a->flags & HEAP_ALLOC_KEEP)) {
                        if (heap_alloc_size(m->h, a->off) != (int64_t) (a->npages * m->ps))
                                FAILF(m, "reclaim of slot %u freed %#" PRIx64 ", which others still hold",
                                      s->id, a->off);
                        i++;
                        continue;
                }
                if (heap_alloc_size(m->h, a->off) != -EINVAL)
                        FAILF(m, "reclaim of slot %u left allocation %#" PRIx64 " live", s->id,
                              a->off);
                model_remove(m, i);
        }
        s->live = false;
        if (heap_slot_info(m->h, s->id, &info) >= 0)
                FAILF(m, "heap_slot_info of reclaimed slot %u succeeded", s->id);
        m->checkpoint_now = chance(20);
}

static void op_flush(struct model *m) {
        struct slot *s = random_live_slot(m);
        uint32_t cache = (uint32_t) rnd_below(CACHES_USED);
        struct heap_stats before, after;
        int r;

        note(m, "heap_cache_flush slot %u cache %u", s->id, cache);
        m->n_flush++;
        if (get_stats(m, &before) < 0)
                return;
        r = heap_cache_flush(m->h, s->id, cache);
        if (r < 0) {
                FAILF(m, "heap_cache_flush(%u, %u): %d", s->id, cache, r);
                return;
        }
        if (get_stats(m, &after) < 0)
                return;
        if (after.inuse > before.inuse || before.inuse - after.inuse > HEAP_CACHE_MAX_PAGES * m->ps)
                FAILF(m, "heap_cache_flush(%u, %u) took inuse from %" PRIu64 " to %" PRIu64,
                      s->id, cache, before.inuse, after.inuse);
}

/* Thread caches (issue 13): the reaper takes back what they keep free;
 * live allocations stay, in use never rises. Run every 50 steps so that
 * the random sequence of the other operations is the same as without it. */
static void op_reap(struct model *m, unsigned how) {
        struct heap_stats before, after;
        struct heap_reap_report rr;
        int r;

        note(m, "heap_cache_reap %s", how == HEAP_REAP_ALL ? "all" : "gen");
        if (get_stats(m, &before) < 0)
                return;
        r = heap_cache_reap(m->h, how, &rr);
        if (r < 0) {
                FAILF(m, "heap_cache_reap: %d", r);
                return;
        }
        if (get_stats(m, &after) < 0)
                return;
        if (after.inuse > before.inuse || before.inuse - after.inuse != rr.given_pages * m->ps)
                FAILF(m, "heap_cache_reap gave back %" PRIu64 " pages, inuse went from %" PRIu64 " to %" PRIu64,
                      rr.given_pages, before.inuse, after.inuse);
        if (how == HEAP_REAP_ALL && rr.held_pages)
                FAILF(m, "heap_cache_reap(all) left %" PRIu64 " pages in thread caches", rr.held_pages);
}

static void op_probe(struct model *m) {
        uint64_t off;

        note(m, "heap_alloc_size probes");
        if (m->nlive > 0) {
                struct alloc *a = &m->live[rnd_below(m->nlive)];
                if (heap_alloc_size(m->h, a->off) != (int64_t) (a->npages * m->ps))
                        FAILF(m, "heap_alloc_size(%#" PRIx64 ") = %" PRId64 ", want %" PRIu64,
                              a->off, heap_alloc_size(m->h, a->off), a->npages * m->ps);
        }
        off = rnd_below(m->cap_pages) * m->ps;
        if (m->start_idx[off / m->ps] < 0 && heap_alloc_size(m->h, off) != -EINVAL)
                FAILF(m, "heap_alloc_size(%#" PRIx64 ") of no allocation = %" PRId64, off,
                      heap_alloc_size(m->h, off));
        if (heap_alloc_size(m->h, m->capacity) != -EINVAL ||
            heap_alloc_size(m->h, UINT64_MAX) != -EINVAL)
                FAILF(m, "heap_alloc_size beyond capacity is not -EINVAL");
}

static void op_goal(struct model *m) {
        uint64_t goal = chance(50) ? HEAP_GOAL_NONE : rnd_below(m->capacity / 2);
        uint64_t limit = chance(70) ? 0 : m->capacity / 4 + rnd_below(m->capacity);

        note(m, "heap_set_goal %#" PRIx64 " memory_limit %#" PRIx64, goal, limit);
        heap_set_goal(m->h, goal);
        heap_set_memory_limit(m->h, limit);
}

/* What must hold after every step, page caches or not. */
static void post_step(struct model *m, const char *what) {
        struct heap_stats st;
        uint64_t slack = cache_slack_pages(m) * m->ps, delta;
        int64_t learned;

        if (run_check(m, what) < 0 || get_stats(m, &st) < 0)
                return;
        if (st.heap_sys < m->heap_sys || st.heap_sys > m->capacity ||
            st.heap_sys % ((uint64_t) HEAP_CHUNK_PAGES * m->ps)) {
                FAILF(m, "heap_sys %#" PRIx64 " (was %#" PRIx64 ", capacity %#" PRIx64 ")",
                      st.heap_sys, m->heap_sys, m->capacity);
                return;
        }
        /* New chunks start free and released. */
        m->released_pages += (st.heap_sys - m->heap_sys) / m->ps;
        m->heap_sys = st.heap_sys;

        /* Every release the scavenger made: the fake saw some, the kernel the rest. */
        if (st.released_total < m->released_total) {
                FAILF(m, "released_total went down: %" PRIu64 " -> %" PRIu64, m->released_total,
                      st.released_total);
                return;
        }
        delta = st.released_total - m->released_total;
        learned = 0;
        if (delta > 0 || m->cb_pages > 0 || m->scav_expect > 0) {
                learned = learn_releases(m);
                if (learned < 0)
                        return;
        }
        if ((m->cb_pages + (uint64_t) learned) * m->ps != delta)
                FAILF(m, "after %s: released_total grew by %" PRIu64 " bytes, but %" PRIu64
                      " went through the release function and %" PRId64
                      " more pages are gone from the heap memfd",
                      what, delta, m->cb_pages * m->ps, learned);
        if (m->scav_expect >= 0 && (uint64_t) m->scav_expect != delta)
                FAILF(m, "heap_scavenge returned %" PRId64 " but released_total grew by %" PRIu64,
                      m->scav_expect, delta);
        m->released_total += delta;
        m->gen_released += delta;
        if (m->alloc_step)
                m->growth_scavenged += delta;
        else if (delta > 0 && m->scav_expect < 0)
                FAILF(m, "%s released %" PRIu64 " bytes", what, delta);

        if (st.gen != m->gen || st.gen_released != m->gen_released ||
            st.released_total != m->released_total || st.growth_scavenged != m->growth_scavenged)
                FAILF(m, "gen/gen_released/released_total/growth_scavenged %" PRIu64 "/%" PRIu64
                      "/%" PRIu64 "/%" PRIu64 ", model %" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64,
                      st.gen, st.gen_released, st.released_total, st.growth_scavenged, m->gen,
                      m->gen_released, m->released_total, m->growth_scavenged);
        if (st.inuse < m->alloc_pages * m->ps || st.inuse > m->alloc_pages * m->ps + slack)
                FAILF(m, "inuse %" PRIu64 " pages; the model has %" PRIu64
                      " allocated (page caches may hold %" PRIu64 " more)",
                      st.inuse / m->ps, m->alloc_pages, slack / m->ps);
        /* Fewer released than the model has: caches hold some, maybe backed by a refill. */
        m->maybe_backed = st.released < m->released_pages * m->ps;
        if (st.released > m->released_pages * m->ps ||
            st.released + slack < m->released_pages * m->ps)
                FAILF(m, "released %" PRIu64 " pages; the model has %" PRIu64
                      " (page caches may hold %" PRIu64 ")",
                      st.released / m->ps, m->released_pages, slack / m->ps);
        if (st.retained != st.heap_sys - st.released || heap_retained(m->h) != st.retained)
                FAILF(m, "retained %" PRIu64 " (heap_retained %" PRIu64 "), heap_sys - released = %" PRIu64,
                      st.retained, heap_retained(m->h), st.heap_sys - st.released);
        if (st.peak_inuse < st.inuse)
                FAILF(m, "peak_inuse %" PRIu64 " < inuse %" PRIu64, st.peak_inuse, st.inuse);
        if (st.clients != live_slot_count(m))
                FAILF(m, "clients %" PRIu64 ", the model has %u live slots", st.clients,
                      live_slot_count(m));
        if (st.inuse > m->peak_seen)
                m->peak_seen = st.inuse;

        uint64_t shared = 0, refs = 0;
        for (size_t i = 0; i < m->nlive; i++)
                if (m->live[i].shared) {
                        shared++;
                        refs += alloc_refs(&m->live[i]);
                }
        if (st.shared != shared || st.refs != refs || st.names != bound_names(m))
                FAILF(m, "after %s: shared/refs/names %" PRIu64 "/%" PRIu64 "/%" PRIu64 ", the model has %" PRIu64
                      "/%" PRIu64 "/%u", what, st.shared, st.refs, st.names, shared, refs, bound_names(m));
}

/*
 * With every page cache flushed the statistics must match the model exactly,
 * and what the kernel has backed must be exactly what is retained.
 */
static void checkpoint(struct model *m) {
        struct heap_stats st;
        struct stat sb;
        int64_t learned;

        note(m, "checkpoint");
        m->n_checkpoints++;
        flush_all(m);
        if (run_check(m, "flushing every cache") < 0 || get_stats(m, &st) < 0)
                return;
        learned = learn_releases(m);
        if (learned != 0)
                FAILF(m, "%" PRId64 " free pages are gone from the heap memfd unaccounted", learned);
        if (learn_cached_backings(m) < 0)
                return;
        if (st.inuse != m->alloc_pages * m->ps)
                FAILF(m, "caches flushed: inuse %" PRIu64 " pages, the model has %" PRIu64,
                      st.inuse / m->ps, m->alloc_pages);
        if (st.released != m->released_pages * m->ps)
                FAILF(m, "caches flushed: released %" PRIu64 " pages, the model has %" PRIu64,
                      st.released / m->ps, m->released_pages);
        if (fstat(m->heap_fd, &sb) < 0) {
                FAILF(m, "fstat: %m");
                return;
        }
        if ((uint64_t) sb.st_blocks * 512 != st.retained)
                FAILF(m, "heap memfd has %" PRIu64 " bytes backed (st_blocks), retained is %" PRIu64
                      " (heap_sys %" PRIu64 " - released %" PRIu64 ")",
                      (uint64_t) sb.st_blocks * 512, st.retained, st.heap_sys, st.released);
        /* mincore: allocated and free-backed pages are resident, released ones not. */
        for (uint64_t p = 0; p < m->heap_sys / m->ps; p++)
                if ((m->page[p] == PAGE_RELEASED) == (m->mincore_vec[p] & 1)) {
                        FAILF(m, "page %#" PRIx64 " is %s in the model but %sresident", p * m->ps,
                              m->page[p] == PAGE_RELEASED ? "released"
                              : m->page[p] == PAGE_ALLOC  ? "allocated"
                                                          : "free and backed",
                              m->mincore_vec[p] & 1 ? "" : "not ");
                        break;
                }
        for (unsigned i = 0; i < MAX_LIVE_SLOTS; i++) {
                struct heap_slot_info info;
                uint64_t own = 0;
                int r;

                if (!m->slots[i].live)
                        continue;
                for (size_t k = 0; k < m->nlive; k++)
                        if (m->live[k].owner == m->slots[i].id)
                                own += m->live[k].npages;
                uint64_t refs = 0, held = 0;
                for (size_t k = 0; k < m->nlive; k++)
                        if (m->live[k].shared && m->live[k].refs[m->slots[i].id]) {
                                refs += m->live[k].refs[m->slots[i].id];
                                held++;
                        }
                r = heap_slot_info(m->h, m->slots[i].id, &info);
                if (r < 0)
                        FAILF(m, "heap_slot_info(%u): %d", m->slots[i].id, r);
                else if (info.refs != refs || info.shared != held)
                        FAILF(m, "slot %u: %" PRIu64 " references on %" PRIu64 " allocations, the model has %" PRIu64
                              " on %" PRIu64, m->slots[i].id, info.refs, info.shared, refs, held);
                else if (info.inuse_pages != own || info.cached_pages != 0)
                        FAILF(m, "slot %u: inuse_pages %" PRIu64 " cached_pages %" PRIu64
                              ", the model has %" PRIu64 " and 0 (caches flushed)",
                              m->slots[i].id, info.inuse_pages, info.cached_pages, own);
        }
        for (size_t k = 0; k < m->nlive && !test_failures; k++) {
                struct alloc *a = &m->live[k];
                if (heap_alloc_size(m->h, a->off) != (int64_t) (a->npages * m->ps))
                        FAILF(m, "live allocation %#" PRIx64 ": heap_alloc_size %" PRId64, a->off,
                              heap_alloc_size(m->h, a->off));
                verify_pattern(m, a, "checkpoint");
        }
}

struct config {
        const char *name;
        struct heap_params params;
        uint64_t steps;
};

static int setup(struct model *m, const struct heap_params *p) {
        uint64_t cap_pages = p->capacity / p->page_size;
        int r;

        r = heap_meta_size(p, &m->meta_size);
        if (r < 0)
                return r;
        m->meta_fd = memfd_create("test-heap-random-meta", MFD_CLOEXEC);
        m->heap_fd = memfd_create("test-heap-random-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (m->meta_fd < 0 || m->heap_fd < 0)
                return negative_errno();
        if (ftruncate(m->meta_fd, (off_t) m->meta_size) < 0 ||
            ftruncate(m->heap_fd, (off_t) p->capacity) < 0)
                return negative_errno();
        m->meta = mmap(NULL, m->meta_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->meta_fd, 0);
        m->base = mmap(NULL, p->capacity, PROT_READ | PROT_WRITE, MAP_SHARED, m->heap_fd, 0);
        if (m->meta == MAP_FAILED || m->base == MAP_FAILED)
                return negative_errno();
        r = heap_create(m->meta, m->meta_size, m->base, m->heap_fd, p, &m->h_real);
        if (r < 0)
                return r;
        r = heap_attach(m->meta, m->meta_size, m->base, p->capacity, m->heap_fd, &m->h_fake);
        if (r < 0)
                return r;
        heap_set_release(m->h_fake, fake_release, m);
        m->h = m->h_real;

        m->capacity = heap_capacity(m->h);
        m->ps = heap_page_size(m->h);
        m->cap_pages = cap_pages;
        m->phys = p->phys_page_size ? p->phys_page_size : m->ps;
        m->huge = p->huge_page_size > m->ps && p->huge_page_size > m->phys ? p->huge_page_size : 0;
        m->page = calloc(cap_pages, 1);
        m->start_idx = malloc(cap_pages * sizeof(*m->start_idx));
        m->mincore_vec = malloc(cap_pages);
        if (!m->page || !m->start_idx || !m->mincore_vec)
                return -ENOMEM;
        for (uint64_t i = 0; i < cap_pages; i++)
                m->start_idx[i] = -1;
        return 0;
}

static void teardown(struct model *m) {
        if (m->h_fake)
                heap_detach(m->h_fake);
        heap_detach(m->h_real);
        munmap(m->meta, m->meta_size);
        munmap(m->base, m->capacity);
        close(m->meta_fd);
        close(m->heap_fd);
        free(m->page);
        free(m->start_idx);
        free(m->mincore_vec);
        free(m->live);
}

static int run(const struct config *cfg, uint64_t seed) {
        struct model m = { .scav_expect = -1 };
        struct heap_stats st;
        int r;

        rng_state = seed;
        r = setup(&m, &cfg->params);
        if (r < 0) {
                fprintf(stderr, "%s: setting up the heap: %s\n", cfg->name, strerror(-r));
                test_failures++;
                return r;
        }
        m.max_shares = cfg->params.max_shares;
        m.max_names = cfg->params.max_names;
        if (cfg->params.capacity != m.capacity)
                FAILF(&m, "heap_capacity %" PRIu64 ", asked for %" PRIu64, m.capacity,
                      cfg->params.capacity);
        if (get_stats(&m, &st) < 0)
                goto out;
        m.gen = st.gen;
        m.heap_sys = st.heap_sys;
        m.released_pages = st.released / m.ps;
        /* Heap-growth scavenging runs against this goal while the heap grows. */
        heap_set_goal(m.h, 4u << 20);
        for (unsigned i = 0; i < 3; i++)
                op_claim(&m);
        post_step(&m, "setup");

        for (m.step = 1; m.step <= cfg->steps && !test_failures; m.step++) {
                double occ = (double) m.alloc_pages / (double) m.cap_pages;
                unsigned w_alloc = occ < 0.9 ? 40 : 12, w_free = occ > 0.6 ? 40 : 22;
                unsigned k;
                const char *what;

                m.cb_pages = 0;
                m.ncb = 0;
                m.scav_expect = -1;
                m.alloc_step = false;
                m.checkpoint_now = m.step % 1000 == 0;

                if (m.step % 3000 == 0) {
                        if (m.h == m.h_real) {
                                /* A fresh attach to the live heap each time, as a client's. */
                                heap_detach(m.h_fake);
                                m.h_fake = NULL;
                                r = heap_attach(m.meta, m.meta_size, m.base, m.capacity, m.heap_fd,
                                                &m.h_fake);
                                if (r < 0) {
                                        FAILF(&m, "heap_attach to the live heap: %d", r);
                                        break;
                                }
                                heap_set_release(m.h_fake, fake_release, &m);
                        }
                        m.h = m.h == m.h_real ? m.h_fake : m.h_real;
                        note(&m, "now releasing through %s",
                             m.h == m.h_fake ? "the fake" : "the library's punch-hole");
                }
                if (m.step % 50 == 25)
                        op_reap(&m, m.step % 100 == 25 ? HEAP_REAP_GEN : HEAP_REAP_ALL);
                k = (unsigned) rnd_below(w_alloc + w_free + 34);
                if (k < w_alloc) {
                        what = "alloc";
                        m.alloc_step = true;
                        op_alloc(&m);
                } else if ((k -= w_alloc) < w_free) {
                        what = "free";
                        op_free(&m);
                } else if ((k -= w_free) >= 20) {
                        k = (unsigned) rnd_below(14);
                        if (k < 3) {
                                what = "ref";
                                op_ref(&m);
                        } else if (k < 6) {
                                what = "unref";
                                op_unref(&m);
                        } else if (k < 8) {
                                what = "handle";
                                op_handle(&m);
                        } else if (k < 10) {
                                what = "ref handle";
                                op_ref_handle(&m);
                        } else if (k < 11) {
                                what = "publish";
                                op_publish(&m);
                        } else if (k < 13) {
                                what = "lookup";
                                op_lookup(&m);
                        } else {
                                what = "unpublish";
                                op_unpublish(&m);
                        }
                } else {
                        k = (unsigned) rnd_below(20);
                        if (k < 5) {
                                what = "bad free";
                                op_bad_free(&m);
                        } else if (k < 10) {
                                what = "scavenge";
                                op_scavenge(&m);
                        } else if (k < 12) {
                                what = "start gen";
                                op_start_gen(&m);
                        } else if (k < 13) {
                                what = "claim";
                                op_claim(&m);
                        } else if (k < 14) {
                                what = "reclaim";
                                op_reclaim(&m);
                        } else if (k < 16) {
                                what = "flush";
                                op_flush(&m);
                        } else if (k < 18) {
                                what = "probe";
                                op_probe(&m);
                        } else if (k < 19) {
                                what = "bad alloc";
                                op_bad_alloc(&m);
                        } else {
                                what = "goal";
                                op_goal(&m);
                        }
                }
                if (!test_failures)
                        post_step(&m, what);
                if (!test_failures && m.checkpoint_now)
                        checkpoint(&m);
        }
        if (!test_failures)
                checkpoint(&m);
        if (test_failures) {
                print_history(&m);
                fprintf(stderr, "%s: FAILED at step %" PRIu64 "; replay with SCAV_SEED=%" PRIu64 "\n",
                        cfg->name, m.step, seed);
        }
        get_stats(&m, &st);
        printf("%s: %" PRIu64 " steps: %" PRIu64 " locked + %" PRIu64 " cache allocs (%" PRIu64
               " ENOMEM, %" PRIu64 " of them found room after flushing the caches), %" PRIu64 " frees, %" PRIu64 " bad frees, %" PRIu64 " scavenges (%" PRIu64
               " fake, %" PRIu64 " punch-hole; %" PRIu64 " MiB), %" PRIu64 " generations, %" PRIu64
               " claims, %" PRIu64 " reclaims, %" PRIu64 " flushes, %" PRIu64
               " checkpoints (%" PRIu64 " cached pages backed), %" PRIu64 " sharing operations (%" PRIu64 " stale handles refused); growth scavenged %" PRIu64
               " KiB; heap_sys %" PRIu64 " MiB\n",
               cfg->name, m.step - 1, m.n_alloc, m.n_cache_alloc, m.n_enomem, m.n_enomem_found, m.n_free,
               m.n_bad_free, m.n_scav, m.n_fake_scav, m.n_real_scav, m.scav_bytes >> 20, m.n_gen,
               m.n_claim, m.n_reclaim, m.n_flush, m.n_checkpoints, m.n_cached_backed, m.n_share_ops, m.n_stale, m.growth_scavenged >> 10,
               st.heap_sys >> 20);
out:
        teardown(&m);
        return test_failures ? -EUCLEAN : 0;
}

int main(void) {
        const char *e = getenv("SCAV_SEED"), *n = getenv("SCAV_STEPS");
        uint64_t seed = e ? strtoull(e, NULL, 0) : UINT64_C(20260425);
        uint64_t steps = n ? strtoull(n, NULL, 0) : 100000;
        const struct config cfgs[] = {
                { .name = "4k pages",
                  .params = { .capacity = 64u << 20, .page_size = 4096, .phys_page_size = 4096,
                              .max_slots = MODEL_SLOTS, .reservation_shards = HEAP_DEFAULT_RESERVATION_SHARDS,
                              .max_shares = 48, .max_names = 12 },
                  .steps = steps },
                /* minPages = 4 and huge-page preservation: the seed's other scavenging paths. */
                { .name = "16k phys, 2M huge",
                  .params = { .capacity = 32u << 20, .page_size = 4096, .phys_page_size = 16384,
                              .huge_page_size = 2u << 20, .max_slots = MODEL_SLOTS,
                              .reservation_shards = 8, .max_shares = 48, .max_names = 12 },
                  .steps = steps / 5 },
        };

        printf("seed %" PRIu64 " (set SCAV_SEED to replay, SCAV_STEPS to change the length)\n", seed);
        for (size_t i = 0; i < ELEMENTSOF(cfgs) && !test_failures; i++)
                run(&cfgs[i], seed + i);
        return TEST_END();
}

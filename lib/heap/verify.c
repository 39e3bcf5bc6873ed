/* SPDX-License-Identifier: MIT */
/*
 * What a process that must not trust the meta region (the daemon) checks
 * before it believes it: the header against the layout this handle was
 * made with, and every statistic and slot figure against the geometry,
 * against each other and against their last values. Each reader copies
 * what it reads once and checks the copy, so a writer racing it can make
 * the check fail but not make a checked value change under it.
 *
 * The figures are checked by tables with one row per field, and a
 * _Static_assert ties each table to its struct: a field added without a
 * rule does not compile.
 */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "heap/layout.h"
#include "macro.h"

/* The header's read-only part: everything before the first field written after creation. */
#define HDR_FIXED offsetof(struct heap_hdr, corrupt)

/* Named fields of the read-only part, for the message; a change elsewhere in it is named by offset. */
static const struct {
        const char *name;
        size_t off, size;
} hdr_fields[] = {
#define F(f) { #f, offsetof(struct heap_hdr, f), sizeof(((struct heap_hdr *) 0)->f) }
        F(magic), F(version), F(hdr_size), F(meta_size), F(capacity), F(page_size), F(phys_page_size),
        F(huge_page_size), F(max_slots), F(reservation_shards), F(nchunks_max), F(nlevels), F(root_entries),
        F(slots_off), F(chunks_off), F(records_off), F(level_off), F(level_entries), F(share_map_off),
        F(shares_off), F(names_off), F(name_index_off), F(max_shares), F(share_stride), F(max_names),
        F(name_index_size), F(pool_id),
#undef F
};

static uint64_t field_value(const void *p, size_t size) {
        uint64_t v = 0;
        memcpy(&v, p, MIN(size, sizeof(v)));
        return v;
}

int heap_verify_header(heap *h, char *buf, size_t len) {
        struct heap_params p = {
                .capacity = h->capacity,
                .page_size = h->page_size,
                .phys_page_size = h->phys_page_size,
                .huge_page_size = h->huge_page_size,
                .max_slots = h->max_slots,
                .reservation_shards = h->reservation_shards,
                .max_shares = h->max_shares,
                .max_names = h->max_names,
        };
        struct heap_hdr want, got;
        int r;

        r = heap_layout_compute(&p, &want);
        if (r < 0)
                return heap_fail(buf, len, "this handle's geometry is no valid layout");
        want.pool_id = h->pool_id; /* random at creation, kept by the handle */
        memcpy(&got, h->hdr, HDR_FIXED);
        if (memcmp(&want, &got, HDR_FIXED) == 0)
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(hdr_fields); i++) {
                const uint8_t *w = (const uint8_t *) &want + hdr_fields[i].off;
                const uint8_t *g = (const uint8_t *) &got + hdr_fields[i].off;
                if (memcmp(w, g, hdr_fields[i].size) == 0)
                        continue;
                if (hdr_fields[i].size <= sizeof(uint64_t))
                        return heap_fail(buf, len, "header %s changed after creation: %#" PRIx64 ", created as %#" PRIx64,
                                    hdr_fields[i].name, field_value(g, hdr_fields[i].size),
                                    field_value(w, hdr_fields[i].size));
                return heap_fail(buf, len, "header %s changed after creation", hdr_fields[i].name);
        }
        for (size_t off = 0; off < HDR_FIXED; off++)
                if (((const uint8_t *) &want)[off] != ((const uint8_t *) &got)[off])
                        return heap_fail(buf, len, "header byte %zu changed after creation", off);
        return 0;
}

/* ---- statistics ---- */

enum stat_rule {
        STAT_FIXED,    /* the handle's own geometry: must equal it */
        STAT_GROWN,    /* bytes inside the grown heap */
        STAT_COUNTER,  /* never decreases */
        STAT_GEN,      /* bytes released this generation: at most released_total */
        STAT_SLOTS,    /* a count of client slots, the daemon's excluded */
        STAT_AS_READ,  /* no bound: written by the daemon, which keeps its own value
                        * (goal, limit), or a hint that goes up and down (released_reused) */
        STAT_SHARED,   /* allocations with share entries: at most max_shares */
        STAT_REFS,     /* their references: at most what their counts can hold */
        STAT_NAMES,    /* names bound: at most max_names */
};

static const struct {
        const char *name;
        size_t off;
        enum stat_rule rule;
} stat_rules[] = {
#define R(f, rule) { #f, offsetof(struct heap_stats, f), rule }
        R(capacity, STAT_FIXED),
        R(page_size, STAT_FIXED),
        R(heap_sys, STAT_GROWN),
        R(inuse, STAT_GROWN),
        R(released, STAT_GROWN),
        R(retained, STAT_GROWN),
        R(retained_goal, STAT_AS_READ),
        R(memory_limit, STAT_AS_READ),
        R(peak_inuse, STAT_GROWN),
        R(gen, STAT_COUNTER),
        R(gen_released, STAT_GEN),
        R(released_total, STAT_COUNTER),
        R(growth_scavenged, STAT_COUNTER),
        R(released_reused, STAT_AS_READ),
        R(clients, STAT_SLOTS),
        R(recoveries, STAT_COUNTER),
        R(shared, STAT_SHARED),
        R(refs, STAT_REFS),
        R(names, STAT_NAMES),
        R(max_shares, STAT_FIXED),
        R(max_names, STAT_FIXED),
#undef R
};
_Static_assert(ELEMENTSOF(stat_rules) * sizeof(uint64_t) == sizeof(struct heap_stats),
               "every field of struct heap_stats needs a row in stat_rules");

static uint64_t stat_at(const struct heap_stats *st, size_t off) {
        uint64_t v;
        memcpy(&v, (const uint8_t *) st + off, sizeof(v));
        return v;
}

int heap_get_stats_checked(heap *h, const struct heap_stats *prev, struct heap_stats *ret, char *buf, size_t len) {
        struct heap_hdr *hd = h->hdr;
        uint64_t nchunks, inuse, released, peak, released_total, growth, gen, gen_released, recoveries;
        uint64_t shared, refs, names, reused;
        uint64_t clients = 0, grown;
        unsigned sh = h->page_shift;
        struct heap_stats st;
        int r;

        r = heap_verify_header(h, buf, len);
        if (r < 0)
                return r;

        /* Under the heap lock the page counts agree with each other; the
         * counters added to outside it (gen_released, growth_scavenged) are
         * read after released_total, which they never exceed. */
        r = heap_lock(h);
        if (r < 0)
                return r == -EUCLEAN ? heap_fail(buf, len, "heap is marked corrupt") : r;
        nchunks = heap_load(&hd->nchunks);
        inuse = heap_load(&hd->inuse_pages);
        released = heap_load(&hd->released_pages);
        peak = heap_load(&hd->peak_inuse_pages);
        gen = heap_load(&hd->gen);
        recoveries = heap_load(&hd->recoveries);
        released_total = heap_load(&hd->released_total);
        gen_released = atomic_load_explicit(&hd->gen_released, memory_order_relaxed);
        growth = __atomic_load_n(&hd->growth_scavenged, __ATOMIC_RELAXED);
        shared = heap_load(&hd->shares_live);
        refs = heap_load(&hd->refs_total);
        names = heap_load(&hd->names_bound);
        reused = heap_load(&hd->released_reused);
        heap_unlock(h);
        for (uint32_t s = 1; s < h->max_slots; s++)
                clients += atomic_load_explicit(&h->slots[s].state, memory_order_relaxed) == HEAP_SLOT_LIVE;

        /* Page counts first: shifted into bytes, a huge one would wrap. */
        if (nchunks > h->nchunks_max)
                return heap_fail(buf, len, "grown chunks %" PRIu64 " > capacity %u chunks", nchunks, h->nchunks_max);
        grown = nchunks * HEAP_CHUNK_PAGES;
        if (inuse > grown || released > grown || peak > grown || inuse + released > grown)
                return heap_fail(buf, len,
                            "statistics out of bounds: in use %" PRIu64 ", released %" PRIu64 ", peak %" PRIu64
                            " pages of %" PRIu64 " grown",
                            inuse, released, peak, grown);

        st = (struct heap_stats) {
                .capacity = h->capacity,
                .page_size = h->page_size,
                .heap_sys = nchunks * h->chunk_bytes,
                .inuse = inuse << sh,
                .released = released << sh,
                .retained = (grown - released) << sh,
                .retained_goal = atomic_load_explicit(&hd->retained_goal, memory_order_relaxed),
                .memory_limit = atomic_load_explicit(&hd->memory_limit, memory_order_relaxed),
                .peak_inuse = peak << sh,
                .gen = gen,
                .gen_released = gen_released,
                .released_total = released_total,
                .growth_scavenged = growth,
                .released_reused = heap_pages_to_bytes_sat(reused, sh),
                .clients = clients,
                .recoveries = recoveries,
                .shared = shared,
                .refs = refs,
                .names = names,
                .max_shares = h->max_shares,
                .max_names = h->max_names,
        };

        for (size_t i = 0; i < ELEMENTSOF(stat_rules); i++) {
                uint64_t v = stat_at(&st, stat_rules[i].off);
                bool ok = true;
                switch (stat_rules[i].rule) {
                case STAT_FIXED: {
                        size_t off = stat_rules[i].off;
                        ok = v == (off == offsetof(struct heap_stats, capacity)     ? h->capacity
                                   : off == offsetof(struct heap_stats, page_size)  ? h->page_size
                                   : off == offsetof(struct heap_stats, max_shares) ? h->max_shares
                                                                                    : h->max_names);
                        break;
                }
                case STAT_SHARED:
                        ok = v <= h->max_shares;
                        break;
                case STAT_REFS:
                        ok = v <= st.shared * UINT32_MAX;
                        break;
                case STAT_NAMES:
                        ok = v <= h->max_names;
                        break;
                case STAT_GROWN:
                        ok = v <= st.heap_sys;
                        break;
                case STAT_COUNTER:
                        ok = !prev || v >= stat_at(prev, stat_rules[i].off);
                        break;
                case STAT_GEN:
                        ok = v <= st.released_total;
                        break;
                case STAT_SLOTS:
                        ok = v < h->max_slots;
                        break;
                case STAT_AS_READ:
                        break;
                }
                if (!ok)
                        return heap_fail(buf, len, "statistic %s out of bounds: %" PRIu64, stat_rules[i].name, v);
        }
        *ret = st;
        return 0;
}

/* ---- slot figures ---- */

/* slot, pid, uid: said as read (pid and uid are only reported and compared);
 * inuse_pages, cached_pages: inside the grown heap; shared: at most
 * max_shares, refs: at most a slot's count (65535) on each. */
_Static_assert(sizeof(struct heap_slot_info) == 3 * sizeof(uint32_t) + 4 + 4 * sizeof(uint64_t),
               "a new field of struct heap_slot_info needs a check in heap_slot_info_checked");

int heap_slot_info_checked(heap *h, uint32_t slot, struct heap_slot_info *ret, char *buf, size_t len) {
        struct heap_slot_info info;
        uint64_t grown;
        int r;

        r = heap_slot_info(h, slot, &info);
        if (r < 0)
                return r;
        grown = heap_nchunks(h) * HEAP_CHUNK_PAGES;
        if (info.slot != slot || info.inuse_pages > grown || info.cached_pages > grown)
                return heap_fail(buf, len, "slot %u: figures out of bounds: %" PRIu64 " pages in use, %" PRIu64 " cached",
                            slot, info.inuse_pages, info.cached_pages);
        if (info.shared > h->max_shares || info.refs > info.shared * HEAP_SHARE_SLOT_MAX)
                return heap_fail(buf, len, "slot %u: %" PRIu64 " references on %" PRIu64 " shared allocations",
                            slot, info.refs, info.shared);
        *ret = info;
        return 0;
}

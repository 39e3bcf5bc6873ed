/* SPDX-License-Identifier: MIT */
/*
 * Names: a bounded directory per pool in the meta region, so that processes
 * find an allocation without passing its offset around. A bound name holds
 * a reference on its allocation (its share entry's name_refs); a lookup
 * takes one for the caller. Names are the pool's, not a client's: they stay
 * when their publisher dies, and across daemon restarts, until unpublished.
 *
 * The names are the truth; the index (open addressing with linear probing
 * over the names' hashes, twice as many places as names) only makes a
 * lookup a probe or two, and is rebuilt from the names on recovery. Both
 * change under the heap lock. A lookup that may wait sleeps on names_seq, a
 * futex word every publish bumps: no daemon, no polling.
 */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "heap/alloc.h"
#include "heap/share.h"

bool heap_name_valid(const char *name) {
        if (!name)
                return false;
        size_t n = strnlen(name, HEAP_NAME_MAX);
        if (n == 0 || n == HEAP_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) name[i] <= ' ' || (unsigned char) name[i] >= 0x7f)
                        return false;
        return true;
}

/* FNV-1a: names are short, and the index only needs them spread. */
static uint32_t name_hash(const char *name) {
        uint32_t x = 2166136261u;
        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                x = (x ^ *p) * 16777619u;
        return x;
}

static uint32_t name_hwm(heap *h) {
        uint32_t n = h->hdr->name_hwm;
        return n > h->max_names ? h->max_names : n;
}

/* Whether the name stored at n is bound and NUL-terminated within its field. */
static bool name_bound(const struct heap_name *n) {
        return n->share != 0 && memchr(n->name, 0, HEAP_NAME_MAX) != NULL;
}

/* The bound name equal to name: its number, and its place in the index. Called with heap lock held. */
static int name_find(heap *h, const char *name, uint32_t hash, uint32_t *ret_pos) {
        uint32_t mask = h->name_index_size - 1, hwm = name_hwm(h);
        for (uint32_t k = 0, i = hash & mask; k < h->name_index_size; k++, i = (i + 1) & mask) {
                uint32_t v = h->name_index[i];
                if (v == 0)
                        break;
                if (v > hwm)
                        continue; /* scribbled on: heap_check reports it */
                const struct heap_name *n = &h->names[v - 1];
                if (name_bound(n) && n->hash == hash && strcmp(n->name, name) == 0) {
                        if (ret_pos)
                                *ret_pos = i;
                        return (int) (v - 1);
                }
        }
        return -ENOENT;
}

static int index_insert(heap *h, uint32_t hash, uint32_t ni) {
        uint32_t mask = h->name_index_size - 1;
        for (uint32_t k = 0, i = hash & mask; k < h->name_index_size; k++, i = (i + 1) & mask)
                if (h->name_index[i] == 0) {
                        h->name_index[i] = ni + 1;
                        return 0;
                }
        return -ENOSPC;
}

/* Empties place pos, moving later entries of its probe run back so that no
 * lookup stops short (backward-shift deletion: no tombstones to pile up). */
static void index_delete(heap *h, uint32_t pos) {
        uint32_t mask = h->name_index_size - 1, hwm = name_hwm(h), i = pos;
        h->name_index[i] = 0;
        for (uint32_t k = 0, j = (i + 1) & mask; k < h->name_index_size; k++, j = (j + 1) & mask) {
                uint32_t v = h->name_index[j];
                if (v == 0)
                        return;
                if (v > hwm)
                        continue;
                uint32_t home = h->names[v - 1].hash & mask;
                /* It may move to i unless its home lies cyclically in (i, j]. */
                bool stays = i <= j ? home > i && home <= j : home > i || home <= j;
                if (!stays) {
                        h->name_index[i] = v;
                        h->name_index[j] = 0;
                        i = j;
                }
        }
}

static void name_push_free(heap *h, uint32_t ni) {
        h->names[ni].share = 0;
        h->names[ni].next = h->hdr->name_free;
        h->hdr->name_free = ni + 1;
}

static int name_alloc(heap *h, uint32_t *ret) {
        struct heap_hdr *hd = h->hdr;
        uint32_t hwm = name_hwm(h), v = hd->name_free;
        if (v && v <= hwm && h->names[v - 1].share == 0) {
                uint32_t next = h->names[v - 1].next;
                hd->name_free = next <= hwm ? next : 0;
                *ret = v - 1;
                return 0;
        }
        hd->name_free = 0;
        if (hwm < h->max_names) {
                hd->name_hwm = hwm + 1;
                *ret = hwm;
                return 0;
        }
        /* The list was lost (scribbled on): the directory is small, look. */
        for (uint32_t i = 0; i < hwm; i++)
                if (h->names[i].share == 0) {
                        *ret = i;
                        return 0;
                }
        return -ENOSPC;
}

/* The share entry a bound name leads to, if it still does. Called with heap lock held. */
static int name_target(heap *h, const struct heap_name *n, uint32_t *ret_idx) {
        uint32_t si = n->share - 1;
        if (n->share == 0 || !heap_share_live(h, si) || heap_share_at(h, si)->tag != n->tag)
                return -ENOENT;
        *ret_idx = si;
        return 0;
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *abs) {
        /* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
        return syscall(SYS_futex, word, op, val, abs, NULL, FUTEX_BITSET_MATCH_ANY);
}

int heap_publish(heap *h, uint32_t slot, const char *name, uint64_t off) {
        struct heap_hdr *hd = h->hdr;
        uint64_t page;
        uint32_t ni, si;

        if (!heap_name_valid(name) || slot >= h->max_slots)
                return -EINVAL;
        int r = heap_off_page(h, off, &page);
        if (r < 0)
                return r;
        uint32_t hash = name_hash(name);

        r = heap_lock(h);
        if (r < 0)
                return r;
        uint64_t rec = atomic_load_explicit(&h->records[page], memory_order_acquire);
        if (!heap_rec_live(rec))
                r = -EINVAL;
        else if (name_find(h, name, hash, NULL) >= 0)
                r = -EEXIST;
        else
                r = name_alloc(h, &ni);
        if (r >= 0) {
                r = heap_share_get_locked(h, slot, page, rec, &si);
                if (r >= 0 && heap_share_at(h, si)->refs == UINT32_MAX)
                        r = -ETOOMANYREFS;
                if (r < 0)
                        name_push_free(h, ni);
        }
        if (r >= 0) {
                struct heap_share *e = heap_share_at(h, si);
                struct heap_name *n = &h->names[ni];
                heap_intent_begin(h, HEAP_OP_NAME, slot, 0, page, 0, ni, si);
                memset(n->name, 0, sizeof(n->name));
                strcpy(n->name, name);
                n->hash = hash;
                n->tag = e->tag;
                atomic_signal_fence(memory_order_seq_cst);
                n->share = si + 1; /* bound */
                r = index_insert(h, hash, ni);
                heap_test_point(h, HEAP_OP_NAME, HEAP_STAGE_MID);
                if (r >= 0) {
                        e->name_refs++;
                        e->refs++;
                        heap_store(&hd->refs_total, hd->refs_total + 1);
                        heap_store(&hd->names_bound, hd->names_bound + 1);
                } else
                        name_push_free(h, ni);
                heap_intent_end(h);
        }
        heap_unlock(h);

        if (r >= 0) {
                atomic_fetch_add(&hd->names_seq, 1);
                if (atomic_load(&hd->names_waiters))
                        (void) futex(&hd->names_seq, FUTEX_WAKE, INT_MAX, NULL);
        }
        return r;
}

static int lookup_once(heap *h, uint32_t slot, const char *name, uint32_t hash, uint64_t *ret_off) {
        uint32_t si;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        int ni = name_find(h, name, hash, NULL);
        if (ni < 0)
                r = -ENOENT;
        else if (name_target(h, &h->names[ni], &si) < 0)
                r = -ENOENT; /* its allocation vanished under it: see share.c on stale entries */
        else
                r = heap_share_ref_locked(h, slot, si);
        if (r >= 0)
                *ret_off = (uint64_t) heap_share_at(h, si)->page << h->page_shift;
        heap_unlock(h);
        return r;
}

int heap_lookup(heap *h, uint32_t slot, const char *name, int64_t timeout_ns, uint64_t *ret_off) {
        struct heap_hdr *hd = h->hdr;
        struct timespec deadline = {};
        bool waiting = false;
        int r;

        if (!heap_name_valid(name) || slot >= h->max_slots || !ret_off)
                return -EINVAL;
        uint32_t hash = name_hash(name);
        if (timeout_ns > 0) {
                clock_gettime(CLOCK_MONOTONIC, &deadline);
                int64_t ns = deadline.tv_nsec + timeout_ns % 1000000000;
                deadline.tv_sec += timeout_ns / 1000000000 + ns / 1000000000;
                deadline.tv_nsec = ns % 1000000000;
        }

        /* Read the word, then look: a publish after the look changes the
         * word, so the wait returns at once instead of missing it. */
        for (;;) {
                uint32_t seq = atomic_load(&hd->names_seq);
                r = lookup_once(h, slot, name, hash, ret_off);
                if (r != -ENOENT || timeout_ns == 0)
                        break;
                if (!waiting) {
                        /* Publishers wake only when someone waits: say so, then look again. */
                        atomic_fetch_add(&hd->names_waiters, 1);
                        waiting = true;
                        continue;
                }
                /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline. A
                 * signal handler without SA_RESTART ends the wait: the caller decides. */
                if (futex(&hd->names_seq, FUTEX_WAIT_BITSET, seq, timeout_ns > 0 ? &deadline : NULL) < 0 &&
                    (errno == ETIMEDOUT || errno == EINTR)) {
                        int why = -errno;
                        r = lookup_once(h, slot, name, hash, ret_off);
                        if (r == -ENOENT)
                                r = why;
                        break;
                }
        }
        if (waiting)
                atomic_fetch_sub(&hd->names_waiters, 1);
        return r;
}

int heap_unpublish(heap *h, uint32_t slot, const char *name) {
        struct heap_hdr *hd = h->hdr;
        uint32_t pos, si;

        if (!heap_name_valid(name) || slot >= h->max_slots)
                return -EINVAL;
        uint32_t hash = name_hash(name);
        int r = heap_lock(h);
        if (r < 0)
                return r;
        int ni = name_find(h, name, hash, &pos);
        if (ni < 0)
                r = -ENOENT;
        else {
                struct heap_name *n = &h->names[ni];
                bool target = name_target(h, n, &si) >= 0;
                heap_intent_begin(h, HEAP_OP_NAME, slot, 0, 0, 0, (uint64_t) ni, n->share);
                index_delete(h, pos);
                name_push_free(h, (uint32_t) ni);
                heap_test_point(h, HEAP_OP_NAME, HEAP_STAGE_MID);
                heap_store(&hd->names_bound, hd->names_bound - 1);
                heap_intent_end(h);
                r = target ? heap_share_drop_locked(h, slot, 0, si, HEAP_HOLDER_NAME) : 0;
        }
        heap_unlock(h);
        return r;
}

int heap_name_info(heap *h, uint32_t i, struct heap_name_info *ret) {
        uint32_t si;
        int r = heap_lock(h);
        if (r < 0)
                return r;
        const struct heap_name *n = &h->names[MIN(i, h->max_names - 1)];
        if (i >= name_hwm(h))
                r = -ERANGE; /* no name was ever bound here or after */
        else if (!name_bound(n) || name_target(h, n, &si) < 0)
                r = -ENOENT;
        else {
                const struct heap_share *e = heap_share_at(h, si);
                uint64_t rec = atomic_load(&h->records[e->page]);
                *ret = (struct heap_name_info) {
                        .off = (uint64_t) e->page << h->page_shift,
                        .bytes = (uint64_t) HEAP_REC_NPAGES(rec) << h->page_shift,
                        .refs = e->refs,
                        .tag = e->tag,
                };
                memcpy(ret->name, n->name, sizeof(ret->name));
        }
        heap_unlock(h);
        return r;
}

/* Recovery (share.c calls it with every live entry's name_refs zeroed). Called with heap lock held. */
void heap_names_fixup_locked(heap *h) {
        struct heap_hdr *hd = h->hdr;
        uint32_t hwm = name_hwm(h), si;
        uint64_t bound = 0;

        hd->name_hwm = hwm;
        memset(h->name_index, 0, (size_t) h->name_index_size * sizeof(uint32_t));
        hd->name_free = 0;
        for (uint32_t i = hwm; i-- > 0;) {
                struct heap_name *n = &h->names[i];
                if (n->share == 0)
                        continue;
                /* Not a name, leading nowhere, or a second one of the same spelling
                 * (the one found first stays): unbound. */
                bool keep = name_bound(n) && heap_name_valid(n->name) && name_target(h, n, &si) >= 0;
                if (keep) {
                        n->hash = name_hash(n->name);
                        keep = name_find(h, n->name, n->hash, NULL) < 0 && index_insert(h, n->hash, i) >= 0;
                }
                if (!keep) {
                        n->share = 0;
                        continue;
                }
                heap_share_at(h, si)->name_refs++;
                bound++;
        }
        for (uint32_t i = hwm; i-- > 0;)
                if (h->names[i].share == 0)
                        name_push_free(h, i);
        heap_store(&hd->names_bound, bound);
}

/* heap_check's part. counts has an entry per share entry below the share hwm. Called with heap lock held. */
int heap_names_check_locked(heap *h, uint32_t *counts, char *buf, size_t len) {
        struct heap_hdr *hd = h->hdr;
        uint64_t bound = 0, indexed = 0;
        uint32_t si;

        if (hd->name_hwm > h->max_names)
                return heap_fail(buf, len, "names in use %u > %u", hd->name_hwm, h->max_names);
        for (uint32_t i = 0; i < hd->name_hwm; i++) {
                const struct heap_name *n = &h->names[i];
                if (n->share == 0)
                        continue;
                bound++;
                if (!name_bound(n) || !heap_name_valid(n->name))
                        return heap_fail(buf, len, "name %u is not a valid name", i);
                if (n->hash != name_hash(n->name))
                        return heap_fail(buf, len, "name \"%s\": wrong hash", n->name);
                if (n->share - 1 >= heap_share_hwm(h))
                        return heap_fail(buf, len, "name \"%s\": share entry %u out of range", n->name, n->share - 1);
                if (n->tag > hd->share_tag)
                        return heap_fail(buf, len, "name \"%s\": tag not handed out yet", n->name);
                /* A name whose entry went stale leads nowhere: counted, not judged (share.c). */
                if (name_target(h, n, &si) >= 0)
                        counts[si]++;
                if (name_find(h, n->name, n->hash, NULL) != (int) i)
                        return heap_fail(buf, len, "name \"%s\": not found through the index (or bound twice)", n->name);
        }
        for (uint32_t i = 0; i < h->name_index_size; i++) {
                uint32_t v = h->name_index[i];
                if (v == 0)
                        continue;
                if (v > hd->name_hwm || h->names[v - 1].share == 0)
                        return heap_fail(buf, len, "name index place %u leads to no bound name", i);
                indexed++;
        }
        if (indexed != bound)
                return heap_fail(buf, len, "%" PRIu64 " names in the index, %" PRIu64 " bound", indexed, bound);
        if (heap_load(&hd->names_bound) != bound)
                return heap_fail(buf, len, "names %" PRIu64 " != %" PRIu64 " bound", heap_load(&hd->names_bound), bound);
        return 0;
}

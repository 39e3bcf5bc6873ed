/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The shared layout of a heap's meta region, and the process-local handle
 * over it. Internal to lib/heap/: everything else codes against heap.h.
 *
 * The meta region is a file format: fixed-width fields, offsets never
 * pointers, sections page-aligned so that a sparse memfd is backed only
 * where it is touched:
 *
 *   header (struct heap_hdr)
 *   slots     max_slots x struct heap_slot
 *   chunks    nchunks_max x struct heap_chunk (pallocBits + scavenged)
 *   summaries one array of struct heap_sum per level, root first
 *   records   one uint64_t per page of capacity
 *   share map one uint32_t per page of capacity: share entry + 1 of a SHARED record
 *   shares    max_shares x share_stride bytes (struct heap_share + a count per slot)
 *   names     max_names x struct heap_name
 *   name index name_index_size x uint32_t (derived from the names: rebuilt on recovery)
 *
 * Internally the allocator speaks in page indices (offset >> page_shift);
 * the scavenger's ranges and watermarks are in bytes, as in Go.
 */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "heap/heap.h"
#include "macro.h"

#define HEAP_META_ALIGN 4096u
#define HEAP_MAX_LEVELS 12u
/* Entries of the root level are scanned linearly; below it each entry has 8 children. */
#define HEAP_ROOT_MAX 64u
#define HEAP_LEVEL_BITS 3u
#define HEAP_LOG_CHUNK_PAGES 9u
/* Search ranges kept by the scavenger (Go's p.scav.inUse); only a hint. */
#define HEAP_SCAV_RANGES 16u
/* Go's maxOffAddr / minOffAddr over our offsets. */
#define HEAP_OFF_MAX UINT64_MAX
#define HEAP_OFF_MIN UINT64_C(0)
/* Largest heap in pages: summaries are uint32. */
#define HEAP_MAX_PAGES (UINT64_C(1) << 31)

/* Go's pallocSum, unpacked: a 1 TiB heap of 4 KiB pages overflows Go's 21 bits. */
struct heap_sum {
        uint32_t start, max, end;
};

/* Bitmaps of one chunk (Go's pallocData): 1 = allocated, 1 = released. */
struct heap_chunk {
        uint64_t alloc[HEAP_CHUNK_WORDS];
        uint64_t scav[HEAP_CHUNK_WORDS];
};

/*
 * Allocation record, one per page, non-zero only at the first page of a
 * live allocation: npages | owner (slot + 1, 0 = none) << 32 | flags << 48.
 */
#define HEAP_REC_NPAGES(r) ((uint32_t) ((r) &UINT32_MAX))
#define HEAP_REC_OWNER(r) ((uint32_t) (((r) >> 32) & 0xffffu))
#define HEAP_REC_OWNER_MASK (UINT64_C(0xffff) << 32)
#define HEAP_REC_FLAGS(r) ((unsigned) ((r) >> 48))
#define HEAP_REC_MAKE(npages, owner, flags) \
        ((uint64_t) (npages) | ((uint64_t) (owner) << 32) | ((uint64_t) (flags) << 48))
#define HEAP_REC_KEEP ((uint64_t) HEAP_ALLOC_KEEP << 48)
/*
 * Not an allocation flag: the owner freed the allocation into the medium
 * lists of one of its thread caches (mcache.c). The pages stay allocated and count as in use;
 * the record is not a live allocation (free and size say -EINVAL); flush
 * and reclaim of the owner's slot free it for real.
 */
#define HEAP_REC_CACHED (UINT64_C(1) << 63)
/* Not an allocation flag: allocated through a thread cache's lists, of a
 * size class; only these go back to one when their thread frees them. */
#define HEAP_REC_MEDIUM (UINT64_C(1) << 62)
/*
 * Not an allocation flag: the allocation has a share entry (share.c), which
 * counts its references; the owner field still names the slot whose page
 * cache may hold its pages. No lock-free path frees or changes a SHARED
 * record: every free of one goes through the heap lock (heap_share_free_locked).
 */
#define HEAP_REC_SHARED (UINT64_C(1) << 61)
/*
 * Not an allocation flag: which of its owner's thread caches allocated it
 * (bits 52-55); only that one takes it back without the lock. A free by
 * another thread of the slot takes the lock, as one by another slot.
 */
/*
 * Not an allocation flag, with CACHED: another thread freed the allocation
 * while the thread cache that allocated it (its record's cache) was
 * active. Its owner may be storing CACHED over the record right now (its
 * own free, a plain store, racing this one: then both frees succeed and
 * the list holds it), so the pages stay allocated for that cache, in its
 * orphan list, until its owner or a reaper, which know the owner outside
 * any operation, take them (mcache.c).
 */
#define HEAP_REC_ORPHAN (UINT64_C(1) << 60)
#define HEAP_REC_CACHE_SHIFT 52
#define HEAP_REC_CACHE_MASK (UINT64_C(0xf) << HEAP_REC_CACHE_SHIFT)
#define HEAP_REC_CACHE(c) ((uint64_t) (c) << HEAP_REC_CACHE_SHIFT)

/*
 * A share entry (share.c): the references of one allocation. Entries are
 * share_stride bytes apart: the header below, then one count per slot.
 * Truth: tag, page, pool_refs, slot_refs and the record's SHARED bit with
 * the share map pointing back here; refs, name_refs, next and the header's
 * counters follow from them (recovery recounts them, heap_check verifies).
 * Heap lock.
 */
struct heap_share {
        uint64_t tag;        /* != 0 while in use; from hdr->share_tag, never reused */
        uint32_t page;       /* first page of the allocation */
        uint32_t refs;       /* every reference: the slots', the pool's, the names' */
        uint32_t name_refs;  /* names bound to it */
        uint16_t pool_refs;  /* 1: the pool's reference (SCAV_ALLOC_KEEP) */
        uint16_t _pad;
        uint32_t next;       /* free list: entry + 1; 0 = end */
        uint32_t _pad2;
        uint16_t slot_refs[]; /* references each client slot holds */
};
#define HEAP_SHARE_SLOT_MAX UINT16_MAX

/*
 * A name (names.c): a published allocation. Bound while share != 0; the
 * tag is the share entry's when it was bound, so a name never follows an
 * entry used again. The index (open addressing over name hashes) only
 * makes lookups fast: it is rebuilt from the names on recovery. Heap lock.
 */
#define HEAP_NAME_MAX 64u /* bytes, including the NUL */
struct heap_name {
        uint32_t share;      /* share entry + 1; 0 = free */
        uint32_t hash;       /* of name, for the index */
        uint64_t tag;
        uint32_t next;       /* free list: name + 1; 0 = end */
        uint32_t _pad;
        char name[HEAP_NAME_MAX];
};

/*
 * A page cache: up to HEAP_CACHE_BLOCKS of Go's pageCache (one 64-page
 * aligned block each), shared so that a dead owner's cache can be given
 * back. Several blocks let the owner's frees of pages anywhere in its
 * recent allocations come back without the lock (Go frees those to the
 * heap). A block sits at the first empty position from key %
 * HEAP_CACHE_BLOCKS on, so that a lookup usually costs a compare or two.
 * Only the owning thread changes cur, free_mask and scav_mask without the
 * lock, inside an operation of its thread cache (struct heap_tcache); key
 * and owned change under the heap lock. A block is empty when owned == 0
 * (key is then 0).
 */
struct heap_cache {
        alignas(64) uint32_t cur;                        /* owner's hint: block to allocate from */
        _Atomic uint64_t nonempty;                       /* owner's hint: bit b = block b may have free pages */
        _Atomic uint32_t key[HEAP_CACHE_BLOCKS];         /* first page / 64 + 1; 0 = empty */
        _Atomic uint64_t owned[HEAP_CACHE_BLOCKS];       /* pages taken from the heap */
        _Atomic uint64_t free_mask[HEAP_CACHE_BLOCKS];   /* owned pages not handed out (1 = free) */
        _Atomic uint64_t scav_mask[HEAP_CACHE_BLOCKS];   /* free pages that are released */
};

static inline uint64_t heap_cache_key_base(uint32_t key) {
        return ((uint64_t) key - 1) * HEAP_CACHE_PAGES;
}

/*
 * A thread cache (one per page cache: one per thread that allocates; reap.c,
 * mcache.c). The owner brackets every operation on its page cache and its
 * lists: seq is odd while it is inside one. Others (the reaper of idle
 * threads' caches, heap_cache_reap) change a cache only under the heap lock
 * and only while its owner is outside any operation, which they learn by
 * setting state to HEAP_TC_REAP and reading seq after an asymmetric fence;
 * the owner reads state right after making seq odd (no locked instruction,
 * see reap.c). The lists hold the owner's frees of allocations of
 * HEAP_MCACHE_MIN_PAGES to 128 pages, LIFO per size class, as CACHED
 * records; they are only a hint, bounds-checked when popped: the records
 * are the truth.
 */
/* Smallest allocation the lists serve (smaller ones: the page cache). */
#define HEAP_MCACHE_MIN_PAGES 2u
/* Classes: one per size below HEAP_CACHE_MAX_ALLOC, then 13 from 16 to 128 pages. */
#define HEAP_MCACHE_SMALL_CLASSES (HEAP_CACHE_MAX_ALLOC - HEAP_MCACHE_MIN_PAGES)
#define HEAP_MCACHE_CLASSES (HEAP_MCACHE_SMALL_CLASSES + 13u)
#define HEAP_MCACHE_DEPTH 64u

enum {
        HEAP_TC_INACTIVE = 0, /* no owner: nothing cached, no blocks; its first operation activates it */
        HEAP_TC_ACTIVE = 1,
        HEAP_TC_REAP = 2,     /* the reaper asks for reap_mode: its owner's next operation does it */
        HEAP_TC_CORRUPT = 3,  /* the heap is marked corrupt (heap_mark_corrupt): nothing goes on without the lock */
};

_Static_assert(HEAP_SLOT_CACHES <= 16, "a record names its thread cache in 4 bits");

/* Other threads' frees a thread cache keeps track of (ORPHAN records, mcache.c). */
#define HEAP_TC_ORPHANS 60u

struct heap_tcache {
        /* The owner's line: its every operation reads and writes it. */
        alignas(64) _Atomic uint32_t seq;        /* odd while the owner is inside an operation */
        _Atomic uint32_t state;                  /* HEAP_TC_*; others change it under the heap lock */
        uint32_t pages;                          /* pages in the lists (a hint) */
        uint8_t count[HEAP_MCACHE_CLASSES];      /* entries of each list */
        /* The owner's, rarely written; then the heap lock's. */
        alignas(64) uint8_t low[HEAP_MCACHE_CLASSES]; /* least count since the last reap */
        uint32_t reap_mode;                      /* what HEAP_TC_REAP asks (reap.c) */
        uint32_t reap_seq;                       /* seq when last reaped: unchanged since = idle */
        uint32_t fenced;                         /* the owner fences every operation (no membarrier) */
        uint32_t run_chunk;                      /* chunk of its last small-class run + 1; 0: none (mcache.c) */
        /* Other threads' frees of this cache's list allocations (heap lock; mcache.c). */
        alignas(64) uint32_t norphans;
        uint32_t orphans_lost;                   /* ORPHAN records not in orphan[]: found by their records */
        uint32_t orphan[HEAP_TC_ORPHANS];        /* pages; a hint: the records are the truth */
        uint32_t page[HEAP_MCACHE_CLASSES][HEAP_MCACHE_DEPTH]; /* list k: [0, count[k]), top last */
};

#define HEAP_SLOT_SCAV_INTENTS 8u

enum {
        HEAP_SLOT_FREE = 0,
        HEAP_SLOT_LIVE = 1,
};

struct heap_slot {
        alignas(64) _Atomic uint32_t state;
        uint32_t pid;
        uint32_t uid;
        uint32_t cache_mask; /* bit c: cache c owns pages (heap lock); a hint for frees */
        uint32_t tc_mask;    /* bit c: thread cache c is not HEAP_TC_INACTIVE (heap lock); the reaper's hint */
        /* Scavenge intents: pages marked allocated while being released, one per
         * scavenger of this slot in flight (its threads may scavenge at once on
         * heap growth). Heap lock. */
        struct {
                uint64_t base, npages;
        } scav[HEAP_SLOT_SCAV_INTENTS];
        struct heap_cache caches[HEAP_SLOT_CACHES];
        /* Thread cache of each page cache (reap.c, mcache.c): its owner's
         * operation bracket and medium lists, apart from the page caches' lines. */
        struct heap_tcache tc[HEAP_SLOT_CACHES];
};

/* Operations of the heap intent record (crash safety, see recover.c). */
enum heap_op {
        HEAP_OP_NONE = 0,
        HEAP_OP_ALLOC,       /* base, npages, a = record */
        HEAP_OP_FREE,        /* base, npages, a = record, b = 1 if left in a cache */
        HEAP_OP_GROW,        /* base = old chunks, npages = new chunks */
        HEAP_OP_CACHE_FILL,  /* slot, cache, block, base, a = owned, b = scav */
        HEAP_OP_CACHE_FLUSH, /* slot, cache, block, base, a = pages given back, b = scav */
        HEAP_OP_SCAV_MARK,   /* slot, block = scavenge intent index, base, npages */
        HEAP_OP_SCAV_FREE,   /* slot, block = scavenge intent index, base, npages, a = released */
        HEAP_OP_RECORD,      /* base: records[base] = a (reclaim's ownerless KEEP) */
        HEAP_OP_SHARE,       /* base = page, a = share entry: references change (recovery recounts) */
        HEAP_OP_NAME,        /* a = name, b = share entry: a name is bound or unbound (likewise) */
        _HEAP_OP_MAX,
};

struct heap_intent {
        uint32_t op, slot, cache, block;
        uint64_t base, npages, a, b;
};

struct heap_hdr {
        /* Read-only after creation. */
        uint64_t magic;
        uint32_t version;
        uint32_t hdr_size;
        uint64_t meta_size;
        uint64_t capacity;
        uint32_t page_size, phys_page_size, huge_page_size, max_slots;
        uint32_t reservation_shards, nchunks_max, nlevels, root_entries;
        uint64_t slots_off, chunks_off, records_off;
        uint64_t level_off[HEAP_MAX_LEVELS];
        uint64_t level_entries[HEAP_MAX_LEVELS];
        uint64_t share_map_off, shares_off, names_off, name_index_off;
        uint32_t max_shares, share_stride, max_names, name_index_size;
        uint64_t pool_id;                 /* random at creation: handles name the pool by it */
        _Atomic uint32_t corrupt;

        alignas(64) pthread_mutex_t heap_lock;

        /* Heap lock. Fields read without it are stored atomically. nchunks
         * has a line of its own: every cache allocation and free reads it,
         * and the fields after it are written on every locked operation. */
        alignas(64) uint64_t nchunks;     /* grown chunks */
        alignas(64) uint64_t search_page; /* Go's searchAddr; pages below are allocated */
        uint64_t inuse_pages;
        uint64_t released_pages;
        uint64_t peak_inuse_pages;
        uint64_t released_total;          /* bytes */
        uint64_t growth_scavenged;        /* bytes */
        uint64_t free_hwm;                /* Go's p.scav.freeHWM: bytes, last byte freed */
        uint64_t recoveries;
        struct heap_intent intent;
        /* Sharing (share.c, names.c). */
        uint64_t share_tag;               /* last tag handed out */
        uint32_t share_hwm;               /* entries below have been used */
        uint32_t share_free;              /* free list head: entry + 1 */
        uint64_t shares_live;             /* entries in use */
        uint64_t refs_total;              /* their references */
        uint32_t name_hwm, name_free;
        uint64_t names_bound;
        /* Pages of released memory that allocation took back, each to fault
         * when first written: the refaults the scavenger caused, counted
         * without BPF (in former padding: 0 on an older heap is right). */
        uint64_t released_reused;

        alignas(64) pthread_mutex_t scav_lock;

        /* Scav lock. */
        alignas(64) uint64_t gen;
        uint64_t scav_lwm;                /* bytes; HEAP_OFF_MAX = none */
        uint64_t reservation_bytes;
        uint32_t nranges, _pad2;
        uint64_t ranges[HEAP_SCAV_RANGES][2]; /* [base, limit) bytes, sorted */

        alignas(64) _Atomic uint64_t gen_released;

        /* Written by the daemon, read by clients. */
        alignas(64) _Atomic uint64_t retained_goal;
        _Atomic uint64_t memory_limit;

        /* Futex word of lookups waiting for a name: bumped by every publish. */
        alignas(64) _Atomic uint32_t names_seq;
        _Atomic uint32_t names_waiters;
};

/* Test hook: called inside critical sections right after the intent is
 * written, half way through, and right before the intent is cleared. */
enum heap_stage {
        HEAP_STAGE_EARLY,
        HEAP_STAGE_MID,
        HEAP_STAGE_LATE,
};
typedef void (*heap_test_hook_fn)(heap *h, enum heap_op op, enum heap_stage stage, void *userdata);

struct heap {
        uint8_t *meta;
        uint64_t meta_size;
        uint8_t *base;
        int heap_fd;

        struct heap_hdr *hdr;
        struct heap_slot *slots;
        struct heap_chunk *chunks;
        struct heap_sum *levels[HEAP_MAX_LEVELS];
        _Atomic uint64_t *records;
        uint32_t *share_map;
        uint8_t *shares;
        struct heap_name *names;
        uint32_t *name_index;

        /* Geometry, copied from the header once validated: never re-read. */
        uint64_t capacity;
        uint64_t capacity_pages;
        uint32_t page_size, page_shift, phys_page_size, huge_page_size;
        uint32_t max_slots, reservation_shards;
        uint32_t nchunks_max, nlevels, root_entries;
        uint64_t level_entries[HEAP_MAX_LEVELS];
        uint64_t chunk_bytes;
        uint32_t max_shares, share_stride, max_names, name_index_size;
        uint64_t pool_id;
        uint32_t min_pages;          /* Go's minPages */
        uint32_t pages_per_huge;     /* 0: no huge pages to preserve */

        heap_release_fn release;
        void *release_userdata;
        heap_test_hook_fn test_hook;
        void *test_hook_userdata;
        /* This process could not register for membarrier's global expedited
         * barrier: its threads fence every thread cache operation (reap.c). */
        bool tc_fenced;
        /* Home sets: the chunks thread cache (slot, i) of this process took
         * its lists' blocks from (a bit per chunk, nchunks_max bits; NULL
         * until its first refill), where its next refills look first
         * (mcache.c). One slot per cache index: another slot's refill
         * starts the set afresh (a client has one slot; tests have more). */
        struct {
                uint32_t slot;
                uint64_t *chunks;
        } home[HEAP_SLOT_CACHES];
        /* heap_set_untrusted(): locks on the lock word alone (lock.c), waits published here. */
        struct heap_lock_wait *untrusted;
        /* Why this process's last recovery after a dead lock holder failed
         * (heap_recover_problem): the caller says it, not the library. */
        char recover_problem[256];
};

static inline uint64_t heap_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void heap_store(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Grown chunks, bounded: the header is not trusted. */
static inline uint64_t heap_nchunks(heap *h) {
        uint64_t n = heap_load(&h->hdr->nchunks);
        return n > h->nchunks_max ? h->nchunks_max : n;
}

/* log2 of the pages one entry of level l covers (Go's levelLogPages). */
static inline unsigned heap_level_log_pages(heap *h, unsigned l) {
        return HEAP_LOG_CHUNK_PAGES + HEAP_LEVEL_BITS * (h->nlevels - 1 - l);
}

static inline struct heap_sum *heap_leaf(heap *h) {
        return h->levels[h->nlevels - 1];
}

/* Intent record: written first, cleared last. Called with heap lock held. */
void heap_intent_begin(heap *h, enum heap_op op, uint32_t slot, uint32_t cache, uint64_t base,
                       uint64_t npages, uint64_t a, uint64_t b);
void heap_intent_block(heap *h, uint32_t block);
void heap_intent_end(heap *h);

/* layout.c */
int heap_layout_compute(const struct heap_params *p, struct heap_hdr *ret);
int heap_layout_apply(heap *h);

/* lock.c: robust locks. heap_lock returns 0, or -EUCLEAN on a corrupt heap. */
int heap_lock(heap *h);
void heap_unlock(heap *h);
int heap_scav_lock(heap *h);
void heap_scav_unlock(heap *h);
/* Marks the heap corrupt (lock.c): heap_lock and every thread cache's
 * lock-free path refuse from then on. */
void heap_mark_corrupt(heap *h);
/* -EUCLEAN once the heap is marked corrupt, else 0. */
static inline int heap_checked(heap *h) {
        return atomic_load_explicit(&h->hdr->corrupt, memory_order_relaxed) ? -EUCLEAN : 0;
}

/* recover.c. Called with heap lock held after EOWNERDEAD. */
int heap_recover_locked(heap *h);
void heap_scav_state_validate(heap *h);

/* check.c: writes why a check failed into buf (NULL: nowhere); returns -EUCLEAN. */
int heap_fail(char *buf, size_t len, const char *fmt, ...) _printf_(3, 4);
/* check.c. Called with heap lock held. */
int heap_check_locked(heap *h, char *buf, size_t len);
int heap_check_summaries_locked(heap *h, char *buf, size_t len);

/* stats.c */
void heap_stats_inuse_add(heap *h, int64_t pages);
void heap_stats_released_add(heap *h, int64_t pages);
/* Released pages taken back by allocation (pages > 0), or given back untouched (< 0). Heap lock. */
void heap_stats_reused_add(heap *h, int64_t pages);

/* A page count of shared memory in bytes, saturated: any value may be there (released_reused). */
static inline uint64_t heap_pages_to_bytes_sat(uint64_t pages, unsigned shift) {
        return pages > UINT64_MAX >> shift ? UINT64_MAX : pages << shift;
}

/* Test hooks (tests only). */
void heap_set_test_hook(heap *h, heap_test_hook_fn fn, void *userdata);
static inline void heap_test_point(heap *h, enum heap_op op, enum heap_stage stage) {
        if (_unlikely_(h->test_hook))
                h->test_hook(h, op, stage, h->test_hook_userdata);
}

/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The heap core: one pool's page allocator and scavenger over shared memory.
 *
 * A heap is two pieces of memory: the meta region (header, locks, bitmaps,
 * summaries, allocation records, client slots, statistics) and the heap
 * region (the pages themselves). In production both are memfds mapped
 * MAP_SHARED by the daemon and by every client; in tests either may be a
 * plain mapping. Everything in the meta region is addressed by offsets, never
 * pointers, and every index read from it is checked before use: the daemon
 * must not trust it.
 *
 * This layer knows nothing of sockets, sd-event or configuration files.
 * Functions return 0 (or a count) on success and a negative errno on failure.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Go's pallocChunkPages: the unit of the bitmaps; 2 MiB with 4 KiB pages. */
#define HEAP_CHUNK_PAGES 512u
#define HEAP_CHUNK_WORDS (HEAP_CHUNK_PAGES / 64u)
/* Go's pageCachePages: a page cache block is one 64-page aligned block. */
#define HEAP_CACHE_PAGES 64u
/* Blocks a page cache holds at most (Go's pageCache holds one): the owner's
 * frees of pages in any of them need no lock. */
#define HEAP_CACHE_BLOCKS 64u
/* Pages a page cache may hold at most (all count as in use). */
#define HEAP_CACHE_MAX_PAGES (HEAP_CACHE_PAGES * HEAP_CACHE_BLOCKS)
/* Allocations below this many pages go through a page cache (Go: pageCachePages/4). */
#define HEAP_CACHE_MAX_ALLOC 16u
/* Page caches per client slot: one per thread that allocates (libscav). */
#define HEAP_SLOT_CACHES 16u
/* Go's maxPagesPerPhysPage: fillAligned handles m up to 64. */
#define HEAP_MAX_PAGES_PER_PHYS_PAGE 64u
/* Go's scavengeReservationShards default. */
#define HEAP_DEFAULT_RESERVATION_SHARDS 64u
/* Go's retainExtraPercent default. */
#define HEAP_DEFAULT_RETAIN_EXTRA_PERCENT 10u

#define HEAP_MAGIC UINT64_C(0x5041454856414353) /* "SCAVHEAP" little-endian */
#define HEAP_LAYOUT_VERSION 5u /* 2: medium caches, CACHED records; 3: 64-block page caches, 128-entry medium caches;
                                 4: shared references, handles, names;
                                 5: thread caches (operation bracket, per-class medium lists) */

/* No goal: the background scavenger is off (Go stores ^uint64(0)). */
#define HEAP_GOAL_NONE UINT64_MAX

/* Allocation flags, stored in the allocation record. */
enum {
        HEAP_ALLOC_ZERO = 1u << 0, /* memory reads as zero; clears only pages not released */
        HEAP_ALLOC_KEEP = 1u << 1, /* outlives its client; any client may free it */
};

/* Parameters of a new heap; all fixed for the heap's lifetime. */
struct heap_params {
        uint64_t capacity;            /* bytes; rounded up to a whole chunk */
        uint32_t page_size;           /* power of two >= 4096; default 4096 */
        uint32_t phys_page_size;      /* kernel's release unit; default 4096 (shmem) */
        uint32_t huge_page_size;      /* huge page to preserve when scavenging; 0 = none */
        uint32_t max_slots;           /* client slots; default 64; slot 0 is the daemon's */
        uint32_t reservation_shards;  /* default HEAP_DEFAULT_RESERVATION_SHARDS */
        uint32_t max_shares;          /* allocations shared at once; default HEAP_DEFAULT_MAX_SHARES */
        uint32_t max_names;           /* names published at once; default HEAP_DEFAULT_MAX_NAMES */
};
#define HEAP_DEFAULT_MAX_SHARES 16384u
#define HEAP_DEFAULT_MAX_NAMES 1024u
#define HEAP_MAX_SHARES (1u << 24)
#define HEAP_MAX_NAMES (1u << 20)

/* A heap as mapped in one process. Private to the process; not shared. */
typedef struct heap heap;

/*
 * Releases [off, off+len) of the heap region to the kernel. The default
 * punches a hole in the heap memfd (fallocate PUNCH_HOLE|KEEP_SIZE); tests
 * replace it as the seed's p.test does. Returns 0 or a negative errno.
 */
typedef int (*heap_release_fn)(heap *h, uint64_t off, uint64_t len, void *userdata);

/* Statistics, read without a lock (each field is consistent on its own). */
struct heap_stats {
        uint64_t capacity;
        uint64_t page_size;
        uint64_t heap_sys;        /* grown heap: chunks in use x chunk bytes */
        uint64_t inuse;           /* bytes allocated, page caches included */
        uint64_t released;        /* bytes of heap_sys released to the kernel */
        uint64_t retained;        /* heap_sys - released (Go's heapRetained) */
        uint64_t retained_goal;   /* HEAP_GOAL_NONE when the background scavenger is off */
        uint64_t memory_limit;    /* 0 = none */
        uint64_t peak_inuse;      /* highest inuse seen this generation */
        uint64_t gen;             /* scavenge generation */
        uint64_t gen_released;    /* bytes released this generation (Go's p.scav.released) */
        uint64_t released_total;  /* bytes released since the heap was created */
        uint64_t growth_scavenged;/* bytes released synchronously on heap growth */
        uint64_t released_reused; /* bytes of released memory allocation took back since
                                   * the heap was created (a client may write it: a hint) */
        uint64_t clients;         /* live client slots, the daemon's excluded */
        uint64_t recoveries;      /* EOWNERDEAD recoveries completed */
        uint64_t shared;          /* allocations with a share entry */
        uint64_t refs;            /* references on them */
        uint64_t names;           /* names bound */
        uint64_t max_shares, max_names;
};

/* Bytes the meta region needs for these parameters (sparse: backed only where used). */
int heap_meta_size(const struct heap_params *p, uint64_t *ret);

/*
 * Lays out a new heap in meta (meta_size bytes, zero-filled) over a heap
 * region of p->capacity bytes at base. heap_fd is the heap memfd for the
 * default release function, or -1. The caller owns both mappings.
 */
int heap_create(void *meta, uint64_t meta_size, void *base, int heap_fd,
                const struct heap_params *p, heap **ret);

/*
 * Attaches to an existing heap: validates magic, layout version and sizes
 * against meta_size and the heap mapping. -EPROTO on another layout version,
 * -EBADMSG on a header that does not describe a valid layout.
 */
int heap_attach(void *meta, uint64_t meta_size, void *base, uint64_t base_size, int heap_fd,
                heap **ret);

/* Frees the process-local handle; the shared memory is untouched. */
void heap_detach(heap *h);

void heap_set_release(heap *h, heap_release_fn fn, void *userdata);

/*
 * For a process that must not trust the meta region (the daemon). glibc's
 * robust mutexes follow pointers kept inside the mutex, which any client
 * can overwrite: this handle's heap and scav locks instead speak glibc's
 * robust-mutex protocol on the lock word alone (clients keep using
 * pthread_mutex_lock; a thread that dies holding one still hands
 * EOWNERDEAD to the next locker). While the calling thread waits for a
 * lock, the wait is published in *wait (NULL: nowhere), for another thread
 * to see since when and for whom: the thread id the lock word named. A
 * thread that takes these locks registers its own robust list with the
 * kernel: it must not hold glibc robust mutexes, nor the locks of two
 * heaps at once.
 */
enum { HEAP_LOCK_HEAP = 1, HEAP_LOCK_SCAV = 2 };
struct heap_lock_wait {
        _Atomic int64_t since_ns;  /* CLOCK_MONOTONIC when the current wait began; 0: not waiting */
        _Atomic uint32_t lock;     /* HEAP_LOCK_HEAP or HEAP_LOCK_SCAV */
        _Atomic uint32_t holder;   /* thread id in the lock word when the wait began; 0: none */
};
void heap_set_untrusted(heap *h, struct heap_lock_wait *wait);
/* Why this process's last recovery after a dead lock holder failed (the
 * pool is then marked corrupt), or "" if none did. */
const char *heap_recover_problem(heap *h);

/* Heap geometry as this process sees it. */
void *heap_base(heap *h);
uint64_t heap_capacity(heap *h);
uint32_t heap_page_size(heap *h);

/*
 * Client slots. Slot 0 belongs to the daemon. A slot owns allocations,
 * page caches and at most one in-flight scavenge range.
 */
/* -EUSERS when every slot is taken. */
int heap_slot_claim(heap *h, uint32_t pid, uint32_t uid, uint32_t *ret_slot);
/* The same, but never a slot whose bit is set in busy (nbusy bits): one the
 * caller still counts as taken although the heap has it free. A client's
 * scav_close() frees its slot in the heap before its hang-up reaches the
 * daemon, and the daemon's reclaim of that slot must not meet a new owner. */
int heap_slot_claim_except(heap *h, uint32_t pid, uint32_t uid, const uint64_t *busy, uint32_t nbusy,
                           uint32_t *ret_slot);
/* The slot's owner is known to be gone (or closed): gives back its page
 * caches and every allocation it owns but those marked KEEP (which become
 * ownerless), completes its in-flight scavenge, and frees the slot.
 * Returns the number of pages given back. */
int64_t heap_slot_reclaim(heap *h, uint32_t slot);
/* Claims a specific slot that is still marked live for this pid (reconnect
 * after a daemon restart). -ESTALE if the slot is free or someone else's. */
int heap_slot_reclaim_for(heap *h, uint32_t slot, uint32_t pid);

/*
 * Allocation. heap_alloc takes the heap lock; heap_cache_alloc serves from
 * thread cache `cache` of `slot` without any lock: one page from its page
 * cache (refilled under the lock when empty); 2 to 15 pages exactly, and
 * 16 to 128 pages rounded up to a size class (16, then 4 per doubling: 20,
 * 24, ..., 128; heap_alloc_size gives the class size), from its lists of
 * its earlier frees of that class, else in batches under the lock; larger
 * requests go to heap_alloc. Only one thread may use a given (slot, cache)
 * at a time. KEEP allocations always take the locked path.
 * -EINVAL bad npages/flags, -ENOMEM capacity exhausted.
 */
int heap_alloc(heap *h, uint32_t slot, uint64_t npages, unsigned flags, uint64_t *ret_off);
int heap_cache_alloc(heap *h, uint32_t slot, uint32_t cache, uint64_t npages, unsigned flags,
                     uint64_t *ret_off);

/*
 * Frees the allocation starting at off. Any slot may free any live
 * allocation; ownership only decides where the pages go: what thread cache
 * `cache` of `slot` allocated goes back to it without a lock; anything else
 * takes the lock and goes back to the heap, or, allocated by a thread cache
 * that is active, is kept for that cache (an orphan, given back at its
 * owner's next miss or by the reaper). -EINVAL when off is not the start of
 * a live allocation (double free, wrong offset); nothing changes then. Two
 * frees of one allocation that race (threads that have not ordered them)
 * may both return 0; the pages are still freed exactly once.
 */
int heap_free(heap *h, uint32_t slot, uint32_t cache, uint64_t off);

/* Gives back the free pages of page cache `cache` of `slot` and what its
 * medium lists hold (thread exit); the thread cache becomes inactive. */
int heap_cache_flush(heap *h, uint32_t slot, uint32_t cache);

/*
 * Takes back what threads keep in their caches (page caches' free pages,
 * medium lists), which counts as in use and which the scavenger cannot
 * release. HEAP_REAP_GEN, at a generation's start: everything from a
 * thread that did nothing since the last reap (its cache becomes inactive
 * until its next operation), and from the others what their lists kept
 * unused since then and their wholly free blocks; everything from everyone
 * when retained memory is over the goal or the memory limit. HEAP_REAP_ALL
 * (pressure): everything from everyone. Safe against the owners, which
 * never take a lock for it (see reap.c): a thread busy at that instant
 * does it at its next operation (deferred). The report may be NULL.
 */
enum {
        HEAP_REAP_GEN = 0,
        HEAP_REAP_ALL = 1,
};
struct heap_reap_report {
        uint64_t given_pages; /* given back to the heap */
        uint64_t held_pages;  /* still held by the caches asked (free, in their lists and blocks) */
        uint32_t reaped;      /* caches reaped */
        uint32_t deferred;    /* caches whose owner does it at its next operation */
        bool all;             /* everything was asked of everyone */
};
int heap_cache_reap(heap *h, unsigned how, struct heap_reap_report *ret);

/* Length in bytes of the live allocation starting at off, or -EINVAL. */
int64_t heap_alloc_size(heap *h, uint64_t off);

/*
 * Scavenging (mgcscavenge.go). heap_scavenge releases up to nbytes of free,
 * backed memory, highest addresses first, continuing from where the last
 * call of this generation stopped; returns the bytes released. `slot` names
 * the scavenger, for its crash intent. nbytes = UINT64_MAX releases all.
 * Only the ranges of the current generation are searched: before the first
 * heap_scavenge_start_gen, and once a generation is exhausted, it returns 0.
 * -EIO when the release function failed before anything was released,
 * -EBUSY when the slot already has its limit of scavenges in flight (its
 * other threads). Heap-growth scavenging also searches outside the
 * generation's ranges when they are exhausted.
 */
int64_t heap_scavenge(heap *h, uint32_t slot, uint64_t nbytes);

/* Starts a new generation (scavengeStartGen). Reports the generation that
 * ended and what it released, for the trace. */
struct heap_gen_report {
        uint64_t gen;          /* the generation that ended */
        uint64_t released;     /* bytes it released */
        uint64_t total;        /* released now (heap_released) */
        uint64_t inuse;
        uint64_t retained;
        uint64_t peak_inuse;   /* peak in-use of the ended generation */
};
int heap_scavenge_start_gen(heap *h, struct heap_gen_report *ret);

/* Sets the background goal (HEAP_GOAL_NONE: off; the default) and the memory limit
 * (0: none). Both are read by clients for heap-growth scavenging. */
void heap_set_goal(heap *h, uint64_t retained_goal);
void heap_set_memory_limit(heap *h, uint64_t limit);

/*
 * The retained goal (gcPaceScavenger, adapted): (100 + retain_extra_percent)%
 * of the in-use estimate, aligned up to a physical page, at most 95% of a
 * non-zero memory_limit; HEAP_GOAL_NONE when retained is already at or
 * within one physical page of it. Pure.
 */
uint64_t heap_retained_goal(uint64_t inuse_estimate, uint64_t retained_now,
                            uint32_t retain_extra_percent, uint64_t memory_limit,
                            uint32_t phys_page_size);

uint64_t heap_retained(heap *h);
int heap_get_stats(heap *h, struct heap_stats *ret);

/*
 * Verifies every invariant: the header (heap_verify_header), bitmaps
 * against summaries, records and page caches against bitmaps, statistics
 * against both. Returns 0, or -EUCLEAN with a description of the first
 * broken invariant in buf.
 */
int heap_check(heap *h, char *buf, size_t len);

/* Iterates over live slots (for scavctl clients). */
struct heap_slot_info {
        uint32_t slot, pid, uid;
        uint64_t inuse_pages;  /* pages in records owned by the slot */
        uint64_t cached_pages; /* pages held in its page caches */
        uint64_t refs;         /* references it holds on shared allocations */
        uint64_t shared;       /* shared allocations it holds references on */
};
int heap_slot_info(heap *h, uint32_t slot, struct heap_slot_info *ret);
uint32_t heap_max_slots(heap *h);

/*
 * Sharing (share.c, names.c). An allocation's first reference is implicit:
 * its owner's, or the pool's with HEAP_ALLOC_KEEP. The first heap_ref,
 * heap_share_tag or heap_publish gives it a share entry that counts every
 * reference per slot (plus the pool's and the names'); from then on every
 * free of it takes the heap lock, and it is freed when its last reference
 * goes, whoever drops it. heap_slot_reclaim drops exactly the slot's
 * references. All of these return -EINVAL when off is not a live
 * allocation and change nothing on any error.
 */
/* One more reference for slot. -ETOOMANYREFS at the slot's limit
 * (HEAP_SHARE_SLOT_MAX), -ENOSPC when the share table is full. */
int heap_ref(heap *h, uint32_t slot, uint64_t off);
/* Drops one of slot's references; -ENOENT if it holds none. `cache` as for
 * heap_free: the owner's last reference to an unshared allocation is a free. */
int heap_unref(heap *h, uint32_t slot, uint32_t cache, uint64_t off);
/* The tag of the allocation at off (giving it a share entry): a handle is
 * (pool id, off, tag). Takes no reference. */
int heap_share_tag(heap *h, uint32_t slot, uint64_t off, uint64_t *ret_tag);
/* A reference for slot on the allocation at off if its tag is still tag;
 * -ESTALE if it was freed (or freed and allocated again) since. */
int heap_ref_tagged(heap *h, uint32_t slot, uint64_t off, uint64_t tag);
/* Random, fixed at creation: tells a pool from one created anew. */
uint64_t heap_pool_id(heap *h);

/*
 * Names: a directory of max_names in the meta region. A bound name holds a
 * reference. -EINVAL bad name (see heap_name_valid), -EEXIST taken,
 * -ENOSPC directory (or share table) full, -ENOENT no such name.
 */
bool heap_name_valid(const char *name);
int heap_publish(heap *h, uint32_t slot, const char *name, uint64_t off);
/* Takes a reference for slot. timeout_ns: 0 = do not wait, < 0 = no limit;
 * a waiting lookup sleeps on a futex in the meta region, woken by publishes
 * (-ETIMEDOUT when it runs out, -EINTR when a signal handler installed
 * without SA_RESTART ran). */
int heap_lookup(heap *h, uint32_t slot, const char *name, int64_t timeout_ns, uint64_t *ret_off);
int heap_unpublish(heap *h, uint32_t slot, const char *name);

/* Iterates over names (scavctl names): index i from 0; -ENOENT for an
 * empty place, -ERANGE past the last place ever used. */
struct heap_name_info {
        char name[64];
        uint64_t off, bytes, refs, tag;
};
int heap_name_info(heap *h, uint32_t i, struct heap_name_info *ret);
uint32_t heap_max_names(heap *h);

/*
 * For a reader that must not trust the meta region (verify.c). Each copies
 * what it reads once and checks the copy; -EUCLEAN with the reason in buf.
 *
 * heap_verify_header: the header's read-only part (magic, layout version,
 * sizes, section offsets) still describes the layout this handle was made
 * with. A header changed after creation is a corruption like any other.
 * heap_get_stats_checked: heap_get_stats, read under the heap lock after
 * heap_verify_header, every figure checked against the geometry, against
 * the others and against prev (the last checked statistics, or NULL).
 * heap_slot_info_checked: heap_slot_info with its figures checked.
 */
int heap_verify_header(heap *h, char *buf, size_t len);
int heap_get_stats_checked(heap *h, const struct heap_stats *prev, struct heap_stats *ret, char *buf, size_t len);
int heap_slot_info_checked(heap *h, uint32_t slot, struct heap_slot_info *ret, char *buf, size_t len);

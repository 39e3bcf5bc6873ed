/* SPDX-License-Identifier: MIT */
#ifndef SCAV_H
#define SCAV_H

/*
 * libscav: allocate pages of a scavd shared-memory pool directly in shared
 * memory. See libscav(3).
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure; none aborts on bad input. The library is thread-safe.
 */

#include <stddef.h>
#include <stdint.h>

/*
 * The version of libscav this header belongs to, for #if; scav_version()
 * says which library a program actually runs with. SCAV_VERSION is the two
 * as a string, "MAJOR.MINOR".
 */
#define SCAV_VERSION_MAJOR 0
#define SCAV_VERSION_MINOR 1
#define SCAV_VERSION_STR_(x) #x
#define SCAV_VERSION_XSTR_(x) SCAV_VERSION_STR_(x)
#define SCAV_VERSION SCAV_VERSION_XSTR_(SCAV_VERSION_MAJOR) "." SCAV_VERSION_XSTR_(SCAV_VERSION_MINOR)

#ifdef __cplusplus
extern "C" {
#endif

/* The running library's version, e.g. "0.1". */
const char *scav_version(void);

typedef struct scav_pool scav_pool;

enum {
        SCAV_ALLOC_ZERO = 1u << 0, /* memory reads as zero */
        SCAV_ALLOC_KEEP = 1u << 1, /* outlives its client; any client may free it */
};

struct scav_stats {
        uint64_t capacity;
        uint64_t page_size;
        uint64_t heap_sys;
        uint64_t inuse;
        uint64_t released;
        uint64_t retained;
        uint64_t retained_goal;  /* UINT64_MAX: background scavenger idle */
        uint64_t gen;
        uint64_t released_total;
        uint64_t clients;
        uint64_t memory_limit;
        uint64_t peak_inuse;
        uint64_t growth_scavenged;
        uint64_t faults;          /* user page faults in the pool (BPF), 0 when unknown */
        uint64_t refaults;        /* faults on recently released pages */
        uint64_t pressure_events; /* kernel reclaim/PSI events answered */
        uint64_t shared;          /* allocations with references, handles or names (scav_ref) */
        uint64_t refs;            /* references held on them: clients', the pool's, names' */
        uint64_t names;           /* names published */
        uint64_t reserved[5];
};

int scav_open(const char *pool, scav_pool **out);
void scav_close(scav_pool *p);

int scav_alloc(scav_pool *p, size_t size, unsigned flags, uint64_t *off);
int scav_free(scav_pool *p, uint64_t off);

void *scav_ptr(scav_pool *p, uint64_t off);
int scav_offset(scav_pool *p, const void *ptr, uint64_t *off);

int scav_stats(scav_pool *p, struct scav_stats *st);
int64_t scav_scavenge(scav_pool *p, size_t bytes);
int scav_heap_fd(scav_pool *p);

/*
 * Sharing (libscav(3) SHARING). An allocation lives while someone holds a
 * reference to it: the client that allocated it holds the first one (with
 * SCAV_ALLOC_KEEP the pool holds it instead), scav_ref takes one more for
 * the calling client, names hold one each. References are counted per
 * client: when a client dies, exactly its references are dropped. The
 * allocation is freed when its last reference goes, whoever drops it.
 *
 * scav_free drops the caller's reference if it holds one, else the pool's
 * (KEEP); an allocation that nobody else references is freed as before.
 */
int scav_ref(scav_pool *p, uint64_t off);
int scav_unref(scav_pool *p, uint64_t off);
/* Bytes of the live allocation at off (a page multiple, at least what was asked). */
int scav_size(scav_pool *p, uint64_t off, size_t *bytes);

/*
 * A handle names one allocation in a way any process may carry (a pipe, a
 * file, a pickle): the pool, the offset, and a tag that differs each time
 * the pages are allocated again. Making one takes no reference; the
 * receiver's scav_ref_handle takes one, or fails with -ESTALE when the
 * allocation was freed (or freed and allocated again) meanwhile: a handle
 * never leads to the wrong memory. Plain bytes: copy them as they are.
 */
#define SCAV_HANDLE_MAGIC 0x444e4853u /* "SHND" */
#define SCAV_POOL_NAME_SIZE 64        /* pool names: at most 63 bytes */
struct scav_handle {
        uint32_t magic;                  /* SCAV_HANDLE_MAGIC */
        uint32_t version;                /* 1 */
        uint64_t pool_id;                /* the pool's identity; a pool created anew gets another */
        uint64_t off;
        uint64_t tag;
        char pool[SCAV_POOL_NAME_SIZE];  /* the pool's name, NUL-terminated: what to scav_open */
};
int scav_make_handle(scav_pool *p, uint64_t off, struct scav_handle *h);
int scav_ref_handle(scav_pool *p, const struct scav_handle *h, uint64_t *off);

/*
 * Names: a bounded directory per pool, in shared memory. A published name
 * holds a reference to its allocation until it is unpublished; a lookup
 * takes one for the caller. Names are 1 to SCAV_NAME_MAX - 1 bytes of
 * printable ASCII without spaces.
 */
#define SCAV_NAME_MAX 64
int scav_publish(scav_pool *p, const char *name, uint64_t off);
int scav_lookup(scav_pool *p, const char *name, uint64_t *off);
/* As scav_lookup, waiting up to timeout_ms for the name to appear (-1: no limit). */
int scav_lookup_wait(scav_pool *p, const char *name, int timeout_ms, uint64_t *off);
int scav_unpublish(scav_pool *p, const char *name);

#ifdef __cplusplus
}
#endif

#endif

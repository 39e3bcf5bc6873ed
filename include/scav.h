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
        uint64_t reserved[8];
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

#ifdef __cplusplus
}
#endif

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Row 1 driver: tcmalloc from gperftools (Debian's libgoogle-perftools-dev),
 * called through its own tc_malloc/tc_free entry points so there is no doubt
 * which allocator serves the workload.
 */
#include <errno.h>
#include <stdio.h>
#include <gperftools/tcmalloc.h>

struct blk { void *ptr; };

static const char *be_name = "tcmalloc";

static int be_init(size_t max_live_bytes) {
        int major, minor;
        const char *patch;

        fprintf(stderr, "%s\n", tc_version(&major, &minor, &patch));
        return 0;
}

static inline int be_alloc(size_t size, struct blk *b) {
        b->ptr = tc_malloc(size);
        return b->ptr ? 0 : -ENOMEM;
}

static inline void be_free(struct blk *b) { tc_free(b->ptr); }

static void be_fini(void) {}

#include "peer-alloc-loop.h"

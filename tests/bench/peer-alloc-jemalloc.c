/* SPDX-License-Identifier: MIT */
/*
 * Row 1 driver: jemalloc. Debian's libjemalloc is unprefixed, so linking it
 * replaces malloc/free for this whole process; one driver per allocator
 * keeps the allocators apart while they run in one `make bench`.
 * be_init checks through mallctl that jemalloc is the malloc in use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <jemalloc/jemalloc.h>

struct blk { void *ptr; };

static const char *be_name = "jemalloc";

static int be_init(size_t max_live_bytes) {
        const char *v;
        size_t len = sizeof(v);

        if (mallctl("version", &v, &len, NULL, 0) != 0)
                return -ENOSYS;
        fprintf(stderr, "jemalloc %s\n", v);
        return 0;
}

static inline int be_alloc(size_t size, struct blk *b) {
        b->ptr = malloc(size);
        return b->ptr ? 0 : -ENOMEM;
}

static inline void be_free(struct blk *b) { free(b->ptr); }

static void be_fini(void) {}

#include "peer-alloc-loop.h"

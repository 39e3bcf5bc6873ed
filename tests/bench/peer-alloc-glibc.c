/* SPDX-License-Identifier: MIT */
/* Row 1 driver: glibc malloc/free (the system allocator, no interposer). */
#include <stdlib.h>

struct blk { void *ptr; };

static const char *be_name = "glibc";

static int be_init(size_t max_live_bytes) { return 0; }

static inline int be_alloc(size_t size, struct blk *b) {
        b->ptr = malloc(size);
        return b->ptr ? 0 : -12;
}

static inline void be_free(struct blk *b) { free(b->ptr); }

static void be_fini(void) {}

#include "peer-alloc-loop.h"

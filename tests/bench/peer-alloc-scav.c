/* SPDX-License-Identifier: MIT */
/*
 * Row 1, 2 and 5 driver: libscav, through a real scavd on a private socket
 * ($SCAVD_SOCKET); the pool is $PEER_POOL (default "bench"). Blocks are
 * offsets in the shared heap; scav_ptr gives this process's address.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scav.h"

struct blk { void *ptr; uint64_t off; };

static const char *be_name = "libscav";
static scav_pool *be_pool;

static int be_init(size_t max_live_bytes) {
        const char *name = getenv("PEER_POOL");
        int r;

        r = scav_open(name ? name : "bench", &be_pool);
        if (r < 0)
                fprintf(stderr, "scav_open(%s): %s\n", name ? name : "bench", strerror(-r));
        return r;
}

static inline int be_alloc(size_t size, struct blk *b) {
        int r = scav_alloc(be_pool, size, 0, &b->off);

        if (r < 0)
                return r;
        b->ptr = scav_ptr(be_pool, b->off);
        return 0;
}

static inline void be_free(struct blk *b) { scav_free(be_pool, b->off); }

static void be_fini(void) { scav_close(be_pool); }

#include "peer-alloc-loop.h"

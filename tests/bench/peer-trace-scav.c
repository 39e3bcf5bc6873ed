/* SPDX-License-Identifier: MIT */
/*
 * Row 4 driver: the burst trace through libscav and a real scavd
 * ($SCAVD_SOCKET, pool $PEER_POOL or "trace"). The footprint is the heap
 * memfd's backed blocks, which the runner reads through /proc/PID/fd.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scav.h"

struct blk { void *ptr; uint64_t off; };

static const char *be_name = "scavd";
static scav_pool *be_pool;

static int be_init(void) {
        const char *name = getenv("PEER_POOL");

        return scav_open(name ? name : "trace", &be_pool);
}

static int be_heap_fd(void) { return scav_heap_fd(be_pool); }

static int be_alloc(size_t size, struct blk *b) {
        int r = scav_alloc(be_pool, size, 0, &b->off);

        if (r < 0)
                return r;
        b->ptr = scav_ptr(be_pool, b->off);
        return 0;
}

static void be_free(struct blk *b) { scav_free(be_pool, b->off); }

static void be_describe(void) {
        struct scav_stats st;

        if (scav_stats(be_pool, &st) < 0)
                return;
        printf("state inuse=%" PRIu64 " retained=%" PRIu64 " goal=%" PRIu64 " released_total=%" PRIu64
               " gen=%" PRIu64 " heap_sys=%" PRIu64 "\n",
               st.inuse, st.retained, st.retained_goal, st.released_total, st.gen, st.heap_sys);
}

#include "peer-trace-loop.h"

/* SPDX-License-Identifier: MIT */
/*
 * Row 4 driver: the burst trace through jemalloc; the runner sets
 * MALLOC_CONF (background_thread:true, or false for the case without it).
 * The footprint is the process's anonymous RSS.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <jemalloc/jemalloc.h>

struct blk { void *ptr; };

static const char *be_name = "jemalloc";

static int be_init(void) {
        const char *v;
        size_t len = sizeof(v);

        if (mallctl("version", &v, &len, NULL, 0) != 0)
                return -ENOSYS;
        return 0;
}

static int be_heap_fd(void) { return -1; }

static int be_alloc(size_t size, struct blk *b) {
        b->ptr = malloc(size);
        return b->ptr ? 0 : -ENOMEM;
}

static void be_free(struct blk *b) { free(b->ptr); }

static void be_describe(void) {
        uint64_t epoch = 1;
        size_t sz = sizeof(size_t), blen = sizeof(bool), llen = sizeof(ssize_t);
        size_t resident = 0, active_b = 0, retained = 0;
        ssize_t dirty_ms = -2, muzzy_ms = -2;
        bool bg = false;

        mallctl("epoch", &epoch, &(size_t) { sizeof(epoch) }, &epoch, sizeof(epoch));
        mallctl("stats.resident", &resident, &sz, NULL, 0);
        mallctl("stats.active", &active_b, &sz, NULL, 0);
        mallctl("stats.retained", &retained, &sz, NULL, 0);
        mallctl("background_thread", &bg, &blen, NULL, 0);
        mallctl("opt.dirty_decay_ms", &dirty_ms, &llen, NULL, 0);
        mallctl("opt.muzzy_decay_ms", &muzzy_ms, &llen, NULL, 0);
        printf("state background_thread=%d dirty_decay_ms=%zd muzzy_decay_ms=%zd resident=%zu active=%zu "
               "retained_vm=%zu\n", bg, dirty_ms, muzzy_ms, resident, active_b, retained);
}

#include "peer-trace-loop.h"

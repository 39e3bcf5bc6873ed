/* SPDX-License-Identifier: MIT */
/*
 * Row 6 driver: what sharing costs, through libscav and a real scavd on a
 * private socket ($SCAVD_SOCKET, pool $PEER_POOL or "bench"), beside an
 * 8 KiB alloc+free pair measured the same way:
 *
 *   alloc8k    scav_alloc + first byte written + scav_free, 1,000 live
 *   ref        scav_ref + scav_unref of a shared allocation
 *   handle     scav_make_handle + scav_ref_handle + scav_unref
 *   name       scav_publish + scav_lookup + scav_unref + scav_unpublish
 *
 * One line per operation: "op=NAME ns_per_op=X ops=N". The shared
 * allocation is 8 KiB; every operation runs in this one process (the heap
 * lock is uncontended: this is the floor a user pays).
 *
 *   peer-share-scav [--seconds S]
 */

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scav.h"

#define LIVE 1000

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static inline uint64_t xorshift(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void die(const char *what, int r) {
        fprintf(stderr, "%s: %s\n", what, strerror(-r));
        exit(1);
}

/* Runs body in batches until `seconds` passed; prints ns per iteration. */
#define MEASURE(name, seconds, body)                                                       \
        do {                                                                               \
                uint64_t _n = 0;                                                           \
                double _t0 = now_ns(), _t;                                                 \
                do {                                                                       \
                        for (unsigned _i = 0; _i < 1000; _i++) {                           \
                                body;                                                      \
                        }                                                                  \
                        _n += 1000;                                                        \
                } while ((_t = now_ns()) - _t0 < (seconds) * 1e9);                         \
                printf("op=%s ns_per_op=%.2f ops=%" PRIu64 "\n", name, (_t - _t0) / (double) _n, _n); \
        } while (0)

int main(int argc, char **argv) {
        const char *pool = getenv("PEER_POOL") ? getenv("PEER_POOL") : "bench";
        double seconds = argc > 2 && strcmp(argv[1], "--seconds") == 0 ? atof(argv[2]) : 0.3;
        static uint64_t live[LIVE];
        struct scav_handle h;
        scav_pool *p;
        uint64_t off, got;
        int r;

        if ((r = scav_open(pool, &p)) < 0)
                die("scav_open", r);
        for (unsigned i = 0; i < LIVE; i++) {
                if ((r = scav_alloc(p, 8192, 0, &live[i])) < 0)
                        die("scav_alloc", r);
                *(volatile char *) scav_ptr(p, live[i]) = 1;
        }

        /* The same loop as row 1's: a random one of 1,000 live blocks replaced. */
        MEASURE("alloc8k", seconds, {
                unsigned k = (unsigned) (xorshift() % LIVE);
                scav_free(p, live[k]);
                if (scav_alloc(p, 8192, 0, &live[k]) < 0)
                        die("scav_alloc", -ENOMEM);
                *(volatile char *) scav_ptr(p, live[k]) = 1;
        });

        if ((r = scav_alloc(p, 8192, 0, &off)) < 0 || (r = scav_ref(p, off)) < 0 || (r = scav_unref(p, off)) < 0)
                die("sharing an allocation", r);
        MEASURE("ref", seconds, {
                scav_ref(p, off);
                scav_unref(p, off);
        });
        MEASURE("handle", seconds, {
                scav_make_handle(p, off, &h);
                scav_ref_handle(p, &h, &got);
                scav_unref(p, got);
        });
        MEASURE("name", seconds, {
                scav_publish(p, "bench/frame", off);
                scav_lookup(p, "bench/frame", &got);
                scav_unref(p, got);
                scav_unpublish(p, "bench/frame");
        });
        /* Nothing leaked: the allocation is ours alone again. */
        size_t bytes;
        if ((r = scav_unref(p, off)) < 0)
                die("the last scav_unref", r);
        if (scav_size(p, off, &bytes) != -EINVAL)
                die("the shared allocation outlived its references", -EBUSY);
        for (unsigned i = 0; i < LIVE; i++)
                scav_free(p, live[i]);
        scav_close(p);
        return 0;
}

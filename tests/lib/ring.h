/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A producer/consumer ring over a pool, for the sharing tests: producers
 * allocate frames, fill them with a checksummed pattern and publish each
 * under one of RING_NAMES names ("ring/<n>"), then drop their own
 * reference (the name holds the frame); some also pass a handle through a
 * pipe. Consumers look names up (taking a reference), verify the frame,
 * keep holding it while verifying it again, unpublish it and drop their
 * reference; some redeem handles from the pipe instead. Any process may be
 * SIGKILLed at any moment: what must hold is that no consumer ever sees a
 * frame change while it holds a reference. Counters and the first failure
 * live in a shared anonymous mapping.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "scav.h"

#define RING_NAMES 32u

struct ring_shm {
        _Atomic uint64_t seq;        /* frames numbered so far */
        _Atomic uint64_t produced;   /* published */
        _Atomic uint64_t consumed;   /* verified, held, verified again, unpublished */
        _Atomic uint64_t redeemed;   /* handles that led to a frame, verified */
        _Atomic uint64_t stale;      /* handles refused with -ESTALE */
        _Atomic uint64_t waited;     /* lookups that waited for a name and got it */
        _Atomic uint64_t touches;    /* references taken and dropped by touchers */
        _Atomic uint64_t failures;
        char failure[512];           /* the first one */
        _Atomic int pause;           /* asks every ring process to hold still between operations */
        _Atomic int paused;          /* how many do */
};

/* A shared anonymous mapping, zeroed; NULL on failure. */
struct ring_shm *ring_shm_new(void);

/* A pipe for handles: one handle per packet, non-blocking at both ends. */
int ring_handle_pipe(int fds[2]);

/* Run until killed; exit non-zero only when the pool cannot be used at all. */
_Noreturn void ring_producer(struct ring_shm *s, const char *pool, uint64_t seed, int handle_wfd);
_Noreturn void ring_consumer(struct ring_shm *s, const char *pool, uint64_t seed, int handle_rfd);
/* Takes and drops references on named frames in a tight loop (most of its
 * time inside the heap lock: where a kill tests recovery). */
_Noreturn void ring_toucher(struct ring_shm *s, const char *pool, uint64_t seed);

/* Stops every ring process between two operations (none in the heap lock);
 * false if not all of n did within 20 s. */
bool ring_pause(struct ring_shm *s, int n);
void ring_resume(struct ring_shm *s);

/* Unpublishes every ring name still bound (the frames go with them);
 * returns how many, or a negative errno. */
int ring_drain(scav_pool *p);

/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The background scavenger on sd-event (issue 4): per-pool generation
 * timers, one paced background scavenger shared by all pools (the budget
 * is the daemon's), forced scavenges. Policy lives in pacer.c (pure); this
 * file only carries it out, on the pools' workers (pool_post).
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"

struct pool;
typedef struct scavenger scavenger;

int scavenger_new(sd_event *e, const struct daemon_config *cfg, scavenger **ret);
scavenger *scavenger_free(scavenger *s);

/* Applies reloaded tunables (scavtrace, scavenge_percent, generation_interval). */
void scavenger_reconfigure(scavenger *s, const struct daemon_config *cfg);

/* Pools come and go; the pool outlives its registration. */
int scavenger_add_pool(scavenger *s, struct pool *p);
void scavenger_remove_pool(scavenger *s, struct pool *p);

/* Something changed (a client connected, left or freed memory; pressure):
 * a pool whose generations were parked runs them again, and the background
 * scavenger looks at it now. */
void scavenger_wake(scavenger *s, struct pool *p);

/* Releases everything free (bytes = 0) or up to bytes, unpaced, on the
 * pool's worker; traces "(forced)". if_free: only if the pool has free
 * memory when the worker gets to it (else cb gets 0 and nothing happens:
 * no generation starts). Returns 0 and calls cb once, on the
 * event loop, with the bytes released (or a negative errno; -EUCLEAN: the
 * pool was quarantined) and the worker's CPU time; or returns a negative
 * errno (-ENOENT: not registered, -EUCLEAN: quarantined) and never calls it. */
int scavenger_force(scavenger *s, struct pool *p, uint64_t bytes, bool if_free, const char *why,
                    void (*cb)(void *userdata, int64_t released, int64_t cpu_ns), void *userdata);

/* The daemon is stopping: no new work, no timers. */
void scavenger_stop(scavenger *s);

/* One-line summary for sd_notify STATUS= (in use, retained, released, generation). */
void scavenger_status(scavenger *s, char *buf, size_t len);

/* Called when the summary changed (a generation with changes ended, or the
 * background scavenger reached every goal and parked), so that the caller
 * can keep STATUS= current. */
void scavenger_set_status_callback(scavenger *s, void (*cb)(void *userdata), void *userdata);

/* Where page faults are counted (refaults per generation raise a pool's
 * goal); NULL: not counted. */
struct kernel_watch;
void scavenger_set_kernel(scavenger *s, struct kernel_watch *k);

/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Pressure against the real daemon (issue 6): scavenge_percent = 0 (no
 * background pace) and a pool holding 256 MiB free but backed; a process
 * in a 64 MiB memory cgroup goes through the page cache; the daemon must
 * release the pool's free memory (the heap memfd's st_blocks) on its own,
 * and its trace must show a forced release.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/daemon.h"
#include "macro.h"
#include "../lib/test.h"
#include "scav.h"
#include "test-kernel-memcg.h"

#define MiB (UINT64_C(1) << 20)
#define KD_FREE (256 * MiB)
/* Released: at most this much of the 256 MiB still backed. */
#define KD_LEFT (16 * MiB)
#define KD_POOL "kp"

static inline uint64_t kd_backed(scav_pool *p) {
        int64_t b = test_fd_blocks(scav_heap_fd(p));

        return b < 0 ? 0 : (uint64_t) b * 512;
}

/* Backs KD_FREE bytes of the pool by touching them, then frees them all. */
static inline int kd_fill_free(scav_pool *p) {
        static uint64_t offs[KD_FREE / MiB];
        int r;

        for (size_t i = 0; i < KD_FREE / MiB; i++) {
                r = scav_alloc(p, MiB, 0, &offs[i]);
                if (r < 0) {
                        fprintf(stderr, "scav_alloc #%zu: %s\n", i, strerror(-r));
                        return r;
                }
                memset(scav_ptr(p, offs[i]), 0x5a, MiB);
        }
        for (size_t i = 0; i < KD_FREE / MiB; i++) {
                r = scav_free(p, offs[i]);
                if (r < 0) {
                        fprintf(stderr, "scav_free #%zu: %s\n", i, strerror(-r));
                        return r;
                }
        }
        return 0;
}

/*
 * kd_fill_free until all of KD_FREE is backed: the daemon's pressure
 * source is system-wide, so the machine's own memory stalls (another
 * test's writeback settling, a loaded machine) may make it release some
 * of it while we fill. A few tries, half a second apart. *ret_backed: the
 * bytes backed then. 0, -EIO if it never held, or kd_fill_free's error.
 */
static inline int kd_fill_free_backed(scav_pool *p, uint64_t *ret_backed) {
        for (int tries = 0;; tries++) {
                int r = kd_fill_free(p);

                if (r < 0)
                        return r;
                *ret_backed = kd_backed(p);
                if (*ret_backed >= KD_FREE)
                        return 0;
                fprintf(stderr, "only %" PRIu64 " MiB backed after filling%s\n", *ret_backed / MiB,
                        tries < 4 ? ": pressure from elsewhere, filling again" : "");
                if (tries == 4)
                        return -EIO;
                usleep(500000);
        }
}

static inline int kd_cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* A number after "key": in scavctl's JSON output, or UINT64_MAX. */
static inline uint64_t kd_json_u64(const char *json, const char *key) {
        char pat[64];
        const char *at;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        at = strstr(json, pat);
        return at ? strtoull(at + strlen(pat), NULL, 10) : UINT64_MAX;
}

/* The daemon's fault and pressure counters for the pool, and the faults of
 * this process's slot, through scavctl. */
static inline int kd_daemon_counters(const struct test_daemon *d, uint64_t *faults, uint64_t *pressure,
                                     uint64_t *my_faults) {
        char out[8192], pid[32], *at;
        int r;

        r = test_scavctl(d, out, sizeof(out), "--json", "status", KD_POOL, NULL);
        if (r != 0) {
                fprintf(stderr, "scavctl status: %d: %s\n", r, out);
                return r < 0 ? r : -EIO;
        }
        *faults = kd_json_u64(out, "faults");
        *pressure = kd_json_u64(out, "pressure_events");

        r = test_scavctl(d, out, sizeof(out), "--json", "clients", KD_POOL, NULL);
        if (r != 0) {
                fprintf(stderr, "scavctl clients: %d: %s\n", r, out);
                return r < 0 ? r : -EIO;
        }
        snprintf(pid, sizeof(pid), "\"pid\":%d,", (int) getpid());
        at = strstr(out, pid);
        *my_faults = at ? kd_json_u64(at, "faults") : UINT64_MAX;
        return 0;
}

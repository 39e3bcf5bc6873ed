/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the peer benchmark drivers (one program each). */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t peer_clock_ns(clockid_t id) {
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static inline uint64_t peer_now_ns(void) { return peer_clock_ns(CLOCK_MONOTONIC); }
static inline uint64_t peer_thread_cpu_ns(void) { return peer_clock_ns(CLOCK_THREAD_CPUTIME_ID); }
static inline uint64_t peer_process_cpu_ns(void) { return peer_clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* Writes one byte in every 4 KiB page, so the whole block is backed. */
static inline void peer_touch_pages(void *p, size_t len, unsigned char v) {
        volatile unsigned char *c = p;

        for (size_t i = 0; i < len; i += 4096)
                c[i] = v;
}

/* "64M" -> bytes (K/M/G/T, binary). */
static inline int peer_parse_size(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
                return -EINVAL;
        switch (*end) {
        case 'T': case 't': v <<= 10; /* fall through */
        case 'G': case 'g': v <<= 10; /* fall through */
        case 'M': case 'm': v <<= 10; /* fall through */
        case 'K': case 'k': v <<= 10; end++; break;
        default: break;
        }
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

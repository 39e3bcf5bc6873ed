/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The few systemd-style helpers every file of scavd uses: cleanup attributes
 * for resources, TAKE_FD/TAKE_PTR to hand ownership on, and small arithmetic.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
#define _noinline_ __attribute__((noinline))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _public_ __attribute__((visibility("default")))
#define _hidden_ __attribute__((visibility("hidden")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

#define TAKE_FD(fd)                        \
        ({                                 \
                int *_fdp_ = &(fd);        \
                int _fd_ = *_fdp_;         \
                *_fdp_ = -EBADF;           \
                _fd_;                      \
        })

#define TAKE_PTR(ptr)                          \
        ({                                     \
                __typeof__(ptr) *_pp_ = &(ptr); \
                __typeof__(ptr) _p_ = *_pp_;   \
                *_pp_ = NULL;                  \
                _p_;                           \
        })

/* Power-of-two alignment, as Go's alignUp/alignDown. */
#define ALIGN_UP(x, a) (((x) + ((__typeof__(x)) (a) - 1)) & ~((__typeof__(x)) (a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x)) (a) - 1))
#define DIV_ROUND_UP(x, d) (((x) + (d) - 1) / (d))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Negative errno for functions that set errno. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

/* SPDX-License-Identifier: MIT */
/* The sharing tests' producer/consumer ring: see ring.h. */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "macro.h"
#include "ring.h"
#include "test.h"

#define FRAME_MAGIC UINT64_C(0x454d4152464e4952) /* "RINGFRAME" */
#define PAGE 4096u

struct frame_hdr {
        uint64_t magic, seq, bytes, sum;
};

struct ring_shm *ring_shm_new(void) {
        void *p = mmap(NULL, sizeof(struct ring_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
}

int ring_handle_pipe(int fds[2]) {
        /* Packet mode: one write, one handle, never torn. */
        return pipe2(fds, O_DIRECT | O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

static _Atomic uint64_t *payload(void *frame) {
        return (_Atomic uint64_t *) ((struct frame_hdr *) frame + 1);
}

static uint64_t frame_sum(void *frame, uint64_t bytes) {
        _Atomic uint64_t *w = payload(frame);
        uint64_t sum = 0, n = (bytes - sizeof(struct frame_hdr)) / 8;
        for (uint64_t i = 0; i < n; i++)
                sum = test_mix64(sum ^ atomic_load_explicit(&w[i], memory_order_relaxed));
        return sum;
}

static void frame_fill(void *frame, uint64_t seq, uint64_t bytes) {
        struct frame_hdr *h = frame;
        _Atomic uint64_t *w = payload(frame);
        uint64_t n = (bytes - sizeof(*h)) / 8;
        for (uint64_t i = 0; i < n; i++)
                atomic_store_explicit(&w[i], test_mix64(seq * 1000003 + i), memory_order_relaxed);
        *h = (struct frame_hdr) { FRAME_MAGIC, seq, bytes, frame_sum(frame, bytes) };
}

_printf_(2, 3) static void ring_fail(struct ring_shm *s, const char *fmt, ...) {
        if (atomic_fetch_add(&s->failures, 1) == 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(s->failure, sizeof(s->failure), fmt, ap);
                va_end(ap);
        }
}

/* Whether the frame at off is whole: the header the producer wrote and the sum of its pattern. */
static bool frame_ok(struct ring_shm *s, scav_pool *p, uint64_t off, const char *how, uint64_t *ret_seq) {
        size_t bytes = 0;
        int r = scav_size(p, off, &bytes);
        if (r < 0) {
                ring_fail(s, "%s: scav_size(%#" PRIx64 ") of a frame we hold: %d", how, off, r);
                return false;
        }
        struct frame_hdr h;
        memcpy(&h, scav_ptr(p, off), sizeof(h));
        if (h.magic != FRAME_MAGIC || h.bytes != bytes || (ret_seq && *ret_seq != UINT64_MAX && h.seq != *ret_seq)) {
                ring_fail(s, "%s: frame at %#" PRIx64 " has header magic %#" PRIx64 " seq %" PRIu64 " bytes %" PRIu64
                          " (allocation %zu bytes, seq seen before %" PRIu64 ")",
                          how, off, h.magic, h.seq, h.bytes, bytes, ret_seq ? *ret_seq : 0);
                return false;
        }
        uint64_t sum = frame_sum(scav_ptr(p, off), bytes);
        if (sum != h.sum) {
                ring_fail(s, "%s: frame %" PRIu64 " at %#" PRIx64 " changed under a reference: sum %#" PRIx64
                          ", written %#" PRIx64, how, h.seq, off, sum, h.sum);
                return false;
        }
        if (ret_seq)
                *ret_seq = h.seq;
        return true;
}

/* Verified, then verified again while still held: nobody may have reused it. */
static bool frame_hold(struct ring_shm *s, scav_pool *p, uint64_t off, const char *how, uint64_t *rng) {
        uint64_t seq = UINT64_MAX;
        if (!frame_ok(s, p, off, how, &seq))
                return false;
        unsigned rounds = 1 + (unsigned) (test_rnd(rng) % 3);
        for (unsigned i = 0; i < rounds; i++) {
                if (test_rnd(rng) % 8 == 0)
                        usleep(1000 + test_rnd(rng) % 4000);
                else
                        sched_yield();
                if (!frame_ok(s, p, off, how, &seq))
                        return false;
        }
        return true;
}

/* Between two operations: holds still while asked to. */
static void pause_point(struct ring_shm *s) {
        if (!atomic_load_explicit(&s->pause, memory_order_relaxed))
                return;
        atomic_fetch_add(&s->paused, 1);
        while (atomic_load(&s->pause))
                usleep(1000);
        atomic_fetch_sub(&s->paused, 1);
}

bool ring_pause(struct ring_shm *s, int n) {
        atomic_store(&s->pause, 1);
        for (unsigned t = 0; t < 20000; t++) {
                if (atomic_load(&s->paused) >= n)
                        return true;
                usleep(1000);
        }
        return false;
}

void ring_resume(struct ring_shm *s) {
        atomic_store(&s->pause, 0);
}

static scav_pool *open_or_die(const char *pool) {
        scav_pool *p;
        for (unsigned i = 0;; i++) {
                int r = scav_open(pool, &p);
                if (r == 0)
                        return p;
                /* Every slot may be taken for a moment by killed processes not yet reclaimed. */
                if ((r != -EUSERS && r != -ECONNREFUSED) || i > 2000)
                        _exit(10);
                usleep(5000);
        }
}

static uint64_t frame_bytes(uint64_t *rng) {
        unsigned k = (unsigned) (test_rnd(rng) % 10);
        uint64_t pages = k < 6 ? 1 + test_rnd(rng) % 15 : k < 9 ? 16 + test_rnd(rng) % 113 : 129 + test_rnd(rng) % 200;
        return pages * PAGE - test_rnd(rng) % PAGE;
}

_Noreturn void ring_producer(struct ring_shm *s, const char *pool, uint64_t seed, int handle_wfd) {
        uint64_t rng = seed;
        scav_pool *p = open_or_die(pool);

        for (;;) {
                pause_point(s);
                uint64_t seq = atomic_fetch_add(&s->seq, 1), off;
                size_t bytes;
                char name[32];

                int r = scav_alloc(p, frame_bytes(&rng), 0, &off);
                if (r == -ENOMEM) {
                        usleep(1000);
                        continue;
                }
                if (r < 0 || scav_size(p, off, &bytes) < 0) {
                        ring_fail(s, "producer: scav_alloc: %d", r);
                        _exit(11);
                }
                frame_fill(scav_ptr(p, off), seq, bytes);
                snprintf(name, sizeof(name), "ring/%u", (unsigned) (seq % RING_NAMES));
                r = scav_publish(p, name, off);
                if (r == 0) {
                        atomic_fetch_add(&s->produced, 1);
                        if (test_rnd(&rng) % 5 == 0) {
                                struct scav_handle h;
                                if (scav_make_handle(p, off, &h) == 0)
                                        (void) !write(handle_wfd, &h, sizeof(h));
                        }
                } else if (r != -EEXIST && r != -ENOSPC) {
                        ring_fail(s, "producer: scav_publish(%s): %d", name, r);
                        _exit(12);
                }
                /* Our reference goes; a published frame is the name's now. */
                r = scav_free(p, off);
                if (r < 0) {
                        ring_fail(s, "producer: scav_free of its own frame: %d", r);
                        _exit(13);
                }
                if (r == 0 && test_rnd(&rng) % 4 == 0)
                        usleep(200);
        }
}

_Noreturn void ring_consumer(struct ring_shm *s, const char *pool, uint64_t seed, int handle_rfd) {
        uint64_t rng = seed;
        scav_pool *p = open_or_die(pool);

        for (;;) {
                struct scav_handle h;
                uint64_t off;
                char name[32];
                int r;

                pause_point(s);
                /* A handle someone passed: the frame, or -ESTALE if it went meanwhile. */
                if (test_rnd(&rng) % 4 == 0 && read(handle_rfd, &h, sizeof(h)) == (ssize_t) sizeof(h)) {
                        r = scav_ref_handle(p, &h, &off);
                        if (r == -ESTALE)
                                atomic_fetch_add(&s->stale, 1);
                        else if (r < 0 || off != h.off) {
                                ring_fail(s, "consumer: scav_ref_handle: %d", r);
                                _exit(21);
                        } else {
                                if (frame_hold(s, p, off, "handle", &rng))
                                        atomic_fetch_add(&s->redeemed, 1);
                                if ((r = scav_unref(p, off)) < 0) {
                                        ring_fail(s, "consumer: scav_unref after a handle: %d", r);
                                        _exit(22);
                                }
                        }
                        continue;
                }

                snprintf(name, sizeof(name), "ring/%u", (unsigned) (test_rnd(&rng) % RING_NAMES));
                bool wait = test_rnd(&rng) % 10 == 0;
                r = wait ? scav_lookup_wait(p, name, 20, &off) : scav_lookup(p, name, &off);
                if (r == -ENOENT || r == -ETIMEDOUT)
                        continue;
                if (r < 0) {
                        ring_fail(s, "consumer: scav_lookup(%s): %d", name, r);
                        _exit(23);
                }
                if (wait)
                        atomic_fetch_add(&s->waited, 1);
                bool ok = frame_hold(s, p, off, name, &rng);
                /* Consumed by whoever unpublishes it first. */
                r = scav_unpublish(p, name);
                if (r == 0 && ok)
                        atomic_fetch_add(&s->consumed, 1);
                else if (r < 0 && r != -ENOENT) {
                        ring_fail(s, "consumer: scav_unpublish(%s): %d", name, r);
                        _exit(24);
                }
                if ((r = scav_unref(p, off)) < 0) {
                        ring_fail(s, "consumer: scav_unref(%s): %d", name, r);
                        _exit(25);
                }
        }
}

_Noreturn void ring_toucher(struct ring_shm *s, const char *pool, uint64_t seed) {
        uint64_t rng = seed;
        scav_pool *p = open_or_die(pool);

        for (;;) {
                struct scav_handle h;
                uint64_t off, got;
                char name[32];

                pause_point(s);
                snprintf(name, sizeof(name), "ring/%u", (unsigned) (test_rnd(&rng) % RING_NAMES));
                int r = scav_lookup(p, name, &off);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        ring_fail(s, "toucher: scav_lookup(%s): %d", name, r);
                        _exit(31);
                }
                for (unsigned i = 0; i < 64; i++) {
                        if ((r = scav_ref(p, off)) < 0 || (r = scav_make_handle(p, off, &h)) < 0 ||
                            (r = scav_ref_handle(p, &h, &got)) < 0 || (r = scav_unref(p, off)) < 0 ||
                            (r = scav_unref(p, off)) < 0) {
                                ring_fail(s, "toucher: references on %s: %d", name, r);
                                _exit(32);
                        }
                        atomic_fetch_add_explicit(&s->touches, 1, memory_order_relaxed);
                }
                if (!frame_ok(s, p, off, "toucher", NULL) || scav_unref(p, off) < 0)
                        _exit(33);
        }
}

int ring_drain(scav_pool *p) {
        int n = 0;
        for (unsigned i = 0; i < RING_NAMES; i++) {
                char name[32];
                snprintf(name, sizeof(name), "ring/%u", i);
                int r = scav_unpublish(p, name);
                if (r == 0)
                        n++;
                else if (r != -ENOENT)
                        return r;
        }
        return n;
}

/* SPDX-License-Identifier: MIT */
/*
 * Several processes share one memfd heap and allocate and free at once, each
 * through its own slot and page caches; one of them (the victim) is killed
 * with SIGKILL at random moments and respawned with a new slot. After each
 * kill the parent reclaims the dead slot, as the daemon does on hang-up, and
 * heap_check() must pass while the others keep allocating. Whoever takes a
 * lock the victim died holding goes through the EOWNERDEAD recovery.
 *
 * Every worker writes its pid and slot into each page it owns and verifies
 * them before freeing: a page handed to two owners shows up as a clobbered
 * tag. At the end, with every worker stopped and reclaimed, only KEEP
 * allocations may be left, every page must be accounted for, and the whole
 * heap must be allocatable again in one piece.
 *
 * SCAV_SEED=<n> replays the random choices (not the timing, of course).
 */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

#define CAPACITY (256u << 20)
#define MAX_SLOTS 8u
#define STABLE_WORKERS 2u
#define VICTIM STABLE_WORKERS /* worker index of the one that gets killed */
#define WORKERS (STABLE_WORKERS + 1u)
#define MIN_KILLS 400u /* kills of a victim that held a slot */
#define MAX_KILLS 2000u /* keep killing until a victim died holding a lock, up to this */
#define CACHES_USED 4u
#define MAX_LIVE 128u
#define MAX_KEEP 4u /* KEEP allocations per worker life */
#define MAILBOX 32u

/* Shared between the parent and the workers (a MAP_SHARED anonymous mapping). */
struct shared {
        _Atomic uint32_t stop;
        _Atomic uint32_t ready;
        _Atomic uint32_t failures;
        _Atomic uint64_t handoffs;
        char failmsg[512];
        struct worker_log {
                /* KEEP allocations outlive their owner: the parent frees them. */
                _Atomic uint32_t pending_keep; /* between heap_alloc(KEEP) and logging it */
                _Atomic uint32_t nkeep;
                uint64_t keep[MAX_KEEP];
                _Atomic uint64_t ops;
                _Atomic uint32_t claimed; /* this life has its slot */
        } log[WORKERS];
        /* Stable workers hand allocations to each other to free: frees by a
         * slot that is not the owner, while the owner keeps using its caches. */
        struct handoff {
                _Atomic uint32_t state;
                uint32_t from_pid, from_slot;
                uint64_t off, npages;
        } box[MAILBOX];
};

enum {
        BOX_EMPTY,
        BOX_BUSY,
        BOX_FULL,
};

struct fixture {
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size;
        heap *h;
        struct shared *sh;
};

static uint64_t rng_state;

static uint64_t rnd(void) {
        return test_rnd(&rng_state);
}

static uint64_t rnd_below(uint64_t n) {
        return n ? rnd() % n : 0;
}

/* What a worker writes at the start of every page it owns. */
static uint64_t owner_tag(uint32_t slot) {
        return (uint64_t) getpid() << 32 | slot;
}

static uint64_t *page_word(struct fixture *f, uint64_t off, unsigned word) {
        return (uint64_t *) ((char *) f->base + off) + word;
}

static void worker_fail(struct fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void worker_fail(struct fixture *f, const char *fmt, ...) {
        char msg[400];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "worker %d: %s\n", (int) getpid(), msg);
        if (atomic_fetch_add(&f->sh->failures, 1) == 0)
                snprintf(f->sh->failmsg, sizeof(f->sh->failmsg), "worker %d: %s", (int) getpid(), msg);
        _exit(2);
}

struct walloc {
        uint64_t off, npages;
        uint32_t cache;
};

static void tag_pages(struct fixture *f, uint32_t slot, const struct walloc *a, unsigned flags) {
        for (uint64_t i = 0; i < a->npages; i++) {
                uint64_t off = a->off + i * 4096;
                if ((flags & HEAP_ALLOC_ZERO) && (*page_word(f, off, 0) || *page_word(f, off, 1)))
                        worker_fail(f, "ZERO allocation %#" PRIx64 " page %" PRIu64 " reads %#" PRIx64,
                                    a->off, i, *page_word(f, off, 0));
                *page_word(f, off, 0) = owner_tag(slot);
                *page_word(f, off, 1) = a->off;
        }
}

static void check_tags_of(struct fixture *f, uint64_t tag, const struct walloc *a) {
        for (uint64_t i = 0; i < a->npages; i++) {
                uint64_t off = a->off + i * 4096;
                uint64_t t = *page_word(f, off, 0), s = *page_word(f, off, 1);
                if (t != tag || s != a->off)
                        worker_fail(f, "page %" PRIu64 " of allocation %#" PRIx64 " (%" PRIu64
                                    " pages) of pid %u slot %u holds tag %#" PRIx64 "/%#" PRIx64
                                    " (pid %u slot %u): owned twice?",
                                    i, a->off, a->npages, (unsigned) (tag >> 32), (unsigned) tag,
                                    t, s, (unsigned) (t >> 32), (unsigned) t);
        }
}

static void check_tags(struct fixture *f, uint32_t slot, const struct walloc *a) {
        check_tags_of(f, owner_tag(slot), a);
}

static bool post_handoff(struct fixture *f, uint32_t slot, const struct walloc *a) {
        unsigned start = (unsigned) rnd_below(MAILBOX);

        for (unsigned k = 0; k < MAILBOX; k++) {
                struct handoff *b = &f->sh->box[(start + k) % MAILBOX];
                uint32_t expect = BOX_EMPTY;
                if (!atomic_compare_exchange_strong(&b->state, &expect, BOX_BUSY))
                        continue;
                b->from_pid = (uint32_t) getpid();
                b->from_slot = slot;
                b->off = a->off;
                b->npages = a->npages;
                atomic_store(&b->state, BOX_FULL);
                return true;
        }
        return false;
}

/* Frees one allocation another worker handed over (any, when draining). */
static bool take_handoff(struct fixture *f, heap *h, uint32_t slot, bool any) {
        unsigned start = (unsigned) rnd_below(MAILBOX);

        for (unsigned k = 0; k < MAILBOX; k++) {
                struct handoff *b = &f->sh->box[(start + k) % MAILBOX];
                uint32_t expect = BOX_FULL;
                struct walloc a;
                uint64_t tag;
                int r;

                if (atomic_load(&b->state) != BOX_FULL || (!any && b->from_pid == (uint32_t) getpid()))
                        continue;
                if (!atomic_compare_exchange_strong(&b->state, &expect, BOX_BUSY))
                        continue;
                a = (struct walloc) { .off = b->off, .npages = b->npages };
                tag = (uint64_t) b->from_pid << 32 | b->from_slot;
                atomic_store(&b->state, BOX_EMPTY);
                atomic_fetch_add(&f->sh->handoffs, 1);
                check_tags_of(f, tag, &a);
                r = heap_free(h, slot, (uint32_t) rnd_below(CACHES_USED), a.off);
                if (r < 0)
                        worker_fail(f, "slot %u: heap_free(%#" PRIx64 ") handed over by slot %u: %s",
                                    slot, a.off, (unsigned) tag, strerror(-r));
                return true;
        }
        return false;
}

/*
 * A worker: allocates and frees at random through its slot and caches. The
 * victim leans on the locked paths (big allocations, scavenging, new
 * generations) so that it is often killed holding a lock.
 */
static _Noreturn void worker(struct fixture *f, unsigned w, uint64_t seed) {
        struct worker_log *log = &f->sh->log[w];
        struct walloc live[MAX_LIVE];
        unsigned nlive = 0;
        bool victim = w == VICTIM;
        uint32_t slot;
        heap *h;
        int r;

        rng_state = seed;
        r = heap_attach(f->meta, f->meta_size, f->base, CAPACITY, f->heap_fd, &h);
        if (r < 0)
                worker_fail(f, "heap_attach: %s", strerror(-r));
        r = heap_slot_claim(h, (uint32_t) getpid(), (uint32_t) getuid(), &slot);
        if (r < 0)
                worker_fail(f, "heap_slot_claim: %s", strerror(-r));
        atomic_store(&log->claimed, 1);
        atomic_fetch_add(&f->sh->ready, 1);

        while (!atomic_load(&f->sh->stop)) {
                unsigned k = (unsigned) rnd_below(100);

                atomic_fetch_add_explicit(&log->ops, 1, memory_order_relaxed);
                if (k < 45 && nlive < MAX_LIVE) {
                        struct walloc a = { .cache = (uint32_t) rnd_below(CACHES_USED) };
                        bool locked = victim ? rnd_below(100) < 60 : rnd_below(100) < 15;
                        unsigned flags = rnd_below(100) < 20 ? HEAP_ALLOC_ZERO : 0;
                        bool keep = rnd_below(1000) < 5 && atomic_load(&log->nkeep) < MAX_KEEP;

                        if (victim && locked)
                                a.npages = 1 + rnd_below(2 * HEAP_CACHE_MAX_ALLOC); /* short, locked */
                        else if (locked)
                                a.npages = HEAP_CACHE_MAX_ALLOC + rnd_below(48);
                        else
                                a.npages = 1 + rnd_below(HEAP_CACHE_MAX_ALLOC - 1);
                        if (keep) {
                                flags |= HEAP_ALLOC_KEEP;
                                atomic_store(&log->pending_keep, 1);
                        }
                        r = locked ? heap_alloc(h, slot, a.npages, flags, &a.off)
                                   : heap_cache_alloc(h, slot, a.cache, a.npages, flags, &a.off);
                        if (r == -ENOMEM) {
                                atomic_store(&log->pending_keep, 0);
                                continue;
                        }
                        if (r < 0)
                                worker_fail(f, "slot %u: allocating %" PRIu64 " pages: %s", slot,
                                            a.npages, strerror(-r));
                        if (a.off % 4096 || a.off + a.npages * 4096 > CAPACITY)
                                worker_fail(f, "slot %u: allocation %#" PRIx64 " out of bounds",
                                            slot, a.off);
                        tag_pages(f, slot, &a, flags);
                        if (keep) {
                                uint32_t n = atomic_load(&log->nkeep);
                                log->keep[n] = a.off;
                                atomic_store(&log->nkeep, n + 1);
                                atomic_store(&log->pending_keep, 0);
                        } else
                                live[nlive++] = a;
                } else if (k < 90 && nlive > 0) {
                        unsigned i = (unsigned) rnd_below(nlive);
                        struct walloc a = live[i];
                        uint32_t cache = rnd_below(100) < 85 ? a.cache : (uint32_t) rnd_below(CACHES_USED);

                        if (!victim && rnd_below(100) < 10 && take_handoff(f, h, slot, false))
                                continue;
                        check_tags(f, slot, &a);
                        live[i] = live[--nlive];
                        if (!victim && rnd_below(100) < 10 && post_handoff(f, slot, &a))
                                continue;
                        r = heap_free(h, slot, cache, a.off);
                        if (r < 0)
                                worker_fail(f, "slot %u: heap_free(%#" PRIx64 "): %s", slot, a.off,
                                            strerror(-r));
                } else if (k < 94) {
                        int64_t n = heap_scavenge(h, slot, (64u << 10) * (1 + rnd_below(16)));
                        if (n < 0)
                                worker_fail(f, "slot %u: heap_scavenge: %s", slot, strerror((int) -n));
                } else if (k < 97) {
                        r = heap_cache_flush(h, slot, (uint32_t) rnd_below(CACHES_USED));
                        if (r < 0)
                                worker_fail(f, "slot %u: heap_cache_flush: %s", slot, strerror(-r));
                } else if (victim && k < 99) {
                        /* Holds the heap lock for a while: a kill lands there often. */
                        char buf[256];
                        r = heap_check(h, buf, sizeof(buf));
                        if (r < 0)
                                worker_fail(f, "slot %u: heap_check: %s", slot, buf);
                } else if (victim || k == 99) {
                        struct heap_gen_report rep;
                        r = heap_scavenge_start_gen(h, &rep);
                        if (r < 0)
                                worker_fail(f, "slot %u: heap_scavenge_start_gen: %s", slot,
                                            strerror(-r));
                }
        }

        /* Stopped: give everything back, as a well-behaved client does, and free
         * what is left in the mailbox (the last one out finds it empty). */
        while (take_handoff(f, h, slot, true))
                ;
        while (nlive > 0) {
                struct walloc a = live[--nlive];
                check_tags(f, slot, &a);
                r = heap_free(h, slot, a.cache, a.off);
                if (r < 0)
                        worker_fail(f, "slot %u: heap_free(%#" PRIx64 ") at exit: %s", slot, a.off,
                                    strerror(-r));
        }
        for (uint32_t c = 0; c < CACHES_USED; c++) {
                r = heap_cache_flush(h, slot, c);
                if (r < 0)
                        worker_fail(f, "slot %u: heap_cache_flush at exit: %s", slot, strerror(-r));
        }
        heap_detach(h);
        _exit(0);
}

static pid_t spawn(struct fixture *f, unsigned w, uint64_t seed) {
        struct worker_log *log = &f->sh->log[w];
        pid_t pid;

        atomic_store(&log->nkeep, 0);
        atomic_store(&log->pending_keep, 0);
        atomic_store(&log->claimed, 0);
        pid = fork();
        if (pid < 0) {
                fprintf(stderr, "fork: %m\n");
                exit(EXIT_FAILURE);
        }
        if (pid == 0)
                worker(f, w, seed);
        return pid;
}

/* The slots a process held: what the daemon learns from its connection. */
static unsigned slots_of(struct fixture *f, pid_t pid, uint32_t *ret, unsigned max) {
        unsigned n = 0;

        for (uint32_t s = 1; s < heap_max_slots(f->h) && n < max; s++) {
                struct heap_slot_info info;
                if (heap_slot_info(f->h, s, &info) >= 0 && info.pid == (uint32_t) pid)
                        ret[n++] = s;
        }
        return n;
}

static int check_heap(struct fixture *f, const char *when) {
        char buf[512] = "";
        int r = heap_check(f->h, buf, sizeof(buf));

        if (r < 0) {
                fprintf(stderr, "heap_check %s: %d: %s\n", when, r, buf);
                test_failures++;
        }
        return r;
}

/* Frees the KEEP allocations a worker logged, checking they are still its own. */
static unsigned harvest_keep(struct fixture *f, unsigned w, pid_t pid, uint32_t slot) {
        struct worker_log *log = &f->sh->log[w];
        uint32_t n = atomic_load(&log->nkeep);

        for (uint32_t i = 0; i < n && i < MAX_KEEP; i++) {
                uint64_t off = log->keep[i];
                int64_t size = heap_alloc_size(f->h, off);
                int r;

                CHECKF(size > 0, "KEEP allocation %#" PRIx64 " of dead pid %d: heap_alloc_size %" PRId64,
                       off, (int) pid, size);
                for (int64_t p = 0; p < size / 4096; p++) {
                        uint64_t t = *page_word(f, off + (uint64_t) p * 4096, 0);
                        CHECKF(t == ((uint64_t) pid << 32 | slot),
                               "KEEP allocation %#" PRIx64 " page %" PRId64 ": tag %#" PRIx64
                               ", want pid %d slot %u", off, p, t, (int) pid, slot);
                }
                r = heap_free(f->h, 0, 0, off);
                CHECKF(r == 0, "freeing KEEP allocation %#" PRIx64 " of pid %d: %d", off, (int) pid, r);
        }
        atomic_store(&log->nkeep, 0);
        return n;
}

static int setup(struct fixture *f) {
        struct heap_params p = {
                .capacity = CAPACITY, .page_size = 4096, .phys_page_size = 4096,
                .max_slots = MAX_SLOTS, .reservation_shards = HEAP_DEFAULT_RESERVATION_SHARDS,
        };
        int r;

        r = heap_meta_size(&p, &f->meta_size);
        if (r < 0)
                return r;
        f->meta_fd = memfd_create("test-heap-multiproc-meta", MFD_CLOEXEC);
        f->heap_fd = memfd_create("test-heap-multiproc-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (f->meta_fd < 0 || f->heap_fd < 0)
                return negative_errno();
        if (ftruncate(f->meta_fd, (off_t) f->meta_size) < 0 ||
            ftruncate(f->heap_fd, CAPACITY) < 0)
                return negative_errno();
        f->meta = mmap(NULL, f->meta_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->meta_fd, 0);
        f->base = mmap(NULL, CAPACITY, PROT_READ | PROT_WRITE, MAP_SHARED, f->heap_fd, 0);
        f->sh = mmap(NULL, sizeof(*f->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (f->meta == MAP_FAILED || f->base == MAP_FAILED || f->sh == MAP_FAILED)
                return negative_errno();
        return heap_create(f->meta, f->meta_size, f->base, f->heap_fd, &p, &f->h);
}

int main(void) {
        const char *e = getenv("SCAV_SEED");
        uint64_t seed = e ? strtoull(e, NULL, 0) : UINT64_C(20260426);
        struct fixture f = {};
        pid_t pids[WORKERS];
        unsigned kills = 0, unknown_keep = 0, keep_freed = 0, leftovers = 0;
        uint64_t victim_slots = 0;
        struct heap_stats st;
        struct stat sb;
        int r, status;

        printf("seed %" PRIu64 " (set SCAV_SEED to replay the random choices)\n", seed);
        rng_state = seed;
        r = setup(&f);
        if (r < 0) {
                fprintf(stderr, "setting up the heap: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        for (unsigned w = 0; w < STABLE_WORKERS; w++)
                pids[w] = spawn(&f, w, seed ^ ((uint64_t) (w + 1) << 40));
        while (atomic_load(&f.sh->ready) < STABLE_WORKERS && !atomic_load(&f.sh->failures))
                usleep(1000);

        for (;;) {
                struct timespec ts = { .tv_nsec = (long) rnd_below(2000000) };
                uint32_t slots[MAX_SLOTS];
                unsigned n;
                pid_t victim;
                char when[64];

                heap_get_stats(f.h, &st);
                if (kills >= MAX_KILLS || (victim_slots >= MIN_KILLS && st.recoveries > 0) ||
                    atomic_load(&f.sh->failures))
                        break;

                victim = spawn(&f, VICTIM, seed ^ ((uint64_t) kills << 8) ^ 0xdead);
                /* Mostly at work; sometimes while it attaches and claims its slot. */
                if (rnd_below(100) < 85)
                        for (unsigned i = 0; i < 2000 && !atomic_load(&f.sh->log[VICTIM].claimed); i++)
                                usleep(50);
                nanosleep(&ts, NULL);
                kill(victim, SIGKILL);
                if (waitpid(victim, &status, 0) != victim) {
                        fprintf(stderr, "waitpid: %m\n");
                        return EXIT_FAILURE;
                }
                kills++;
                if (!WIFSIGNALED(status)) {
                        fprintf(stderr, "victim %d exited with %d before the kill\n", (int) victim,
                                WEXITSTATUS(status));
                        test_failures++;
                        break;
                }
                n = slots_of(&f, victim, slots, MAX_SLOTS);
                CHECKF(n <= 1, "dead victim %d holds %u slots", (int) victim, n);
                for (unsigned i = 0; i < n; i++) {
                        int64_t given = heap_slot_reclaim(f.h, slots[i]);
                        CHECKF(given >= 0, "heap_slot_reclaim(%u) of dead pid %d: %" PRId64,
                               slots[i], (int) victim, given);
                        victim_slots++;
                }
                snprintf(when, sizeof(when), "after kill %u (pid %d)", kills, (int) victim);
                if (check_heap(&f, when) < 0)
                        break;
                heap_get_stats(f.h, &st);
                CHECKF(st.clients == STABLE_WORKERS, "%s: %" PRIu64 " live clients, want the %u stable workers",
                       when, st.clients, STABLE_WORKERS);
                if (n == 1)
                        keep_freed += harvest_keep(&f, VICTIM, victim, slots[0]);
                if (atomic_load(&f.sh->log[VICTIM].pending_keep))
                        unknown_keep++;
                if (test_failures)
                        break;
        }

        /* Stop the stable workers; they free what they hold and exit. */
        atomic_store(&f.sh->stop, 1);
        for (unsigned w = 0; w < STABLE_WORKERS; w++) {
                uint32_t slots[MAX_SLOTS];
                unsigned n;

                if (waitpid(pids[w], &status, 0) != pids[w]) {
                        fprintf(stderr, "waitpid: %m\n");
                        return EXIT_FAILURE;
                }
                CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d ended with status %#x",
                       (int) pids[w], status);
                n = slots_of(&f, pids[w], slots, MAX_SLOTS);
                CHECKF(n == 1, "worker %d holds %u slots at exit", (int) pids[w], n);
                for (unsigned i = 0; i < n; i++) {
                        int64_t given = heap_slot_reclaim(f.h, slots[i]);
                        /* It freed everything and flushed its caches: nothing left to give. */
                        CHECKF(given == 0, "heap_slot_reclaim(%u) of a worker that freed everything: %" PRId64,
                               slots[i], given);
                        keep_freed += harvest_keep(&f, w, pids[w], slots[i]);
                }
        }
        for (unsigned i = 0; i < MAILBOX; i++)
                CHECKF(atomic_load(&f.sh->box[i].state) == BOX_EMPTY, "mailbox entry %u left full", i);
        if (atomic_load(&f.sh->failures))
                fprintf(stderr, "%u worker failure(s); first: %s\n", atomic_load(&f.sh->failures),
                        f.sh->failmsg);
        CHECK_EQ_U64(atomic_load(&f.sh->failures), 0);
        check_heap(&f, "with every worker reclaimed");

        /* Only KEEP allocations whose victim died before logging them may be left. */
        heap_get_stats(f.h, &st);
        CHECK_EQ_U64(st.clients, 0);
        for (uint64_t off = 0; off < st.heap_sys; off += 4096) {
                int64_t size = heap_alloc_size(f.h, off);
                if (size < 0)
                        continue;
                leftovers++;
                r = heap_free(f.h, 0, 0, off);
                CHECKF(r == 0, "freeing leftover %#" PRIx64 ": %d", off, r);
        }
        CHECKF(leftovers <= unknown_keep, "%u allocations left over; only %u KEEP allocations were "
               "unlogged when their owner died", leftovers, unknown_keep);
        heap_get_stats(f.h, &st);
        CHECK_EQ_U64(st.inuse, 0);
        check_heap(&f, "with everything freed");

        /* Nothing lost: the whole grown heap is one free run again. */
        {
                uint64_t off = UINT64_MAX;
                uint64_t npages = st.heap_sys / 4096;
                r = heap_alloc(f.h, 0, npages, 0, &off);
                CHECKF(r == 0 && off == 0, "allocating the whole grown heap (%" PRIu64 " pages): %d, off %#" PRIx64,
                       npages, r, off);
                if (r == 0) {
                        heap_get_stats(f.h, &st);
                        CHECK_EQ_U64(st.inuse, npages * 4096);
                        CHECK_EQ_U64(heap_free(f.h, 0, 0, off), 0);
                }
        }
        check_heap(&f, "at the end");
        heap_get_stats(f.h, &st);
        CHECK(fstat(f.heap_fd, &sb) == 0);
        CHECKF((uint64_t) sb.st_blocks * 512 <= st.retained,
               "heap memfd has %" PRIu64 " bytes backed, more than retained (%" PRIu64 ")",
               (uint64_t) sb.st_blocks * 512, st.retained);

        /* And the scavenger sees all of it: a forced scavenge releases the whole heap. */
        {
                struct heap_gen_report rep;
                int64_t released;

                CHECK(heap_scavenge_start_gen(f.h, &rep) == 0);
                released = heap_scavenge(f.h, 0, UINT64_MAX);
                heap_get_stats(f.h, &st);
                CHECK(fstat(f.heap_fd, &sb) == 0);
                CHECKF(released >= 0 && st.released == st.heap_sys && sb.st_blocks == 0,
                       "forced scavenge of the empty heap released %" PRId64 ": released %" PRIu64
                       " of heap_sys %" PRIu64 ", %" PRIu64 " bytes still backed",
                       released, st.released, st.heap_sys, (uint64_t) sb.st_blocks * 512);
        }
        check_heap(&f, "after the forced scavenge");

        printf("%u kills (%" PRIu64 " slots reclaimed), %" PRIu64 " EOWNERDEAD recoveries; "
               "%u KEEP allocations freed by the parent, %u left unlogged; %" PRIu64
               " frees by another worker; ops per worker:",
               kills, victim_slots, st.recoveries, keep_freed, leftovers, atomic_load(&f.sh->handoffs));
        for (unsigned w = 0; w < WORKERS; w++)
                printf(" %" PRIu64, atomic_load(&f.sh->log[w].ops));
        printf("; heap_sys %" PRIu64 " MiB\n", st.heap_sys >> 20);
        if (!test_failures)
                CHECKF(st.recoveries > 0, "in %u kills no victim died holding the heap lock", kills);
        heap_detach(f.h);
        return TEST_END();
}

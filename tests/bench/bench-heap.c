/* SPDX-License-Identifier: MIT */
/*
 * Benchmark of the heap core (issue 2), not a test: prints one table of
 * figures against the bars. Works on memfd heaps in this process,
 * through lib/heap/heap.h only; no daemon.
 *
 *   alloc+free pairs of 1 and 2 pages through the page cache, back to back
 *   and with 1,000 live blocks replaced at random (the peers' method: one
 *   thread, first byte written, ns per free+alloc pair);
 *   random 1-128-page alloc+free with 1,000 live blocks, on a 1 GiB and a
 *   1 TiB pool (the summaries' O(levels) cost: their ratio);
 *   releasing 1 GiB of free, backed memory through heap_scavenge against a
 *   raw fallocate(PUNCH_HOLE) loop over the same memory, in the same run;
 *   metadata bytes as a share of the touched heap (st_blocks of both memfds).
 *
 * The allocation rows run on a heap whose first GiB is backed and mapped
 * beforehand: they time the allocator, not first-touch page faults.
 *
 * BENCH_QUICK=1 runs a tenth of the iterations; BENCH_ONLY=cache,random,
 * release,meta (any of them) runs only those sections.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "macro.h"

#define PAGE 4096u
#define LIVE_BLOCKS 1000u
#define ROUNDS 3u

struct pool {
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size, capacity;
        heap *h;
        uint32_t slot;
};

static uint64_t iter_scale = 1;

static uint64_t rng_state = UINT64_C(0x2545f4914f6cdd1d);

/* xorshift64*: a nanosecond, so it does not blur what it drives. */
static inline uint64_t rnd(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static _Noreturn void die(const char *what, int r) {
        fprintf(stderr, "bench-heap: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

static void pool_open(struct pool *p, uint64_t capacity) {
        struct heap_params params = {
                .capacity = capacity, .page_size = PAGE, .phys_page_size = PAGE,
                .max_slots = 8, .reservation_shards = HEAP_DEFAULT_RESERVATION_SHARDS,
        };
        int r;

        *p = (struct pool) { .capacity = capacity };
        r = heap_meta_size(&params, &p->meta_size);
        if (r < 0)
                die("heap_meta_size", r);
        p->meta_fd = memfd_create("bench-heap-meta", MFD_CLOEXEC);
        p->heap_fd = memfd_create("bench-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (p->meta_fd < 0 || p->heap_fd < 0)
                die("memfd_create", errno);
        if (ftruncate(p->meta_fd, (off_t) p->meta_size) < 0 ||
            ftruncate(p->heap_fd, (off_t) capacity) < 0)
                die("ftruncate", errno);
        p->meta = mmap(NULL, p->meta_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                       p->meta_fd, 0);
        p->base = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                       p->heap_fd, 0);
        if (p->meta == MAP_FAILED || p->base == MAP_FAILED)
                die("mmap", errno);
        r = heap_create(p->meta, p->meta_size, p->base, p->heap_fd, &params, &p->h);
        if (r < 0)
                die("heap_create", r);
        r = heap_slot_claim(p->h, (uint32_t) getpid(), (uint32_t) getuid(), &p->slot);
        if (r < 0)
                die("heap_slot_claim", r);
}

/*
 * Backs and maps the first bytes of the heap before timing allocation, so
 * that what is measured is the allocator and not first-touch page faults
 * (a warm process's heap is backed; the release rows measure the faults'
 * other side).
 */
static void pool_prefault(struct pool *p, uint64_t bytes) {
        if (fallocate(p->heap_fd, 0, 0, (off_t) bytes) < 0)
                die("fallocate", errno);
        if (madvise(p->base, bytes, MADV_POPULATE_WRITE) < 0)
                die("madvise(MADV_POPULATE_WRITE)", errno);
}

static void pool_close(struct pool *p) {
        heap_detach(p->h);
        munmap(p->meta, p->meta_size);
        munmap(p->base, p->capacity);
        close(p->meta_fd);
        close(p->heap_fd);
}

static uint64_t blocks_bytes(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                die("fstat", errno);
        return (uint64_t) st.st_blocks * 512;
}

static bool no_touch; /* measure the allocator alone, without the first-byte write */

static inline void touch(struct pool *p, uint64_t off) {
        if (!no_touch)
                *((volatile char *) p->base + off) = 1;
}

static inline uint64_t alloc_or_die(struct pool *p, uint64_t npages) {
        uint64_t off;
        int r = heap_cache_alloc(p->h, p->slot, 0, npages, 0, &off);
        if (_unlikely_(r < 0))
                die("heap_cache_alloc", r);
        return off;
}

static inline void free_or_die(struct pool *p, uint64_t off) {
        int r = heap_free(p->h, p->slot, 0, off);
        if (_unlikely_(r < 0))
                die("heap_free", r);
}

/* Back-to-back alloc+free of npages: the cache's best case. */
static double bench_pair(struct pool *p, uint64_t npages) {
        uint64_t n = 20000000 / iter_scale;
        double t0;

        for (uint64_t i = 0; i < 100000; i++) { /* warm: page backed, cache filled */
                uint64_t off = alloc_or_die(p, npages);
                touch(p, off);
                free_or_die(p, off);
        }
        t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
                uint64_t off = alloc_or_die(p, npages);
                touch(p, off);
                free_or_die(p, off);
        }
        return (now_ns() - t0) / (double) n;
}

/*
 * 1,000 live blocks, one freed at random and replaced per iteration, first
 * byte written: the peers' loop. size() gives the pages of each new block.
 */
static double bench_live(struct pool *p, uint64_t (*size)(void), uint64_t n) {
        uint64_t blk[LIVE_BLOCKS];
        double t0;

        for (unsigned i = 0; i < LIVE_BLOCKS; i++)
                touch(p, blk[i] = alloc_or_die(p, size()));
        for (uint64_t i = 0; i < n / 4; i++) { /* warm */
                unsigned k = (unsigned) (rnd() % LIVE_BLOCKS);
                free_or_die(p, blk[k]);
                touch(p, blk[k] = alloc_or_die(p, size()));
        }
        t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
                unsigned k = (unsigned) (rnd() % LIVE_BLOCKS);
                free_or_die(p, blk[k]);
                touch(p, blk[k] = alloc_or_die(p, size()));
        }
        t0 = (now_ns() - t0) / (double) n;
        for (unsigned i = 0; i < LIVE_BLOCKS; i++)
                free_or_die(p, blk[i]);
        heap_cache_flush(p->h, p->slot, 0);
        return t0;
}

static uint64_t size_1(void) {
        return 1;
}

static uint64_t size_2(void) {
        return 2;
}

static uint64_t size_1_128(void) {
        return 1 + rnd() % 128;
}

/* Allocates [0, bytes) in 4 MiB blocks, writes every page, frees it: free and backed. */
static void back_free(struct pool *p, uint64_t bytes) {
        uint64_t per = 1024, n = bytes / (per * PAGE);
        uint64_t *offs = calloc(n, sizeof(*offs));

        if (!offs)
                die("calloc", ENOMEM);
        for (uint64_t i = 0; i < n; i++) {
                int r = heap_alloc(p->h, p->slot, per, 0, &offs[i]);
                if (r < 0)
                        die("heap_alloc", r);
                for (uint64_t q = 0; q < per; q++)
                        touch(p, offs[i] + q * PAGE);
        }
        for (uint64_t i = 0; i < n; i++)
                free_or_die(p, offs[i]);
        free(offs);
}

static double raw_punch(struct pool *p, uint64_t bytes, uint64_t run) {
        double t0 = now_ns();
        for (uint64_t off = 0; off < bytes; off += run)
                if (fallocate(p->heap_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off,
                              (off_t) run) < 0)
                        die("fallocate", errno);
        return now_ns() - t0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double minimum(const double *v, unsigned n) {
        double m = v[0];
        for (unsigned i = 1; i < n; i++)
                m = v[i] < m ? v[i] : m;
        return m;
}

static double median(double *v, unsigned n) {
        qsort(v, n, sizeof(*v), cmp_double);
        return v[n / 2];
}

struct row {
        const char *name;
        double value;
        const char *unit;
        const char *bar; /* "<= 20" etc., or NULL */
        double limit;
        bool upper; /* the bar is an upper bound */
};

static void print_row(const struct row *r) {
        const char *verdict = "";
        if (r->bar)
                verdict = (r->upper ? r->value <= r->limit : r->value >= r->limit) ? "ok" : "MISSED";
        printf("%-52s %10.2f %-8s %-12s %s\n", r->name, r->value, r->unit, r->bar ? r->bar : "",
               verdict);
}

static bool selected(const char *section) {
        const char *only = getenv("BENCH_ONLY");
        return !only || !*only || strstr(only, section);
}

/* Meta bytes backed per heap byte backed, with `touched` bytes of the heap written. */
static double meta_share(uint64_t capacity, uint64_t touched) {
        struct pool p;
        uint64_t meta_b, heap_b;

        pool_open(&p, capacity);
        back_free(&p, touched);
        meta_b = blocks_bytes(p.meta_fd);
        heap_b = blocks_bytes(p.heap_fd);
        printf("%" PRIu64 " GiB pool, %" PRIu64 " MiB touched: meta memfd %" PRIu64 " KiB backed of %" PRIu64
               " MiB virtual; heap memfd %" PRIu64 " MiB backed\n",
               capacity >> 30, touched >> 20, meta_b >> 10, p.meta_size >> 20, heap_b >> 20);
        pool_close(&p);
        return 100.0 * (double) meta_b / (double) heap_b;
}

int main(void) {
        const uint64_t gib = UINT64_C(1) << 30, tib = UINT64_C(1) << 40;
        struct pool p;
        struct row rows[32];
        unsigned nrows = 0;
        const char *q = getenv("BENCH_QUICK");

        if (q && *q && strcmp(q, "0") != 0)
                iter_scale = 10;

        if (selected("cache")) {
                double p1[ROUNDS], p2[ROUNDS], l1[ROUNDS], l2[ROUNDS];

                pool_open(&p, gib);
                pool_prefault(&p, gib);
                for (unsigned round = 0; round < ROUNDS; round++) {
                        p1[round] = bench_pair(&p, 1);
                        p2[round] = bench_pair(&p, 2);
                        l1[round] = bench_live(&p, size_1, 4000000 / iter_scale);
                        l2[round] = bench_live(&p, size_2, 4000000 / iter_scale);
                }
                pool_close(&p);
                rows[nrows++] = (struct row) { "cache 1-page alloc+free, back to back", minimum(p1, ROUNDS),
                                               "ns", "<= 20 ns", 20, true };
                rows[nrows++] = (struct row) { "cache 2-page alloc+free, back to back", minimum(p2, ROUNDS),
                                               "ns", "<= 20 ns", 20, true };
                /* The bar is set on the peers' loop: 1,000 live, random order. */
                rows[nrows++] = (struct row) { "cache 1-page alloc+free, 1000 live, random order",
                                               minimum(l1, ROUNDS), "ns", "<= 20 ns", 20, true };
                rows[nrows++] = (struct row) { "cache 2-page alloc+free, 1000 live, random order",
                                               minimum(l2, ROUNDS), "ns", "<= 20 ns", 20, true };
        }

        if (selected("random")) {
                /* The same loop on a 1 GiB and a 1 TiB pool (more summary levels, sparse
                 * meta), interleaved so that a busy machine blurs both alike. */
                double r1g[ROUNDS], r1t[ROUNDS], r1n[ROUNDS], g, t;

                for (unsigned round = 0; round < ROUNDS; round++) {
                        pool_open(&p, gib);
                        pool_prefault(&p, gib);
                        r1g[round] = bench_live(&p, size_1_128, 3000000 / iter_scale);
                        no_touch = true;
                        r1n[round] = bench_live(&p, size_1_128, 3000000 / iter_scale);
                        no_touch = false;
                        pool_close(&p);
                        pool_open(&p, tib);
                        pool_prefault(&p, gib);
                        r1t[round] = bench_live(&p, size_1_128, 3000000 / iter_scale);
                        pool_close(&p);
                }
                g = minimum(r1g, ROUNDS);
                t = minimum(r1t, ROUNDS);
                rows[nrows++] = (struct row) { "random 1-128 pages alloc+free, 1000 live, 1 GiB pool",
                                               g, "ns", "<= 200 ns", 200, true };
                rows[nrows++] = (struct row) { "random 1-128 pages alloc+free, 1000 live, 1 TiB pool",
                                               t, "ns", "<= 200 ns", 200, true };
                rows[nrows++] = (struct row) { "  per-op cost, 1 TiB pool / 1 GiB pool", t / g, "x",
                                               NULL, 0, true };
                rows[nrows++] = (struct row) { "  1 GiB pool, first byte not written",
                                               minimum(r1n, ROUNDS), "ns", NULL, 0, true };
        }

        if (selected("release")) {
                /* Releasing 1 GiB: the scavenger against raw punch-holes, same memory, same run. */
                double scav[ROUNDS], raw2m[ROUNDS], raw64k[ROUNDS], ratio2m[ROUNDS], ratio64k[ROUNDS], s, r2, r64;
                double pages = (double) (gib / PAGE);

                pool_open(&p, 2 * gib);
                for (unsigned round = 0; round < ROUNDS; round++) {
                        struct heap_gen_report rep;
                        int64_t released;
                        double t0;

                        back_free(&p, gib);
                        heap_scavenge_start_gen(p.h, &rep);
                        t0 = now_ns();
                        released = heap_scavenge(p.h, 0, UINT64_MAX);
                        scav[round] = now_ns() - t0;
                        if (released != (int64_t) gib)
                                fprintf(stderr, "bench-heap: heap_scavenge released %" PRId64 " bytes, not 1 GiB\n",
                                        released);
                        if (released > 0)
                                scav[round] *= (double) gib / (double) released;
                        if (blocks_bytes(p.heap_fd) != 0)
                                fprintf(stderr, "bench-heap: %" PRIu64 " KiB still backed after heap_scavenge\n",
                                        blocks_bytes(p.heap_fd) >> 10);

                        back_free(&p, gib);
                        raw2m[round] = raw_punch(&p, gib, 2u << 20);
                        /* The heap still counts those pages as backed: let it release them
                         * (for nothing) so that the next round starts from the same state. */
                        heap_scavenge_start_gen(p.h, &rep);
                        heap_scavenge(p.h, 0, UINT64_MAX);

                        back_free(&p, gib);
                        raw64k[round] = raw_punch(&p, gib, 64u << 10);
                        heap_scavenge_start_gen(p.h, &rep);
                        heap_scavenge(p.h, 0, UINT64_MAX);
                }
                pool_close(&p);
                /* Each round's ratio compares runs a second apart; the median ratio
                 * is robust to a neighbour's burst in one of them. */
                for (unsigned round = 0; round < ROUNDS; round++) {
                        ratio2m[round] = raw2m[round] / scav[round];
                        ratio64k[round] = raw64k[round] / scav[round];
                }
                s = minimum(scav, ROUNDS);
                r2 = minimum(raw2m, ROUNDS);
                r64 = minimum(raw64k, ROUNDS);
                rows[nrows++] = (struct row) { "release 1 GiB: heap_scavenge, per 4 KiB page", s / pages,
                                               "ns", NULL, 0, true };
                rows[nrows++] = (struct row) { "release 1 GiB: raw punch-hole, 2 MiB runs, per page",
                                               r2 / pages, "ns", NULL, 0, true };
                rows[nrows++] = (struct row) { "release 1 GiB: raw punch-hole, 64 KiB runs, per page",
                                               r64 / pages, "ns", NULL, 0, true };
                rows[nrows++] = (struct row) { "  scavenger rate / raw 2 MiB-run rate",
                                               100.0 * median(ratio2m, ROUNDS), "%", ">= 80 %", 80, false };
                rows[nrows++] = (struct row) { "  scavenger rate / raw 64 KiB-run rate",
                                               100.0 * median(ratio64k, ROUNDS), "%", NULL, 0, false };
                rows[nrows++] = (struct row) { "  scavenger throughput", 1e9 / s, "GiB/s", NULL, 0, false };
        }

        if (selected("meta")) {
                rows[nrows++] = (struct row) { "metadata / touched heap, 1 GiB pool, 256 MiB touched",
                                               meta_share(gib, 256u << 20), "%", "<= 0.5 %", 0.5, true };
                rows[nrows++] = (struct row) { "metadata / touched heap, 1 TiB pool, 256 MiB touched",
                                               meta_share(tib, 256u << 20), "%", "<= 0.5 %", 0.5, true };
                rows[nrows++] = (struct row) { "metadata / touched heap, 1 TiB pool, 1 GiB touched",
                                               meta_share(tib, gib), "%", "<= 0.5 %", 0.5, true };
        }

        {
                double load[3] = {};
                if (getloadavg(load, 3) < 0)
                        load[0] = -1;
                printf("\nbest of %u rounds (ratios: median); load average %.2f on %ld CPUs\n", ROUNDS,
                       load[0], sysconf(_SC_NPROCESSORS_ONLN));
        }
        printf("%-52s %10s %-8s %-12s %s\n", "heap core (lib/heap), one thread", "value", "unit", "bar", "");
        for (unsigned i = 0; i < nrows; i++)
                print_row(&rows[i]);
        return 0;
}

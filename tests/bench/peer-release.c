/* SPDX-License-Identifier: MIT */
/*
 * Row 3: releasing memory. Through a real scavd ($SCAVD_SOCKET, pool
 * $PEER_POOL or "release"), allocates --bytes in --obj blocks and writes
 * every page; then, over exactly those pages of the heap memfd:
 *   raw-64K, raw-2M: a bare fallocate(PUNCH_HOLE|KEEP_SIZE) loop in 64 KiB
 *                    and 2 MiB (one chunk) pieces: the physical limit;
 *   scavenge:        the blocks are freed and scav_scavenge(pool, 0) (a
 *                    forced scavenge, like debug.FreeOSMemory) releases them.
 * The pages are written again before each measurement, so each starts from
 * the same backed state; st_blocks of the heap memfd checks each release.
 *
 * Output, one line per method:
 *   "release=METHOD bytes=N released=N seconds=S cpu_seconds=S gib_per_s=R"
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer-util.h"
#include "scav.h"

struct range { uint64_t off, len; };

static int cmp_range(const void *a, const void *b) {
        const struct range *x = a, *y = b;

        return x->off < y->off ? -1 : x->off > y->off;
}

static uint64_t heap_backed(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return 0;
        return (uint64_t) st.st_blocks * 512;
}

static void touch_all(scav_pool *p, const struct range *rs, size_t n) {
        for (size_t i = 0; i < n; i++)
                peer_touch_pages(scav_ptr(p, rs[i].off), rs[i].len, 1);
}

static void report(const char *method, uint64_t bytes, uint64_t released, uint64_t ns, uint64_t cpu_ns) {
        printf("release=%s bytes=%llu released=%llu seconds=%.6f cpu_seconds=%.6f gib_per_s=%.3f\n",
               method, (unsigned long long) bytes, (unsigned long long) released, (double) ns / 1e9,
               (double) cpu_ns / 1e9, (double) released / (1 << 30) / ((double) ns / 1e9));
}

static int punch_loop(int fd, const struct range *merged, size_t n, uint64_t piece) {
        for (size_t i = 0; i < n; i++)
                for (uint64_t o = merged[i].off, end = merged[i].off + merged[i].len; o < end; o += piece) {
                        uint64_t len = end - o < piece ? end - o : piece;

                        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) o, (off_t) len) < 0)
                                return -errno;
                }
        return 0;
}

int main(int argc, char **argv) {
        uint64_t bytes = UINT64_C(1) << 30, obj = 256 << 10, before, t0, c0, t1, c1;
        const char *name = getenv("PEER_POOL");
        struct range *rs, *merged;
        size_t n, nm = 0;
        scav_pool *p;
        int64_t got;
        int fd, r;

        for (int i = 1; i + 1 < argc; i += 2) {
                r = -EINVAL;
                if (strcmp(argv[i], "--bytes") == 0)
                        r = peer_parse_size(argv[i + 1], &bytes);
                else if (strcmp(argv[i], "--obj") == 0)
                        r = peer_parse_size(argv[i + 1], &obj);
                if (r < 0 || obj == 0 || obj % 4096 != 0) {
                        fprintf(stderr, "bad option %s %s\n", argv[i], argv[i + 1]);
                        return 2;
                }
        }
        n = bytes / obj;
        bytes = n * obj;

        r = scav_open(name ? name : "release", &p);
        if (r < 0) {
                fprintf(stderr, "scav_open: %s\n", strerror(-r));
                return 1;
        }
        fd = scav_heap_fd(p);
        rs = calloc(n, sizeof(*rs));
        merged = calloc(n, sizeof(*merged));
        if (!rs || !merged)
                return 1;
        for (size_t i = 0; i < n; i++) {
                r = scav_alloc(p, obj, 0, &rs[i].off);
                if (r < 0) {
                        fprintf(stderr, "scav_alloc: %s\n", strerror(-r));
                        return 1;
                }
                rs[i].len = obj;
        }
        qsort(rs, n, sizeof(*rs), cmp_range);
        for (size_t i = 0; i < n; i++) {
                if (nm > 0 && merged[nm - 1].off + merged[nm - 1].len == rs[i].off)
                        merged[nm - 1].len += rs[i].len;
                else
                        merged[nm++] = rs[i];
        }

        static const struct { const char *name; uint64_t piece; } raw[] = {
                { "raw-64K", 64 << 10 },
                { "raw-2M", 2 << 20 },
        };
        for (size_t k = 0; k < sizeof(raw) / sizeof(raw[0]); k++) {
                touch_all(p, rs, n);
                before = heap_backed(fd);
                t0 = peer_now_ns();
                c0 = peer_process_cpu_ns();
                r = punch_loop(fd, merged, nm, raw[k].piece);
                c1 = peer_process_cpu_ns();
                t1 = peer_now_ns();
                if (r < 0) {
                        fprintf(stderr, "fallocate: %s\n", strerror(-r));
                        return 1;
                }
                report(raw[k].name, bytes, before - heap_backed(fd), t1 - t0, c1 - c0);
        }

        touch_all(p, rs, n);
        for (size_t i = 0; i < n; i++) {
                r = scav_free(p, rs[i].off);
                if (r < 0) {
                        fprintf(stderr, "scav_free: %s\n", strerror(-r));
                        return 1;
                }
        }
        before = heap_backed(fd);
        t0 = peer_now_ns();
        c0 = peer_process_cpu_ns();
        got = scav_scavenge(p, 0);
        c1 = peer_process_cpu_ns();
        t1 = peer_now_ns();
        if (got < 0) {
                fprintf(stderr, "scav_scavenge: %s\n", strerror((int) -got));
                return 1;
        }
        report("scavenge", bytes, before - heap_backed(fd), t1 - t0, c1 - c0);
        printf("scavenge_returned=%lld nranges=%zu\n", (long long) got, nm);

        scav_close(p);
        free(rs);
        free(merged);
        return 0;
}

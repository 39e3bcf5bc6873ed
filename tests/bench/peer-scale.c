/* SPDX-License-Identifier: MIT */
/*
 * Row 5: the cost of starting a scavenger generation (scavengeStartGen)
 * with --chunks chunks of the heap in use, through the heap core directly
 * (lib/heap/heap.h) over a memfd heap and a memfd meta region, sized to
 * twice that many chunks. Every second chunk-sized allocation is freed, so
 * the heap has free runs everywhere; nothing is written, so the memfds stay
 * sparse. Also reports how much of the meta memfd is backed.
 *
 *   scale [--chunks N] [--reps N]
 * Output: "gen_start chunks=N reps=N median_ns=T mean_ns=T meta_size=N meta_backed=N heap_sys=N"
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heap/heap.h"
#include "peer-util.h"

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        uint64_t chunks = 10000, reps = 200, meta_size, chunk_bytes = HEAP_CHUNK_PAGES * 4096u, sum = 0;
        struct heap_params params = { 0 };
        struct heap_stats hs;
        struct stat st;
        uint64_t *offs, *ns;
        void *meta, *base;
        uint32_t slot;
        int meta_fd, heap_fd, r;
        heap *h;

        for (int i = 1; i + 1 < argc; i += 2) {
                r = -EINVAL;
                if (strcmp(argv[i], "--chunks") == 0)
                        r = peer_parse_size(argv[i + 1], &chunks);
                else if (strcmp(argv[i], "--reps") == 0)
                        r = peer_parse_size(argv[i + 1], &reps);
                if (r < 0 || chunks == 0 || reps == 0) {
                        fprintf(stderr, "bad option %s %s\n", argv[i], argv[i + 1]);
                        return 2;
                }
        }

        params.capacity = 2 * chunks * chunk_bytes;
        params.page_size = 4096;
        params.phys_page_size = 4096;
        params.max_slots = 64;
        params.reservation_shards = HEAP_DEFAULT_RESERVATION_SHARDS;
        r = heap_meta_size(&params, &meta_size);
        if (r < 0) {
                fprintf(stderr, "heap_meta_size: %s\n", strerror(-r));
                return 1;
        }
        meta_fd = memfd_create("peer-scale-meta", MFD_CLOEXEC);
        heap_fd = memfd_create("peer-scale-heap", MFD_CLOEXEC);
        if (meta_fd < 0 || heap_fd < 0 || ftruncate(meta_fd, (off_t) meta_size) < 0 ||
            ftruncate(heap_fd, (off_t) params.capacity) < 0) {
                perror("memfd");
                return 1;
        }
        meta = mmap(NULL, meta_size, PROT_READ | PROT_WRITE, MAP_SHARED, meta_fd, 0);
        base = mmap(NULL, params.capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, heap_fd, 0);
        if (meta == MAP_FAILED || base == MAP_FAILED) {
                perror("mmap");
                return 1;
        }
        r = heap_create(meta, meta_size, base, heap_fd, &params, &h);
        if (r >= 0)
                r = heap_slot_claim(h, (uint32_t) getpid(), (uint32_t) getuid(), &slot);
        if (r < 0) {
                fprintf(stderr, "heap_create/slot_claim: %s\n", strerror(-r));
                return 1;
        }

        offs = calloc(chunks, sizeof(*offs));
        ns = calloc(reps, sizeof(*ns));
        if (!offs || !ns)
                return 1;
        for (uint64_t i = 0; i < chunks; i++) {
                r = heap_alloc(h, slot, HEAP_CHUNK_PAGES, 0, &offs[i]);
                if (r < 0) {
                        fprintf(stderr, "heap_alloc chunk %llu: %s\n", (unsigned long long) i, strerror(-r));
                        return 1;
                }
        }
        for (uint64_t i = 0; i < chunks; i += 2)
                if (heap_free(h, slot, 0, offs[i]) < 0) {
                        fprintf(stderr, "heap_free failed\n");
                        return 1;
                }

        for (uint64_t i = 0; i < reps; i++) {
                struct heap_gen_report rep;
                uint64_t t0 = peer_now_ns();

                r = heap_scavenge_start_gen(h, &rep);
                ns[i] = peer_now_ns() - t0;
                if (r < 0) {
                        fprintf(stderr, "heap_scavenge_start_gen: %s\n", strerror(-r));
                        return 1;
                }
                sum += ns[i];
        }
        qsort(ns, reps, sizeof(*ns), cmp_u64);
        heap_get_stats(h, &hs);
        fstat(meta_fd, &st);
        printf("gen_start chunks=%llu reps=%llu median_ns=%llu mean_ns=%llu meta_size=%llu meta_backed=%llu "
               "heap_sys=%llu\n", (unsigned long long) chunks, (unsigned long long) reps,
               (unsigned long long) ns[reps / 2], (unsigned long long) (sum / reps),
               (unsigned long long) meta_size, (unsigned long long) st.st_blocks * 512,
               (unsigned long long) hs.heap_sys);
        heap_detach(h);
        return 0;
}

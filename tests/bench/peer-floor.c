/* SPDX-License-Identifier: MIT */
/*
 * The physical floors of releasing memory on this machine, for row 4's
 * "CPU-seconds per GiB released" (each allocator beside its own floor):
 *   anon:  madvise(MADV_DONTNEED) over touched anonymous memory (what Go and
 *          jemalloc release with);
 *   memfd: fallocate(PUNCH_HOLE|KEEP_SIZE) over a touched, shared memfd
 *          (what scavd releases with: MADV_DONTNEED does not release shmem).
 * Each release call covers --run bytes (default 64K, the scavenger's quantum).
 *
 *   floor anon|memfd [--bytes 1G] [--run 64K]
 * Output: "floor=KIND run=N bytes=N seconds=S cpu_seconds=S gib_per_s=R cpu_s_per_gib=C"
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "peer-util.h"

int main(int argc, char **argv) {
        uint64_t bytes = UINT64_C(1) << 30, run = 64 << 10, t0, c0, t1, c1;
        int anon, fd = -1;
        unsigned char *p;

        if (argc < 2 || (strcmp(argv[1], "anon") != 0 && strcmp(argv[1], "memfd") != 0)) {
                fprintf(stderr, "usage: %s anon|memfd [--bytes B] [--run B]\n", argv[0]);
                return 2;
        }
        anon = strcmp(argv[1], "anon") == 0;
        for (int i = 2; i + 1 < argc; i += 2) {
                int r = -EINVAL;

                if (strcmp(argv[i], "--bytes") == 0)
                        r = peer_parse_size(argv[i + 1], &bytes);
                else if (strcmp(argv[i], "--run") == 0)
                        r = peer_parse_size(argv[i + 1], &run);
                if (r < 0 || run == 0 || run % 4096 != 0) {
                        fprintf(stderr, "bad option %s %s\n", argv[i], argv[i + 1]);
                        return 2;
                }
        }
        bytes -= bytes % run;

        if (anon)
                p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        else {
                fd = memfd_create("peer-floor", MFD_CLOEXEC);
                if (fd < 0 || ftruncate(fd, (off_t) bytes) < 0) {
                        perror("memfd");
                        return 1;
                }
                p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        }
        if (p == MAP_FAILED) {
                perror("mmap");
                return 1;
        }
        peer_touch_pages(p, bytes, 1);

        t0 = peer_now_ns();
        c0 = peer_thread_cpu_ns();
        for (uint64_t off = 0; off < bytes; off += run) {
                int r = anon ? madvise(p + off, run, MADV_DONTNEED)
                             : fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off, (off_t) run);
                if (r < 0) {
                        perror(anon ? "madvise" : "fallocate");
                        return 1;
                }
        }
        c1 = peer_thread_cpu_ns();
        t1 = peer_now_ns();

        printf("floor=%s run=%llu bytes=%llu seconds=%.6f cpu_seconds=%.6f gib_per_s=%.3f cpu_s_per_gib=%.5f\n",
               argv[1], (unsigned long long) run, (unsigned long long) bytes, (double) (t1 - t0) / 1e9,
               (double) (c1 - c0) / 1e9, (double) bytes / (1 << 30) / ((double) (t1 - t0) / 1e9),
               ((double) (c1 - c0) / 1e9) / ((double) bytes / (1 << 30)));
        return 0;
}

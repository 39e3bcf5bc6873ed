/* SPDX-License-Identifier: MIT */
/*
 * A one-shot libscav client for the shell tests: opens POOL through
 * $SCAVD_SOCKET, allocates BYTES (default 1 MiB), writes a pattern, reads
 * it back, frees it and checks the pool's in-use bytes went back to where
 * they were. Exit 0 when all of that worked; a line on stderr otherwise.
 *
 *   helper-systemd-client POOL [BYTES] [hold]
 *
 * With "hold", it prints "holding" after writing and waits to be killed
 * with its allocation, for tests of the daemon's reclaim.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scav.h"

int main(int argc, char **argv) {
        scav_pool *p = NULL;
        struct scav_stats before = {}, after = {};
        uint64_t off, size = argc > 2 ? strtoull(argv[2], NULL, 0) : 1u << 20;
        unsigned char *ptr;
        int r;

        if (argc < 2) {
                fprintf(stderr, "usage: %s POOL [BYTES]\n", argv[0]);
                return 2;
        }
        r = scav_open(argv[1], &p);
        if (r < 0) {
                fprintf(stderr, "scav_open(%s): %s\n", argv[1], strerror(-r));
                return 1;
        }
        r = scav_stats(p, &before);
        if (r >= 0)
                r = scav_alloc(p, size, 0, &off);
        if (r < 0) {
                fprintf(stderr, "scav_stats/scav_alloc(%" PRIu64 "): %s\n", size, strerror(-r));
                return 1;
        }
        ptr = scav_ptr(p, off);
        for (uint64_t i = 0; i < size; i++)
                ptr[i] = (unsigned char) (i * 131 + 7);
        for (uint64_t i = 0; i < size; i++)
                if (ptr[i] != (unsigned char) (i * 131 + 7)) {
                        fprintf(stderr, "byte %" PRIu64 " reads back wrong\n", i);
                        return 1;
                }
        if (argc > 3 && strcmp(argv[3], "hold") == 0) {
                printf("holding\n");
                fflush(stdout);
                for (;;)
                        pause();
        }
        r = scav_free(p, off);
        if (r < 0) {
                fprintf(stderr, "scav_free: %s\n", strerror(-r));
                return 1;
        }
        r = scav_stats(p, &after);
        if (r < 0 || after.inuse > before.inuse + (64u << 12)) {
                /* a page cache of 64 pages may stay with this client */
                fprintf(stderr, "inuse %" PRIu64 " after free, %" PRIu64 " before\n", after.inuse,
                        before.inuse);
                return 1;
        }
        scav_close(p);
        printf("pool %s: %" PRIu64 " bytes written, read back and freed\n", argv[1], size);
        return 0;
}

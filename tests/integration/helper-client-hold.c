/* SPDX-License-Identifier: MIT */
/*
 * A client that holds memory until its standard input closes, for the shell
 * tests: opens POOL, allocates BYTES (touched), prints "ready", waits. With
 * NAME, also publishes the allocation under NAME and takes a second
 * reference of its own (the name outlives it).
 *
 *   helper-client-hold POOL BYTES [NAME]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scav.h"

int main(int argc, char **argv) {
        scav_pool *p;
        uint64_t off;
        char c;
        int r;

        if (argc != 3 && argc != 4) {
                fprintf(stderr, "usage: %s POOL BYTES [NAME]\n", argv[0]);
                return 2;
        }
        r = scav_open(argv[1], &p);
        if (r < 0) {
                fprintf(stderr, "scav_open(%s): %s\n", argv[1], strerror(-r));
                return 1;
        }
        r = scav_alloc(p, strtoull(argv[2], NULL, 0), 0, &off);
        if (r < 0) {
                fprintf(stderr, "scav_alloc: %s\n", strerror(-r));
                return 1;
        }
        memset(scav_ptr(p, off), 1, strtoull(argv[2], NULL, 0));
        if (argc == 4 && ((r = scav_publish(p, argv[3], off)) < 0 || (r = scav_ref(p, off)) < 0)) {
                fprintf(stderr, "publishing %s: %s\n", argv[3], strerror(-r));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        while (read(0, &c, 1) > 0)
                ;
        scav_close(p);
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Row 1 driver: one memfd per allocation, mapped shared and unmapped on free:
 * what a program that shares buffers between processes does without a pool
 * allocator. The descriptor is closed once mapped; munmap gives the memory
 * back.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

struct blk { void *ptr; size_t size; };

static const char *be_name = "memfd";

static int be_init(size_t max_live_bytes) { return 0; }

static inline int be_alloc(size_t size, struct blk *b) {
        int fd = memfd_create("peer-bench", MFD_CLOEXEC);
        void *p;

        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t) size) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
                return -errno;
        b->ptr = p;
        b->size = size;
        return 0;
}

static inline void be_free(struct blk *b) { munmap(b->ptr, b->size); }

static void be_fini(void) {}

#include "peer-alloc-loop.h"

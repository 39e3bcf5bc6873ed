// SPDX-License-Identifier: MIT
//
// Row 1 driver: Boost.Interprocess managed_shared_memory (rbtree_best_fit
// with its interprocess mutex), the usual way to share an allocator's heap
// between processes today. The segment lives in /dev/shm under a name
// unique to this process and is removed at the end.
#include <cerrno>
#include <cstdio>
#include <new>
#include <string>
#include <unistd.h>
#include <boost/interprocess/managed_shared_memory.hpp>

namespace bip = boost::interprocess;

struct blk { void *ptr; };

static const char *be_name = "boost";
static bip::managed_shared_memory *be_seg;
static std::string be_seg_name;

static int be_init(size_t max_live_bytes) {
        be_seg_name = "peer-bench-" + std::to_string(getpid());
        bip::shared_memory_object::remove(be_seg_name.c_str());
        try {
                be_seg = new bip::managed_shared_memory(bip::create_only, be_seg_name.c_str(),
                                                        max_live_bytes * 2 + (64u << 20));
        } catch (const std::exception &e) {
                std::fprintf(stderr, "boost: %s\n", e.what());
                return -ENOMEM;
        }
        return 0;
}

static inline int be_alloc(size_t size, struct blk *b) {
        b->ptr = be_seg->allocate(size, std::nothrow);
        return b->ptr ? 0 : -ENOMEM;
}

static inline void be_free(struct blk *b) { be_seg->deallocate(b->ptr); }

static void be_fini(void) {
        delete be_seg;
        bip::shared_memory_object::remove(be_seg_name.c_str());
}

#include "peer-alloc-loop.h"

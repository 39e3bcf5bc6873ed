// SPDX-License-Identifier: MIT
//
// Row 1 driver: Boost.Interprocess managed_shared_memory (rbtree_best_fit
// with its interprocess mutex), the usual way to share an allocator's heap
// between processes today. The segment lives in /dev/shm under a name
// unique to this process and is removed at the end, or, with
// $PEER_SHM_NAME, is opened or created under that name and shared with the
// other processes given the same name (row 2); the runner removes it.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <unistd.h>
#include <boost/interprocess/managed_shared_memory.hpp>

namespace bip = boost::interprocess;

struct blk { void *ptr; };

static const char *be_name = "boost";
static bip::managed_shared_memory *be_seg;
static std::string be_seg_name;
static bool be_shared;

static int be_init(size_t max_live_bytes) {
        const char *shared = getenv("PEER_SHM_NAME");

        be_shared = shared != nullptr;
        try {
                if (be_shared) {
                        be_seg_name = shared;
                        /* Room for two processes' live sets. */
                        be_seg = new bip::managed_shared_memory(bip::open_or_create, be_seg_name.c_str(),
                                                                max_live_bytes * 4 + (64u << 20));
                        return 0;
                }
                be_seg_name = "peer-bench-" + std::to_string(getpid());
                bip::shared_memory_object::remove(be_seg_name.c_str());
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
        if (!be_shared)
                bip::shared_memory_object::remove(be_seg_name.c_str());
}

#include "peer-alloc-loop.h"

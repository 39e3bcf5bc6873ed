/* SPDX-License-Identifier: MIT */
/*
 * The retained goal (gcPaceScavenger, mgcscavenge.go), as a pure function:
 * Go keeps retainExtraPercent more than the heap is expected to need, so
 * that allocation has unscavenged memory to use, since each use of
 * scavenged memory costs a page fault.
 */

#include "heap/heap.h"

uint64_t heap_retained_goal(uint64_t inuse_estimate, uint64_t retained_now,
                            uint32_t retain_extra_percent, uint64_t memory_limit,
                            uint32_t phys_page_size) {
        uint64_t phys = phys_page_size ?: 4096;
        uint64_t goal = inuse_estimate;

        /* goal * (100 + pct) / 100, without overflowing the multiplication. */
        uint64_t extra = goal / 100 * retain_extra_percent + goal % 100 * retain_extra_percent / 100;
        goal = extra > UINT64_MAX - goal ? UINT64_MAX - phys + 1 : goal + extra;
        /* Align to a physical page, as Go does, to keep the comparisons exact. */
        if (goal > UINT64_MAX - phys)
                goal = UINT64_MAX - phys + 1;
        goal = (goal + phys - 1) & ~(phys - 1);

        if (memory_limit) {
                uint64_t cap = (memory_limit / 100 * 95 + memory_limit % 100 * 95 / 100) & ~(phys - 1);
                if (goal > cap)
                        goal = cap;
        }

        /* At or within one physical page of the goal: not worth a scavenger. */
        if (retained_now <= goal || retained_now - goal < phys)
                return HEAP_GOAL_NONE;
        return goal;
}

/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A pool as the daemon holds it: its configuration, its memfds and mappings,
 * the heap handle, and its clients. Created from configuration or adopted
 * from the file descriptor store.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "heap/heap.h"

struct pool {
        struct pool_config cfg;
        uint32_t id;               /* stable small number, for BPF maps */
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size;
        heap *heap;
        unsigned n_clients;        /* connected sessions */
        bool draining;             /* removed from configuration: dropped when the last client leaves */
        bool quarantined;          /* heap_check failed: served no more, reported */
        void *scav;                /* per-pool state of daemon/scavenger.c */
};

/* Creates a pool's memfds (heap sealed against shrink and grow) and lays out its heap. */
int pool_new(const struct pool_config *cfg, uint32_t id, struct pool **ret);
/* Adopts memfds from the fd store: validates layout and heap_check(). */
int pool_adopt(const struct pool_config *cfg, uint32_t id, int meta_fd, int heap_fd,
               struct pool **ret);
struct pool *pool_free(struct pool *p);

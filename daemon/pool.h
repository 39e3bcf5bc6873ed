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

/* What the daemon keeps per client slot, beside what the heap keeps. */
struct pool_slot {
        uint64_t token;            /* secret of the slot's session; 0 = unknown (adopted pool) */
        void *conn;                /* the session holding the slot, or NULL */
        void *orphan;              /* adopted live slot with no session yet: watch on its pid */
};

struct pool {
        struct pool_config cfg;
        uint32_t id;               /* stable small number, for BPF maps */
        int meta_fd, heap_fd;
        void *meta, *base;
        uint64_t meta_size, base_size; /* bytes mapped at meta and base */
        heap *heap;
        unsigned n_clients;        /* connected sessions */
        bool draining;             /* removed from configuration: dropped when the last client leaves */
        bool quarantined;          /* heap_check failed: served no more, reported */
        bool scavenging;           /* registered with the scavenger */
        void *scav;                /* per-pool state of daemon/scavenger.c */
        uint64_t refaults;         /* pages faulted beyond the heap's growth, summed over generations */
        uint32_t n_slots;          /* heap_max_slots() */
        struct pool_slot *slots;
        char check_error[256];     /* why it is quarantined */
};

/* Creates a pool's memfds (heap sealed against shrink and grow) and lays out its heap. */
int pool_new(const struct pool_config *cfg, uint32_t id, struct pool **ret);
/* Adopts memfds from the fd store: validates layout and heap_check(). */
int pool_adopt(const struct pool_config *cfg, uint32_t id, int meta_fd, int heap_fd,
               struct pool **ret);
struct pool *pool_free(struct pool *p);

/* Runs heap_check(); on failure quarantines the pool and keeps the reason. */
int pool_check(struct pool *p, char *buf, size_t len);
/* Heap parameters a configuration asks for. */
void pool_config_to_params(const struct pool_config *cfg, struct heap_params *ret);

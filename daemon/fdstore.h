/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Restart without loss (issue 5): each pool's meta and heap memfds go to the
 * service manager's file descriptor store (FDSTORE=1, FDNAME=pool/<name>/meta
 * and pool/<name>/heap: systemd refuses ':' in FDNAME=, it separates
 * $LISTEN_FDNAMES); on start, what sd_listen_fds_with_names() hands back is
 * adopted.
 */

#include <stdbool.h>

#include "proto.h"

struct fdstore_pool {
        char name[SCAV_POOL_NAME_MAX];
        int meta_fd, heap_fd;
};

/* Stores one pool's memfds; no-op (0) without NOTIFY_SOCKET. */
int fdstore_save(const char *pool, int meta_fd, int heap_fd);
/* Removes them from the store (FDSTOREREMOVE=1), when a pool is dropped. */
int fdstore_remove(const char *pool);

/*
 * Takes the passed descriptors: the listening socket (FDNAME "scavd.socket"
 * or any socket that is not a stored pool's memfd) into *ret_listen_fd (or
 * -1), the pools' memfd pairs into ret_pools (up to max). Unpaired or
 * unknown descriptors are closed with a log line. Returns the pool count.
 */
int fdstore_adopt(int *ret_listen_fd, struct fdstore_pool *ret_pools, int max);

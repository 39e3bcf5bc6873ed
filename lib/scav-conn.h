/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client end of the scavd socket, shared by libscav's sessions, scavctl
 * and the tests: connect, one request and its reply (with the descriptors
 * the reply carries). Internal to libscav.a: not exported from the .so.
 */

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Milliseconds a reply may take before the request fails with -ETIMEDOUT
 * (-1 to SCAV_CONN_TIMEOUT_FOREVER: a request that must not be abandoned). */
#define SCAV_CONN_TIMEOUT_MS 10000
#define SCAV_CONN_TIMEOUT_FOREVER (-1)

/* $SCAVD_SOCKET, else /run/scavd/scavd.sock. */
const char *scav_socket_path(void);

/*
 * Connects to the daemon at path (NULL: scav_socket_path()). A socket that
 * is missing or refuses is -ECONNREFUSED, as libscav(3) promises.
 */
int scav_conn_connect(const char *path, int *ret_fd);

/*
 * Sends req (req_len bytes) and receives its reply into reply (at most
 * reply_max bytes) with up to nfds descriptors into fds (the rest set to
 * -1). Checks magic, version (-EPROTO) and that the reply's type answers
 * the request's. Returns the reply's length; the reply's own error field is
 * the caller's to read. -ECONNRESET when the daemon hung up, -ETIMEDOUT
 * after timeout_ms.
 */
int scav_conn_call(int fd, const void *req, size_t req_len, void *reply, size_t reply_max,
                   int *fds, unsigned nfds, int timeout_ms);

/*
 * One control request on a connection of its own (scavctl, scav_scavenge):
 * a pool request (pool may be NULL for POOLS and RELOAD). The reply goes
 * into reply; returns its length, or a negative errno (connection errors
 * and the reply's own error alike). On error the reply is still filled in
 * when one came (CHECK and RELOAD explain themselves in its payload).
 */
int scav_ctl_request(const char *path, enum scav_msg_type type, const char *pool,
                     uint64_t bytes, void *reply, size_t reply_max);

/* The same with a reply timeout of its own. */
int scav_ctl_request_timeout(const char *path, enum scav_msg_type type, const char *pool,
                             uint64_t bytes, void *reply, size_t reply_max, int timeout_ms);

/* True for names the daemon accepts: [A-Za-z0-9_.-], 1..SCAV_POOL_NAME_MAX-1. */
int scav_pool_name_valid(const char *name);

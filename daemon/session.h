/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Client sessions: HELLO claims a slot (or re-claims one after a restart),
 * MAPPED says where the heap is mapped (fault accounting), WAKE says the
 * client freed memory, and hang-up reclaims the slot. An adopted pool's
 * live slots whose clients have not come back yet are watched through
 * pidfds and reclaimed when their processes exit.
 */

#include <stdbool.h>

#include "proto.h"

struct conn;
struct manager;
struct pool;

/* Return < 0 to close the connection. */
int session_hello(struct conn *c, const struct scav_msg_hello *m);
int session_mapped(struct conn *c, const struct scav_msg_mapped *m);
void session_wake(struct conn *c);
/* The connection goes away. stopping: the daemon is stopping, and the
 * slot waits in the stored memfds for its client to reconnect. */
void session_hangup(struct conn *c, bool stopping);

/* For manager.h's pool hooks: an adopted pool may hold live slots of
 * clients that have not reconnected yet: watch their processes and
 * reclaim each slot when its process exits (now, if it already has). A
 * dropped pool's watches and session references go. */
void session_pool_adopted(struct manager *m, struct pool *p);
void session_pool_dropped(struct manager *m, struct pool *p);
/* A pool quarantined because a lock was held too long: the holder, when it
 * is a session of the pool, is disconnected. */
void session_pool_quarantined(struct manager *m, struct pool *p);

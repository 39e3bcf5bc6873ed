/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The listening socket and the client sessions: one connection per
 * session, every packet validated with scav_msg_parse(), peer credentials
 * checked against each pool's access list, slots claimed on HELLO and
 * reclaimed the moment the connection goes away.
 */

#include "manager.h"

typedef struct server server;

/* Listens on listen_fd when >= 0 (socket activation), else binds path. */
int server_new(struct manager *m, int listen_fd, const char *path, server **ret);
server *server_free(server *s);

/* An adopted pool may hold live slots of clients that have not reconnected
 * yet: watch their processes and reclaim each slot when its process exits
 * (now, if it already has). */
void server_watch_orphans(struct manager *m, struct pool *p);
/* Forgets a pool that is being dropped (its orphan watches). */
void server_forget_pool(struct manager *m, struct pool *p);

unsigned server_connections(server *s);

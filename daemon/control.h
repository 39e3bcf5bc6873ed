/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Control requests (scavctl, scav_stats): POOLS, STATUS, CLIENTS, CHECK,
 * SCAVENGE, RELOAD. One table row per request type; a new request is a
 * row and a handler.
 */

#include <stdbool.h>
#include <stddef.h>

struct conn;

/* Whether type is a control request. */
bool control_handles(int type);
/* Answers one parsed request (buf, n: the packet). Returns < 0 to close the connection. */
int control_dispatch(struct conn *c, int type, const void *buf, size_t n);

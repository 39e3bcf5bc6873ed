/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Who may use a pool: the peer's SO_PEERCRED credentials against the pool's
 * allow_users and allow_groups, supplementary groups included.
 */

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config.h"

/* root always may; so may everyone when the pool names neither list. */
bool access_peer_allowed(const struct pool_config *cfg, const struct ucred *cred);

/* The peer's supplementary groups: /proc/PID/status "Groups:" (what the
 * process has now), else the group database for its uid (getgrouplist).
 * Returns how many were stored in groups (at most max). */
int access_peer_groups(pid_t pid, uid_t uid, gid_t *groups, int max);

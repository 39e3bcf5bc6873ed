/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's state as one object: the running configuration, the pools,
 * and the parts that serve them (scavenger, kernel watch, server). main.c
 * owns the event loop and the signals; everything that changes the set of
 * pools goes through here.
 */

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "fdstore.h"
#include "kernel.h"
#include "pool.h"
#include "scavenger.h"
#include "worker.h"

struct server;

#define MANAGER_MAX_POOLS (2 * CONFIG_MAX_POOLS) /* configured + draining */

struct manager {
        sd_event *event;
        struct daemon_config *config;   /* the running configuration */
        char config_path[4096];
        struct pool *pools[MANAGER_MAX_POOLS];
        unsigned n_pools;
        uint32_t next_pool_id;
        scavenger *scavenger;
        workers *workers;               /* the pools' worker threads */
        kernel_watch *kernel;
        struct server *server;
        char reload_error[512];         /* last failed reload, "" when the last one worked */
        char last_status[2048];         /* the last STATUS= line sent */
        uid_t uid;                      /* the daemon's own user: may RELOAD */
        bool ready;
        int64_t pressure_quiet_until;   /* CLOCK_MONOTONIC ns: pressure ignored before (pressure_cpu_percent) */
        uint64_t pressure_ignored;      /* pressure events ignored under that cap */
        unsigned pressure_jobs;         /* forced scavenges of the current pressure release still running */
        int64_t pressure_start, pressure_cpu_ns;

        /* Told when a pool was adopted from the fd store, and before a pool
         * is dropped (session.c's orphan watches and session references).
         * Set by main.c: the manager knows nothing of sessions. */
        void (*pool_adopted)(struct manager *m, struct pool *p);
        void (*pool_dropped)(struct manager *m, struct pool *p);
        /* Told when a pool was quarantined (session.c disconnects the holder of a stuck lock). */
        void (*pool_quarantined)(struct manager *m, struct pool *p);
};

/* Creates pools for every configured pool, adopting stored memfds where
 * their names match; stored pools no longer configured are kept draining. */
int manager_start_pools(struct manager *m, struct fdstore_pool *stored, int n_stored);

struct pool *manager_find_pool(struct manager *m, const char *name);

/* Reloads the configuration file: on error keeps the running one and
 * returns the error with "file:line: reason" in err. */
int manager_reload(struct manager *m, char *err, size_t errlen);

/* Drops a draining pool once nothing holds it any more. */
void manager_pool_maybe_drop(struct manager *m, struct pool *p);
/* The longest the daemon waits for a pool's worker when it drops the pool or stops. */
uint64_t manager_lock_timeout(struct manager *m);

/* Sends STATUS=; manager_notify_ready() sends READY=1 and STATUS= in one
 * notification (start, end of a reload). */
void manager_notify_status(struct manager *m);
void manager_notify_ready(struct manager *m);
/* For scavenger_set_status_callback(): userdata is the manager. */
void manager_status_changed(void *userdata);

void manager_pressure(const char *why, void *userdata);

/* Frees the pools and the parts serving them; the server must be gone already. */
void manager_done(struct manager *m);

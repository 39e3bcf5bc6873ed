/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * scavd's configuration: /etc/scavd/scavd.conf plus scavd.conf.d/NAME.conf in
 * lexical order (later wins), parsed with inih. Errors name file:line and
 * the key. One file may give a section, or a key within it, only once: a
 * drop-in overrides, a repetition within a file is an error. See
 * scavd.conf(5).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define CONFIG_MAX_POOLS 256
#define CONFIG_MAX_IDS 64
/* Unset in a [pool]: derived from max_clients by finalize(). */
#define CONFIG_UNSET UINT32_MAX

enum config_tristate { CONFIG_AUTO, CONFIG_ON, CONFIG_OFF };
enum config_pressure { PRESSURE_AUTO, PRESSURE_BPF, PRESSURE_PSI, PRESSURE_OFF };

struct pool_config {
        char name[SCAV_POOL_NAME_MAX];
        uint64_t capacity;               /* bytes, whole chunks */
        uint32_t page_size;              /* default 4096 */
        double scavenge_percent;         /* <0: unset (daemon's); can only lower the pool's share */
        uint32_t retain_extra_percent;   /* default 10 */
        uint32_t reservation_shards;     /* default 64 */
        uint64_t memory_limit;           /* 0: none */
        uint32_t max_clients;            /* default 64 */
        uint32_t max_shared;             /* allocations shared at once; default 16384 */
        uint32_t max_names;              /* names published at once; default 1024 */
        uint32_t max_clients_per_user;   /* slots one user but root and the daemon's may hold; default 3/4 of max_clients */
        uint32_t reserved_clients;       /* slots only root and the daemon's user may take; default max_clients / 16 */
        uint32_t n_allow_users, n_allow_groups;
        uid_t allow_users[CONFIG_MAX_IDS];
        gid_t allow_groups[CONFIG_MAX_IDS];
        bool allow_all;                  /* neither list given: everyone who can reach the socket */
        bool huge_pages;                 /* preserve 2 MiB huge pages when scavenging */
        unsigned line;                   /* where the section started, for messages */
        char file[256];
};

struct daemon_config {
        char socket[108];                /* sun_path */
        unsigned scavtrace;              /* 0, 1, 2 */
        double scavenge_percent;         /* CPU budget of all background scavenging; default 1 */
        uint64_t generation_interval_usec; /* default 1 s */
        enum config_tristate bpf;        /* default auto */
        enum config_pressure pressure;   /* default auto */
        double pressure_cpu_percent;     /* CPU cap of unpaced release under pressure; default 50 */
        uint64_t lock_timeout_usec;      /* a pool lock held longer by a client: pool stuck; default 5 s */
        unsigned n_pools;
        struct pool_config pools[CONFIG_MAX_POOLS];
};

void config_defaults(struct daemon_config *c);
void pool_config_defaults(struct pool_config *p);

/*
 * Parses path and then path's ".d" directory (FILE.d/NAME.conf, e.g. scavd.conf.d/ for scavd.conf).
 * On error returns a negative errno and writes "file:line: reason" into err.
 */
int config_load(const char *path, struct daemon_config *c, char *err, size_t errlen);

/*
 * What is valid but most likely not meant, for a warning (NULL when
 * nothing): a configuration without any pool, where clients can open
 * nothing.
 */
const char *config_warning(const struct daemon_config *c);

/* Parses one buffer (for the fuzzer and tests); name is used in messages. */
int config_parse_string(const char *name, const char *text, struct daemon_config *c,
                        char *err, size_t errlen);

/* "64M" -> bytes; K/M/G/T suffixes (binary), -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *ret);

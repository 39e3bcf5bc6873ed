/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * scavtrace: one line per pool and generation, as the seed's printScavTrace,
 * to the journal with structured fields when running under journald, else
 * as plain text on stderr. Level 2 adds a pacing line per pool and
 * generation. Formatting is separate from sending so that it can be tested.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* MESSAGE_ID of the generation lines and of the pacing lines (systemd/scavd.catalog). */
#define TRACE_MESSAGE_ID_GEN "cef12b3e0c324ed0952c87baff0b933a"
#define TRACE_MESSAGE_ID_PACING "dcee51c47c5b4eb1ae7037ca160539ed"

struct trace {
        unsigned level;      /* scavtrace: 0 off, 1 generations, 2 + pacing */
        bool journal;        /* sd_journal_sendv, else stderr */
};

/* A generation that ended, or a forced scavenge. */
struct trace_gen {
        const char *pool;
        uint64_t gen;
        uint64_t work;       /* bytes released */
        uint64_t total;      /* bytes released now (heap_released) */
        uint64_t inuse, retained;
        bool forced;
        bool controller_reset;
        const char *why;     /* forced: who asked ("scavctl", "memcg reclaim", ...), or NULL */
};

/* A pacing update (scavtrace = 2). goal UINT64_MAX: nothing to do. */
struct trace_pacing {
        const char *pool;
        uint64_t gen;
        uint64_t goal, retained;
        double sleep_ratio;
        double cpu_fraction; /* of the machine's capacity, 0..1 */
        uint64_t refaults;   /* pages refaulted in the generation that ended */
        unsigned goal_extra; /* percentage points added to the goal for refaults */
        uint64_t faults;     /* page faults in the pool in that generation (BPF) */
};

/* Whether stderr is connected to journald (JOURNAL_STREAM) or its socket exists. */
bool trace_under_journal(void);
void trace_init(struct trace *t, unsigned level);

/* Go's util: in-use as a percentage of retained. */
unsigned trace_util_percent(uint64_t inuse, uint64_t retained);

/* The text of a line, without newline; returns its length or -ENOBUFS. */
int trace_format_gen(const struct trace_gen *g, char *buf, size_t len);
int trace_format_pacing(const struct trace_pacing *pc, char *buf, size_t len);

void trace_gen(const struct trace *t, const struct trace_gen *g);
void trace_pacing(const struct trace *t, const struct trace_pacing *pc);

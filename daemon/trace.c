/* SPDX-License-Identifier: MIT */
/*
 * scavtrace output: the seed's printScavTrace, per pool, with the journal's
 * structured fields when journald is there.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "macro.h"
#include "trace.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/*
 * journald sets JOURNAL_STREAM=dev:ino on the stream it connects to stdout
 * and stderr; if stderr is still that stream, we are its client. Without it,
 * a journal socket means journald runs on this system. sd_journal_send()
 * returns 0 even when nobody listens, so it cannot tell.
 */
bool trace_under_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;

        if (e) {
                unsigned long long dev, ino;

                if (sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                    (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino)
                        return true;
        }
        return access(JOURNAL_SOCKET, F_OK) == 0;
}

void trace_init(struct trace *t, unsigned level) {
        *t = (struct trace) {
                .level = level,
                .journal = level > 0 && trace_under_journal(),
        };
}

/* Ports the util of printScavTrace: heap_inuse * 100 / heapRetained. */
unsigned trace_util_percent(uint64_t inuse, uint64_t retained) {
        if (retained == 0)
                return 0;
        return (unsigned) ((unsigned __int128) inuse * 100 / retained);
}

static int format_checked(char *buf, size_t len, const char *fmt, ...) _printf_(3, 4);
static int format_checked(char *buf, size_t len, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= len)
                return -ENOBUFS;
        return n;
}

/*
 * "scav <pool> <gen>: <work> KiB work, <total> KiB total, <util>% util",
 * then " (forced: <why>)" (or " (forced)" when nobody said why) or
 * " [controller reset]" (a forced line never carries the reset mark, which
 * waits for the next paced line, as in the seed).
 */
int trace_format_gen(const struct trace_gen *g, char *buf, size_t len) {
        const char *why = g->forced && g->why && g->why[0] ? g->why : NULL;

        return format_checked(buf, len, "scav %s %" PRIu64 ": %" PRIu64 " KiB work, %" PRIu64
                              " KiB total, %u%% util%s%s%s",
                              g->pool, g->gen, g->work >> 10, g->total >> 10,
                              trace_util_percent(g->inuse, g->retained),
                              why ? " (forced: " : g->forced ? " (forced)" :
                              g->controller_reset ? " [controller reset]" : "",
                              why ?: "", why ? ")" : "");
}

int trace_format_pacing(const struct trace_pacing *pc, char *buf, size_t len) {
        char goal[32];

        if (pc->goal == UINT64_MAX)
                snprintf(goal, sizeof(goal), "none");
        else
                snprintf(goal, sizeof(goal), "%" PRIu64 " KiB", pc->goal >> 10);
        char refaults[96] = "";

        /* Only when there is something to say: a quiet pool's line stays short. */
        if (pc->faults > 0 || pc->refaults > 0 || pc->goal_extra > 0)
                snprintf(refaults, sizeof(refaults), ", faults %" PRIu64 ", refaults %" PRIu64 ", goal +%u%%",
                         pc->faults, pc->refaults, pc->goal_extra);
        return format_checked(buf, len, "scav %s %" PRIu64 ": pacing: goal %s, %" PRIu64
                              " KiB retained, sleep ratio %.6g, %.3f%% cpu%s",
                              pc->pool, pc->gen, goal, pc->retained >> 10, pc->sleep_ratio,
                              pc->cpu_fraction * 100, refaults);
}

/* One line, one write: the daemon's other log lines share stderr. */
static void write_stderr(const char *line, int n) {
        struct iovec iov[2] = {
                { .iov_base = (void *) line, .iov_len = (size_t) n },
                { .iov_base = (void *) "\n", .iov_len = 1 },
        };

        (void) !writev(STDERR_FILENO, iov, 2);
}

#define FIELD_MAX 12

struct fields {
        struct iovec iov[FIELD_MAX];
        char text[FIELD_MAX][600];
        int n;
};

static void field(struct fields *f, const char *fmt, ...) _printf_(2, 3);
static void field(struct fields *f, const char *fmt, ...) {
        va_list ap;
        int n;

        if (f->n >= FIELD_MAX)
                return;
        va_start(ap, fmt);
        n = vsnprintf(f->text[f->n], sizeof(f->text[f->n]), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        f->iov[f->n] = (struct iovec) {
                .iov_base = f->text[f->n],
                .iov_len = MIN((size_t) n, sizeof(f->text[f->n]) - 1),
        };
        f->n++;
}

void trace_gen(const struct trace *t, const struct trace_gen *g) {
        char line[512];
        struct fields f = {};
        int n;

        if (t->level < 1)
                return;
        n = trace_format_gen(g, line, sizeof(line));
        if (n < 0)
                return;
        if (!t->journal) {
                write_stderr(line, n);
                return;
        }
        field(&f, "MESSAGE=%s", line);
        field(&f, "MESSAGE_ID=" TRACE_MESSAGE_ID_GEN);
        field(&f, "PRIORITY=%d", 6);
        field(&f, "SCAV_POOL=%s", g->pool);
        field(&f, "SCAV_GEN=%" PRIu64, g->gen);
        field(&f, "SCAV_RELEASED_BYTES=%" PRIu64, g->work);
        field(&f, "SCAV_TOTAL_RELEASED_BYTES=%" PRIu64, g->total);
        field(&f, "SCAV_UTIL_PERCENT=%u", trace_util_percent(g->inuse, g->retained));
        if (g->forced)
                field(&f, "SCAV_FORCED=%s", g->why && g->why[0] ? g->why : "yes");
        (void) sd_journal_sendv(f.iov, f.n);
}

void trace_pacing(const struct trace *t, const struct trace_pacing *pc) {
        char line[512];
        struct fields f = {};
        int n;

        if (t->level < 2)
                return;
        n = trace_format_pacing(pc, line, sizeof(line));
        if (n < 0)
                return;
        if (!t->journal) {
                write_stderr(line, n);
                return;
        }
        field(&f, "MESSAGE=%s", line);
        field(&f, "MESSAGE_ID=" TRACE_MESSAGE_ID_PACING);
        field(&f, "PRIORITY=%d", 7);
        field(&f, "SCAV_POOL=%s", pc->pool);
        field(&f, "SCAV_GEN=%" PRIu64, pc->gen);
        if (pc->goal != UINT64_MAX)
                field(&f, "SCAV_GOAL_BYTES=%" PRIu64, pc->goal);
        field(&f, "SCAV_RETAINED_BYTES=%" PRIu64, pc->retained);
        field(&f, "SCAV_SLEEP_RATIO=%.6g", pc->sleep_ratio);
        field(&f, "SCAV_CPU_PERCENT=%.3f", pc->cpu_fraction * 100);
        field(&f, "SCAV_FAULTS=%" PRIu64, pc->faults);
        field(&f, "SCAV_REFAULTS=%" PRIu64, pc->refaults);
        field(&f, "SCAV_GOAL_EXTRA_PERCENT=%u", pc->goal_extra);
        (void) sd_journal_sendv(f.iov, f.n);
}

/* SPDX-License-Identifier: MIT */
/*
 * One place that writes log lines. journald parses a "<N>" prefix on a
 * stream line into the priority; on a terminal the prefix would be noise,
 * so it is only written when stderr is the journal stream.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "log.h"

static int max_level = LOG_INFO;
static int under_journal = -1;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

/* JOURNAL_STREAM is "device:inode" of the stream journald gave us; it only
 * counts if stderr is still that stream. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        if (level > max_level)
                return error > 0 ? -error : error;
        if (under_journal < 0)
                under_journal = stderr_is_journal();

        /* %m formats errno: make it the error we were given. */
        errno = error < 0 ? -error : error;

        flockfile(stderr);
        if (under_journal)
                fprintf(stderr, "<%d>", level);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        if (level >= LOG_DEBUG)
                fprintf(stderr, " (%s:%d)", file, line);
        fputc('\n', stderr);
        funlockfile(stderr);

        errno = saved;
        return error > 0 ? -error : error;
}

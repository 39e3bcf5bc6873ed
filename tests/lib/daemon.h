/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Test helpers around the real daemon: start scavd with a generated
 * configuration on a private socket (in a private temporary directory,
 * exported as SCAVD_SOCKET so libscav finds it), wait until it answers, stop
 * it; run scavctl against it; and read what the kernel says about a process
 * or a file (descriptors, VmRSS, st_blocks).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "test.h"

struct test_daemon {
        pid_t pid;
        char dir[64];       /* private directory: config, socket, log */
        char socket[108];
        char config[300];
        char log[300];
};

/* $SCAVD, else $BUILD/scavd; NULL if neither exists. Same for scavctl. */
const char *test_scavd_path(void);
const char *test_scavctl_path(void);

/*
 * Writes config (the text of a scavd.conf; NULL: copy config_file instead)
 * into a new private directory, starts the daemon on dir/scavd.sock, sets
 * SCAVD_SOCKET and waits until the socket accepts connections (at most
 * 30 s). Exits the test with 77 (skip) when there is no daemon binary.
 * Returns 0 or a negative errno (the daemon's log is printed then).
 */
int test_daemon_start(struct test_daemon *d, const char *config);
int test_daemon_start_file(struct test_daemon *d, const char *config_file);
/* Starts the daemon again with the same directory and configuration. */
int test_daemon_restart(struct test_daemon *d);
/* SIGTERM and wait (at most 30 s, then SIGKILL): returns the daemon's exit
 * status (0 = clean stop), or a negative errno. Keeps the directory. */
int test_daemon_stop(struct test_daemon *d);
/* SIGKILL and reap. */
void test_daemon_kill(struct test_daemon *d);
/* Removes the private directory (after stopping). */
void test_daemon_cleanup(struct test_daemon *d);
/* Prints the last lines of the daemon's log to stderr. */
void test_daemon_dump_log(const struct test_daemon *d);
/* Lines of the daemon's log containing both a and b (b may be NULL). */
unsigned test_daemon_log_count(const struct test_daemon *d, const char *a, const char *b);
/* A line of the daemon's log contains needle; now, or within seconds. */
bool test_daemon_log_has(const struct test_daemon *d, const char *needle);
bool test_daemon_wait_log(const struct test_daemon *d, const char *needle, unsigned seconds);
/* The end of a test with a daemon: it must stop cleanly (a check); its log
 * is printed if any check failed; its directory is removed. Inline: only a
 * test (with test.h's globals) calls it, not the helpers that link this. */
static inline void test_daemon_finish(struct test_daemon *d) {
        CHECKF(test_daemon_stop(d) == 0, "daemon did not stop cleanly");
        if (test_failures)
                test_daemon_dump_log(d);
        test_daemon_cleanup(d);
}

/*
 * Runs scavctl --socket <d's socket> with the NULL-terminated arguments;
 * stdout and stderr go to out (NUL-terminated, may be NULL). Returns the
 * exit status, or a negative errno.
 */
int test_scavctl(const struct test_daemon *d, char *out, size_t outlen, ...) __attribute__((sentinel));
/* `scavctl check POOL` passes. */
bool test_pool_check(const struct test_daemon *d, const char *pool);

/* Waits until p's in-use figure is want; *st holds the figures seen last
 * (st->gen: the generation then). False after 30 s. */
struct scav_pool;
struct scav_stats;
bool test_wait_inuse(struct scav_pool *p, uint64_t want, struct scav_stats *st);

/* Open descriptors of a process (/proc/PID/fd), or a negative errno. */
int test_proc_fd_count(pid_t pid);
/* VmRSS of a process in KiB, or a negative errno. */
int64_t test_proc_vmrss_kb(pid_t pid);
/* Nanoseconds a process's threads have run (schedstat of each task in /proc/PID/task), or -errno:
 * exact where clock ticks are 10 ms apart. */
int64_t test_proc_cpu_ns(pid_t pid);
/* Voluntary and involuntary context switches of a process's threads, or -errno. */
int64_t test_proc_ctxt_switches(pid_t pid);
/* utime + stime of a process in clock ticks (/proc/PID/stat fields 14 and 15), or -errno. */
int64_t test_proc_cpu_ticks(pid_t pid);
/* fstat(fd).st_blocks (512-byte units), or a negative errno. */
int64_t test_fd_blocks(int fd);
/* Current time, CLOCK_MONOTONIC, in microseconds. */
uint64_t test_now_usec(void);

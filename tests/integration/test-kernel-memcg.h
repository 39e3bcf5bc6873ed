/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Memory pressure on demand, for the kernel awareness tests: a cgroup v1
 * memory group limited to 64 MiB under the test's own, and a process in it
 * going through a file four times that size in the page cache, over and
 * over. The rest of the machine is left alone (no anonymous memory, so no
 * OOM kill).
 *
 * Reading (a sparse file: no disk I/O) makes the group reclaim within
 * milliseconds, which is what the reclaim tracepoints see; but reclaiming
 * clean page cache is quick, and here it stalled tasks for ~25 ms a
 * second, under the 150 ms in 2 s PSI trigger. Writing makes reclaim in a
 * v1 group wait for writeback, a stall PSI counts (~0.5 s a second here),
 * at the price of disk traffic while it lasts; so only the PSI test writes.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <time.h>
#include <unistd.h>

#include "../lib/test.h"

#define MEMCG_ROOT "/sys/fs/cgroup/memory"
#define MEMCG_LIMIT (64ULL << 20)
#define MEMCG_FILE_SIZE (256ULL << 20)

enum memcg_load { MEMCG_READ, MEMCG_WRITE };

struct memcg_pressure {
        char group[2 * PATH_MAX];
        char file[2 * PATH_MAX];
        pid_t reader;
};

static inline uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int write_string(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = write(fd, s, strlen(s));
        n = n < 0 ? -errno : 0;
        close(fd);
        return n;
}

/* This process's memory cgroup, relative to MEMCG_ROOT ("" for the root). */
static inline int memcg_self(char *buf, size_t len) {
        char line[PATH_MAX + 64];
        FILE *f = fopen("/proc/self/cgroup", "re");
        int r = -ENOENT;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char *ctl = strchr(line, ':'), *path;

                if (!ctl || !(path = strchr(ctl + 1, ':')))
                        continue;
                *path++ = 0;
                ctl++;
                if (strcmp(ctl, "memory") != 0)
                        continue;
                path[strcspn(path, "\n")] = 0;
                snprintf(buf, len, "%s", strcmp(path, "/") == 0 ? "" : path);
                r = 0;
                break;
        }
        fclose(f);
        return r;
}

/* A directory for the big file on a real file system: tmpfs reads of holes
 * do not allocate page cache. */
static inline int memcg_file_dir(char *buf, size_t len) {
        const char *candidates[] = { getenv("BUILD"), "/var/tmp", "." };
        struct statfs sfs;

        for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
                if (!candidates[i] || statfs(candidates[i], &sfs) < 0)
                        continue;
                if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC)
                        continue;
                if (access(candidates[i], W_OK) < 0)
                        continue;
                snprintf(buf, len, "%s", candidates[i]);
                return 0;
        }
        return -ENOENT;
}

/* Removes what tests killed before their cleanup left in dir: entries
 * named prefix<pid> whose process is gone (cgroups: empty ones). */
static inline void memcg_remove_stale(const char *dir, const char *prefix, bool is_group) {
        char path[2 * PATH_MAX];
        struct dirent *de;
        DIR *d = opendir(dir);

        if (!d)
                return;
        while ((de = readdir(d))) {
                char *end;
                long pid;

                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                pid = strtol(de->d_name + strlen(prefix), &end, 10);
                if (*end || pid <= 0 || kill((pid_t) pid, 0) == 0 || errno != ESRCH)
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                (void) (is_group ? rmdir(path) : unlink(path));
        }
        closedir(d);
}

/* Returns 0, or a negative errno with why written to skip (the machine
 * cannot do it: the caller skips), or a positive errno (a failure). */
static inline int memcg_pressure_setup(struct memcg_pressure *m, char *skip, size_t skiplen) {
        char self[PATH_MAX], dir[PATH_MAX], path[2 * PATH_MAX + 64], val[32];
        int fd, r;

        *m = (struct memcg_pressure) { .reader = -1 };

        if (access(MEMCG_ROOT "/memory.limit_in_bytes", F_OK) < 0) {
                snprintf(skip, skiplen, "no cgroup v1 memory controller at " MEMCG_ROOT);
                return -ENOENT;
        }
        r = memcg_self(self, sizeof(self));
        if (r < 0) {
                snprintf(skip, skiplen, "this process is in no memory cgroup: %s", strerror(-r));
                return r;
        }
        snprintf(path, sizeof(path), MEMCG_ROOT "%s", self);
        memcg_remove_stale(path, "scavd-test-", true);
        snprintf(m->group, sizeof(m->group), MEMCG_ROOT "%s/scavd-test-%d", self, (int) getpid());
        if (mkdir(m->group, 0755) < 0) {
                r = -errno;
                snprintf(skip, skiplen, "cannot create memory cgroup %s: %s", m->group, strerror(errno));
                m->group[0] = 0;
                return r;
        }
        snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", m->group);
        snprintf(val, sizeof(val), "%llu", MEMCG_LIMIT);
        r = write_string(path, val);
        if (r < 0) {
                fprintf(stderr, "writing %s: %s\n", path, strerror(-r));
                return -r;
        }

        if (memcg_file_dir(dir, sizeof(dir)) < 0) {
                snprintf(skip, skiplen, "no writable disk-backed directory for a page cache file");
                return -ENOENT;
        }
        memcg_remove_stale(dir, "scavd-test-memcg-", false);
        snprintf(m->file, sizeof(m->file), "%s/scavd-test-memcg-%d", dir, (int) getpid());
        fd = open(m->file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, MEMCG_FILE_SIZE) < 0) {
                r = errno;
                fprintf(stderr, "creating %s: %s\n", m->file, strerror(r));
                if (fd >= 0)
                        close(fd);
                return r;
        }
        close(fd);
        return 0;
}

/* Starts the reader: it joins the group first, so the page cache it fills
 * is charged there. */
static inline int memcg_pressure_start(struct memcg_pressure *m, enum memcg_load load) {
        char path[2 * PATH_MAX + 64];
        int ready[2];
        char c;

        if (pipe(ready) < 0)
                return errno;
        m->reader = fork();
        if (m->reader < 0)
                return errno;
        if (m->reader == 0) {
                static char buf[1 << 20];
                char pid[32];
                int fd;

                close(ready[0]);
                alarm(120);     /* never outlive a test that died */
                snprintf(path, sizeof(path), "%s/cgroup.procs", m->group);
                snprintf(pid, sizeof(pid), "%d", (int) getpid());
                if (write_string(path, pid) < 0)
                        _exit(2);
                fd = open(m->file, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        _exit(2);
                if (write(ready[1], "r", 1) != 1)
                        _exit(2);
                if (load == MEMCG_WRITE) {
                        memset(buf, 'x', sizeof(buf));
                        for (off_t off = 0;; off = (off + sizeof(buf)) % (MEMCG_FILE_SIZE / 2))
                                if (pwrite(fd, buf, sizeof(buf), off) < 0)
                                        _exit(2);
                }
                for (;;) {
                        ssize_t n = read(fd, buf, sizeof(buf));

                        if (n < 0)
                                _exit(2);
                        if (n == 0 && lseek(fd, 0, SEEK_SET) < 0)
                                _exit(2);
                }
        }
        close(ready[1]);
        if (read(ready[0], &c, 1) != 1) {
                close(ready[0]);
                return EIO;
        }
        close(ready[0]);
        return 0;
}

static inline void memcg_pressure_stop(struct memcg_pressure *m) {
        if (m->reader > 0) {
                kill(m->reader, SIGKILL);
                (void) waitpid(m->reader, NULL, 0);
                m->reader = -1;
        }
}

static inline void memcg_pressure_cleanup(struct memcg_pressure *m) {
        memcg_pressure_stop(m);
        if (m->file[0])
                (void) unlink(m->file);
        if (m->group[0])
                (void) rmdir(m->group);
}

/* memcg_pressure_setup for a test program: skips it (exit 77) where the
 * machine cannot, else returns 0 or a positive errno (a checked failure). */
static inline int memcg_pressure_setup_or_skip(struct memcg_pressure *m) {
        char skip[2 * PATH_MAX + 128];
        int r = memcg_pressure_setup(m, skip, sizeof(skip));
        if (r < 0) {
                memcg_pressure_cleanup(m);
                TEST_SKIP("%s", skip);
        }
        CHECKF(r == 0, "memcg setup: %s", strerror(r));
        return r;
}


/* SPDX-License-Identifier: MIT */

/*
 * The service manager's file descriptor store, seen from the daemon: each
 * pool's meta and heap memfds are stored under FDNAME=pool/<name>/meta and
 * pool/<name>/heap, and handed back after the listening socket on the next
 * start. The memfds are the pools: as long as the manager holds them, a
 * restart (clean or SIGKILL) loses no byte.
 *
 * The separator is '/' because systemd refuses ':' in FDNAME= (it separates
 * the names in $LISTEN_FDNAMES) and would store the descriptors nameless.
 * '/' cannot occur in a pool name ([A-Za-z0-9_.-]), so the split is exact.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "log.h"
#include "macro.h"

#define FDNAME_PREFIX "pool/"

enum fdstore_role { ROLE_META, ROLE_HEAP };

static const char *const role_names[] = {
        [ROLE_META] = "meta",
        [ROLE_HEAP] = "heap",
};

/*
 * What this process knows the store holds, by name: filled by
 * fdstore_adopt() and fdstore_save(). It lets save skip a pair the manager
 * already holds (after adoption) and replace, rather than duplicate, a pair
 * whose pool was created anew under an old name.
 */
struct stored {
        char name[SCAV_POOL_NAME_MAX];
        dev_t dev[2];
        ino_t ino[2];
        bool used;
};

/* Twice the configuration's 256 pools: drained pools and their successors
 * may coexist for a while. The unit's FileDescriptorStoreMax=1024 matches
 * (two descriptors a pool). */
static struct stored stored[512];

static struct stored *stored_find(const char *pool) {
        for (size_t i = 0; i < ELEMENTSOF(stored); i++)
                if (stored[i].used && strcmp(stored[i].name, pool) == 0)
                        return &stored[i];
        return NULL;
}

static struct stored *stored_add(const char *pool) {
        struct stored *s = stored_find(pool);

        if (s)
                return s;
        for (size_t i = 0; i < ELEMENTSOF(stored); i++)
                if (!stored[i].used) {
                        s = &stored[i];
                        *s = (struct stored) { .used = true };
                        snprintf(s->name, sizeof(s->name), "%s", pool);
                        return s;
                }
        return NULL;
}

static bool pool_name_ok(const char *pool) {
        size_t n = strlen(pool);

        if (n == 0 || n >= SCAV_POOL_NAME_MAX)
                return false;
        return strspn(pool, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* "pool/<name>/meta" -> name and role; false for anything else. */
static bool fdname_parse(const char *fdname, char name[static SCAV_POOL_NAME_MAX],
                         enum fdstore_role *ret_role) {
        const char *p, *slash;
        size_t n;

        if (!fdname || strncmp(fdname, FDNAME_PREFIX, strlen(FDNAME_PREFIX)) != 0)
                return false;
        p = fdname + strlen(FDNAME_PREFIX);
        slash = strrchr(p, '/');
        if (!slash)
                return false;
        n = (size_t) (slash - p);
        if (n == 0 || n >= SCAV_POOL_NAME_MAX)
                return false;
        memcpy(name, p, n);
        name[n] = '\0';
        if (!pool_name_ok(name))
                return false;
        for (int r = ROLE_META; r <= ROLE_HEAP; r++)
                if (strcmp(slash + 1, role_names[r]) == 0) {
                        *ret_role = r;
                        return true;
                }
        return false;
}

static int notify_remove(const char *pool, enum fdstore_role role) {
        char msg[64 + SCAV_POOL_NAME_MAX];
        int r;

        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=" FDNAME_PREFIX "%s/%s", pool,
                 role_names[role]);
        r = sd_notify(0, msg);
        if (r < 0)
                return log_error_errno(r, "pool %s: failed to remove %s memfd from the store: %m",
                                       pool, role_names[role]);
        return r;
}

static int notify_store(const char *pool, enum fdstore_role role, int fd) {
        char msg[64 + SCAV_POOL_NAME_MAX];
        int r;

        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" FDNAME_PREFIX "%s/%s", pool,
                 role_names[role]);
        r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
        if (r < 0)
                return log_error_errno(r, "pool %s: failed to store %s memfd: %m", pool,
                                       role_names[role]);
        return r;
}

int fdstore_save(const char *pool, int meta_fd, int heap_fd) {
        const int fds[2] = { [ROLE_META] = meta_fd, [ROLE_HEAP] = heap_fd };
        struct stat st[2];
        struct stored *s;
        int r;

        if (!pool_name_ok(pool) || meta_fd < 0 || heap_fd < 0)
                return -EINVAL;
        if (!getenv("NOTIFY_SOCKET"))
                return 0;

        for (int i = 0; i < 2; i++)
                if (fstat(fds[i], &st[i]) < 0)
                        return negative_errno();

        s = stored_find(pool);
        if (s && s->dev[0] == st[0].st_dev && s->ino[0] == st[0].st_ino &&
            s->dev[1] == st[1].st_dev && s->ino[1] == st[1].st_ino)
                return 0; /* the manager holds these very files already */

        /* A pool made anew under a stored name: drop the old pair first, so
         * the next start is not handed two pairs for one name. */
        if (s)
                for (int i = 0; i < 2; i++)
                        (void) notify_remove(pool, i);

        for (int i = 0; i < 2; i++) {
                r = notify_store(pool, i, fds[i]);
                if (r < 0)
                        return r;
        }

        s = stored_add(pool);
        if (s)
                for (int i = 0; i < 2; i++) {
                        s->dev[i] = st[i].st_dev;
                        s->ino[i] = st[i].st_ino;
                }
        return 0;
}

int fdstore_remove(const char *pool) {
        struct stored *s;
        int r = 0;

        if (!pool_name_ok(pool))
                return -EINVAL;
        s = stored_find(pool);
        if (s)
                s->used = false;
        if (!getenv("NOTIFY_SOCKET"))
                return 0;
        for (int i = 0; i < 2; i++) {
                int k = notify_remove(pool, i);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

static bool fd_is_listening_seqpacket(int fd) {
        return sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0;
}

static bool fd_is_regular(int fd, struct stat *st) {
        return fstat(fd, st) == 0 && S_ISREG(st->st_mode);
}

static void fd_set_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        if (flags >= 0)
                (void) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static void strv_freep(char ***p) {
        if (*p)
                for (char **s = *p; *s; s++)
                        free(*s);
        free(*p);
}

int fdstore_adopt(int *ret_listen_fd, struct fdstore_pool *ret_pools, int max) {
        _cleanup_(strv_freep) char **names = NULL;
        struct stat st;
        int n, listen_fd = -EBADF, n_pools = 0;

        assert(ret_listen_fd);
        assert(ret_pools || max == 0);

        *ret_listen_fd = -1;
        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return log_error_errno(n, "cannot read passed file descriptors: %m");

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *fdname = names ? names[i] : "unknown";
                char pool[SCAV_POOL_NAME_MAX];
                enum fdstore_role role;
                struct fdstore_pool *fp = NULL;

                fd_set_cloexec(fd);

                if (!fdname_parse(fdname, pool, &role)) {
                        if (listen_fd < 0 && fd_is_listening_seqpacket(fd)) {
                                listen_fd = fd;
                                continue;
                        }
                        log_warning("closing passed descriptor %d \"%s\": %s", fd, fdname,
                                    fd_is_listening_seqpacket(fd) ? "a second listening socket"
                                                                  : "not a listening seqpacket socket nor a pool memfd");
                        close(fd);
                        continue;
                }

                if (!fd_is_regular(fd, &st)) {
                        log_warning("pool %s: stored %s descriptor is not a memfd, dropping it",
                                    pool, role_names[role]);
                        close(fd);
                        if (getenv("NOTIFY_SOCKET"))
                                (void) notify_remove(pool, role);
                        continue;
                }

                for (int j = 0; j < n_pools; j++)
                        if (strcmp(ret_pools[j].name, pool) == 0)
                                fp = &ret_pools[j];
                if (!fp) {
                        if (n_pools >= max) {
                                log_error("pool %s: more stored pools than %d, closing its %s memfd",
                                            pool, max, role_names[role]);
                                close(fd);
                                continue;
                        }
                        fp = &ret_pools[n_pools++];
                        *fp = (struct fdstore_pool) { .meta_fd = -1, .heap_fd = -1 };
                        snprintf(fp->name, sizeof(fp->name), "%s", pool);
                }

                int *slot = role == ROLE_META ? &fp->meta_fd : &fp->heap_fd;
                if (*slot >= 0) {
                        log_warning("pool %s: second stored %s memfd, keeping the first", pool,
                                    role_names[role]);
                        close(fd);
                        continue;
                }
                *slot = fd;
        }

        /* A half pair is no pool: close it and take it out of the store, so
         * it does not come back on every start. */
        for (int j = 0; j < n_pools;) {
                struct fdstore_pool *fp = &ret_pools[j];

                if (fp->meta_fd >= 0 && fp->heap_fd >= 0) {
                        struct stored *s = stored_add(fp->name);
                        struct stat sm, sh;

                        if (s && fstat(fp->meta_fd, &sm) == 0 && fstat(fp->heap_fd, &sh) == 0) {
                                s->dev[ROLE_META] = sm.st_dev;
                                s->ino[ROLE_META] = sm.st_ino;
                                s->dev[ROLE_HEAP] = sh.st_dev;
                                s->ino[ROLE_HEAP] = sh.st_ino;
                        }
                        j++;
                        continue;
                }

                log_warning("pool %s: stored without its %s memfd, dropping it", fp->name,
                            fp->meta_fd < 0 ? "meta" : "heap");
                if (fp->meta_fd >= 0)
                        close(fp->meta_fd);
                if (fp->heap_fd >= 0)
                        close(fp->heap_fd);
                if (getenv("NOTIFY_SOCKET"))
                        for (int r = ROLE_META; r <= ROLE_HEAP; r++)
                                (void) notify_remove(fp->name, r);
                ret_pools[j] = ret_pools[--n_pools];
        }

        *ret_listen_fd = listen_fd >= 0 ? listen_fd : -1;
        return n_pools;
}

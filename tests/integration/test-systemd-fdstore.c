/* SPDX-License-Identifier: MIT */
/*
 * daemon/fdstore.c against the protocol, case by case: what it sends to
 * NOTIFY_SOCKET when it stores and removes memfds, and what it makes of the
 * descriptors a service manager passes (LISTEN_FDS, LISTEN_FDNAMES): the
 * listening socket, pairs of pool memfds, and what it must close rather
 * than adopt (half pairs, which it also takes out of the store; unknown
 * names; a second listening socket; a stored name that is no memfd).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../daemon/fdstore.h"
#include "../lib/test.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

static int notify_fd = -1;
static char notify_path[64];

struct msg {
        char text[1024];
        int n_fds;
        ino_t ino[4];
};

/* Every notification queued now, in order. */
static int read_msgs(struct msg *out, int max) {
        int n = 0;

        while (n < max) {
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 4)];
                } control;
                struct iovec iov = { .iov_base = out[n].text, .iov_len = sizeof(out[n].text) - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                     .msg_control = &control, .msg_controllen = sizeof(control) };
                ssize_t k = recvmsg(notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

                if (k < 0)
                        break;
                out[n].text[k] = '\0';
                out[n].n_fds = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                int cnt = (int) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                for (int i = 0; i < cnt && i < 4; i++) {
                                        int fd = ((int *) CMSG_DATA(c))[i];
                                        struct stat st;
                                        out[n].ino[out[n].n_fds++] = fstat(fd, &st) == 0 ? st.st_ino : 0;
                                        close(fd);
                                }
                        }
                n++;
        }
        return n;
}

static ino_t ino_of(int fd) {
        struct stat st;

        return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static int new_memfd(const char *name) {
        int fd = memfd_create(name, MFD_CLOEXEC);

        if (fd >= 0 && ftruncate(fd, 4096) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int new_listener(int type) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        static int seq;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.l%d", notify_path, seq++);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            (type != SOCK_DGRAM && listen(fd, 4) < 0))
                return -1;
        return fd;
}

static bool fd_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

/* Places fds at 3, 4, ... with names, as a service manager passes them. */
static void pass_fds(const int *fds, const char *const *names, int n) {
        char buf[4096] = "", num[32];
        int tmp[32];

        for (int i = 0; i < n; i++)
                tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100);
        for (int i = 0; i < n; i++)
                close(fds[i]);
        for (int i = 0; i < n; i++) {
                if (dup2(tmp[i], 3 + i) < 0)
                        abort();
                close(tmp[i]);
                if (i)
                        strcat(buf, ":");
                strcat(buf, names[i]);
        }
        snprintf(num, sizeof(num), "%d", n);
        setenv("LISTEN_FDS", num, 1);
        snprintf(num, sizeof(num), "%d", (int) getpid());
        setenv("LISTEN_PID", num, 1);
        setenv("LISTEN_FDNAMES", buf, 1);
}

static bool msg_is(const struct msg *m, const char *text, int n_fds) {
        return strcmp(m->text, text) == 0 && m->n_fds == n_fds;
}

int main(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct fdstore_pool pools[8];
        struct msg msgs[16];
        int listen_fd = -1, n, r, one = 1;
        char dir[] = "/tmp/scavd-fdstore.XXXXXX";

        if (!mkdtemp(dir))
                return 1;
        snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
        /* Keep fds 3.. free for the passed descriptors. */
        notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (notify_fd < 0 || dup2(notify_fd, 60) < 0)
                return 1;
        close(notify_fd);
        notify_fd = 60;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", notify_path);
        if (bind(notify_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            setsockopt(notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
                return 1;

        /* Without a manager, storing is a no-op that succeeds. */
        unsetenv("NOTIFY_SOCKET");
        {
                int a = new_memfd("m"), b = new_memfd("h");
                CHECK_EQ_U64(fdstore_save("p", a, b), 0);
                CHECK_EQ_U64(fdstore_remove("p"), 0);
                CHECK(fdstore_save("bad:name", a, b) == -EINVAL);
                CHECK(fdstore_save("p", -1, b) == -EINVAL);
                close(a);
                close(b);
        }
        setenv("NOTIFY_SOCKET", notify_path, 1);

        /* ---- adopt ---- */
        {
                int meta = new_memfd("meta"), heap = new_memfd("heap");
                int half = new_memfd("half"), stray = new_memfd("stray");
                int lst = new_listener(SOCK_SEQPACKET), lst2 = new_listener(SOCK_SEQPACKET);
                int dgram = new_listener(SOCK_DGRAM), notmem = new_listener(SOCK_SEQPACKET);
                ino_t meta_ino = ino_of(meta), heap_ino = ino_of(heap);
                int fds[] = { lst, meta, half, stray, heap, lst2, dgram, notmem };
                const char *const names[] = {
                        "scavd.socket", "pool/data/meta", "pool/half/heap", "something",
                        "pool/data/heap", "scavd.socket", "unknown", "pool/sock/meta",
                };

                CHECK(meta >= 0 && heap >= 0 && half >= 0 && stray >= 0 && lst >= 0 && lst2 >= 0 &&
                      dgram >= 0 && notmem >= 0);
                pass_fds(fds, names, (int) ELEMENTSOF(fds));
                n = fdstore_adopt(&listen_fd, pools, (int) ELEMENTSOF(pools));
                CHECKF(n == 1, "adopt: %d pools, want 1 (data)", n);
                CHECKF(listen_fd == 3, "listening socket: fd %d, want 3", listen_fd);
                if (n == 1) {
                        CHECKF(strcmp(pools[0].name, "data") == 0, "pool name '%s'", pools[0].name);
                        CHECK(ino_of(pools[0].meta_fd) == meta_ino);
                        CHECK(ino_of(pools[0].heap_fd) == heap_ino);
                        CHECK(fcntl(pools[0].meta_fd, F_GETFD) & FD_CLOEXEC);
                }
                CHECK(fcntl(listen_fd, F_GETFD) & FD_CLOEXEC);
                /* half (5), stray (6), second socket (8), datagram (9), socket named as memfd (10) */
                for (int fd = 5; fd <= 10; fd++)
                        if (fd != 7)
                                CHECKF(!fd_open(fd), "passed fd %d (%s) left open", fd, names[fd - 3]);
                CHECK(getenv("LISTEN_FDS") == NULL && getenv("LISTEN_PID") == NULL);

                /* The half pair and the socket stored as a memfd leave the store. */
                r = read_msgs(msgs, (int) ELEMENTSOF(msgs));
                {
                        int half_removed = 0, sock_removed = 0;
                        for (int i = 0; i < r; i++) {
                                half_removed += msg_is(&msgs[i], "FDSTOREREMOVE=1\nFDNAME=pool/half/meta", 0) ||
                                                msg_is(&msgs[i], "FDSTOREREMOVE=1\nFDNAME=pool/half/heap", 0);
                                sock_removed += msg_is(&msgs[i], "FDSTOREREMOVE=1\nFDNAME=pool/sock/meta", 0);
                        }
                        CHECKF(half_removed == 2, "half pair: %d removals, want 2", half_removed);
                        CHECKF(sock_removed == 1, "non-memfd stored as a pool's: %d removals, want 1",
                               sock_removed);
                        CHECKF(r == 3, "adopt sent %d notifications, want 3", r);
                }

                /* ---- save ---- */
                /* What the manager holds already is not sent again. */
                CHECK_EQ_U64(fdstore_save("data", pools[0].meta_fd, pools[0].heap_fd), 0);
                r = read_msgs(msgs, (int) ELEMENTSOF(msgs));
                CHECKF(r == 0, "re-storing adopted memfds sent %d notifications", r);

                /* A pool made anew under a stored name replaces the old pair. */
                {
                        int m2 = new_memfd("m2"), h2 = new_memfd("h2");
                        CHECK_EQ_U64(fdstore_save("data", m2, h2), 0);
                        r = read_msgs(msgs, (int) ELEMENTSOF(msgs));
                        CHECKF(r == 4, "replacing: %d notifications, want 4", r);
                        if (r == 4) {
                                CHECK(msg_is(&msgs[0], "FDSTOREREMOVE=1\nFDNAME=pool/data/meta", 0));
                                CHECK(msg_is(&msgs[1], "FDSTOREREMOVE=1\nFDNAME=pool/data/heap", 0));
                                CHECK(msg_is(&msgs[2], "FDSTORE=1\nFDNAME=pool/data/meta", 1));
                                CHECK(msg_is(&msgs[3], "FDSTORE=1\nFDNAME=pool/data/heap", 1));
                                CHECK(msgs[2].ino[0] == ino_of(m2));
                                CHECK(msgs[3].ino[0] == ino_of(h2));
                        }
                        close(m2);
                        close(h2);
                }

                /* A new pool: two FDSTORE=1, one memfd each, names systemd accepts. */
                {
                        int m3 = new_memfd("m3"), h3 = new_memfd("h3");
                        CHECK_EQ_U64(fdstore_save("a.b-c_9", m3, h3), 0);
                        r = read_msgs(msgs, (int) ELEMENTSOF(msgs));
                        CHECKF(r == 2, "new pool: %d notifications, want 2", r);
                        if (r == 2) {
                                CHECKF(msg_is(&msgs[0], "FDSTORE=1\nFDNAME=pool/a.b-c_9/meta", 1), "got '%s'",
                                       msgs[0].text);
                                CHECKF(msg_is(&msgs[1], "FDSTORE=1\nFDNAME=pool/a.b-c_9/heap", 1), "got '%s'",
                                       msgs[1].text);
                                CHECK(strchr(msgs[0].text + strlen("FDSTORE=1\nFDNAME="), ':') == NULL);
                        }
                        /* Dropping it removes both names. */
                        CHECK_EQ_U64(fdstore_remove("a.b-c_9"), 0);
                        r = read_msgs(msgs, (int) ELEMENTSOF(msgs));
                        CHECKF(r == 2, "remove: %d notifications, want 2", r);
                        if (r == 2) {
                                CHECK(msg_is(&msgs[0], "FDSTOREREMOVE=1\nFDNAME=pool/a.b-c_9/meta", 0));
                                CHECK(msg_is(&msgs[1], "FDSTOREREMOVE=1\nFDNAME=pool/a.b-c_9/heap", 0));
                        }
                        /* And storing it again after removal sends it again. */
                        CHECK_EQ_U64(fdstore_save("a.b-c_9", m3, h3), 0);
                        CHECK(read_msgs(msgs, (int) ELEMENTSOF(msgs)) == 2);
                        close(m3);
                        close(h3);
                }
                close(pools[0].meta_fd);
                close(pools[0].heap_fd);
                close(listen_fd);
        }

        /* Nothing passed: no socket, no pools. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        n = fdstore_adopt(&listen_fd, pools, (int) ELEMENTSOF(pools));
        CHECK(n == 0 && listen_fd == -1);

        /* Passed for another process (LISTEN_PID): not ours to take. */
        {
                int lst = new_listener(SOCK_SEQPACKET);
                const char *const names[] = { "scavd.socket" };
                pass_fds(&lst, names, 1);
                setenv("LISTEN_PID", "1", 1);
                n = fdstore_adopt(&listen_fd, pools, (int) ELEMENTSOF(pools));
                CHECK(n == 0 && listen_fd == -1);
                close(3);
        }

        {
                char cmd[128];
                snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
                (void) !system(cmd);
        }
        return TEST_END();
}

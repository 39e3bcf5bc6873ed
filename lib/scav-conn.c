/* SPDX-License-Identifier: MIT */
/*
 * The client end of the scavd socket: SOCK_SEQPACKET, one message per
 * packet, one reply per request. Used by libscav's sessions, by scavctl and
 * by the tests; the daemon's end is daemon/server.c.
 */

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "scav-conn.h"

const char *scav_socket_path(void) {
        const char *e = secure_getenv("SCAVD_SOCKET");

        return e && *e ? e : "/run/scavd/scavd.sock";
}

int scav_pool_name_valid(const char *name) {
        size_t n;

        if (!name)
                return 0;
        n = strnlen(name, SCAV_POOL_NAME_MAX);
        if (n == 0 || n >= SCAV_POOL_NAME_MAX)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return 0;
        }
        return 1;
}

int scav_conn_connect(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n;

        if (!path)
                path = scav_socket_path();
        n = strlen(path);
        if (n == 0 || n >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, path, n);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + n + 1) < 0) {
                /* A socket file without a daemon behind it, or no file at all:
                 * both mean "no daemon" to the caller. */
                if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTDIR)
                        return -ECONNREFUSED;
                return negative_errno();
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the socket to become readable, at most timeout_ms (< 0: no
 * limit). Restarts after signals with the time that is left. */
static int conn_wait(int fd, int timeout_ms) {
        int64_t end = now_ms() + timeout_ms;

        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int left = -1, r;

                if (timeout_ms >= 0) {
                        int64_t l = end - now_ms();
                        if (l <= 0)
                                return -ETIMEDOUT;
                        left = (int) l;
                }
                r = poll(&pfd, 1, left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return negative_errno();
                if (r > 0)
                        return 0;
        }
}

static void close_fds(int *fds, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -1;
                }
}

int scav_conn_call(int fd, const void *req, size_t req_len, void *reply, size_t reply_max,
                   int *fds, unsigned nfds, int timeout_ms) {
        const struct scav_msg_hdr *rq = req;
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { .iov_base = reply, .iov_len = reply_max };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        const char *reason;
        ssize_t n;
        int r;

        if (req_len < sizeof(*rq) || reply_max < sizeof(struct scav_msg_hdr) || nfds > 4)
                return -EINVAL;
        for (unsigned i = 0; i < nfds; i++)
                fds[i] = -1;

        do
                n = send(fd, req, req_len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EPIPE ? -ECONNRESET : negative_errno();
        if ((size_t) n != req_len)
                return -EIO;

        for (;;) {
                r = conn_wait(fd, timeout_ms);
                if (r < 0)
                        return r;
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                break;
        }
        if (n < 0)
                return negative_errno();

        /* Take every descriptor that came, so none leaks whatever we answer. */
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *in = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < k; i++) {
                        if (i < nfds)
                                fds[i] = in[i];
                        else
                                close(in[i]);
                }
        }

        if (n == 0) {
                close_fds(fds, nfds);
                return -ECONNRESET;
        }
        if (mh.msg_flags & MSG_TRUNC) {
                close_fds(fds, nfds);
                return -EBADMSG;
        }
        /* A daemon is not trusted more than a client: every field is checked. */
        r = scav_msg_parse(reply, (size_t) n, &reason);
        if (r >= 0 && r != rq->type + 1)
                r = -EBADMSG;
        if (r < 0) {
                close_fds(fds, nfds);
                return r;
        }
        return (int) n;
}

int scav_ctl_request(const char *path, enum scav_msg_type type, const char *pool,
                     uint64_t bytes, void *reply, size_t reply_max) {
        return scav_ctl_request_timeout(path, type, pool, bytes, reply, reply_max, SCAV_CONN_TIMEOUT_MS);
}

int scav_ctl_request_timeout(const char *path, enum scav_msg_type type, const char *pool,
                             uint64_t bytes, void *reply, size_t reply_max, int timeout_ms) {
        _cleanup_close_ int fd = -EBADF;
        struct scav_msg_pool_req req = {};
        struct scav_msg_hdr plain = {};
        const void *msg;
        size_t len;
        int r, n;

        if (pool) {
                if (!scav_pool_name_valid(pool))
                        return -EINVAL;
                scav_msg_init(&req.hdr, type, sizeof(req));
                strncpy(req.pool, pool, sizeof(req.pool) - 1);
                req.bytes = bytes;
                msg = &req;
                len = sizeof(req);
        } else {
                scav_msg_init(&plain, type, sizeof(plain));
                msg = &plain;
                len = sizeof(plain);
        }

        r = scav_conn_connect(path, &fd);
        if (r < 0)
                return r;
        n = scav_conn_call(fd, msg, len, reply, reply_max, NULL, 0, timeout_ms);
        if (n < 0)
                return n;
        r = ((struct scav_msg_hdr *) reply)->error;
        if (r > 0)
                return -EBADMSG;
        return r < 0 ? r : n;
}

/* SPDX-License-Identifier: MIT */
/*
 * The socket side of the daemon. A connection is a session: whatever slot
 * it claimed is the client's for as long as the connection lives, and is
 * reclaimed the moment it goes away, so a client killed with SIGKILL gives
 * its memory back without anyone polling for it (session.c).
 *
 * Nothing a peer sends is trusted: each packet goes through
 * scav_msg_parse() before a field is read, descriptors sent to us are
 * closed, and a malformed packet ends that connection only.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "proto.h"
#include "server.h"
#include "session.h"

#define SERVER_MAX_FDS_IN 8
#define SERVER_MSGS_PER_WAKEUP 16
/* Connections one non-root user may hold open: enough for any real set of
 * clients, few enough that one user cannot take every descriptor. */
#define SERVER_MAX_CONNS_PER_UID 2048u
#define SERVER_MAX_CONNS 16384u
/* Messages one connection may send a second before the rest waits in its
 * socket: libscav sends a WAKE every 250 ms at most, a control client one
 * request per connection; a flood costs this many reads a second. */
#define SERVER_MSGS_PER_SECOND 64u

struct server {
        struct manager *m;
        int listen_fd;
        sd_event_source *listen_source;
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        bool own_path;           /* we bound it: unlink on exit */
        bool stopping;           /* daemon exit: sessions end, slots stay for a restart */
        struct conn *conns;
        unsigned n_conns;
        int reserve_fd;          /* spent to refuse a connection when out of descriptors */
};

union reply_buf {
        struct scav_msg_hdr hdr;
        struct scav_msg_reply reply;
        uint8_t raw[SCAV_MSG_MAX];
};

/* ---- sending ---- */

static int64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int conn_send(struct conn *c, const void *buf, size_t len, const int *fds, unsigned nfds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 2)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (c->dead)
                return -ENOTCONN;
        if (nfds > 0) {
                struct cmsghdr *cm;
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        do
                n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                /* A client that does not read its replies loses its connection. */
                return log_debug_errno(negative_errno(), "pid %u: cannot send reply: %m", (unsigned) c->cred.pid);
        return 0;
}

int conn_reply(struct conn *c, unsigned type, int error, uint64_t value) {
        struct scav_msg_reply r = { .value = value };

        scav_msg_init(&r.hdr, type, sizeof(r));
        r.hdr.error = error;
        return conn_send(c, &r, sizeof(r), NULL, 0);
}

int conn_reply_text(struct conn *c, unsigned type, int error, uint64_t value, const char *text) {
        union reply_buf b = {};
        size_t n = strnlen(text, sizeof(b) - sizeof(b.reply));

        memcpy(b.raw + sizeof(b.reply), text, n);
        b.reply.value = value;
        b.reply.count = (uint32_t) n;
        scav_msg_init(&b.hdr, type, sizeof(b.reply) + n);
        b.hdr.error = error;
        return conn_send(c, &b, sizeof(b.reply) + n, NULL, 0);
}

/* Returns < 0 to close the connection. */
static int conn_dispatch(struct conn *c, const uint8_t *buf, size_t n) {
        const char *reason = NULL;
        int type;

        type = scav_msg_parse(buf, n, &reason);
        if (type == -EPROTO) {
                log_warning("pid %u: protocol version mismatch, closing", (unsigned) c->cred.pid);
                struct scav_msg_hello_reply rep = { .slot = SCAV_SLOT_NONE };

                scav_msg_init(&rep.hdr, SCAV_MSG_HELLO_REPLY, sizeof(rep));
                rep.hdr.error = -EPROTO;
                (void) conn_send(c, &rep, sizeof(rep), NULL, 0);
                return -EPROTO;
        }
        if (type < 0) {
                log_warning("pid %u: malformed message (%s), closing connection", (unsigned) c->cred.pid,
                            reason ? reason : "invalid");
                return type;
        }

        switch (type) {
        case SCAV_MSG_HELLO: {
                struct scav_msg_hello m;
                memcpy(&m, buf, sizeof(m));
                return session_hello(c, &m);
        }
        case SCAV_MSG_MAPPED: {
                struct scav_msg_mapped m;
                memcpy(&m, buf, sizeof(m));
                return session_mapped(c, &m);
        }
        case SCAV_MSG_WAKE:
                session_wake(c);
                return 0;
        default:
                if (control_handles(type))
                        return control_dispatch(c, type, buf, n);
                /* Replies have no business arriving here. */
                log_warning("pid %u: unexpected message type %d, closing connection", (unsigned) c->cred.pid, type);
                return -EBADMSG;
        }
}

/* ---- connections ---- */

struct conn *conn_ref(struct conn *c) {
        c->n_ref++;
        return c;
}

void conn_unref(struct conn *c) {
        if (--c->n_ref > 0)
                return;
        free(c);
}

/* Reading is on while the connection is alive, not paused and not throttled. */
static void conn_update_source(struct conn *c) {
        if (c->source)
                (void) sd_event_source_set_enabled(c->source,
                                                   c->dead || c->paused || c->throttled ? SD_EVENT_OFF : SD_EVENT_ON);
}

void conn_pause(struct conn *c) {
        c->paused = true;
        conn_update_source(c);
}

void conn_resume(struct conn *c) {
        c->paused = false;
        conn_update_source(c);
}

void conn_close(struct conn *c) {
        server *s = c->server;

        if (c->dead)
                return;
        c->dead = true;
        session_hangup(c, s->stopping);
        c->source = sd_event_source_disable_unref(c->source);
        c->throttle = sd_event_source_disable_unref(c->throttle);
        closep(&c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->n_conns--;
        conn_unref(c);
}

static int conn_throttle_end(sd_event_source *src, uint64_t usec, void *userdata) {
        struct conn *c = userdata;

        c->throttled = false;
        conn_update_source(c);
        return 0;
}

/* Whether c may send another message this second; if not, reading stops
 * until the second is over (the rest waits in the socket). */
static bool conn_budget(struct conn *c) {
        int64_t now = now_ns();
        int r;

        if (now - c->window_start >= 1000000000) {
                c->window_start = now;
                c->window_msgs = 0;
        }
        if (c->window_msgs < SERVER_MSGS_PER_SECOND)
                return true;
        if (!c->warned) {
                log_warning("pid %u: more than %u messages a second, the rest waits", (unsigned) c->cred.pid,
                            SERVER_MSGS_PER_SECOND);
                c->warned = true;
        }
        if (!c->throttle)
                r = sd_event_add_time(c->m->event, &c->throttle, CLOCK_MONOTONIC,
                                      (uint64_t) (c->window_start + 1000000000) / 1000, 1000, conn_throttle_end, c);
        else {
                r = sd_event_source_set_time(c->throttle, (uint64_t) (c->window_start + 1000000000) / 1000);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->throttle, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                return true; /* no timer: read on, rather than never again */
        c->throttled = true;
        conn_update_source(c);
        return false;
}

static int conn_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct conn *c = conn_ref(userdata);

        for (unsigned k = 0; k < SERVER_MSGS_PER_WAKEUP && !c->dead && !c->paused; k++) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * SERVER_MAX_FDS_IN)];
                } control;
                uint8_t buf[SCAV_MSG_MAX];
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                bool had_fds = false;
                ssize_t n;

                if (!conn_budget(c))
                        break;
                n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        log_debug_errno(negative_errno(), "pid %u: receive failed: %m", (unsigned) c->cred.pid);
                        goto close;
                }
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
                        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                                int *fds = (int *) CMSG_DATA(cm);
                                size_t nf = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t i = 0; i < nf; i++)
                                        close(fds[i]);
                                had_fds = true;
                        }
                if (n == 0)
                        goto close; /* hang-up */
                c->window_msgs++;
                if (had_fds || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                        log_warning("pid %u: malformed message (%s), closing connection", (unsigned) c->cred.pid,
                                    had_fds ? "unexpected file descriptors" : "packet too long");
                        goto close;
                }
                if (conn_dispatch(c, buf, (size_t) n) < 0)
                        goto close;
        }
        if (!c->dead && !c->paused && !c->throttled && revents & (EPOLLHUP | EPOLLERR) && !(revents & EPOLLIN))
                goto close;
        conn_unref(c);
        return 0;
close:
        conn_close(c);
        conn_unref(c);
        return 0;
}

static unsigned conns_of_uid(server *s, uid_t uid) {
        unsigned n = 0;

        for (struct conn *c = s->conns; c; c = c->next)
                n += c->cred.uid == uid;
        return n;
}

static int server_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        server *s = userdata;

        for (unsigned k = 0; k < 64; k++) {
                _cleanup_close_ int cfd = -EBADF;
                struct conn *c;
                socklen_t sl;
                int r;

                cfd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        if ((errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
                                /* The pending connection would wake us forever: take it
                                 * with the reserve descriptor and close it at once. */
                                log_warning_errno(negative_errno(), "out of descriptors, refusing a connection: %m");
                                closep(&s->reserve_fd);
                                closep(&(int) { accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC) });
                                s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                                continue;
                        }
                        log_warning_errno(negative_errno(), "accept failed: %m");
                        return 0;
                }
                c = calloc(1, sizeof(*c));
                if (!c)
                        return 0;
                sl = sizeof(c->cred);
                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &c->cred, &sl) < 0) {
                        log_warning_errno(negative_errno(), "SO_PEERCRED failed: %m");
                        free(c);
                        continue;
                }
                if (s->n_conns >= SERVER_MAX_CONNS ||
                    (c->cred.uid != 0 && conns_of_uid(s, c->cred.uid) >= SERVER_MAX_CONNS_PER_UID)) {
                        log_warning("pid %u uid %u: too many connections, refused", (unsigned) c->cred.pid,
                                    (unsigned) c->cred.uid);
                        free(c);
                        continue;
                }
                r = sd_event_add_io(s->m->event, &c->source, cfd, EPOLLIN, conn_io, c);
                if (r < 0) {
                        log_warning_errno(r, "cannot watch connection: %m");
                        free(c);
                        continue;
                }
                c->server = s;
                c->m = s->m;
                c->n_ref = 1;
                c->fd = TAKE_FD(cfd);
                c->next = s->conns;
                if (s->conns)
                        s->conns->prev = c;
                s->conns = c;
                s->n_conns++;
                log_debug("pid %u uid %u: connected", (unsigned) c->cred.pid, (unsigned) c->cred.uid);
        }
        return 0;
}

/* mkdir -p of the socket's directory (the last component only needs to exist). */
static int mkdir_parent(const char *path) {
        char dir[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        char *slash;

        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = 0;
        for (char *p = dir + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        (void) mkdir(dir, 0755);
                        *p = '/';
                }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

static int server_bind(server *s, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "socket path %s too long", path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "socket() failed: %m");
        r = mkdir_parent(path);
        if (r < 0)
                return log_error_errno(r, "cannot create the directory of %s: %m", path);

        /* A stale socket of a dead daemon is in the way; a live daemon is not. */
        if (lstat(path, &st) == 0) {
                _cleanup_close_ int probe = -EBADF;
                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(-EEXIST, "%s exists and is not a socket", path);
                probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return log_error_errno(-EADDRINUSE, "another daemon listens on %s", path);
                (void) unlink(path);
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(negative_errno(), "cannot bind %s: %m", path);
        /* Access is decided per pool from SO_PEERCRED; the directory decides who reaches the socket. */
        (void) chmod(path, 0666);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(negative_errno(), "cannot listen on %s: %m", path);
        snprintf(s->path, sizeof(s->path), "%s", path);
        s->own_path = true;
        return TAKE_FD(fd);
}

int server_new(struct manager *m, int listen_fd, const char *path, server **ret) {
        server *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s) {
                closep(&listen_fd);
                return -ENOMEM;
        }
        s->m = m;
        s->listen_fd = -EBADF;
        s->reserve_fd = -EBADF;

        if (listen_fd >= 0) {
                int type = 0;
                socklen_t l = sizeof(type);
                if (getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_SEQPACKET) {
                        close(listen_fd);
                        free(s);
                        return log_error_errno(-ESOCKTNOSUPPORT, "passed socket is not SOCK_SEQPACKET");
                }
                (void) fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
                s->listen_fd = listen_fd;
                log_info("listening on the socket passed by the service manager");
        } else {
                r = server_bind(s, path);
                if (r < 0) {
                        free(s);
                        return r;
                }
                s->listen_fd = r;
                log_info("listening on %s", path);
        }

        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        r = sd_event_add_io(m->event, &s->listen_source, s->listen_fd, EPOLLIN, server_accept, s);
        if (r < 0) {
                server_free(s);
                return log_error_errno(r, "cannot watch the listening socket: %m");
        }
        *ret = s;
        return 0;
}

server *server_free(server *s) {
        if (!s)
                return NULL;
        s->stopping = true;
        while (s->conns)
                conn_close(s->conns);
        sd_event_source_disable_unref(s->listen_source);
        closep(&s->listen_fd);
        closep(&s->reserve_fd);
        if (s->own_path)
                (void) unlink(s->path);
        free(s);
        return NULL;
}

unsigned server_connections(server *s) {
        return s ? s->n_conns : 0;
}

struct conn *server_conns(server *s) {
        return s ? s->conns : NULL;
}

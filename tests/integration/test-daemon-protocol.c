/* SPDX-License-Identifier: MIT */
/*
 * The daemon's side of the protocol, spoken raw over the socket: what a
 * HELLO brings (two sealed memfds), every refusal (-ENOENT, -EPROTO then
 * close, -EUSERS, -EISCONN, -ESTALE), the control requests, and that
 * malformed packets, packets carrying descriptors and random garbage each
 * close only their own connection and leak nothing in the daemon.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"
#include "../lib/daemon.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static const char config[] =
        "[pool main]\n"
        "capacity = 64M\n"
        "max_clients = 2\n"
        "[pool other]\n"
        "capacity = 8M\n";

static struct test_daemon d;

static int conn(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 10 };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.socket);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                close(fd);
                return -errno;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

/* Receives one packet; fds (up to 2) into fds[]. Returns its size, 0 on
 * hang-up, or a negative errno. */
static ssize_t recv_reply(int fd, void *buf, size_t len, int fds[2]) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        ssize_t n;

        if (fds)
                fds[0] = fds[1] = -1;
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
                return -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                int *in = (int *) CMSG_DATA(c);
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        if (fds && i < 2)
                                fds[i] = in[i];
                        else
                                close(in[i]);
                }
        }
        return n;
}

static void hello_msg(struct scav_msg_hello *m, const char *pool, uint32_t slot, uint64_t token) {
        memset(m, 0, sizeof(*m));
        scav_msg_init(&m->hdr, SCAV_MSG_HELLO, sizeof(*m));
        strncpy(m->pool, pool, sizeof(m->pool) - 1);
        m->slot = slot;
        m->token = token;
}

/* Opens a session; returns the connection (or -errno) and the reply. */
static int hello(const char *pool, uint32_t slot, uint64_t token, struct scav_msg_hello_reply *rep, int fds[2]) {
        struct scav_msg_hello m;
        int fd = conn();

        if (fd < 0)
                return fd;
        hello_msg(&m, pool, slot, token);
        if (send(fd, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m) ||
            recv_reply(fd, rep, sizeof(*rep), fds) != sizeof(*rep) ||
            scav_msg_parse(rep, sizeof(*rep), NULL) != SCAV_MSG_HELLO_REPLY) {
                close(fd);
                return -EBADMSG;
        }
        return fd;
}

/* A connection the daemon closed: the next receive sees the hang-up. */
static bool closed_by_daemon(int fd) {
        char buf[SCAV_MSG_MAX];
        return recv_reply(fd, buf, sizeof(buf), NULL) == 0;
}

static int pool_request(int fd, unsigned type, const char *pool, void *reply, size_t len) {
        struct scav_msg_pool_req m = {};
        ssize_t n;

        scav_msg_init(&m.hdr, type, sizeof(m));
        strncpy(m.pool, pool, sizeof(m.pool) - 1);
        if (send(fd, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m))
                return -errno;
        n = recv_reply(fd, reply, len, NULL);
        if (n <= 0 || scav_msg_parse(reply, (size_t) n, NULL) != (int) type + 1)
                return -EBADMSG;
        return ((struct scav_msg_hdr *) reply)->error;
}

static void test_hello(void) {
        struct scav_msg_hello_reply rep, rep2, rep3;
        int fds[2], fds2[2], fds3[2], a, b, c;
        struct stat st;

        a = hello("main", SCAV_SLOT_NONE, 0, &rep, fds);
        CHECK(a >= 0);
        if (a < 0)
                return;
        CHECK(rep.hdr.error == 0 && rep.slot >= 1 && rep.token != 0);
        CHECK_EQ_U64(rep.capacity, 64ull << 20);
        CHECK_EQ_U64(rep.page_size, 4096);
        CHECK(fds[0] >= 0 && fds[1] >= 0);
        if (fds[0] >= 0 && fds[1] >= 0) {
                int seals = fcntl(fds[1], F_GET_SEALS);
                CHECK(fstat(fds[0], &st) == 0 && (uint64_t) st.st_size == rep.meta_size);
                CHECK(fstat(fds[1], &st) == 0 && (uint64_t) st.st_size == rep.capacity);
                CHECKF((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
                               (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), "heap seals 0x%x", seals);
                CHECK(ftruncate(fds[1], 0) < 0 && errno == EPERM);
                CHECK(ftruncate(fds[0], 0) < 0 && errno == EPERM);
                CHECK(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
        }

        /* A second HELLO on one connection. */
        {
                struct scav_msg_hello m;
                hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
                CHECK(send(a, &m, sizeof(m), MSG_NOSIGNAL) == sizeof(m));
                CHECK(recv_reply(a, &rep2, sizeof(rep2), fds2) == sizeof(rep2));
                CHECK(rep2.hdr.error == -EISCONN && fds2[0] < 0);
        }

        /* max_clients = 2: the third session is refused, and a slot freed by
         * a hang-up is free again at once. */
        b = hello("main", SCAV_SLOT_NONE, 0, &rep2, fds2);
        CHECK(b >= 0 && rep2.hdr.error == 0 && rep2.slot != rep.slot);
        c = hello("main", SCAV_SLOT_NONE, 0, &rep3, fds3);
        CHECK(c >= 0 && rep3.hdr.error == -EUSERS && fds3[0] < 0);
        if (c >= 0)
                close(c);
        if (b >= 0)
                close(b);
        for (int i = 0; i < 2; i++)
                if (fds2[i] >= 0)
                        close(fds2[i]);
        for (int tries = 0; tries < 100; tries++) {
                c = hello("main", SCAV_SLOT_NONE, 0, &rep3, fds3);
                if (c >= 0 && rep3.hdr.error == 0)
                        break;
                if (c >= 0)
                        close(c);
                c = -1;
                usleep(10000);
        }
        CHECKF(c >= 0, "slot of a hung-up session not given back");
        if (c >= 0) {
                close(c);
                for (int i = 0; i < 2; i++)
                        if (fds3[i] >= 0)
                                close(fds3[i]);
        }

        /* Re-claiming a slot with the wrong token, or one that is busy. */
        c = hello("main", rep.slot, rep.token ^ 1, &rep3, fds3);
        CHECK(c >= 0 && rep3.hdr.error == -ESTALE);
        if (c >= 0)
                close(c);
        c = hello("main", 0, 5, &rep3, fds3);
        CHECK(c >= 0 && rep3.hdr.error == -ESTALE);
        if (c >= 0)
                close(c);

        /* Unknown pool: refused, connection kept for other requests. */
        c = hello("nosuchpool", SCAV_SLOT_NONE, 0, &rep3, fds3);
        CHECK(c >= 0 && rep3.hdr.error == -ENOENT);
        if (c >= 0) {
                char buf[SCAV_MSG_MAX];
                CHECK(pool_request(c, SCAV_MSG_CHECK, "other", buf, sizeof(buf)) == 0);
                close(c);
        }

        close(a);
        close(fds[0]);
        close(fds[1]);
}

static void test_version(void) {
        struct scav_msg_hello m;
        struct scav_msg_hello_reply rep;
        int fd = conn();

        CHECK(fd >= 0);
        if (fd < 0)
                return;
        hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
        m.hdr.version = SCAV_PROTO_VERSION + 1;
        CHECK(send(fd, &m, sizeof(m), MSG_NOSIGNAL) == sizeof(m));
        CHECK(recv_reply(fd, &rep, sizeof(rep), NULL) == sizeof(rep));
        CHECK(rep.hdr.type == SCAV_MSG_HELLO_REPLY && rep.hdr.error == -EPROTO);
        CHECK(closed_by_daemon(fd));
        close(fd);
}

static void test_control(void) {
        union {
                struct scav_msg_reply r;
                uint8_t raw[SCAV_MSG_MAX];
        } b;
        struct scav_msg_pool_status st;
        struct scav_msg_hello_reply rep;
        int fds[2], s, fd = conn();
        struct scav_msg_hdr h;
        ssize_t n;

        CHECK(fd >= 0);
        if (fd < 0)
                return;
        scav_msg_init(&h, SCAV_MSG_POOLS, sizeof(h));
        CHECK(send(fd, &h, sizeof(h), MSG_NOSIGNAL) == sizeof(h));
        n = recv_reply(fd, &b, sizeof(b), NULL);
        CHECK(n > 0 && scav_msg_parse(&b, (size_t) n, NULL) == SCAV_MSG_POOLS_REPLY);
        CHECK(b.r.count == strlen("main\nother\n") && memcmp(b.raw + sizeof(b.r), "main\nother\n", b.r.count) == 0);
        CHECK_EQ_U64(b.r.value, 2);

        s = hello("main", SCAV_SLOT_NONE, 0, &rep, fds);
        CHECK(pool_request(fd, SCAV_MSG_STATUS, "main", &b, sizeof(b)) == 0);
        memcpy(&st, b.raw + sizeof(b.r), sizeof(st));
        CHECK(b.r.count == 1 && strcmp(st.name, "main") == 0);
        CHECK_EQ_U64(st.capacity, 64ull << 20);
        CHECK_EQ_U64(st.clients, 1);
        CHECK_EQ_U64(st.connections, 1);
        CHECK_EQ_U64(st.max_clients, 2);
        CHECK(st.flags == 0);
        CHECK(pool_request(fd, SCAV_MSG_CLIENTS, "main", &b, sizeof(b)) == 0);
        CHECK(b.r.count == 1 && b.r.value == 1);
        if (b.r.count == 1) {
                struct scav_msg_client e;
                memcpy(&e, b.raw + sizeof(b.r), sizeof(e));
                CHECK(e.slot == rep.slot && e.pid == (uint32_t) getpid() && e.uid == getuid() && e.connected);
        }
        CHECK(pool_request(fd, SCAV_MSG_CHECK, "main", &b, sizeof(b)) == 0);
        CHECK(pool_request(fd, SCAV_MSG_SCAVENGE, "main", &b, sizeof(b)) == 0);
        CHECK(pool_request(fd, SCAV_MSG_STATUS, "nope", &b, sizeof(b)) == -ENOENT);
        if (s >= 0) {
                close(s);
                close(fds[0]);
                close(fds[1]);
        }
        close(fd);
}

static void send_and_expect_close(const char *name, const void *buf, size_t len, const int *pass_fds, int nfds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 2)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int fd = conn();

        CHECK(fd >= 0);
        if (fd < 0)
                return;
        if (nfds) {
                struct cmsghdr *c;
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
                memcpy(CMSG_DATA(c), pass_fds, sizeof(int) * nfds);
        }
        CHECKF(sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t) len, "%s: send failed", name);
        CHECKF(closed_by_daemon(fd), "%s: connection not closed", name);
        close(fd);
}

static void test_malformed(void) {
        uint8_t buf[SCAV_MSG_MAX + 64];
        struct scav_msg_hello m;
        int before, after, p[2];

        before = test_proc_fd_count(d.pid);

        hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
        send_and_expect_close("short", &m, 10, NULL, 0);
        send_and_expect_close("truncated hello", &m, sizeof(m) - 1, NULL, 0);
        m.hdr.magic = 0;
        send_and_expect_close("bad magic", &m, sizeof(m), NULL, 0);
        hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
        m.hdr.len += 1;
        send_and_expect_close("len lies", &m, sizeof(m), NULL, 0);
        hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
        m.hdr.type = 200;
        send_and_expect_close("unknown type", &m, sizeof(m), NULL, 0);
        hello_msg(&m, "../main", SCAV_SLOT_NONE, 0);
        send_and_expect_close("bad name", &m, sizeof(m), NULL, 0);
        hello_msg(&m, "main", SCAV_SLOT_NONE, 0);
        memset(m.pool, 'a', sizeof(m.pool));
        send_and_expect_close("unterminated name", &m, sizeof(m), NULL, 0);
        {
                struct scav_msg_reply r = {};
                scav_msg_init(&r.hdr, SCAV_MSG_SCAVENGE_REPLY, sizeof(r));
                send_and_expect_close("a reply sent to the daemon", &r, sizeof(r), NULL, 0);
        }
        memset(buf, 0, sizeof(buf));
        scav_msg_init((struct scav_msg_hdr *) buf, SCAV_MSG_POOLS, sizeof(buf));
        send_and_expect_close("oversized", buf, sizeof(buf), NULL, 0);

        /* Descriptors sent to the daemon are closed, with the connection. */
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        {
                struct scav_msg_hdr h;
                scav_msg_init(&h, SCAV_MSG_POOLS, sizeof(h));
                send_and_expect_close("with descriptors", &h, sizeof(h), p, 2);
        }
        close(p[0]);
        close(p[1]);

        /* Garbage, some of it with a plausible header. */
        srand(7);
        for (int i = 0; i < 1000; i++) {
                size_t n = (size_t) (rand() % 200) + 1;
                int fd = conn();
                if (fd < 0) {
                        CHECK(fd >= 0);
                        break;
                }
                for (size_t k = 0; k < n; k++)
                        buf[k] = (uint8_t) rand();
                if (n >= sizeof(struct scav_msg_hdr) && rand() % 2) {
                        struct scav_msg_hdr h;
                        memcpy(&h, buf, sizeof(h));
                        h.magic = SCAV_PROTO_MAGIC;
                        h.version = SCAV_PROTO_VERSION;
                        h.len = (uint32_t) n;
                        h.type = (uint16_t) (h.type % (_SCAV_MSG_MAX + 1));
                        memcpy(buf, &h, sizeof(h));
                }
                (void) send(fd, buf, n, MSG_NOSIGNAL);
                (void) recv_reply(fd, buf, sizeof(buf), NULL);
                close(fd);
        }

        /* Still serving, and nothing leaked. */
        {
                struct scav_msg_hello_reply rep;
                int fds[2], s = hello("other", SCAV_SLOT_NONE, 0, &rep, fds);
                CHECK(s >= 0 && rep.hdr.error == 0);
                if (s >= 0) {
                        close(s);
                        close(fds[0]);
                        close(fds[1]);
                }
        }
        for (int tries = 0; tries < 200; tries++) {
                after = test_proc_fd_count(d.pid);
                if (after <= before)
                        break;
                usleep(10000);
        }
        CHECKF(after <= before, "daemon descriptors: %d before, %d after", before, after);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();

        test_hello();
        test_version();
        test_control();
        test_malformed();

        CHECK(kill(d.pid, 0) == 0);
        test_daemon_finish(&d);
        return TEST_END();
}

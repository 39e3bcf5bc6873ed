/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: every error row of the API table is produced, and changes
 * nothing: the pool's statistics stay as they were and `scavctl check`
 * passes after each.
 */

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "proto.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

static struct test_daemon d;
static char config[1024];

/* Statistics that must not move when a call fails. */
static void same_stats(scav_pool *p, const struct scav_stats *before, const char *what) {
        struct scav_stats st;

        CHECK(scav_stats(p, &st) == 0);
        CHECKF(st.inuse == before->inuse && st.heap_sys == before->heap_sys &&
               st.clients == before->clients,
               "%s changed the pool: inuse %" PRIu64 " -> %" PRIu64 ", heap_sys %" PRIu64 " -> %" PRIu64
               ", clients %" PRIu64 " -> %" PRIu64,
               what, before->inuse, st.inuse, before->heap_sys, st.heap_sys, before->clients, st.clients);
        CHECKF(test_pool_check(&d, "main"), "check after %s", what);
        CHECKF(test_pool_check(&d, "tiny"), "check after %s", what);
}

#define EXPECT(call, want, what)                                                              \
        do {                                                                                  \
                int _r = (call);                                                              \
                CHECKF(_r == (want), "%s: got %d (%s), want %d (%s)", what, _r,              \
                       _r < 0 ? strerror(-_r) : "ok", (want), strerror(-(want)));             \
                same_stats(p, &before, what);                                                 \
        } while (0)

/* Sends a HELLO with another protocol version; returns the reply's error,
 * or -ECONNRESET if the daemon only hung up. */
static int raw_hello_wrong_version(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct scav_msg_hello req = {};
        char buf[SCAV_MSG_MAX];
        struct scav_msg_hdr *h = (struct scav_msg_hdr *) buf;
        ssize_t n;
        int fd, r;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.socket);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                close(fd);
                return -errno;
        }
        scav_msg_init(&req.hdr, SCAV_MSG_HELLO, sizeof(req));
        req.hdr.version = SCAV_PROTO_VERSION + 41;
        strcpy(req.pool, "main");
        req.slot = SCAV_SLOT_NONE;
        CHECK(send(fd, &req, sizeof(req), MSG_NOSIGNAL) == sizeof(req));
        n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
                r = -ECONNRESET;
        else if ((size_t) n < sizeof(*h))
                r = -EBADMSG;
        else
                r = h->error;
        /* Either way the daemon must hang up on us now or later; no slot taken. */
        close(fd);
        return r;
}

/* The daemon lets root into every pool: the -EACCES row needs another user. */
static int open_as_nobody(const char *pool) {
        int pfd[2], status;
        signed char c = 0;
        pid_t pid;

        if (geteuid() != 0) {
                scav_pool *q;
                int r = scav_open(pool, &q);
                if (r == 0)
                        scav_close(q);
                return r;
        }
        if (pipe(pfd) < 0)
                return -errno;
        pid = fork();
        if (pid == 0) {
                scav_pool *q;
                int r;
                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(1);
                r = scav_open(pool, &q);
                c = (signed char) r;
                _exit(write(pfd[1], &c, 1) == 1 ? 0 : 1);
        }
        close(pfd[1]);
        if (read(pfd[0], &c, 1) != 1)
                c = -EIO;
        close(pfd[0]);
        waitpid(pid, &status, 0);
        return c;
}

int main(void) {
        struct scav_stats before;
        scav_pool *p, *q, *extra[16];
        uint64_t off, off2;
        unsigned other_uid = getuid() == 4242 ? 4243 : 4242;
        int n_extra = 0, r;

        /* In use counts what this thread's caches hold, and a reap (a third
         * of a generation apart) takes back what they kept unused: no
         * generation during the test, so that only the calls under test
         * could change the figures. */
        snprintf(config, sizeof(config),
                 "[daemon]\n"
                 "generation_interval = 1h\n"
                 "[pool main]\n"
                 "capacity = 64M\n"
                 "[pool tiny]\n"
                 "capacity = 4M\n"
                 "max_clients = 3\n"
                 "[pool locked]\n"
                 "capacity = 4M\n"
                 "allow_users = %u\n",
                 other_uid);
        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();

        CHECK(scav_open("main", &p) == 0);
        CHECK(scav_alloc(p, 3 * 4096, 0, &off) == 0);   /* something live, to see it unchanged */
        CHECK(scav_stats(p, &before) == 0);

        /* scav_open's rows. */
        EXPECT(scav_open("nosuchpool", &q), -ENOENT, "unknown pool");
        EXPECT(open_as_nobody("locked"), -EACCES, "pool that does not allow us");
        EXPECT(scav_open("bad/name", &q), -EINVAL, "invalid pool name");
        EXPECT(scav_open(NULL, &q), -EINVAL, "NULL pool name");
        EXPECT(scav_open("main", NULL), -EINVAL, "NULL out");
        {
                char sock[100];
                int lfd;
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                /* No daemon: no socket file, then a socket file nobody listens on. */
                snprintf(sock, sizeof(sock), "%s/missing.sock", d.dir);
                setenv("SCAVD_SOCKET", sock, 1);
                EXPECT(scav_open("main", &q), -ECONNREFUSED, "socket missing");
                snprintf(sock, sizeof(sock), "%s/dead.sock", d.dir);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
                lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
                CHECK(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
                EXPECT(scav_open("main", &q), -ECONNREFUSED, "socket not listening");
                close(lfd);
                setenv("SCAVD_SOCKET", d.socket, 1);
        }
        r = raw_hello_wrong_version();
        CHECKF(r == -EPROTO, "HELLO with a wrong version: got %d (%s), want -EPROTO", r, strerror(-r));
        same_stats(p, &before, "HELLO with a wrong version");

        /* -EUSERS: fill the tiny pool's slots. */
        for (n_extra = 0; n_extra < 16; n_extra++) {
                r = scav_open("tiny", &extra[n_extra]);
                if (r < 0)
                        break;
        }
        CHECKF(r == -EUSERS, "opening tiny past its slots: %d (%s), want -EUSERS", r, strerror(-r));
        CHECKF(n_extra >= 1 && n_extra <= 3, "tiny (max_clients = 3) took %d clients", n_extra);
        printf("tiny pool: %d clients admitted, the next refused with -EUSERS\n", n_extra);
        same_stats(p, &before, "no free slot");
        /* Closing one makes room again. */
        if (n_extra > 0) {
                scav_close(extra[--n_extra]);
                r = scav_open("tiny", &extra[n_extra]);
                CHECKF(r == 0, "opening tiny after a close: %d (%s)", r, strerror(-r));
                if (r == 0)
                        n_extra++;
        }

        /* scav_alloc's rows. */
        EXPECT(scav_alloc(p, 0, 0, &off2), -EINVAL, "size 0");
        EXPECT(scav_alloc(p, 4096, 1u << 7, &off2), -EINVAL, "unknown flag");
        EXPECT(scav_alloc(p, 4096, SCAV_ALLOC_ZERO | (1u << 31), &off2), -EINVAL, "known + unknown flag");
        EXPECT(scav_alloc(p, 4096, 0, NULL), -EINVAL, "NULL off");
        EXPECT(scav_alloc(p, 65ull << 20, 0, &off2), -ENOMEM, "larger than the pool");
        EXPECT(scav_alloc(p, SIZE_MAX, 0, &off2), -ENOMEM, "SIZE_MAX");
        EXPECT(scav_alloc(p, 65ull << 20, SCAV_ALLOC_KEEP, &off2), -ENOMEM, "KEEP larger than the pool");

        /* -ENOMEM when the pool is full: tiny is 4 MiB. */
        if (n_extra > 0) {
                scav_pool *t = extra[0];
                uint64_t offs[8];
                int k = 0;
                struct scav_stats ts0, ts1;

                for (; k < 8; k++)
                        if (scav_alloc(t, 1 << 20, 0, &offs[k]) < 0)
                                break;
                CHECKF(k == 4, "a 4 MiB pool took %d allocations of 1 MiB", k);
                CHECK(scav_stats(t, &ts0) == 0);
                r = scav_alloc(t, 1 << 20, 0, &off2);
                CHECKF(r == -ENOMEM, "pool full: %d", r);
                r = scav_alloc(t, 4096, 0, &off2);
                CHECKF(r == -ENOMEM, "pool full, one page: %d", r);
                CHECK(scav_stats(t, &ts1) == 0);
                CHECK_EQ_U64(ts1.inuse, ts0.inuse);
                CHECK(test_pool_check(&d, "tiny"));
                for (int i = 0; i < k; i++)
                        CHECK(scav_free(t, offs[i]) == 0);
        }

        /* scav_free's rows. */
        CHECK(scav_alloc(p, 20 * 4096, 0, &off2) == 0);
        CHECK(scav_free(p, off2) == 0);
        CHECK(scav_stats(p, &before) == 0);
        EXPECT(scav_free(p, off2), -EINVAL, "double free (locked path)");
        EXPECT(scav_free(p, off + 4096), -EINVAL, "offset inside an allocation");
        EXPECT(scav_free(p, off + 1), -EINVAL, "unaligned offset");
        EXPECT(scav_free(p, 64ull << 20), -EINVAL, "offset at capacity");
        EXPECT(scav_free(p, UINT64_MAX & ~4095ull), -EINVAL, "offset far outside");
        EXPECT(scav_free(p, 60ull << 20), -EINVAL, "offset never allocated");
        CHECK(scav_free(p, off) == 0);
        CHECK(scav_stats(p, &before) == 0);
        EXPECT(scav_free(p, off), -EINVAL, "double free (cached path)");

        /* The other functions' bad input. */
        CHECK(scav_ptr(p, 64ull << 20) == NULL);
        CHECK(scav_ptr(NULL, 0) == NULL);
        CHECK(scav_offset(p, (char *) scav_ptr(p, 0) - 1, &off2) == -EINVAL);
        CHECK(scav_offset(p, &off2, &off2) == -EINVAL);
        CHECK(scav_offset(p, scav_ptr(p, 8192), &off2) == 0 && off2 == 8192);
        CHECK(scav_stats(p, NULL) == -EINVAL);
        CHECK(scav_stats(NULL, &before) == -EINVAL);
        CHECK(scav_alloc(NULL, 4096, 0, &off2) == -EINVAL);
        CHECK(scav_free(NULL, 0) == -EINVAL);
        CHECK(scav_scavenge(NULL, 0) == -EINVAL);
        CHECK(scav_heap_fd(NULL) == -EINVAL);
        scav_close(NULL);

        /* A forked child may not use its parent's slot. */
        {
                pid_t pid = fork();
                int status;
                if (pid == 0) {
                        uint64_t o;
                        int ok = scav_alloc(p, 4096, 0, &o) == -ECHILD && scav_free(p, 0) == -ECHILD &&
                                 scav_scavenge(p, 0) == -ECHILD && scav_ptr(p, 0) != NULL;
                        scav_close(p);  /* drops the child's view only */
                        _exit(ok ? 0 : 1);
                }
                CHECK(waitpid(pid, &status, 0) == pid);
                CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child with an inherited pool: 0x%x",
                       status);
                same_stats(p, &before, "a child closing its inherited handle");
                CHECK(scav_alloc(p, 4096, 0, &off2) == 0 && scav_free(p, off2) == 0);
        }

        for (int i = 0; i < n_extra; i++)
                scav_close(extra[i]);
        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * The client end of the socket (lib/scav-conn.c) does not trust the
 * daemon: a reply of another protocol version is -EPROTO, a malformed or
 * mismatched one -EBADMSG, a hang-up -ECONNRESET, silence -ETIMEDOUT; and
 * descriptors that come with a refused reply are closed, never leaked. The
 * peer here is the other end of a socketpair, playing the daemon.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/test.h"
#include "macro.h"
#include "proto.h"
#include "scav-conn.h"

TEST_DEFINE_GLOBALS;

enum reply_kind { GOOD, WRONG_VERSION, WRONG_MAGIC, WRONG_TYPE, WRONG_LEN, SHORT, HANGUP, SILENT, ERROR_FIELD };

static const struct {
        const char *name;
        enum reply_kind kind;
        bool with_fds;
        int want;
} cases[] = {
        { "good reply", GOOD, false, (int) sizeof(struct scav_msg_hello_reply) },
        { "good reply with fds", GOOD, true, (int) sizeof(struct scav_msg_hello_reply) },
        { "another protocol version", WRONG_VERSION, true, -EPROTO },
        { "bad magic", WRONG_MAGIC, true, -EBADMSG },
        { "reply of another type", WRONG_TYPE, true, -EBADMSG },
        { "length field lies", WRONG_LEN, false, -EBADMSG },
        { "shorter than a header", SHORT, false, -EBADMSG },
        { "daemon hangs up", HANGUP, false, -ECONNRESET },
        { "daemon says nothing", SILENT, false, -ETIMEDOUT },
        { "refusal (-ENOENT) is a valid reply", ERROR_FIELD, false, (int) sizeof(struct scav_msg_hello_reply) },
};

static int fd_count(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        while (d && (de = readdir(d)))
                n += de->d_name[0] != '.';
        if (d)
                closedir(d);
        return n;
}

/* Plays the daemon: queues the answer the case says before the request is
 * even sent (the call sends, then reads what is queued). */
static void peer_answer(int fd, enum reply_kind kind, bool with_fds) {
        struct scav_msg_hello_reply rep = {};
        size_t len = sizeof(rep);
        int fds[2] = { -1, -1 };

        scav_msg_init(&rep.hdr, SCAV_MSG_HELLO_REPLY, sizeof(rep));
        rep.slot = 1;
        rep.page_size = 4096;
        rep.capacity = 1 << 21;
        rep.meta_size = 1 << 20;
        rep.token = 42;
        switch (kind) {
        case GOOD: break;
        case WRONG_VERSION: rep.hdr.version++; break;
        case WRONG_MAGIC: rep.hdr.magic ^= 1; break;
        case WRONG_TYPE: rep.hdr.type = SCAV_MSG_STATUS_REPLY; break;
        case WRONG_LEN: rep.hdr.len += 8; break;
        case SHORT: len = 6; break;
        case HANGUP: shutdown(fd, SHUT_RDWR); return;
        case SILENT: return;
        case ERROR_FIELD: rep.hdr.error = -ENOENT; break;
        }
        if (with_fds) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * 2)];
                } control = {};
                struct iovec iov = { .iov_base = &rep, .iov_len = len };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

                fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(fds));
                memcpy(CMSG_DATA(c), fds, sizeof(fds));
                CHECK(sendmsg(fd, &mh, 0) == (ssize_t) len);
                close(fds[0]);
                close(fds[1]);
        } else
                CHECK(send(fd, &rep, len, 0) == (ssize_t) len);
}

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct scav_msg_hello req = {};
                struct scav_msg_hello_reply rep;
                int sv[2], fds[2], before, r;

                before = fd_count();
                CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
                scav_msg_init(&req.hdr, SCAV_MSG_HELLO, sizeof(req));
                strcpy(req.pool, "p");
                req.slot = SCAV_SLOT_NONE;
                peer_answer(sv[1], cases[i].kind, cases[i].with_fds);
                r = scav_conn_call(sv[0], &req, sizeof(req), &rep, sizeof(rep), fds, 2, 200);
                CHECKF(r == cases[i].want, "%s: got %d (%s), want %d", cases[i].name, r,
                       r < 0 ? strerror(-r) : "ok", cases[i].want);
                if (r >= 0 && cases[i].with_fds)
                        CHECKF(fds[0] >= 0 && fds[1] >= 0, "%s: descriptors not received", cases[i].name);
                if (r < 0)
                        CHECKF(fds[0] < 0 && fds[1] < 0, "%s: descriptors handed out with an error", cases[i].name);
                if (cases[i].kind == ERROR_FIELD)
                        CHECKF(rep.hdr.error == -ENOENT, "%s: error field %d", cases[i].name, rep.hdr.error);
                for (int k = 0; k < 2; k++)
                        if (fds[k] >= 0)
                                close(fds[k]);
                close(sv[0]);
                close(sv[1]);
                CHECKF(fd_count() == before, "%s: %d descriptors leaked", cases[i].name, fd_count() - before);
        }

        /* Connecting: no daemon is -ECONNREFUSED, whatever the reason. */
        {
                char path[] = "/tmp/scav-conn-test.XXXXXX", sock[64];
                int fd = -1, l;

                CHECK(mkdtemp(path) != NULL);
                snprintf(sock, sizeof(sock), "%s/none.sock", path);
                CHECK(scav_conn_connect(sock, &fd) == -ECONNREFUSED);
                l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
                {
                        struct sockaddr_un sa = { .sun_family = AF_UNIX };
                        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
                        CHECK(bind(l, (struct sockaddr *) &sa, sizeof(sa)) == 0);
                }
                CHECKF(scav_conn_connect(sock, &fd) == -ECONNREFUSED, "bound but not listening");
                CHECK(listen(l, 1) == 0);
                CHECK(scav_conn_connect(sock, &fd) == 0 && fd >= 0);
                close(fd);
                close(l);
                unlink(sock);
                rmdir(path);
                char longpath[200];
                memset(longpath, 'a', sizeof(longpath) - 1);
                longpath[sizeof(longpath) - 1] = 0;
                CHECK(scav_conn_connect(longpath, &fd) == -EINVAL);
                CHECK(scav_conn_connect("", &fd) == -EINVAL);
        }

        /* Pool names as the daemon accepts them. */
        {
                static const struct {
                        const char *name;
                        int ok;
                } names[] = {
                        { "default", 1 }, { "a.b-c_D9", 1 }, { "", 0 }, { "a/b", 0 }, { "a b", 0 },
                        { "ünï", 0 }, { NULL, 0 },
                        { "123456789012345678901234567890123456789012345678901234567890123", 1 },
                        { "1234567890123456789012345678901234567890123456789012345678901234", 0 },
                };
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        CHECKF(scav_pool_name_valid(names[i].name) == names[i].ok, "name \"%s\": %d",
                               names[i].name ? names[i].name : "(null)", !names[i].ok);
        }

        /* $SCAVD_SOCKET, else the system socket. */
        unsetenv("SCAVD_SOCKET");
        CHECK(strcmp(scav_socket_path(), "/run/scavd/scavd.sock") == 0);
        setenv("SCAVD_SOCKET", "/tmp/x.sock", 1);
        CHECK(strcmp(scav_socket_path(), "/tmp/x.sock") == 0);
        return TEST_END();
}

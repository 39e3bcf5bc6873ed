/* SPDX-License-Identifier: MIT */
/*
 * A client session with scavd: HELLO takes (or re-claims) a slot and brings
 * the pool's memfds; MAPPED tells the daemon where the heap is mapped, for
 * its page-fault accounting. The connection then stays open and silent: its
 * hang-up is how the daemon learns the client is gone.
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "scav-conn.h"
#include "scav-internal.h"

void scav_session_close(struct scav_session *s) {
        closep(&s->sock);
        closep(&s->meta_fd);
        closep(&s->heap_fd);
        s->sock = s->meta_fd = s->heap_fd = -1;
}

int scav_session_hello(const char *socket, const char *pool, uint32_t slot, uint64_t token,
                       int timeout_ms, struct scav_session *ret) {
        struct scav_session s = { .sock = -1, .meta_fd = -1, .heap_fd = -1 };
        struct scav_msg_hello req = {};
        struct scav_msg_hello_reply rep = {};
        int fds[2], r;

        if (!scav_pool_name_valid(pool))
                return -EINVAL;

        r = scav_conn_connect(socket, &s.sock);
        if (r < 0)
                return r;

        scav_msg_init(&req.hdr, SCAV_MSG_HELLO, sizeof(req));
        strncpy(req.pool, pool, sizeof(req.pool) - 1);
        req.slot = slot;
        req.token = token;

        r = scav_conn_call(s.sock, &req, sizeof(req), &rep, sizeof(rep), fds, 2, timeout_ms);
        if (r < 0)
                goto fail;
        s.meta_fd = fds[0];
        s.heap_fd = fds[1];
        if (rep.hdr.error < 0) {
                r = rep.hdr.error;
                goto fail;
        }
        if ((size_t) r != sizeof(rep) || s.meta_fd < 0 || s.heap_fd < 0 || rep.page_size == 0 ||
            rep.meta_size == 0 || rep.capacity == 0) {
                r = -EBADMSG;
                goto fail;
        }
        s.slot = rep.slot;
        s.token = rep.token;
        s.page_size = rep.page_size;
        s.meta_size = rep.meta_size;
        s.capacity = rep.capacity;
        *ret = s;
        return 0;
fail:
        scav_session_close(&s);
        return r;
}

int scav_session_mapped(int sock, const void *addr, uint64_t len, int timeout_ms) {
        struct scav_msg_mapped req = {};
        struct scav_msg_reply rep = {};
        int r;

        scav_msg_init(&req.hdr, SCAV_MSG_MAPPED, sizeof(req));
        req.addr = (uint64_t) (uintptr_t) addr;
        req.len = len;
        r = scav_conn_call(sock, &req, sizeof(req), &rep, sizeof(rep), NULL, 0, timeout_ms);
        if (r < 0)
                return r;
        /* The daemon may not watch faults (no BPF): that is not our failure. */
        return 0;
}

/*
 * The daemon went away and is back (or still away: then this fails and the
 * reconnect thread tries again later). Re-claims the slot with its token; if
 * the daemon reclaimed it meanwhile (we were taken for dead), takes a fresh
 * one, since the old one's allocations and caches are gone either way. A
 * daemon that came back with another heap (it lost its memfds) leaves the
 * pool lost: our mapping is not the pool any more.
 */
int scav_session_reconnect(const struct scav_reconnect *rc, struct scav_session *ret) {
        struct scav_session s;
        struct stat st;
        int r;

        /* No time limit: with socket activation our HELLO may wait in the
         * listening socket's queue while the daemon is away. Abandoning it
         * would let the daemon, once back, re-claim the slot for a dead
         * connection and then reclaim it, and our allocations with it. */
        r = scav_session_hello(rc->socket, rc->name, rc->slot, rc->token, SCAV_CONN_TIMEOUT_FOREVER, &s);
        if (r == -ESTALE)
                r = scav_session_hello(rc->socket, rc->name, SCAV_SLOT_NONE, 0, SCAV_CONN_TIMEOUT_FOREVER,
                                       &s);
        if (r < 0)
                return r;

        if (fstat(s.heap_fd, &st) < 0 || st.st_dev != rc->heap_dev || st.st_ino != rc->heap_ino ||
            s.meta_size != rc->meta_size || s.capacity != rc->capacity) {
                scav_session_close(&s);
                return -ESTALE;
        }
        r = scav_session_mapped(s.sock, rc->base, rc->capacity, SCAV_CONN_TIMEOUT_FOREVER);
        if (r < 0) {
                scav_session_close(&s);
                return r;
        }
        closep(&s.meta_fd);
        closep(&s.heap_fd);
        s.meta_fd = s.heap_fd = -1;
        *ret = s;
        return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The socket side of the daemon. A connection is a session: whatever slot
 * it claimed is the client's for as long as the connection lives, and is
 * reclaimed the moment it goes away, so a client killed with SIGKILL gives
 * its memory back without anyone polling for it.
 *
 * Nothing a peer sends is trusted: each packet goes through
 * scav_msg_parse() before a field is read, descriptors sent to us are
 * closed, and a malformed packet ends that connection only.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#define SERVER_MAX_FDS_IN 8
#define SERVER_MSGS_PER_WAKEUP 16
/* Connections one non-root user may hold open: enough for any real set of
 * clients, few enough that one user cannot take every descriptor. */
#define SERVER_MAX_CONNS_PER_UID 2048u
#define SERVER_MAX_CONNS 16384u

struct conn {
        server *server;
        int fd;
        sd_event_source *source;
        struct ucred cred;
        struct pool *pool;       /* after HELLO */
        uint32_t slot;
        bool has_slot;
        struct conn *prev, *next;
};

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

/* An adopted live slot whose client has not come back yet. */
struct orphan {
        struct manager *m;
        struct pool *pool;
        uint32_t slot, pid;
        int pidfd;
        sd_event_source *source;
};

union reply_buf {
        struct scav_msg_hdr hdr;
        struct scav_msg_reply reply;
        struct scav_msg_hello_reply hello;
        uint8_t raw[SCAV_MSG_MAX];
};

static void pool_quarantine(struct manager *m, struct pool *p) {
        if (p->scavenging) {
                scavenger_remove_pool(m->scavenger, p);
                p->scavenging = false;
        }
        p->quarantined = true;
}

static bool pid_has_session(struct manager *m, uint32_t pid) {
        if (!m->server)
                return false;
        for (struct conn *c = m->server->conns; c; c = c->next)
                if (c->has_slot && c->pool && (uint32_t) c->cred.pid == pid &&
                    c->pool->slots[c->slot].conn == c)
                        return true;
        return false;
}

/* Gives a slot back to the heap: page caches, non-KEEP allocations, an
 * interrupted scavenge. */
static void slot_reclaim(struct manager *m, struct pool *p, uint32_t slot, uint32_t pid, const char *why) {
        int64_t n;

        if (slot == 0 || slot >= p->n_slots)
                return;
        n = heap_slot_reclaim(p->heap, slot);
        if (n == -ESTALE)
                /* scav_close() gave the slot back itself. */
                log_info("pool %s: client pid %u (slot %u) %s after closing its slot", p->cfg.name, pid, slot, why);
        else if (n < 0) {
                /* A quarantined pool was reported once; its later refusals are noise. */
                log_full_errno(p->quarantined && n == -EUCLEAN ? LOG_DEBUG : LOG_ERR, (int) n,
                               "pool %s: cannot reclaim slot %u of pid %u (%s): %m", p->cfg.name, slot, pid, why);
                if (n == -EUCLEAN) {
                        (void) pool_check(p, NULL, 0);
                        pool_quarantine(m, p);
                }
        } else
                log_info("pool %s: client pid %u (slot %u) %s: reclaimed %lld pages", p->cfg.name, pid, slot,
                         why, (long long) n);
        p->slots[slot].token = 0;
        p->slots[slot].conn = NULL;
        /* The process may still have another pool open: only forget its
         * mappings with its last session. */
        if (m->kernel && !pid_has_session(m, pid))
                kernel_watch_remove_process(m->kernel, (pid_t) pid);
        /* A parked pool looks again: the slot's pages may have come back. */
        if (p->scavenging)
                scavenger_wake(m->scavenger, p);
}

/* ---- orphans of an adopted pool ---- */

static struct orphan *orphan_free(struct orphan *o) {
        if (!o)
                return NULL;
        sd_event_source_disable_unref(o->source);
        closep(&o->pidfd);
        if (o->pool->slots[o->slot].orphan == o)
                o->pool->slots[o->slot].orphan = NULL;
        free(o);
        return NULL;
}

static int orphan_exited(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct orphan *o = userdata;
        struct manager *m = o->m;
        struct pool *p = o->pool;
        uint32_t slot = o->slot, pid = o->pid;

        orphan_free(o);
        slot_reclaim(m, p, slot, pid, "exited before reconnecting");
        manager_pool_maybe_drop(m, p);
        manager_notify_status(m);
        return 0;
}

void server_watch_orphans(struct manager *m, struct pool *p) {
        for (uint32_t slot = 1; slot < p->n_slots; slot++) {
                struct heap_slot_info info;
                struct orphan *o;
                int pidfd, r;

                if (p->slots[slot].conn || p->slots[slot].orphan)
                        continue;
                if (heap_slot_info(p->heap, slot, &info) < 0)
                        continue;
                pidfd = info.pid > 0 ? (int) syscall(SYS_pidfd_open, (pid_t) info.pid, 0) : -1;
                if (pidfd < 0) {
                        slot_reclaim(m, p, slot, info.pid, "gone while the daemon was away");
                        continue;
                }
                o = calloc(1, sizeof(*o));
                if (!o) {
                        close(pidfd);
                        continue;
                }
                *o = (struct orphan) { .m = m, .pool = p, .slot = slot, .pid = info.pid, .pidfd = pidfd };
                r = sd_event_add_io(m->event, &o->source, pidfd, EPOLLIN, orphan_exited, o);
                if (r < 0) {
                        log_warning_errno(r, "pool %s: cannot watch pid %u of slot %u: %m", p->cfg.name,
                                          info.pid, slot);
                        close(pidfd);
                        free(o);
                        continue;
                }
                p->slots[slot].orphan = o;
                log_info("pool %s: slot %u of pid %u kept for its client to reconnect", p->cfg.name, slot,
                         info.pid);
        }
}

void server_forget_pool(struct manager *m, struct pool *p) {
        for (uint32_t slot = 0; slot < p->n_slots; slot++)
                orphan_free(p->slots[slot].orphan);
        if (m->server)
                for (struct conn *c = m->server->conns; c; c = c->next)
                        if (c->pool == p) {
                                c->pool = NULL;
                                c->has_slot = false;
                        }
}

/* ---- sending ---- */

static int conn_send(struct conn *c, const void *buf, size_t len, const int *fds, unsigned nfds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 2)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

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

static int reply_simple(struct conn *c, unsigned type, int error, uint64_t value) {
        struct scav_msg_reply r = { .value = value };

        scav_msg_init(&r.hdr, type, sizeof(r));
        r.hdr.error = error;
        return conn_send(c, &r, sizeof(r), NULL, 0);
}

static int reply_text(struct conn *c, unsigned type, int error, uint64_t value, const char *text) {
        union reply_buf b = {};
        size_t n = strnlen(text, sizeof(b) - sizeof(b.reply));

        memcpy(b.raw + sizeof(b.reply), text, n);
        b.reply.value = value;
        b.reply.count = (uint32_t) n;
        scav_msg_init(&b.hdr, type, sizeof(b.reply) + n);
        b.hdr.error = error;
        return conn_send(c, &b, sizeof(b.reply) + n, NULL, 0);
}

/* ---- requests ---- */

static int handle_hello(struct conn *c, const struct scav_msg_hello *m) {
        struct manager *mgr = c->server->m;
        struct scav_msg_hello_reply rep = {};
        struct pool *p;
        uint32_t slot;
        bool reconnect = m->slot != SCAV_SLOT_NONE;
        int r;

        scav_msg_init(&rep.hdr, SCAV_MSG_HELLO_REPLY, sizeof(rep));
        rep.slot = SCAV_SLOT_NONE;

#define REFUSE(err, ...)                                                  \
        do {                                                              \
                log_info(__VA_ARGS__);                                    \
                rep.hdr.error = (err);                                    \
                return conn_send(c, &rep, sizeof(rep), NULL, 0);          \
        } while (0)

        if (c->has_slot)
                REFUSE(-EISCONN, "pid %u: second HELLO on one connection refused", (unsigned) c->cred.pid);
        p = manager_find_pool(mgr, m->pool);
        if (!p || (p->draining && !reconnect))
                REFUSE(-ENOENT, "pid %u: unknown pool '%s'", (unsigned) c->cred.pid, m->pool);
        if (p->quarantined)
                REFUSE(-EUCLEAN, "pool %s: pid %u refused: pool quarantined", p->cfg.name, (unsigned) c->cred.pid);
        if (!access_peer_allowed(&p->cfg, &c->cred))
                REFUSE(-EACCES, "pool %s: pid %u uid %u gid %u not allowed", p->cfg.name, (unsigned) c->cred.pid,
                       (unsigned) c->cred.uid, (unsigned) c->cred.gid);

        if (reconnect) {
                struct heap_slot_info info;

                slot = m->slot;
                if (slot == 0 || slot >= p->n_slots || p->slots[slot].conn)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: not available", p->cfg.name,
                               (unsigned) c->cred.pid, slot);
                /* A token we know must match; one we cannot know (the slot
                 * predates this daemon) is replaced by the slot's pid. */
                if (p->slots[slot].token != 0 && p->slots[slot].token != m->token)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: wrong token", p->cfg.name,
                               (unsigned) c->cred.pid, slot);
                if (heap_slot_info(p->heap, slot, &info) < 0 || info.uid != c->cred.uid)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: not its slot", p->cfg.name,
                               (unsigned) c->cred.pid, slot);
                r = heap_slot_reclaim_for(p->heap, slot, (uint32_t) c->cred.pid);
                if (r < 0)
                        REFUSE(r, "pool %s: pid %u cannot re-claim slot %u: %s", p->cfg.name,
                               (unsigned) c->cred.pid, slot, strerror(-r));
                orphan_free(p->slots[slot].orphan);
                log_info("pool %s: pid %u re-claimed slot %u", p->cfg.name, (unsigned) c->cred.pid, slot);
        } else {
                if (p->n_clients >= p->cfg.max_clients)
                        REFUSE(-EUSERS, "pool %s: pid %u refused: all %u client slots taken", p->cfg.name,
                               (unsigned) c->cred.pid, p->cfg.max_clients);
                r = heap_slot_claim(p->heap, (uint32_t) c->cred.pid, (uint32_t) c->cred.uid, &slot);
                if (r < 0)
                        REFUSE(r, "pool %s: pid %u refused: cannot claim a slot: %s", p->cfg.name,
                               (unsigned) c->cred.pid, strerror(-r));
                if (slot >= p->n_slots) {
                        /* The heap handed out a slot beyond what it told us: do not index with it. */
                        (void) heap_slot_reclaim(p->heap, slot);
                        REFUSE(-EUCLEAN, "pool %s: heap returned slot %u out of range", p->cfg.name, slot);
                }
                log_info("pool %s: pid %u uid %u connected (slot %u)", p->cfg.name, (unsigned) c->cred.pid,
                         (unsigned) c->cred.uid, slot);
        }
#undef REFUSE

        do {
                if (getrandom(&rep.token, sizeof(rep.token), GRND_NONBLOCK) != sizeof(rep.token))
                        rep.token = ((uint64_t) rand() << 32) ^ (uint64_t) rand() ^ (uint64_t) (uintptr_t) c;
        } while (rep.token == 0);

        /* A client that gave its slot back with scav_close() and whose
         * hang-up we have not seen yet: the slot is someone else's now, so
         * that hang-up must not reclaim it. */
        if (p->slots[slot].conn) {
                struct conn *old = p->slots[slot].conn;
                old->has_slot = false;
                if (p->n_clients > 0)
                        p->n_clients--;
        }
        c->pool = p;
        c->slot = slot;
        c->has_slot = true;
        p->slots[slot].conn = c;
        p->slots[slot].token = rep.token;
        p->n_clients++;

        rep.slot = slot;
        rep.page_size = heap_page_size(p->heap);
        rep.meta_size = p->meta_size;
        rep.capacity = heap_capacity(p->heap);
        r = conn_send(c, &rep, sizeof(rep), (int[]) { p->meta_fd, p->heap_fd }, 2);
        /* A parked pool looks again: its new client is about to use it. */
        if (p->scavenging)
                scavenger_wake(mgr->scavenger, p);
        manager_notify_status(mgr);
        return r;
}

static int handle_mapped(struct conn *c, const struct scav_msg_mapped *m) {
        struct manager *mgr = c->server->m;
        int r = 0;

        if (!c->has_slot || !c->pool)
                return reply_simple(c, SCAV_MSG_MAPPED_REPLY, -ENOTCONN, 0);
        if (mgr->kernel)
                r = kernel_watch_add_mapping(mgr->kernel, c->cred.pid, m->addr, m->len, c->pool->id, c->slot);
        return reply_simple(c, SCAV_MSG_MAPPED_REPLY, r < 0 ? r : 0, 0);
}

static int handle_pools(struct conn *c) {
        struct manager *mgr = c->server->m;
        char text[SCAV_MSG_MAX - sizeof(struct scav_msg_reply) + 1];
        size_t n = 0;

        for (unsigned i = 0; i < mgr->n_pools; i++) {
                size_t l = strlen(mgr->pools[i]->cfg.name);
                if (n + l + 1 > sizeof(text) - 1)
                        break;
                memcpy(text + n, mgr->pools[i]->cfg.name, l);
                text[n + l] = '\n';
                n += l + 1;
        }
        text[n] = 0;
        return reply_text(c, SCAV_MSG_POOLS_REPLY, 0, mgr->n_pools, text);
}

static void fill_status(struct manager *mgr, struct pool *p, struct scav_msg_pool_status *st) {
        struct heap_stats hs = {};

        memset(st, 0, sizeof(*st));
        (void) heap_get_stats(p->heap, &hs);
        snprintf(st->name, sizeof(st->name), "%s", p->cfg.name);
        st->flags = (p->quarantined ? SCAV_POOL_QUARANTINED : 0) | (p->draining ? SCAV_POOL_DRAINING : 0);
        st->page_size = heap_page_size(p->heap);
        st->capacity = heap_capacity(p->heap);
        st->heap_sys = hs.heap_sys;
        st->inuse = hs.inuse;
        st->released = hs.released;
        st->retained = hs.retained;
        st->retained_goal = hs.retained_goal;
        st->memory_limit = hs.memory_limit;
        st->peak_inuse = hs.peak_inuse;
        st->gen = hs.gen;
        st->gen_released = hs.gen_released;
        st->released_total = hs.released_total;
        st->growth_scavenged = hs.growth_scavenged;
        st->clients = hs.clients;
        st->connections = p->n_clients;
        st->max_clients = p->cfg.max_clients;
        st->recoveries = hs.recoveries;
        if (mgr->kernel) {
                st->faults = kernel_watch_faults(mgr->kernel, p->id);
                st->pressure_events = kernel_watch_pressure_events(mgr->kernel);
        }
        st->refaults = p->refaults;
}

static int handle_status(struct conn *c, struct pool *p) {
        union reply_buf b = {};
        struct scav_msg_pool_status st;
        size_t n = sizeof(b.reply) + sizeof(st);

        fill_status(c->server->m, p, &st);
        memcpy(b.raw + sizeof(b.reply), &st, sizeof(st));
        b.reply.count = 1;
        scav_msg_init(&b.hdr, SCAV_MSG_STATUS_REPLY, n);
        return conn_send(c, &b, n, NULL, 0);
}

static int handle_clients(struct conn *c, struct pool *p) {
        struct manager *mgr = c->server->m;
        union reply_buf b = {};
        size_t max = (sizeof(b) - sizeof(b.reply)) / sizeof(struct scav_msg_client);
        uint32_t count = 0, live = 0;

        for (uint32_t slot = 1; slot < p->n_slots; slot++) {
                struct heap_slot_info info;
                struct scav_msg_client e = {};

                if (heap_slot_info(p->heap, slot, &info) < 0)
                        continue;
                live++;
                if (count >= max)
                        continue;
                e.slot = slot;
                e.pid = info.pid;
                e.uid = info.uid;
                e.connected = p->slots[slot].conn != NULL;
                e.inuse_pages = info.inuse_pages;
                e.cached_pages = info.cached_pages;
                if (mgr->kernel)
                        e.faults = kernel_watch_slot_faults(mgr->kernel, p->id, slot);
                memcpy(b.raw + sizeof(b.reply) + count * sizeof(e), &e, sizeof(e));
                count++;
        }
        b.reply.count = count;
        b.reply.value = live;
        scav_msg_init(&b.hdr, SCAV_MSG_CLIENTS_REPLY, sizeof(b.reply) + count * sizeof(struct scav_msg_client));
        return conn_send(c, &b, b.hdr.len, NULL, 0);
}

static int handle_check(struct conn *c, struct pool *p) {
        struct manager *mgr = c->server->m;
        char reason[256];
        int r;

        r = pool_check(p, reason, sizeof(reason));
        if (r < 0) {
                pool_quarantine(mgr, p);
                manager_notify_status(mgr);
        }
        return reply_text(c, SCAV_MSG_CHECK_REPLY, r < 0 ? r : 0, 0, r < 0 ? reason : "");
}

static int handle_scavenge(struct conn *c, struct pool *p, uint64_t bytes) {
        struct manager *mgr = c->server->m;
        int64_t n;

        if (p->quarantined)
                return reply_simple(c, SCAV_MSG_SCAVENGE_REPLY, -EUCLEAN, 0);
        if (p->scavenging)
                n = scavenger_force(mgr->scavenger, p, bytes, "scavctl");
        else    /* not scheduled (the scavenger refused it): release directly */
                n = heap_scavenge(p->heap, 0, bytes ? bytes : UINT64_MAX);
        if (n < 0)
                return reply_simple(c, SCAV_MSG_SCAVENGE_REPLY, (int) n, 0);
        log_info("pool %s: forced scavenge by pid %u released %lld bytes", p->cfg.name, (unsigned) c->cred.pid,
                 (long long) n);
        return reply_simple(c, SCAV_MSG_SCAVENGE_REPLY, 0, (uint64_t) n);
}

static int handle_reload(struct conn *c) {
        struct manager *mgr = c->server->m;
        char err[512] = "";
        int r;

        if (c->cred.uid != 0 && c->cred.uid != mgr->uid) {
                log_info("pid %u uid %u: RELOAD refused", (unsigned) c->cred.pid, (unsigned) c->cred.uid);
                return reply_text(c, SCAV_MSG_RELOAD_REPLY, -EPERM, 0, "only root or the daemon's user may reload");
        }
        r = manager_reload(mgr, err, sizeof(err));
        return reply_text(c, SCAV_MSG_RELOAD_REPLY, r < 0 ? r : 0, 0, r < 0 ? err : "");
}

/* Returns < 0 to close the connection. */
static int conn_dispatch(struct conn *c, const uint8_t *buf, size_t n) {
        struct manager *mgr = c->server->m;
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
                return handle_hello(c, &m);
        }
        case SCAV_MSG_MAPPED: {
                struct scav_msg_mapped m;
                memcpy(&m, buf, sizeof(m));
                return handle_mapped(c, &m);
        }
        case SCAV_MSG_POOLS:
                return handle_pools(c);
        case SCAV_MSG_WAKE:
                /* Not answered: the client does not wait, and its session
                 * socket is read by no one on its side. */
                if (c->has_slot && c->pool && c->pool->scavenging)
                        scavenger_wake(mgr->scavenger, c->pool);
                return 0;
        case SCAV_MSG_RELOAD:
                return handle_reload(c);
        case SCAV_MSG_SCAVENGE:
        case SCAV_MSG_STATUS:
        case SCAV_MSG_CLIENTS:
        case SCAV_MSG_CHECK: {
                struct scav_msg_pool_req m;
                struct pool *p;

                memcpy(&m, buf, sizeof(m));
                p = manager_find_pool(mgr, m.pool);
                if (!p)
                        return reply_simple(c, type + 1, -ENOENT, 0);
                if (!access_peer_allowed(&p->cfg, &c->cred))
                        return reply_simple(c, type + 1, -EACCES, 0);
                switch (type) {
                case SCAV_MSG_SCAVENGE:
                        return handle_scavenge(c, p, m.bytes);
                case SCAV_MSG_STATUS:
                        return handle_status(c, p);
                case SCAV_MSG_CLIENTS:
                        return handle_clients(c, p);
                default:
                        return handle_check(c, p);
                }
        }
        default:
                /* Replies have no business arriving here. */
                log_warning("pid %u: unexpected message type %d, closing connection", (unsigned) c->cred.pid, type);
                return -EBADMSG;
        }
}

/* ---- connections ---- */

static void conn_free(struct conn *c) {
        server *s = c->server;
        struct manager *m = s->m;
        struct pool *p = c->pool;

        if (s->stopping) {
                /* The daemon goes, the client stays: its slot waits in the
                 * stored memfds for it to reconnect to the next daemon. */
                if (c->has_slot && p)
                        p->slots[c->slot].conn = NULL;
                p = NULL;
        } else if (c->has_slot && p && p->slots[c->slot].conn == c) {
                slot_reclaim(m, p, c->slot, (uint32_t) c->cred.pid, "hung up");
                if (p->n_clients > 0)
                        p->n_clients--;
        }
        sd_event_source_disable_unref(c->source);
        closep(&c->fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_conns--;
        free(c);
        if (p) {
                manager_pool_maybe_drop(m, p);
                manager_notify_status(m);
        }
}

static int conn_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;

        for (unsigned k = 0; k < SERVER_MSGS_PER_WAKEUP; k++) {
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
                if (had_fds || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                        log_warning("pid %u: malformed message (%s), closing connection", (unsigned) c->cred.pid,
                                    had_fds ? "unexpected file descriptors" : "packet too long");
                        goto close;
                }
                if (conn_dispatch(c, buf, (size_t) n) < 0)
                        goto close;
        }
        if (revents & (EPOLLHUP | EPOLLERR) && !(revents & EPOLLIN))
                goto close;
        return 0;
close:
        conn_free(c);
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
                conn_free(s->conns);
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

/* SPDX-License-Identifier: MIT */
/*
 * Client sessions. A connection that said HELLO holds a slot of its pool
 * for as long as it lives; its hang-up reclaims the slot at once (page
 * caches, non-KEEP allocations, an interrupted scavenge), so a client
 * killed with SIGKILL gives its memory back without anyone polling. After
 * a daemon restart, live slots of the adopted pools wait for their clients
 * to reconnect (HELLO with the old slot), watched through pidfds.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "manager.h"
#include "proto.h"
#include "server.h"
#include "session.h"

/* An adopted live slot whose client has not come back yet. */
struct orphan {
        struct manager *m;
        struct pool *pool;
        uint32_t slot, pid;
        int pidfd;
        sd_event_source *source;
};

static bool pid_has_session(struct manager *m, uint32_t pid) {
        for (struct conn *c = server_conns(m->server); c; c = c->next)
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
                        manager_pool_quarantine(m, p);
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

void session_pool_adopted(struct manager *m, struct pool *p) {
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

void session_pool_dropped(struct manager *m, struct pool *p) {
        for (uint32_t slot = 0; slot < p->n_slots; slot++)
                orphan_free(p->slots[slot].orphan);
        for (struct conn *c = server_conns(m->server); c; c = c->next)
                        if (c->pool == p) {
                                c->pool = NULL;
                                c->has_slot = false;
                        }
}

int session_hello(struct conn *c, const struct scav_msg_hello *m) {
        struct manager *mgr = c->m;
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

int session_mapped(struct conn *c, const struct scav_msg_mapped *m) {
        struct manager *mgr = c->m;
        int r = 0;

        if (!c->has_slot || !c->pool)
                return conn_reply(c, SCAV_MSG_MAPPED_REPLY, -ENOTCONN, 0);
        if (mgr->kernel)
                r = kernel_watch_add_mapping(mgr->kernel, c->cred.pid, m->addr, m->len, c->pool->id, c->slot);
        return conn_reply(c, SCAV_MSG_MAPPED_REPLY, r < 0 ? r : 0, 0);
}


void session_wake(struct conn *c) {
        /* Not answered: the client does not wait, and its session socket is
         * read by no one on its side. */
        if (c->has_slot && c->pool && c->pool->scavenging)
                scavenger_wake(c->m->scavenger, c->pool);
}

void session_hangup(struct conn *c, bool stopping) {
        struct manager *m = c->m;
        struct pool *p = c->pool;

        if (!p)
                return;
        if (stopping) {
                /* The daemon goes, the client stays: its slot waits in the
                 * stored memfds for it to reconnect to the next daemon. */
                if (c->has_slot)
                        p->slots[c->slot].conn = NULL;
                return;
        }
        if (c->has_slot && p->slots[c->slot].conn == c) {
                slot_reclaim(m, p, c->slot, (uint32_t) c->cred.pid, "hung up");
                if (p->n_clients > 0)
                        p->n_clients--;
        }
        manager_pool_maybe_drop(m, p);
        manager_notify_status(m);
}

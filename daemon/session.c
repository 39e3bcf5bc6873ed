/* SPDX-License-Identifier: MIT */
/*
 * Client sessions. A connection that said HELLO holds a slot of its pool
 * for as long as it lives; its hang-up reclaims the slot at once (page
 * caches, non-KEEP allocations, an interrupted scavenge), so a client
 * killed with SIGKILL gives its memory back without anyone polling. After
 * a daemon restart, live slots of the adopted pools wait for their clients
 * to reconnect (HELLO with the old slot), watched through pidfds.
 *
 * Claiming and reclaiming touch the pool's shared memory: they are jobs on
 * the pool's worker (pool_post), and the HELLO that waits for one pauses
 * its connection. What the daemon knows of a slot (state, owner, session)
 * is its own (struct pool_slot), never read back from the heap.
 *
 * Slots: max_clients in all; reserved_clients of them only for root and
 * the daemon's user; max_clients_per_user for any other user. A client
 * refused by the first two gets -EUSERS, by the last -EDQUOT.
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
#include "poolwork.h"
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

/* ---- reclaiming a slot ---- */

struct reclaim_job {
        struct pool_job pj;
        struct manager *m;
        uint32_t slot, pid;
        char why[48];
        int64_t pages;
};

static void reclaim_run(struct pool_job *pj) {
        struct reclaim_job *j = (struct reclaim_job *) pj;

        j->pages = poolwork_reclaim(pj->pool->heap, j->slot);
        if (j->pages < 0 && j->pages != -ESTALE)
                pj->error = (int) j->pages;
}

static void reclaim_done(struct pool_job *pj) {
        struct reclaim_job *j = (struct reclaim_job *) pj;
        struct manager *m = j->m;
        struct pool *p = pj->pool;
        struct pool_slot *ps = &p->slots[j->slot];

        if (ps->state == POOL_SLOT_RECLAIMING) {
                ps->state = POOL_SLOT_FREE;
                ps->pid = ps->uid = 0;
        }
        if (!pj->cancelled && !p->quarantined) {
                if (j->pages == -ESTALE)
                        /* scav_close() gave the slot back itself. */
                        log_info("pool %s: client pid %u (slot %u) %s after closing its slot", p->cfg.name, j->pid,
                                 j->slot, j->why);
                else if (j->pages < 0)
                        log_error_errno((int) j->pages, "pool %s: cannot reclaim slot %u of pid %u (%s): %m",
                                        p->cfg.name, j->slot, j->pid, j->why);
                else
                        log_info("pool %s: client pid %u (slot %u) %s: reclaimed %lld pages", p->cfg.name, j->pid,
                                 j->slot, j->why, (long long) j->pages);
                /* A parked pool looks again: the slot's pages may have come back. */
                if (p->scavenging)
                        scavenger_wake(m->scavenger, p);
        }
        /* The process may still have another pool open: only forget its
         * mappings with its last session. */
        if (m->kernel && !pid_has_session(m, j->pid))
                kernel_watch_remove_process(m->kernel, (pid_t) j->pid);
        manager_pool_maybe_drop(m, p);
        manager_notify_status(m);
}

/* Gives a slot back to the heap: page caches, non-KEEP allocations, an
 * interrupted scavenge, on the worker. A quarantined pool is not touched:
 * the slot is forgotten. */
static void slot_release(struct manager *m, struct pool *p, uint32_t slot, uint32_t pid, const char *why) {
        struct pool_slot *ps = &p->slots[slot];
        struct reclaim_job *j;

        ps->conn = NULL;
        ps->token = 0;
        if (p->quarantined) {
                ps->state = POOL_SLOT_FREE;
                if (m->kernel && !pid_has_session(m, pid))
                        kernel_watch_remove_process(m->kernel, (pid_t) pid);
                return;
        }
        j = pool_job_new(p, sizeof(*j), reclaim_run, reclaim_done);
        if (!j) {
                log_error("pool %s: out of memory, slot %u of pid %u (%s) is not reclaimed", p->cfg.name, slot, pid,
                          why);
                return;
        }
        ps->state = POOL_SLOT_RECLAIMING;
        j->pj.check_on_error = true;
        j->m = m;
        j->slot = slot;
        j->pid = pid;
        snprintf(j->why, sizeof(j->why), "%s", why);
        pool_post(&j->pj);
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
        slot_release(m, p, slot, pid, "exited before reconnecting");
        manager_pool_maybe_drop(m, p);
        manager_notify_status(m);
        return 0;
}

/* The live slots of an adopted pool, read and checked on its worker. */
struct orphans_job {
        struct pool_job pj;
        struct manager *m;
        uint32_t n;
        struct heap_slot_info live[];
};

static void orphans_run(struct pool_job *pj) {
        struct orphans_job *j = (struct orphans_job *) pj;
        struct pool *p = pj->pool;
        uint32_t live;
        int r;

        r = poolwork_live_slots(p->heap, p->n_slots, j->live, p->n_slots, &live, pj->problem, sizeof(pj->problem));
        if (r < 0)
                pj->error = r;
        else
                j->n = (uint32_t) r;
}

static void orphans_done(struct pool_job *pj) {
        struct orphans_job *j = (struct orphans_job *) pj;
        struct manager *m = j->m;
        struct pool *p = pj->pool;

        p->n_claiming--;
        /* Cancelled: the worker may still be filling the list. */
        for (uint32_t i = 0; !pj->cancelled && !p->quarantined && i < j->n; i++) {
                const struct heap_slot_info *info = &j->live[i];
                struct pool_slot *ps = &p->slots[info->slot];
                struct orphan *o;
                int pidfd, r;

                if (ps->state != POOL_SLOT_FREE)
                        continue; /* its client came back already */
                ps->state = POOL_SLOT_LIVE;
                ps->pid = info->pid;
                ps->uid = info->uid;
                pidfd = info->pid > 0 ? (int) syscall(SYS_pidfd_open, (pid_t) info->pid, 0) : -1;
                if (pidfd < 0) {
                        slot_release(m, p, info->slot, info->pid, "gone while the daemon was away");
                        continue;
                }
                o = calloc(1, sizeof(*o));
                if (!o) {
                        close(pidfd);
                        continue;
                }
                *o = (struct orphan) { .m = m, .pool = p, .slot = info->slot, .pid = info->pid, .pidfd = pidfd };
                r = sd_event_add_io(m->event, &o->source, pidfd, EPOLLIN, orphan_exited, o);
                if (r < 0) {
                        log_warning_errno(r, "pool %s: cannot watch pid %u of slot %u: %m", p->cfg.name, info->pid,
                                          info->slot);
                        close(pidfd);
                        free(o);
                        continue;
                }
                ps->orphan = o;
                log_info("pool %s: slot %u of pid %u kept for its client to reconnect", p->cfg.name, info->slot,
                         info->pid);
        }
        manager_pool_maybe_drop(m, p);
}

void session_pool_adopted(struct manager *m, struct pool *p) {
        struct orphans_job *j;

        j = pool_job_new(p, sizeof(*j) + p->n_slots * sizeof(j->live[0]), orphans_run, orphans_done);
        if (!j) {
                log_error("pool %s: out of memory, its clients' slots are not watched", p->cfg.name);
                return;
        }
        j->m = m;
        /* Until the slots are known, the pool is not idle (manager_pool_maybe_drop). */
        p->n_claiming++;
        pool_post(&j->pj);
}

void session_pool_dropped(struct manager *m, struct pool *p) {
        for (uint32_t slot = 0; slot < p->n_slots; slot++)
                orphan_free(p->slots[slot].orphan);
        for (struct conn *c = server_conns(m->server); c; c = c->next) {
                if (c->pool == p) {
                        c->pool = NULL;
                        c->has_slot = false;
                }
                if (c->claiming == p)
                        c->claiming = NULL;
        }
}

/* The holder of a stuck lock, if it is a session of the pool, is disconnected (scavd(8)). */
void session_pool_quarantined(struct manager *m, struct pool *p) {
        if (!p->stuck || !p->stuck_pid)
                return;
        for (struct conn *c = server_conns(m->server); c;) {
                struct conn *next = c->next;
                if (c->has_slot && c->pool == p && (uint32_t) c->cred.pid == p->stuck_pid) {
                        log_warning("pool %s: disconnecting pid %u, which holds the pool's lock", p->cfg.name,
                                    p->stuck_pid);
                        conn_close(c);
                }
                c = next;
        }
}

/* ---- HELLO ---- */

static int hello_refuse(struct conn *c, int error) {
        struct scav_msg_hello_reply rep = { .slot = SCAV_SLOT_NONE };

        scav_msg_init(&rep.hdr, SCAV_MSG_HELLO_REPLY, sizeof(rep));
        rep.hdr.error = error;
        return conn_send(c, &rep, sizeof(rep), NULL, 0);
}

/*
 * The heap handed out a slot the daemon still counts as someone's: a
 * client that gave it back with scav_close() and whose hang-up we have not
 * seen yet, or an orphan that did the same. The slot is someone else's
 * now, so that hang-up must not reclaim it.
 */
static void slot_take_over(struct pool *p, uint32_t slot) {
        struct pool_slot *ps = &p->slots[slot];

        if (ps->conn) {
                struct conn *old = ps->conn;
                old->has_slot = false;
                if (p->n_clients > 0)
                        p->n_clients--;
                ps->conn = NULL;
        }
        ps->orphan = orphan_free(ps->orphan);
}

/* The slot is c's: remember it and send the memfds. */
static int hello_accept(struct conn *c, struct pool *p, uint32_t slot) {
        struct manager *m = c->m;
        struct pool_slot *ps = &p->slots[slot];
        struct scav_msg_hello_reply rep = {};
        int r;

        scav_msg_init(&rep.hdr, SCAV_MSG_HELLO_REPLY, sizeof(rep));
        do {
                if (getrandom(&rep.token, sizeof(rep.token), GRND_NONBLOCK) != sizeof(rep.token))
                        rep.token = ((uint64_t) rand() << 32) ^ (uint64_t) rand() ^ (uint64_t) (uintptr_t) c;
        } while (rep.token == 0);

        slot_take_over(p, slot);
        *ps = (struct pool_slot) {
                .state = POOL_SLOT_LIVE,
                .pid = (uint32_t) c->cred.pid,
                .uid = (uint32_t) c->cred.uid,
                .token = rep.token,
                .conn = c,
        };
        c->pool = p;
        c->slot = slot;
        c->has_slot = true;
        p->n_clients++;

        rep.slot = slot;
        rep.page_size = heap_page_size(p->heap);
        rep.meta_size = p->meta_size;
        rep.capacity = heap_capacity(p->heap);
        r = conn_send(c, &rep, sizeof(rep), (int[]) { p->meta_fd, p->heap_fd }, 2);
        /* A parked pool looks again: its new client is about to use it. */
        if (p->scavenging)
                scavenger_wake(m->scavenger, p);
        manager_notify_status(m);
        return r;
}

struct hello_job {
        struct pool_job pj;
        struct conn *c;
        bool reconnect;
        uint32_t slot, pid, uid;
        /* Slots LIVE here when the HELLO came (a claim only): the heap may
         * already have one of them free -- its client's scav_close() gave
         * it back itself -- while its hang-up, and with it a reclaim of
         * that slot number, is still on the way to us. (A RECLAIMING slot's
         * reclaim is already queued ahead of this claim.) */
        uint64_t busy[];
};

static void claim_run(struct pool_job *pj) {
        struct hello_job *j = (struct hello_job *) pj;

        pj->error = poolwork_claim(pj->pool->heap, pj->pool->n_slots, j->busy, j->pid, j->uid, &j->slot,
                                   pj->problem, sizeof(pj->problem));
}

/* Re-claiming a slot after a daemon restart: still live, and the caller's. */
static void reclaim_for_run(struct pool_job *pj) {
        struct hello_job *j = (struct hello_job *) pj;

        pj->error = poolwork_reclaim_for(pj->pool->heap, j->slot, j->pid, j->uid, pj->problem, sizeof(pj->problem));
}

static void hello_done(struct pool_job *pj) {
        struct hello_job *j = (struct hello_job *) pj;
        struct conn *c = j->c;
        struct pool *p = pj->pool;
        struct manager *m = c->m;

        if (!j->reconnect) {
                p->n_claiming--;
                c->claiming = NULL;
        }
        if (pj->cancelled || p->quarantined) {
                /* A slot it may have claimed lies in a pool not touched again. */
                log_info("pool %s: pid %u refused: pool quarantined", p->cfg.name, j->pid);
                (void) hello_refuse(c, -EUCLEAN);
        } else if (pj->error < 0) {
                if (j->reconnect)
                        log_info("pool %s: pid %u cannot re-claim slot %u: %s", p->cfg.name, j->pid, j->slot,
                                 strerror(-pj->error));
                else
                        log_info("pool %s: pid %u refused: cannot claim a slot: %s", p->cfg.name, j->pid,
                                 strerror(-pj->error));
                (void) hello_refuse(c, pj->error);
        } else if (c->dead || c->pool != NULL || c->has_slot) {
                /* Gone while the worker claimed: give the slot back. */
                if (!j->reconnect) {
                        slot_take_over(p, j->slot);
                        p->slots[j->slot].state = POOL_SLOT_LIVE;
                        slot_release(m, p, j->slot, j->pid, "hung up while connecting");
                }
        } else if (j->reconnect && (p->slots[j->slot].conn || p->slots[j->slot].state == POOL_SLOT_RECLAIMING)) {
                (void) hello_refuse(c, -ESTALE);
        } else {
                if (j->reconnect)
                        log_info("pool %s: pid %u re-claimed slot %u", p->cfg.name, j->pid, j->slot);
                else
                        log_info("pool %s: pid %u uid %u connected (slot %u)", p->cfg.name, j->pid, j->uid,
                                 j->slot);
                (void) hello_accept(c, p, j->slot);
        }
        conn_resume(c);
        conn_unref(c);
        manager_pool_maybe_drop(m, p);
}

/* HELLO claims this many of a uid's: its slots and its claims on the way. */
static unsigned slots_of_uid(struct manager *m, struct pool *p, uid_t uid) {
        unsigned n = pool_slots_of_uid(p, (uint32_t) uid);

        for (struct conn *c = server_conns(m->server); c; c = c->next)
                n += c->claiming == p && c->cred.uid == uid;
        return n;
}

int session_hello(struct conn *c, const struct scav_msg_hello *m) {
        struct manager *mgr = c->m;
        bool reconnect = m->slot != SCAV_SLOT_NONE;
        bool admin = c->cred.uid == 0 || c->cred.uid == mgr->uid;
        struct hello_job *j;
        struct pool *p;

#define REFUSE(err, ...)                                                  \
        do {                                                              \
                log_info(__VA_ARGS__);                                    \
                return hello_refuse(c, err);                              \
        } while (0)

        if (c->has_slot || c->claiming)
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
                struct pool_slot *ps;

                if (m->slot == 0 || m->slot >= p->n_slots)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: not available", p->cfg.name,
                               (unsigned) c->cred.pid, m->slot);
                ps = &p->slots[m->slot];
                if (ps->conn || ps->state == POOL_SLOT_RECLAIMING)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: not available", p->cfg.name,
                               (unsigned) c->cred.pid, m->slot);
                /* A token we know must match; one we cannot know (the slot
                 * predates this daemon) is replaced by the slot's pid. */
                if (ps->token != 0 && ps->token != m->token)
                        REFUSE(-ESTALE, "pool %s: pid %u cannot re-claim slot %u: wrong token", p->cfg.name,
                               (unsigned) c->cred.pid, m->slot);
        } else {
                unsigned used = pool_slots_used(p);
                unsigned open = p->cfg.max_clients - MIN(p->cfg.reserved_clients, p->cfg.max_clients);

                if (used >= p->cfg.max_clients)
                        REFUSE(-EUSERS, "pool %s: pid %u refused: all %u client slots taken", p->cfg.name,
                               (unsigned) c->cred.pid, p->cfg.max_clients);
                if (!admin && used >= open)
                        REFUSE(-EUSERS, "pool %s: pid %u uid %u refused: the %u client slots open to every user are "
                               "taken (%u more kept for root)", p->cfg.name, (unsigned) c->cred.pid,
                               (unsigned) c->cred.uid, open, p->cfg.max_clients - open);
                if (!admin && slots_of_uid(mgr, p, c->cred.uid) >= p->cfg.max_clients_per_user)
                        REFUSE(-EDQUOT, "pool %s: pid %u refused: uid %u holds its %u client slots "
                               "(max_clients_per_user)", p->cfg.name, (unsigned) c->cred.pid,
                               (unsigned) c->cred.uid, p->cfg.max_clients_per_user);
        }
#undef REFUSE

        j = pool_job_new(p, sizeof(*j) + (reconnect ? 0 : DIV_ROUND_UP(p->n_slots, 64) * sizeof(uint64_t)),
                         reconnect ? reclaim_for_run : claim_run, hello_done);
        if (!j)
                return hello_refuse(c, -ENOMEM);
        for (uint32_t s = 0; !reconnect && s < p->n_slots; s++)
                if (p->slots[s].state == POOL_SLOT_LIVE)
                        j->busy[s / 64] |= UINT64_C(1) << (s % 64);
        j->c = conn_ref(c);
        j->reconnect = reconnect;
        j->slot = reconnect ? m->slot : 0;
        j->pid = (uint32_t) c->cred.pid;
        j->uid = (uint32_t) c->cred.uid;
        j->pj.no_stats = reconnect;
        if (!reconnect) {
                p->n_claiming++;
                c->claiming = p;
        }
        conn_pause(c);
        pool_post(&j->pj);
        return 0;
}

int session_mapped(struct conn *c, const struct scav_msg_mapped *m) {
        struct manager *mgr = c->m;
        int r = 0;

        if (!c->has_slot || !c->pool)
                return conn_reply(c, SCAV_MSG_MAPPED_REPLY, -ENOTCONN, 0);
        if (c->pool->quarantined)
                return conn_reply(c, SCAV_MSG_MAPPED_REPLY, -EUCLEAN, 0);
        if (mgr->kernel)
                r = kernel_watch_add_mapping(mgr->kernel, c->cred.pid, m->addr, m->len, c->pool->id, c->slot);
        return conn_reply(c, SCAV_MSG_MAPPED_REPLY, r < 0 ? r : 0, 0);
}

void session_wake(struct conn *c) {
        /* Not answered: the client does not wait, and its session socket is
         * read by no one on its side. server.c limits how many a second. */
        if (c->has_slot && c->pool && c->pool->scavenging && !c->pool->quarantined)
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
                if (p->n_clients > 0)
                        p->n_clients--;
                /* Its end (reclaim_done) updates STATUS=, unless nothing is reclaimed. */
                slot_release(m, p, c->slot, (uint32_t) c->cred.pid, "hung up");
                if (p->slots[c->slot].state == POOL_SLOT_RECLAIMING)
                        return;
        }
        manager_pool_maybe_drop(m, p);
        manager_notify_status(m);
}

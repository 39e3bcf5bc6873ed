/* SPDX-License-Identifier: MIT */
/*
 * Control requests. A request that names a pool (struct scav_msg_pool_req)
 * is answered only after the pool is found (-ENOENT) and the peer is
 * allowed to use it (-EACCES, the pool's access list); every request is
 * answered by exactly one reply of the request's type + 1.
 *
 * What needs the pool's shared memory is a job on its worker, answered
 * when it is done. A quarantined pool answers -EUCLEAN to everything but
 * STATUS, which gives its last validated figures (and the QUARANTINED
 * flag): its shared memory is not read again.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "control.h"
#include "log.h"
#include "manager.h"
#include "poolwork.h"
#include "proto.h"
#include "server.h"

union reply_buf {
        struct scav_msg_hdr hdr;
        struct scav_msg_reply reply;
        uint8_t raw[SCAV_MSG_MAX];
};

static int handle_pools(struct conn *c, struct pool *unused, const void *req) {
        struct manager *mgr = c->m;
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
        return conn_reply_text(c, SCAV_MSG_POOLS_REPLY, 0, mgr->n_pools, text);
}

/*
 * A request answered from the pool's worker: the connection is paused
 * until the answer (request_answered), so replies keep the order of
 * requests. Embed first in a job's struct.
 */
struct request_job {
        struct pool_job pj;
        struct conn *c;
};

static void *request_job_new(struct conn *c, struct pool *p, size_t size, void (*run)(struct pool_job *j),
                             void (*done)(struct pool_job *j)) {
        struct request_job *j = pool_job_new(p, size, run, done);

        if (!j)
                return NULL;
        j->c = conn_ref(c);
        conn_pause(c);
        return j;
}

static void request_answered(struct request_job *j) {
        conn_resume(j->c);
        conn_unref(j->c);
}

/* Whether the pool's answer is -EUCLEAN: quarantined before or by the job. */
static bool request_refused(struct request_job *j) {
        return j->pj.cancelled || j->pj.pool->quarantined;
}

/* ---- STATUS ---- */

/* What the daemon knows of the pool: its figures as last validated, and its own settings. */
static void fill_status(struct manager *mgr, struct pool *p, struct scav_msg_pool_status *st) {
        const struct heap_stats *hs = &p->view;

        memset(st, 0, sizeof(*st));
        snprintf(st->name, sizeof(st->name), "%s", p->cfg.name);
        st->flags = (p->quarantined ? SCAV_POOL_QUARANTINED : 0) | (p->draining ? SCAV_POOL_DRAINING : 0) |
                    (p->stuck ? SCAV_POOL_STUCK : 0);
        st->page_size = p->cfg.page_size;
        st->capacity = p->cfg.capacity;
        st->heap_sys = hs->heap_sys;
        st->inuse = hs->inuse;
        st->released = hs->released;
        st->retained = hs->retained;
        st->retained_goal = p->goal;
        st->memory_limit = p->cfg.memory_limit;
        st->peak_inuse = hs->peak_inuse;
        st->gen = hs->gen;
        st->gen_released = hs->gen_released;
        st->released_total = hs->released_total;
        st->growth_scavenged = hs->growth_scavenged;
        st->clients = hs->clients;
        st->connections = p->n_clients;
        st->max_clients = p->cfg.max_clients;
        st->recoveries = hs->recoveries;
        if (mgr->kernel) {
                st->faults = kernel_watch_faults(mgr->kernel, p->id);
                st->pressure_events = kernel_watch_pressure_events(mgr->kernel);
        }
        st->refaults = p->refaults;
        st->shared = hs->shared;
        st->refs = hs->refs;
        st->names = hs->names;
        st->max_shared = hs->max_shares;
        st->max_names = hs->max_names;
}

static int reply_status(struct conn *c, struct pool *p) {
        union reply_buf b = {};
        struct scav_msg_pool_status st;
        size_t n = sizeof(b.reply) + sizeof(st);

        fill_status(c->m, p, &st);
        memcpy(b.raw + sizeof(b.reply), &st, sizeof(st));
        b.reply.count = 1;
        scav_msg_init(&b.hdr, SCAV_MSG_STATUS_REPLY, n);
        return conn_send(c, &b, n, NULL, 0);
}

/* A fresh snapshot is what every job ends with: nothing else to do. A
 * quarantined pool answers with its last validated figures. */
static void status_done(struct pool_job *pj) {
        struct request_job *j = (struct request_job *) pj;

        (void) reply_status(j->c, pj->pool);
        request_answered(j);
}

static int handle_status(struct conn *c, struct pool *p, const void *req) {
        struct request_job *j;

        if (p->quarantined)
                return reply_status(c, p);
        j = request_job_new(c, p, sizeof(*j), NULL, status_done);
        if (!j)
                return conn_reply(c, SCAV_MSG_STATUS_REPLY, -ENOMEM, 0);
        pool_post(&j->pj);
        return 0;
}

/* ---- CLIENTS ---- */

#define CLIENTS_MAX ((SCAV_MSG_MAX - sizeof(struct scav_msg_reply)) / sizeof(struct scav_msg_client))

struct clients_job {
        struct request_job rj;
        uint32_t count, live;
        struct heap_slot_info info[CLIENTS_MAX];
};

static void clients_run(struct pool_job *pj) {
        struct clients_job *j = (struct clients_job *) pj;
        struct pool *p = pj->pool;
        int r;

        r = poolwork_live_slots(p->heap, p->n_slots, j->info, CLIENTS_MAX, &j->live, pj->problem,
                                sizeof(pj->problem));
        if (r < 0)
                pj->error = r;
        else
                j->count = (uint32_t) r;
}

static void clients_done(struct pool_job *pj) {
        struct clients_job *j = (struct clients_job *) pj;
        struct conn *c = j->rj.c;
        struct pool *p = pj->pool;
        struct manager *mgr = c->m;
        union reply_buf b = {};

        if (request_refused(&j->rj)) {
                (void) conn_reply(c, SCAV_MSG_CLIENTS_REPLY, -EUCLEAN, 0);
                request_answered(&j->rj);
                return;
        }
        for (uint32_t i = 0; i < j->count; i++) {
                struct scav_msg_client e = {
                        .slot = j->info[i].slot,
                        .pid = j->info[i].pid,
                        .uid = j->info[i].uid,
                        .connected = p->slots[j->info[i].slot].conn != NULL,
                        .inuse_pages = j->info[i].inuse_pages,
                        .cached_pages = j->info[i].cached_pages,
                        .refs = j->info[i].refs,
                        .shared = j->info[i].shared,
                };
                if (mgr->kernel)
                        e.faults = kernel_watch_slot_faults(mgr->kernel, p->id, e.slot);
                memcpy(b.raw + sizeof(b.reply) + i * sizeof(e), &e, sizeof(e));
        }
        b.reply.count = j->count;
        b.reply.value = j->live;
        scav_msg_init(&b.hdr, SCAV_MSG_CLIENTS_REPLY, sizeof(b.reply) + j->count * sizeof(struct scav_msg_client));
        (void) conn_send(c, &b, b.hdr.len, NULL, 0);
        request_answered(&j->rj);
}

static int handle_clients(struct conn *c, struct pool *p, const void *req) {
        struct clients_job *j;

        if (p->quarantined)
                return conn_reply(c, SCAV_MSG_CLIENTS_REPLY, -EUCLEAN, 0);
        j = request_job_new(c, p, sizeof(*j), clients_run, clients_done);
        if (!j)
                return conn_reply(c, SCAV_MSG_CLIENTS_REPLY, -ENOMEM, 0);
        pool_post(&j->rj.pj);
        return 0;
}

/* ---- CHECK ---- */

static void check_run(struct pool_job *pj) {
        pj->error = poolwork_check(pj->pool->heap, pj->problem, sizeof(pj->problem));
}

/* A failed check quarantined the pool already (pool.c); the reason is the pool's. */
static void check_done(struct pool_job *pj) {
        struct request_job *j = (struct request_job *) pj;
        struct pool *p = pj->pool;

        if (request_refused(j))
                (void) conn_reply_text(j->c, SCAV_MSG_CHECK_REPLY, -EUCLEAN, 0, p->check_error);
        else
                (void) conn_reply_text(j->c, SCAV_MSG_CHECK_REPLY, pj->error < 0 ? pj->error : 0, 0, "");
        request_answered(j);
}

/* ---- NAMES ---- */

#define NAMES_MAX ((SCAV_MSG_MAX - sizeof(struct scav_msg_reply)) / sizeof(struct scav_msg_name))

/* The pool's names from the index the request gives on, as many as a reply
 * holds; value = where the next request starts, 0 when that was all. */
struct names_job {
        struct request_job rj;
        uint64_t from, next;
        uint32_t count;
        struct heap_name_info names[NAMES_MAX];
};

static void names_run(struct pool_job *pj) {
        struct names_job *j = (struct names_job *) pj;
        int r = poolwork_names(pj->pool->heap, j->from, j->names, NAMES_MAX, &j->next);

        if (r < 0)
                pj->error = r;
        else
                j->count = (uint32_t) r;
}

static void names_done(struct pool_job *pj) {
        struct names_job *j = (struct names_job *) pj;
        union reply_buf b = {};

        if (request_refused(&j->rj) || pj->error < 0)
                (void) conn_reply(j->rj.c, SCAV_MSG_NAMES_REPLY, request_refused(&j->rj) ? -EUCLEAN : pj->error, 0);
        else {
                for (uint32_t i = 0; i < j->count; i++) {
                        struct scav_msg_name e = { .off = j->names[i].off, .bytes = j->names[i].bytes,
                                                   .refs = j->names[i].refs };
                        memcpy(e.name, j->names[i].name, sizeof(e.name));
                        memcpy(b.raw + sizeof(b.reply) + i * sizeof(e), &e, sizeof(e));
                }
                b.reply.count = j->count;
                b.reply.value = j->next;
                scav_msg_init(&b.hdr, SCAV_MSG_NAMES_REPLY, sizeof(b.reply) + j->count * sizeof(struct scav_msg_name));
                (void) conn_send(j->rj.c, &b, b.hdr.len, NULL, 0);
        }
        request_answered(&j->rj);
}

static int handle_names(struct conn *c, struct pool *p, const void *req) {
        const struct scav_msg_pool_req *m = req;
        struct names_job *j;

        if (p->quarantined)
                return conn_reply(c, SCAV_MSG_NAMES_REPLY, -EUCLEAN, 0);
        j = request_job_new(c, p, sizeof(*j), names_run, names_done);
        if (!j)
                return conn_reply(c, SCAV_MSG_NAMES_REPLY, -ENOMEM, 0);
        j->from = m->bytes;
        pool_post(&j->rj.pj);
        return 0;
}

static int handle_check(struct conn *c, struct pool *p, const void *req) {
        struct request_job *j;

        if (p->quarantined)
                return conn_reply_text(c, SCAV_MSG_CHECK_REPLY, -EUCLEAN, 0, p->check_error);
        j = request_job_new(c, p, sizeof(*j), check_run, check_done);
        if (!j)
                return conn_reply(c, SCAV_MSG_CHECK_REPLY, -ENOMEM, 0);
        pool_post(&j->pj);
        return 0;
}

/* ---- SCAVENGE ---- */

struct scavenge_req {
        struct conn *c;
        struct pool *pool;
};

static void scavenge_answer(struct conn *c, struct pool *p, int64_t n) {
        if (n < 0)
                (void) conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, p->quarantined ? -EUCLEAN : (int) n, 0);
        else {
                log_info("pool %s: forced scavenge by pid %u released %lld bytes", p->cfg.name,
                         (unsigned) c->cred.pid, (long long) n);
                (void) conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, 0, (uint64_t) n);
        }
        conn_resume(c);
        conn_unref(c);
}

static void scavenge_forced(void *userdata, int64_t released, int64_t cpu_ns) {
        struct scavenge_req *rq = userdata;

        scavenge_answer(rq->c, rq->pool, released);
        free(rq);
}

/* A pool the scavenger does not serve (it refused it): released directly. */
struct scavenge_job {
        struct request_job rj;
        uint64_t bytes, memory_limit;
        int64_t released;
};

/* As a forced scavenge, without the scavenger's bookkeeping. */
static void scavenge_run(struct pool_job *pj) {
        struct scavenge_job *j = (struct scavenge_job *) pj;
        struct poolwork_force f = { .memory_limit = j->memory_limit, .bytes = j->bytes };

        pj->error = poolwork_force(pj->pool->heap, &f, &pj->pool->wk_stop, pj->problem, sizeof(pj->problem));
        j->released = pj->error < 0 ? pj->error : f.released;
}

static void scavenge_done(struct pool_job *pj) {
        struct scavenge_job *j = (struct scavenge_job *) pj;

        /* scavenge_answer resumes and drops the connection. */
        scavenge_answer(j->rj.c, pj->pool, request_refused(&j->rj) ? -EUCLEAN : j->released);
}

static int handle_scavenge(struct conn *c, struct pool *p, const void *req) {
        const struct scav_msg_pool_req *m = req;
        struct manager *mgr = c->m;
        struct scavenge_req *rq;
        int r;

        if (p->quarantined)
                return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, -EUCLEAN, 0);
        if (!p->scavenging) {
                struct scavenge_job *j = request_job_new(c, p, sizeof(*j), scavenge_run, scavenge_done);
                if (!j)
                        return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, -ENOMEM, 0);
                j->bytes = m->bytes;
                j->memory_limit = p->cfg.memory_limit;
                j->rj.pj.check_on_error = true;
                pool_post(&j->rj.pj);
                return 0;
        }
        rq = malloc(sizeof(*rq));
        if (!rq)
                return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, -ENOMEM, 0);
        *rq = (struct scavenge_req) { .c = conn_ref(c), .pool = p };
        conn_pause(c);
        r = scavenger_force(mgr->scavenger, p, m->bytes, false, "scavctl", scavenge_forced, rq);
        if (r < 0) {
                conn_resume(c);
                conn_unref(c);
                free(rq);
                return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, r, 0);
        }
        return 0;
}

/* ---- RELOAD ---- */

static int handle_reload(struct conn *c, struct pool *unused, const void *req) {
        struct manager *mgr = c->m;
        char err[512] = "";
        int r;

        if (c->cred.uid != 0 && c->cred.uid != mgr->uid) {
                log_info("pid %u uid %u: RELOAD refused", (unsigned) c->cred.pid, (unsigned) c->cred.uid);
                return conn_reply_text(c, SCAV_MSG_RELOAD_REPLY, -EPERM, 0, "only root or the daemon's user may reload");
        }
        r = manager_reload(mgr, err, sizeof(err));
        return conn_reply_text(c, SCAV_MSG_RELOAD_REPLY, r < 0 ? r : 0, 0, r < 0 ? err : "");
}

/*
 * The requests. pool_req: the packet is a struct scav_msg_pool_req and the
 * handler gets its pool, found and access-checked; else the handler gets
 * NULL and the packet as it came (already validated by scav_msg_parse).
 */
static const struct control_request {
        int type;
        bool pool_req;
        int (*handle)(struct conn *c, struct pool *p, const void *req);
} requests[] = {
        { SCAV_MSG_POOLS,    false, handle_pools },
        { SCAV_MSG_STATUS,   true,  handle_status },
        { SCAV_MSG_CLIENTS,  true,  handle_clients },
        { SCAV_MSG_CHECK,    true,  handle_check },
        { SCAV_MSG_SCAVENGE, true,  handle_scavenge },
        { SCAV_MSG_RELOAD,   false, handle_reload },
        { SCAV_MSG_NAMES,    true,  handle_names },
};

static const struct control_request *request_of(int type) {
        for (size_t i = 0; i < ELEMENTSOF(requests); i++)
                if (requests[i].type == type)
                        return &requests[i];
        return NULL;
}

bool control_handles(int type) {
        return request_of(type) != NULL;
}

int control_dispatch(struct conn *c, int type, const void *buf, size_t n) {
        const struct control_request *rq = request_of(type);
        struct scav_msg_pool_req m;
        struct pool *p;

        if (!rq)
                return -EBADMSG;
        if (!rq->pool_req)
                return rq->handle(c, NULL, buf);
        if (n < sizeof(m))
                return -EBADMSG;
        memcpy(&m, buf, sizeof(m));
        p = manager_find_pool(c->m, m.pool);
        if (!p)
                return conn_reply(c, type + 1, -ENOENT, 0);
        if (!access_peer_allowed(&p->cfg, &c->cred))
                return conn_reply(c, type + 1, -EACCES, 0);
        return rq->handle(c, p, &m);
}

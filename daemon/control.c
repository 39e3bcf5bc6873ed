/* SPDX-License-Identifier: MIT */
/*
 * Control requests. A request that names a pool (struct scav_msg_pool_req)
 * is answered only after the pool is found (-ENOENT) and the peer is
 * allowed to use it (-EACCES, the pool's access list); every request is
 * answered by exactly one reply of the request's type + 1.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "control.h"
#include "log.h"
#include "manager.h"
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
        st->shared = hs.shared;
        st->refs = hs.refs;
        st->names = hs.names;
        st->max_shared = hs.max_shares;
        st->max_names = hs.max_names;
}

static int handle_status(struct conn *c, struct pool *p, const void *req) {
        union reply_buf b = {};
        struct scav_msg_pool_status st;
        size_t n = sizeof(b.reply) + sizeof(st);

        fill_status(c->m, p, &st);
        memcpy(b.raw + sizeof(b.reply), &st, sizeof(st));
        b.reply.count = 1;
        scav_msg_init(&b.hdr, SCAV_MSG_STATUS_REPLY, n);
        return conn_send(c, &b, n, NULL, 0);
}

static int handle_clients(struct conn *c, struct pool *p, const void *req) {
        struct manager *mgr = c->m;
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
                e.refs = info.refs;
                e.shared = info.shared;
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

/* The pool's names from the index the request gives on, as many as a reply
 * holds; value = where the next request starts, 0 when that was all. */
static int handle_names(struct conn *c, struct pool *p, const void *req) {
        const struct scav_msg_pool_req *m = req;
        union reply_buf b = {};
        size_t max = (sizeof(b) - sizeof(b.reply)) / sizeof(struct scav_msg_name);
        uint32_t count = 0, end = heap_max_names(p->heap), i;

        for (i = m->bytes < end ? (uint32_t) m->bytes : end; i < end && count < max; i++) {
                struct heap_name_info ni;
                struct scav_msg_name e = {};
                int r = heap_name_info(p->heap, i, &ni);

                if (r == -ENOENT)
                        continue;
                if (r == -ERANGE) {
                        i = end;
                        break;
                }
                if (r < 0)
                        return conn_reply(c, SCAV_MSG_NAMES_REPLY, r, 0);
                memcpy(e.name, ni.name, sizeof(e.name));
                e.name[sizeof(e.name) - 1] = 0;
                e.off = ni.off;
                e.bytes = ni.bytes;
                e.refs = ni.refs;
                memcpy(b.raw + sizeof(b.reply) + count * sizeof(e), &e, sizeof(e));
                count++;
        }
        b.reply.count = count;
        b.reply.value = i < end ? i : 0;
        scav_msg_init(&b.hdr, SCAV_MSG_NAMES_REPLY, sizeof(b.reply) + count * sizeof(struct scav_msg_name));
        return conn_send(c, &b, b.hdr.len, NULL, 0);
}

static int handle_check(struct conn *c, struct pool *p, const void *req) {
        struct manager *mgr = c->m;
        char reason[256];
        int r;

        r = pool_check(p, reason, sizeof(reason));
        if (r < 0) {
                manager_pool_quarantine(mgr, p);
                manager_notify_status(mgr);
        }
        return conn_reply_text(c, SCAV_MSG_CHECK_REPLY, r < 0 ? r : 0, 0, r < 0 ? reason : "");
}

static int handle_scavenge(struct conn *c, struct pool *p, const void *req) {
        const struct scav_msg_pool_req *m = req;
        struct manager *mgr = c->m;
        uint64_t bytes = m->bytes;
        int64_t n;

        if (p->quarantined)
                return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, -EUCLEAN, 0);
        if (p->scavenging)
                n = scavenger_force(mgr->scavenger, p, bytes, "scavctl");
        else    /* not scheduled (the scavenger refused it): release directly */
                n = heap_scavenge(p->heap, 0, bytes ? bytes : UINT64_MAX);
        if (n < 0)
                return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, (int) n, 0);
        log_info("pool %s: forced scavenge by pid %u released %lld bytes", p->cfg.name, (unsigned) c->cred.pid,
                 (long long) n);
        return conn_reply(c, SCAV_MSG_SCAVENGE_REPLY, 0, (uint64_t) n);
}

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

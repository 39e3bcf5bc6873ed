/* SPDX-License-Identifier: MIT */
/*
 * The set of pools and how it changes: at start (created, or adopted from
 * the file descriptor store), on reload (tunables applied live, new pools
 * added, removed ones drained), and when a draining pool's last client
 * leaves. A pool is never dropped silently: each step is logged.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "pacer.h"
#include "poolwork.h"

struct pool *manager_find_pool(struct manager *m, const char *name) {
        for (unsigned i = 0; i < m->n_pools; i++)
                if (strcmp(m->pools[i]->cfg.name, name) == 0)
                        return m->pools[i];
        return NULL;
}

static void pool_register(struct manager *m, struct pool *p) {
        int r;

        if (p->quarantined || p->scavenging || !m->scavenger)
                return;
        r = scavenger_add_pool(m->scavenger, p);
        if (r < 0)
                log_error_errno(r, "pool %s: cannot schedule its scavenger: %m", p->cfg.name);
        else
                p->scavenging = true;
}

static void pool_unregister(struct manager *m, struct pool *p) {
        if (p->scavenging)
                scavenger_remove_pool(m->scavenger, p);
        p->scavenging = false;
}

uint64_t manager_lock_timeout(struct manager *m) {
        return m->config ? m->config->lock_timeout_usec : 5000000;
}

/* pool.c's on_quarantine: the pool was reported; no more scavenging, tell sessions and the service manager. */
static void pool_quarantined(struct pool *p, void *userdata) {
        struct manager *m = userdata;

        pool_unregister(m, p);
        if (m->pool_quarantined)
                m->pool_quarantined(m, p);
        manager_notify_status(m);
}

static int manager_add(struct manager *m, struct pool *p) {
        if (m->n_pools >= MANAGER_MAX_POOLS)
                return -E2BIG;
        m->pools[m->n_pools++] = p;
        p->on_quarantine = pool_quarantined;
        p->userdata = m;
        pool_register(m, p);
        return 0;
}

static int create_pool(struct manager *m, const struct pool_config *cfg) {
        struct pool *p;
        int r;

        r = pool_new(cfg, m->next_pool_id++, m->workers, &p);
        if (r < 0)
                return r;
        r = manager_add(m, p);
        if (r < 0) {
                pool_free(p, manager_lock_timeout(m));
                return log_error_errno(r, "pool %s: too many pools: %m", cfg->name);
        }
        r = fdstore_save(cfg->name, p->meta_fd, p->heap_fd);
        if (r < 0)
                log_warning_errno(r, "pool %s: cannot store memfds with the service manager, "
                                  "a restart will lose this pool: %m", cfg->name);
        log_info("pool %s: created, capacity %llu bytes, page size %u, %u client slots", cfg->name,
                 (unsigned long long) heap_capacity(p->heap), heap_page_size(p->heap), cfg->max_clients);
        return 0;
}

/* An adopted pool is checked whole before anyone uses it: on its worker,
 * first in its queue, so a HELLO that follows waits for the verdict. */
static void adopt_check_run(struct pool_job *j) {
        j->error = poolwork_check(j->pool->heap, j->problem, sizeof(j->problem));
}

static void adopt_check_done(struct pool_job *j) {
        if (!j->cancelled && !j->pool->quarantined)
                log_info("pool %s: adopted heap checked: consistent", j->pool->cfg.name);
}

static int adopt_pool(struct manager *m, const struct pool_config *cfg, struct fdstore_pool *st, bool draining) {
        struct pool_job *j;
        struct pool *p;
        int r;

        r = pool_adopt(cfg, m->next_pool_id++, m->workers, st->meta_fd, st->heap_fd, &p);
        st->meta_fd = st->heap_fd = -EBADF; /* pool_adopt took them, whatever happened */
        if (r < 0)
                return r;
        p->draining = draining;
        r = manager_add(m, p);
        if (r < 0) {
                pool_free(p, manager_lock_timeout(m));
                return r;
        }
        log_info("pool %s: adopted from the file descriptor store", cfg->name);
        j = pool_job_new(p, sizeof(*j), adopt_check_run, adopt_check_done);
        if (j)
                pool_post(j);
        else
                pool_quarantine(p, "out of memory for the check of an adopted pool");
        if (m->pool_adopted)
                m->pool_adopted(m, p);
        return 0;
}

int manager_start_pools(struct manager *m, struct fdstore_pool *stored, int n_stored) {
        int r;

        for (unsigned i = 0; i < m->config->n_pools; i++) {
                const struct pool_config *cfg = &m->config->pools[i];
                struct fdstore_pool *st = NULL;

                for (int k = 0; k < n_stored; k++)
                        if (stored[k].meta_fd >= 0 && strcmp(stored[k].name, cfg->name) == 0)
                                st = &stored[k];
                if (st) {
                        r = adopt_pool(m, cfg, st, false);
                        if (r >= 0)
                                continue;
                        /* Unusable memfds: the pool starts again, empty, and says so. */
                        log_error_errno(r, "pool %s: stored memfds unusable, creating the pool anew (its "
                                        "data is lost): %m", cfg->name);
                        (void) fdstore_remove(cfg->name);
                }
                r = create_pool(m, cfg);
                if (r < 0)
                        return log_error_errno(r, "pool %s: cannot create: %m", cfg->name);
        }

        /* Stored pools the configuration no longer names: keep them while they
         * have clients, so nobody's memory disappears under them. */
        for (int k = 0; k < n_stored; k++) {
                struct pool_config cfg;
                struct pool *p;

                if (stored[k].meta_fd < 0)
                        continue;
                pool_config_defaults(&cfg);
                snprintf(cfg.name, sizeof(cfg.name), "%s", stored[k].name);
                snprintf(cfg.file, sizeof(cfg.file), "(file descriptor store)");
                {
                        struct stat hst;
                        if (fstat(stored[k].heap_fd, &hst) == 0)
                                cfg.capacity = (uint64_t) hst.st_size;
                }
                log_notice("pool %s: stored but no longer configured: draining", cfg.name);
                r = adopt_pool(m, &cfg, &stored[k], true);
                if (r < 0) {
                        log_error_errno(r, "pool %s: stored memfds unusable, dropped: %m", cfg.name);
                        (void) fdstore_remove(cfg.name);
                        continue;
                }
                p = manager_find_pool(m, cfg.name);
                if (p)
                        manager_pool_maybe_drop(m, p);
        }
        return 0;
}

void manager_pool_maybe_drop(struct manager *m, struct pool *p) {
        if (!p->draining || p->dropping || p->n_clients > 0)
                return;
        /* Slots still in the daemon's hands: adopted ones whose clients may
         * come back, reclaims and claims on the worker. A quarantined pool
         * is not worked on again: nothing to wait for. */
        if (!p->quarantined && pool_busy(p))
                return;
        for (unsigned i = 0; i < m->n_pools; i++)
                if (m->pools[i] == p) {
                        m->pools[i] = m->pools[--m->n_pools];
                        break;
                }
        log_notice("pool %s: removed from the configuration and its last client left: dropped", p->cfg.name);
        pool_unregister(m, p);
        if (m->pool_dropped)
                m->pool_dropped(m, p);
        if (m->kernel)
                kernel_watch_remove_pool(m->kernel, p->id);
        (void) fdstore_remove(p->cfg.name);
        p->dropping = true;
        pool_free(p, manager_lock_timeout(m));
}

/* What can change on a live pool; the heap's geometry cannot. */
static void apply_pool_config(struct manager *m, struct pool *p, const struct pool_config *n) {
        struct pool_config *o = &p->cfg;

        if (n->capacity != o->capacity || n->page_size != o->page_size || n->max_clients != o->max_clients ||
            n->reservation_shards != o->reservation_shards || n->huge_pages != o->huge_pages ||
            n->max_shared != o->max_shared || n->max_names != o->max_names)
                log_warning("pool %s: capacity, page_size, max_clients, max_shared, max_names, reservation_shards "
                            "and huge_pages apply when the pool is created; kept as they are until then", o->name);
        o->scavenge_percent = n->scavenge_percent;
        o->retain_extra_percent = n->retain_extra_percent;
        o->memory_limit = n->memory_limit;
        o->max_clients_per_user = n->max_clients_per_user;
        o->reserved_clients = MIN(n->reserved_clients, o->max_clients - 1);
        o->allow_all = n->allow_all;
        o->n_allow_users = n->n_allow_users;
        o->n_allow_groups = n->n_allow_groups;
        memcpy(o->allow_users, n->allow_users, sizeof(o->allow_users));
        memcpy(o->allow_groups, n->allow_groups, sizeof(o->allow_groups));
        snprintf(o->file, sizeof(o->file), "%s", n->file);
        o->line = n->line;
        /* The daemon's own word of the meta region (see pool.h); quarantined: left alone. */
        if (!p->quarantined)
                heap_set_memory_limit(p->heap, n->memory_limit);
        if (p->draining) {
                p->draining = false;
                log_notice("pool %s: configured again, no longer draining", o->name);
        }
}

int manager_reload(struct manager *m, char *err, size_t errlen) {
        struct daemon_config *n;
        struct pool *drop[MANAGER_MAX_POOLS];
        unsigned n_drop = 0;
        int r;

        {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                (void) sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration",
                                  (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000);
        }

        n = calloc(1, sizeof(*n));
        if (!n) {
                snprintf(err, errlen, "out of memory");
                r = -ENOMEM;
                goto fail;
        }
        r = config_load(m->config_path, n, err, errlen);
        if (r < 0)
                goto fail;

        for (unsigned i = 0; i < m->n_pools; i++) {
                struct pool *p = m->pools[i];
                const struct pool_config *pc = NULL;

                for (unsigned k = 0; k < n->n_pools; k++)
                        if (strcmp(n->pools[k].name, p->cfg.name) == 0)
                                pc = &n->pools[k];
                if (pc)
                        apply_pool_config(m, p, pc);
                else if (!p->draining) {
                        p->draining = true;
                        log_notice("pool %s: removed from the configuration: draining (%u connected clients)",
                                   p->cfg.name, p->n_clients);
                        drop[n_drop++] = p;
                }
        }
        for (unsigned k = 0; k < n->n_pools; k++)
                if (!manager_find_pool(m, n->pools[k].name)) {
                        r = create_pool(m, &n->pools[k]);
                        if (r < 0)
                                log_error_errno(r, "pool %s: cannot create on reload: %m", n->pools[k].name);
                }
        if (strcmp(n->socket, m->config->socket) != 0)
                log_warning("socket: a new path applies at the next start");

        free(m->config);
        m->config = n;
        if (m->scavenger)
                scavenger_reconfigure(m->scavenger, n);
        if (m->workers)
                workers_set_lock_timeout(m->workers, n->lock_timeout_usec);
        m->reload_error[0] = 0;
        for (unsigned i = 0; i < n_drop; i++)
                manager_pool_maybe_drop(m, drop[i]);
        log_info("configuration reloaded from %s: %u pools", m->config_path, m->n_pools);
        manager_notify_ready(m);
        return 0;

fail:
        free(n);
        log_error("reload failed, keeping the running configuration: %s", err);
        snprintf(m->reload_error, sizeof(m->reload_error), "%s", err);
        manager_notify_ready(m);
        return r;
}

/* STATUS= with a one-line summary, after `prefix` (e.g. "READY=1\n") in
 * the same notification, so the service manager never sees one without
 * the other. */
static void notify_status(struct manager *m, const char *prefix) {
        char scav[256] = "", bad[512] = "", buf[2048];
        unsigned clients = 0;
        size_t skip = strlen(prefix), nb = 0;

        if (!m->ready)
                return;
        for (unsigned i = 0; i < m->n_pools; i++) {
                struct pool *p = m->pools[i];

                clients += p->n_clients;
                if (p->quarantined && nb < sizeof(bad)) {
                        int k = snprintf(bad + nb, sizeof(bad) - nb, "%s%s %s (%s)", nb ? "; " : "",
                                         p->cfg.name, p->stuck ? "STUCK" : "QUARANTINED", p->check_error);
                        nb += k > 0 ? (size_t) k : 0;
                }
        }
        if (m->scavenger)
                scavenger_status(m->scavenger, scav, sizeof(scav));
        snprintf(buf, sizeof(buf), "%sSTATUS=%u pools, %u clients%s%s%s%s%s%s", prefix, m->n_pools, clients,
                 scav[0] ? "; " : "", scav, bad[0] ? "; pool " : "", bad,
                 m->reload_error[0] ? "; reload failed: " : "", m->reload_error);
        /* STATUS= is one line. */
        for (char *p = buf + MIN(skip, sizeof(buf) - 1); *p; p++)
                if (*p == '\n')
                        *p = ' ';
        /* The same line again tells the service manager nothing. */
        if (skip == 0 && strcmp(buf, m->last_status) == 0)
                return;
        snprintf(m->last_status, sizeof(m->last_status), "%s", buf + skip);
        (void) sd_notify(0, buf);
}

void manager_notify_status(struct manager *m) {
        notify_status(m, "");
}

void manager_notify_ready(struct manager *m) {
        notify_status(m, "READY=1\n");
}

void manager_status_changed(void *userdata) {
        manager_notify_status(userdata);
}

static int64_t now_ns(clockid_t id) {
        struct timespec ts;

        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The kernel is reclaiming: give back free memory now rather than at our
 * pace. Pools with nothing free (retained within in-use) are skipped by their workers, and
 * pressure_cpu_percent caps what this costs: after a release that took w ns
 * of CPU, events are ignored until w / (pressure_cpu_percent / 100) after it
 * began (pacer_pressure_next); reclaim events can come hundreds a second.
 * pressure_cpu_percent = 0 turns release under pressure off.
 */
static void pressure_forced(void *userdata, int64_t released, int64_t cpu_ns) {
        struct manager *m = userdata;
        double percent = m->config ? m->config->pressure_cpu_percent : 50.0;

        m->pressure_cpu_ns += cpu_ns > 0 ? cpu_ns : 0;
        if (m->pressure_jobs == 0 || --m->pressure_jobs > 0)
                return;
        m->pressure_quiet_until = pacer_pressure_next(m->pressure_start, m->pressure_cpu_ns, percent);
        log_debug("pressure: released in %" PRIi64 " us of CPU, next pressure release after %" PRIi64 " us",
                  m->pressure_cpu_ns / 1000, (m->pressure_quiet_until - m->pressure_start) / 1000);
}

/*
 * The kernel is reclaiming: give back free memory now rather than at our
 * pace. Pools with nothing free (retained within in-use) are skipped by their workers, and
 * pressure_cpu_percent caps what this costs: after a release that took w ns
 * of CPU (the workers' time), events are ignored until w /
 * (pressure_cpu_percent / 100) after it began (pacer_pressure_next), and
 * while it runs; reclaim events can come hundreds a second.
 * pressure_cpu_percent = 0 turns release under pressure off.
 */
void manager_pressure(const char *why, void *userdata) {
        struct manager *m = userdata;
        double percent = m->config ? m->config->pressure_cpu_percent : 50.0;
        int64_t start;
        unsigned forced = 0;

        if (!m->scavenger || !(percent > 0))
                return;
        start = now_ns(CLOCK_MONOTONIC);
        if (m->pressure_jobs > 0 || start < m->pressure_quiet_until) {
                m->pressure_ignored++;
                return;
        }
        m->pressure_start = start;
        m->pressure_cpu_ns = 0;
        for (unsigned i = 0; i < m->n_pools; i++) {
                struct pool *p = m->pools[i];

                if (!p->scavenging || p->quarantined)
                        continue;
                /* Counted before posting: the callback may come at once if the pool is cancelled.
                 * Whether it has free memory, its worker sees (the view may be older than the frees). */
                m->pressure_jobs++;
                if (scavenger_force(m->scavenger, p, 0, true, why, pressure_forced, m) < 0)
                        m->pressure_jobs--;
                else
                        forced++;
        }
        log_debug("pressure (%s): forced scavenges of %u pools", why, forced);
}

void manager_done(struct manager *m) {
        /* Jobs cancelled below call back into the manager: nothing is announced or dropped any more. */
        m->ready = false;
        if (m->scavenger)
                scavenger_stop(m->scavenger);
        for (unsigned i = 0; i < m->n_pools; i++) {
                m->pools[i]->dropping = true;
                pool_unregister(m, m->pools[i]);
                if (m->pool_dropped)
                        m->pool_dropped(m, m->pools[i]);
        }
        for (unsigned i = 0; i < m->n_pools; i++)
                pool_free(m->pools[i], manager_lock_timeout(m));
        m->n_pools = 0;
        m->kernel = kernel_watch_free(m->kernel);
        m->scavenger = scavenger_free(m->scavenger);
        m->workers = workers_free(m->workers);
        free(m->config);
        m->config = NULL;
}

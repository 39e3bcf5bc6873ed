/* SPDX-License-Identifier: MIT */
/*
 * A pool's memory: two memfds, both sealed against shrinking and growing so
 * that no client can truncate them under another (a truncated shared
 * mapping is SIGBUS, in the daemon too), mapped here once, with the heap
 * laid out or attached over them; its worker thread, the jobs that run on
 * it, and what the daemon does when the pool turns out broken or stuck.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pool.h"
#include "poolwork.h"

#define POOL_HUGE_PAGE_SIZE (2u << 20)
#define POOL_PHYS_PAGE_SIZE 4096u

void pool_config_to_params(const struct pool_config *cfg, struct heap_params *ret) {
        *ret = (struct heap_params) {
                .capacity = cfg->capacity,
                .page_size = cfg->page_size,
                .phys_page_size = POOL_PHYS_PAGE_SIZE,
                .huge_page_size = cfg->huge_pages ? POOL_HUGE_PAGE_SIZE : 0,
                .max_slots = cfg->max_clients + 1, /* slot 0 is the daemon's */
                .reservation_shards = cfg->reservation_shards,
                .max_shares = cfg->max_shared,
                .max_names = cfg->max_names,
        };
}

static int memfd_sized(const char *pool, const char *role, uint64_t size) {
        _cleanup_close_ int fd = -EBADF;
        char name[SCAV_POOL_NAME_MAX + 32];

        snprintf(name, sizeof(name), "scavd:%s:%s", pool, role);
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return log_error_errno(negative_errno(), "pool %s: memfd_create(%s) failed: %m", pool, role);
        if (ftruncate(fd, (off_t) size) < 0)
                return log_error_errno(negative_errno(), "pool %s: cannot size %s memfd to %llu bytes: %m",
                                       pool, role, (unsigned long long) size);
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return log_error_errno(negative_errno(), "pool %s: failed to seal %s memfd: %m", pool, role);
        return TAKE_FD(fd);
}

/* An adopted memfd must be sealed as ours are; seal it if it is not yet. */
static int ensure_sealed(const char *pool, const char *role, int fd) {
        int seals = fcntl(fd, F_GET_SEALS);

        if (seals < 0)
                return log_error_errno(negative_errno(), "pool %s: %s fd is not a sealable memfd: %m", pool,
                                       role);
        if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW))
                return 0;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return log_error_errno(negative_errno(), "pool %s: cannot seal adopted %s memfd: %m", pool,
                                       role);
        return 0;
}

static struct pool *pool_alloc(const struct pool_config *cfg, uint32_t id) {
        struct pool *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->cfg = *cfg;
        p->id = id;
        p->meta_fd = p->heap_fd = -EBADF;
        p->meta = p->base = MAP_FAILED;
        p->goal = HEAP_GOAL_NONE;
        return p;
}

static int pool_map(struct pool *p, uint64_t capacity) {
        p->meta = mmap(NULL, p->meta_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, p->meta_fd, 0);
        if (p->meta == MAP_FAILED)
                return log_error_errno(negative_errno(), "pool %s: cannot map meta (%llu bytes): %m",
                                       p->cfg.name, (unsigned long long) p->meta_size);
        p->base = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, p->heap_fd, 0);
        p->base_size = capacity;
        if (p->base == MAP_FAILED)
                return log_error_errno(negative_errno(), "pool %s: cannot map heap (%llu bytes): %m",
                                       p->cfg.name, (unsigned long long) capacity);
        return 0;
}

/* The thread id a lock word named, as a process: /proc/TID/status's Tgid, or 0. */
static uint32_t tgid_of(uint32_t tid) {
        char path[64], line[128];
        unsigned long v = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%u/status", tid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Tgid: %lu", &v) == 1)
                        break;
        fclose(f);
        return (uint32_t) v;
}

/*
 * The watchdog saw the worker wait lock_timeout for a lock. Who holds it
 * is what the lock word says: a thread id, mapped to its process and to
 * the slot of a session or orphan of this pool with that pid. A thread id
 * of a client in another pid namespace maps to nothing, or to the wrong
 * process: the message says what it knows.
 */
static void pool_stuck(void *userdata, const struct heap_lock_wait *w, int64_t waited_ns) {
        struct pool *p = userdata;
        uint32_t tid = atomic_load(&w->holder), pid = tid ? tgid_of(tid) : 0, slot = 0;
        const char *lock = atomic_load(&w->lock) == HEAP_LOCK_SCAV ? "scav" : "heap";
        char who[128];

        for (uint32_t s = 1; pid && s < p->n_slots; s++)
                if (p->slots[s].state == POOL_SLOT_LIVE && p->slots[s].pid == pid)
                        slot = s;
        if (!tid)
                snprintf(who, sizeof(who), "nobody the lock word names");
        else if (!pid)
                snprintf(who, sizeof(who), "thread %u, which does not exist (lock word scribbled on?)", tid);
        else if (slot)
                snprintf(who, sizeof(who), "pid %u (slot %u)", pid, slot);
        else
                snprintf(who, sizeof(who), "pid %u, not a client of this pool", pid);
        p->stuck = true;
        p->stuck_pid = slot ? pid : 0;
        pool_quarantine(p, "stuck: %s lock held by %s for %.1f s", lock, who, (double) waited_ns / 1e9);
}

static int pool_start(struct pool *p, workers *ws) {
        char name[SCAV_POOL_NAME_MAX + 8];

        heap_set_untrusted(p->heap, &p->lock_wait);
        p->n_slots = heap_max_slots(p->heap);
        p->slots = calloc(p->n_slots ? p->n_slots : 1, sizeof(*p->slots));
        if (!p->slots)
                return -ENOMEM;
        snprintf(name, sizeof(name), "scavd/%s", p->cfg.name);
        return worker_new(ws, name, &p->lock_wait, pool_stuck, p, &p->worker);
}

int pool_new(const struct pool_config *cfg, uint32_t id, workers *ws, struct pool **ret) {
        struct heap_params params;
        struct pool *p;
        int r;

        pool_config_to_params(cfg, &params);
        p = pool_alloc(cfg, id);
        if (!p)
                return -ENOMEM;

        r = heap_meta_size(&params, &p->meta_size);
        if (r < 0) {
                log_error_errno(r, "pool %s: impossible heap parameters: %m", cfg->name);
                goto fail;
        }
        r = p->heap_fd = memfd_sized(cfg->name, "heap", params.capacity);
        if (r < 0)
                goto fail;
        r = p->meta_fd = memfd_sized(cfg->name, "meta", p->meta_size);
        if (r < 0)
                goto fail;
        r = pool_map(p, params.capacity);
        if (r < 0)
                goto fail;
        /* Nobody else has these memfds yet: laid out from here, before the worker exists. */
        r = heap_create(p->meta, p->meta_size, p->base, p->heap_fd, &params, &p->heap);
        if (r < 0) {
                log_error_errno(r, "pool %s: cannot lay out the heap: %m", cfg->name);
                goto fail;
        }
        heap_set_memory_limit(p->heap, cfg->memory_limit);
        r = heap_get_stats(p->heap, &p->view);
        if (r >= 0)
                r = pool_start(p, ws);
        if (r < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        pool_free(p, 0);
        return r;
}

int pool_adopt(const struct pool_config *cfg, uint32_t id, workers *ws, int meta_fd, int heap_fd,
               struct pool **ret) {
        struct stat mst, hst;
        struct pool *p;
        int r;

        p = pool_alloc(cfg, id);
        if (!p) {
                close(meta_fd);
                close(heap_fd);
                return -ENOMEM;
        }
        p->meta_fd = meta_fd;
        p->heap_fd = heap_fd;

        if (fstat(meta_fd, &mst) < 0 || fstat(heap_fd, &hst) < 0) {
                r = log_error_errno(negative_errno(), "pool %s: cannot stat adopted memfds: %m", cfg->name);
                goto fail;
        }
        if (!S_ISREG(mst.st_mode) || !S_ISREG(hst.st_mode) || mst.st_size <= 0 || hst.st_size <= 0) {
                r = log_error_errno(-EBADMSG, "pool %s: adopted descriptors are not sized memfds", cfg->name);
                goto fail;
        }
        r = ensure_sealed(cfg->name, "heap", heap_fd);
        if (r < 0)
                goto fail;
        r = ensure_sealed(cfg->name, "meta", meta_fd);
        if (r < 0)
                goto fail;
        p->meta_size = (uint64_t) mst.st_size;
        r = pool_map(p, (uint64_t) hst.st_size);
        if (r < 0)
                goto fail;
        /* Reads one copy of the header, validates it, and never reads it again. */
        r = heap_attach(p->meta, p->meta_size, p->base, (uint64_t) hst.st_size, heap_fd, &p->heap);
        if (r < 0) {
                log_error_errno(r, "pool %s: adopted heap has no valid layout: %m", cfg->name);
                goto fail;
        }
        /* The heap's geometry is fixed at creation; what it says wins. */
        if (heap_capacity(p->heap) != cfg->capacity || heap_page_size(p->heap) != cfg->page_size)
                log_warning("pool %s: adopted heap has capacity %llu and page size %u, configuration says "
                            "%llu and %u: keeping the heap's until the pool is recreated",
                            cfg->name, (unsigned long long) heap_capacity(p->heap), heap_page_size(p->heap),
                            (unsigned long long) cfg->capacity, cfg->page_size);
        p->cfg.capacity = heap_capacity(p->heap);
        p->cfg.page_size = heap_page_size(p->heap);
        if (heap_max_slots(p->heap) > 1)
                p->cfg.max_clients = heap_max_slots(p->heap) - 1;
        p->cfg.reserved_clients = MIN(p->cfg.reserved_clients, p->cfg.max_clients - 1);
        p->view = (struct heap_stats) { .capacity = p->cfg.capacity, .page_size = p->cfg.page_size,
                                        .retained_goal = HEAP_GOAL_NONE };
        r = pool_start(p, ws);
        if (r < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        /* the fds belong to p now: pool_free closes them */
        pool_free(p, 0);
        return r;
}

/* Pools whose worker was left behind: kept, mapped, until the process ends. */
static struct pool *abandoned;

struct pool *pool_free(struct pool *p, uint64_t timeout_usec) {
        if (!p)
                return NULL;
        /* A job still queued or long (a forced scavenge) stops at its next step. */
        atomic_store(&p->wk_stop, true);
        if (!worker_free(p->worker, timeout_usec)) {
                /* Its thread may wake up in this pool's memory at any time. */
                log_warning("pool %s: its worker is stuck; the pool's memory stays mapped until the daemon exits",
                            p->cfg.name);
                p->abandoned_next = abandoned;
                abandoned = p;
                return NULL;
        }
        if (p->heap)
                heap_detach(p->heap);
        if (p->base != MAP_FAILED && p->base)
                munmap(p->base, p->base_size);
        if (p->meta != MAP_FAILED && p->meta)
                munmap(p->meta, p->meta_size);
        closep(&p->meta_fd);
        closep(&p->heap_fd);
        while (p->n_spare_jobs > 0)
                free(p->spare_jobs[--p->n_spare_jobs]);
        free(p->slots);
        free(p);
        return NULL;
}

void pool_quarantine(struct pool *p, const char *fmt, ...) {
        va_list ap;

        if (p->quarantined)
                return;
        va_start(ap, fmt);
        vsnprintf(p->check_error, sizeof(p->check_error), fmt, ap);
        va_end(ap);
        p->quarantined = true;
        atomic_store(&p->wk_stop, true);
        log_error("pool %s: quarantined, served no more: %s", p->cfg.name, p->check_error);
        if (p->worker)
                worker_cancel(p->worker);
        if (p->on_quarantine)
                p->on_quarantine(p, p->userdata);
}

/* A slot being reclaimed counts for nobody: the claim that could take it
 * queues behind its reclaim on the worker. */
unsigned pool_slots_of_uid(struct pool *p, uint32_t uid) {
        unsigned n = 0;

        for (uint32_t s = 1; s < p->n_slots; s++)
                n += p->slots[s].state == POOL_SLOT_LIVE && p->slots[s].uid == uid;
        return n;
}

unsigned pool_slots_used(struct pool *p) {
        unsigned n = p->n_claiming;

        for (uint32_t s = 1; s < p->n_slots; s++)
                n += p->slots[s].state == POOL_SLOT_LIVE;
        return n;
}

bool pool_busy(struct pool *p) {
        if (p->n_claiming > 0)
                return true;
        for (uint32_t s = 1; s < p->n_slots; s++)
                if (p->slots[s].state != POOL_SLOT_FREE)
                        return true;
        return false;
}

/* ---- jobs ---- */

static void pool_job_run(struct job *jb) {
        struct pool_job *j = (struct pool_job *) jb;
        struct pool *p = j->pool;
        int r;

        if (atomic_load(&p->wk_stop)) {
                j->error = -ECANCELED;
                return;
        }
        if (j->run)
                j->run(j);
        /* -EBUSY from the daemon's own scavenge intents, -EINVAL from its
         * own requests: the pool is not what the daemon left. A check says
         * what, and makes it -EUCLEAN. */
        if (j->check_on_error && j->error < 0 && j->error != -EUCLEAN && j->error != -ESTALE && j->error != -EIO &&
            poolwork_check(p->heap, j->problem, sizeof(j->problem)) < 0)
                j->error = -EUCLEAN;
        if (j->error == -EUCLEAN && !j->problem[0] && heap_recover_problem(p->heap)[0])
                /* This worker found a dead holder and could not recover: say why. */
                snprintf(j->problem, sizeof(j->problem), "recovery failed: %s", heap_recover_problem(p->heap));
        if (j->error == -EUCLEAN && !j->problem[0] && poolwork_check(p->heap, j->problem, sizeof(j->problem)) >= 0)
                snprintf(j->problem, sizeof(j->problem), "the heap is marked corrupt");
        if (j->error == -EUCLEAN || j->no_stats)
                return;
        r = poolwork_snapshot(p->heap, p->wk_have_prev ? &p->wk_prev : NULL, &j->stats, j->problem,
                                   sizeof(j->problem));
        if (r < 0) {
                j->error = r;
                return;
        }
        p->wk_prev = j->stats;
        p->wk_have_prev = true;
        j->have_stats = true;
}

static void pool_job_done(struct job *jb) {
        struct pool_job *j = (struct pool_job *) jb;
        struct pool *p = j->pool;

        j->cancelled = jb->cancelled || j->error == -ECANCELED;
        if (!j->cancelled) {
                if (j->error == -EUCLEAN)
                        pool_quarantine(p, "%s", j->problem[0] ? j->problem : "the heap is marked corrupt");
                else if (j->have_stats && !p->quarantined)
                        p->view = j->stats;
        }
        if (j->done)
                j->done(j);
}

/*
 * Job memory of up to POOL_JOB_BLOCK bytes is kept for the next job
 * (POOL_JOB_SPARES a pool): every session costs a claim and a reclaim, and
 * allocator caches (or ASan's quarantine) would otherwise grow with them.
 */
static void pool_job_release(struct job *jb) {
        struct pool_job *j = (struct pool_job *) jb;
        struct pool *p = j->pool;

        if (j->block && p->n_spare_jobs < POOL_JOB_SPARES)
                p->spare_jobs[p->n_spare_jobs++] = j;
        else
                free(j);
}

void *pool_job_new(struct pool *p, size_t size, void (*run)(struct pool_job *j), void (*done)(struct pool_job *j)) {
        struct pool_job *j;
        bool block = size <= POOL_JOB_BLOCK;

        if (size < sizeof(*j))
                return NULL;
        if (block && p->n_spare_jobs > 0)
                j = p->spare_jobs[--p->n_spare_jobs];
        else
                j = malloc(block ? POOL_JOB_BLOCK : size);
        if (!j)
                return NULL;
        memset(j, 0, size);
        j->block = block;
        j->job.release = pool_job_release;
        j->job.run = pool_job_run;
        j->job.done = pool_job_done;
        j->pool = p;
        j->run = run;
        j->done = done;
        return j;
}

void pool_post(struct pool_job *j) {
        worker_post(j->pool->worker, &j->job);
}

/* SPDX-License-Identifier: MIT */
/*
 * A pool's memory: two memfds, both sealed against shrinking and growing so
 * that no client can truncate them under another (a truncated shared
 * mapping is SIGBUS, in the daemon too), mapped here once, with the heap
 * laid out or attached over them.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pool.h"

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

static int pool_init_slots(struct pool *p) {
        p->n_slots = heap_max_slots(p->heap);
        p->slots = calloc(p->n_slots ? p->n_slots : 1, sizeof(*p->slots));
        return p->slots ? 0 : -ENOMEM;
}

int pool_new(const struct pool_config *cfg, uint32_t id, struct pool **ret) {
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
        r = heap_create(p->meta, p->meta_size, p->base, p->heap_fd, &params, &p->heap);
        if (r < 0) {
                log_error_errno(r, "pool %s: cannot lay out the heap: %m", cfg->name);
                goto fail;
        }
        heap_set_memory_limit(p->heap, cfg->memory_limit);
        r = pool_init_slots(p);
        if (r < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        pool_free(p);
        return r;
}

int pool_adopt(const struct pool_config *cfg, uint32_t id, int meta_fd, int heap_fd, struct pool **ret) {
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
        heap_set_memory_limit(p->heap, cfg->memory_limit);
        r = pool_init_slots(p);
        if (r < 0)
                goto fail;
        (void) pool_check(p, NULL, 0);
        *ret = p;
        return 0;
fail:
        /* the fds belong to p now: pool_free closes them */
        pool_free(p);
        return r;
}

int pool_check(struct pool *p, char *buf, size_t len) {
        char reason[sizeof(p->check_error)] = "";
        int r;

        r = heap_check(p->heap, reason, sizeof(reason));
        if (r < 0) {
                if (!p->quarantined)
                        log_error("pool %s: heap check failed, pool quarantined: %s", p->cfg.name,
                                  reason[0] ? reason : strerror(-r));
                p->quarantined = true;
                snprintf(p->check_error, sizeof(p->check_error), "%s", reason[0] ? reason : strerror(-r));
        }
        if (buf && len)
                snprintf(buf, len, "%s", r < 0 ? p->check_error : "");
        return r;
}

struct pool *pool_free(struct pool *p) {
        if (!p)
                return NULL;
        if (p->heap)
                heap_detach(p->heap);
        if (p->base != MAP_FAILED && p->base)
                munmap(p->base, p->base_size);
        if (p->meta != MAP_FAILED && p->meta)
                munmap(p->meta, p->meta_size);
        closep(&p->meta_fd);
        closep(&p->heap_fd);
        free(p->slots);
        free(p);
        return NULL;
}

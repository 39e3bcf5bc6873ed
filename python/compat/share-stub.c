/* SPDX-License-Identifier: MIT */
/*
 * TEMPORARY: the sharing API of scav.h (issue 11) while libscav does not
 * implement it yet. Linked into the module only when libscav.a lacks
 * scav_ref_handle (python/python.mk); everything but unref fails with
 * -ENOSYS, and unref frees. Goes away once the implementation is merged.
 */

#include <errno.h>

#include <scav.h>

extern const int scavpy_sharing_stub;
const int scavpy_sharing_stub = 1;

int scav_ref(scav_pool *p, uint64_t off) { return -ENOSYS; }
int scav_unref(scav_pool *p, uint64_t off) { return scav_free(p, off); }
int scav_size(scav_pool *p, uint64_t off, size_t *bytes) { return -ENOSYS; }
int scav_make_handle(scav_pool *p, uint64_t off, struct scav_handle *h) { return -ENOSYS; }
int scav_ref_handle(scav_pool *p, const struct scav_handle *h, uint64_t *off) { return -ENOSYS; }
int scav_publish(scav_pool *p, const char *name, uint64_t off) { return -ENOSYS; }
int scav_lookup(scav_pool *p, const char *name, uint64_t *off) { return -ENOSYS; }
int scav_lookup_wait(scav_pool *p, const char *name, int timeout_ms, uint64_t *off) { return -ENOSYS; }
int scav_unpublish(scav_pool *p, const char *name) { return -ENOSYS; }

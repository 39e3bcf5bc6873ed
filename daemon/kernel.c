/* SPDX-License-Identifier: MIT */
/*
 * Kernel awareness (issue 6): loads daemon/bpf/kernel.bpf.c through its
 * skeleton, keeps the tgid -> pool ranges map that its fault counter reads,
 * and turns the kernel's reclaim (BPF ring buffer) or memory pressure (PSI
 * trigger) into kernel_pressure_fn calls from the sd-event loop. Both
 * sources are file descriptors the loop waits on: nothing here polls.
 *
 * Nothing else in the daemon depends on BPF: without it the fault counters
 * read zero and pressure comes from PSI, or nowhere, each said once.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/kernel-abi.h"
#include "kernel.h"
#include "kernel.skel.h"
#include "log.h"
#include "macro.h"

#define KERNEL_BTF_PATH "/sys/kernel/btf/vmlinux"
/* The initial pid namespace's inode number (PROC_PID_INIT_INO). */
#define KERNEL_INIT_PIDNS_INO 0xEFFFFFFCULL
#define KERNEL_PSI_PATH "/proc/pressure/memory"
/* 150 ms of stall in a 2 s window: the shortest window the kernel grants
 * without CAP_SYS_RESOURCE is 2 s (multiples of 2 s only). */
#define KERNEL_PSI_TRIGGER "some 150000 2000000"

struct kernel_watch {
        sd_event *event;
        kernel_pressure_fn fn;
        void *userdata;

        struct kernel_bpf *skel;          /* NULL: no BPF */
        struct ring_buffer *rb;
        sd_event_source *rb_source;
        unsigned pending;                 /* reasons seen in this ring buffer batch */

        int psi_fd;
        sd_event_source *psi_source;

        const char *mode;                 /* "bpf", "psi", "off" */
        int n_cpus;
        uint64_t pressure_events;

        /* Which counter of the BPF array belongs to whom: an open-addressing
         * table whose positions are the array's indexes. */
        struct kernel_counter *counters;  /* KW_MAX_COUNTERS */
        uint32_t n_counters;              /* USED among them */
};

/* A pool's own counter sits at (pool, KERNEL_SLOT_POOL). */
#define KERNEL_SLOT_POOL UINT32_MAX

enum { COUNTER_EMPTY, COUNTER_USED, COUNTER_DELETED };

struct kernel_counter {
        uint32_t pool_id, slot;
        uint8_t state;
};

static const char *const reason_names[_KW_REASON_MAX] = {
        [KW_REASON_DIRECT_RECLAIM] = "direct reclaim",
        [KW_REASON_KSWAPD] = "kswapd",
        [KW_REASON_MEMCG_RECLAIM] = "memcg reclaim",
};

/* libbpf talks a lot while probing; keep its first warning (the cause; the
 * later ones are consequences) to explain a failed load in one line
 * instead of letting it print. */
static char libbpf_warning[256];

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
        size_t n;

        if (level != LIBBPF_WARN || libbpf_warning[0])
                return 0;
        vsnprintf(libbpf_warning, sizeof(libbpf_warning), fmt, ap);
        n = strlen(libbpf_warning);
        while (n > 0 && libbpf_warning[n - 1] == '\n')
                libbpf_warning[--n] = 0;
        return 0;
}

static bool pressure_wants_bpf(enum config_pressure pressure) {
        return pressure == PRESSURE_BPF || pressure == PRESSURE_AUTO;
}

/* On failure writes the cause, for a person, into why. */
static int kernel_bpf_load(kernel_watch *k, bool with_pressure, char *why, size_t whylen) {
        struct kernel_bpf *skel;
        struct stat st;
        int r;

        if (access(KERNEL_BTF_PATH, R_OK) < 0) {
                r = negative_errno();
                snprintf(why, whylen, "kernel without BTF: %s: %s", KERNEL_BTF_PATH, strerror(-r));
                return r;
        }

        libbpf_set_print(libbpf_print);
        libbpf_warning[0] = 0;

        skel = kernel_bpf__open();
        if (!skel) {
                r = negative_errno();
#ifdef KERNEL_BPF_STUB
                snprintf(why, whylen, "scavd was built without BPF programs (no kernel BTF, bpftool or clang at build time)");
#else
                snprintf(why, whylen, "opening the BPF object: %s", strerror(-r));
#endif
                return r;
        }

        /* In a pid namespace of its own the daemon knows its clients by
         * pids of that namespace; so must the fault program. */
        if (stat("/proc/self/ns/pid", &st) == 0 && st.st_ino != KERNEL_INIT_PIDNS_INO) {
                skel->rodata->pidns_dev = st.st_dev;
                skel->rodata->pidns_ino = st.st_ino;
        }

        if (!with_pressure) {
                bpf_program__set_autoload(skel->progs.scav_direct_reclaim, false);
                bpf_program__set_autoload(skel->progs.scav_kswapd_wake, false);
                bpf_program__set_autoload(skel->progs.scav_memcg_reclaim, false);
        }

        r = kernel_bpf__load(skel);
        if (r < 0)
                goto fail;

        skel->links.scav_page_fault_user = bpf_program__attach(skel->progs.scav_page_fault_user);
        if (!skel->links.scav_page_fault_user) {
                r = negative_errno();
                goto fail;
        }

        r = libbpf_num_possible_cpus();
        if (r < 0)
                goto fail;
        k->n_cpus = r;
        k->counters = calloc(KW_MAX_COUNTERS, sizeof(struct kernel_counter));
        if (!k->counters) {
                r = -ENOMEM;
                goto fail;
        }
        k->skel = skel;
        return 0;

fail:
        kernel_bpf__destroy(skel);
        if (r == -EPERM || r == -EACCES)
                snprintf(why, whylen, "not permitted: needs CAP_BPF and CAP_PERFMON");
        else
                snprintf(why, whylen, "%s%s%s", strerror(-r), libbpf_warning[0] ? "; libbpf: " : "",
                         libbpf_warning);
        return r;
}

static void kernel_dispatch(kernel_watch *k, const char *why) {
        k->pressure_events++;
        if (k->fn)
                k->fn(why, k->userdata);
}

static int on_ring_event(void *ctx, void *data, size_t size) {
        kernel_watch *k = ctx;
        const struct kw_event *ev = data;

        if (size < sizeof(*ev) || ev->reason >= _KW_REASON_MAX)
                return 0;
        k->pending |= 1u << ev->reason;
        return 0;
}

/* A batch of reclaim records becomes one call per reason: the kernel may
 * have queued several before the loop woke, and the daemon's answer (release
 * everything free) is the same for each. */
static int on_ring_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        kernel_watch *k = userdata;
        int r;

        k->pending = 0;
        r = ring_buffer__consume(k->rb);
        if (r < 0)
                log_full_errno(LOG_WARNING, r, "kernel: reading the reclaim ring buffer failed: %m");

        for (unsigned i = 0; i < _KW_REASON_MAX; i++)
                if (k->pending & (1u << i))
                        kernel_dispatch(k, reason_names[i]);
        k->pending = 0;
        return 0;
}

static int kernel_bpf_pressure_start(kernel_watch *k) {
        struct kernel_bpf *skel = k->skel;
        struct {
                struct bpf_program *prog;
                struct bpf_link **link;
        } progs[] = {
                { skel->progs.scav_direct_reclaim, &skel->links.scav_direct_reclaim },
                { skel->progs.scav_kswapd_wake, &skel->links.scav_kswapd_wake },
                { skel->progs.scav_memcg_reclaim, &skel->links.scav_memcg_reclaim },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(progs); i++) {
                *progs[i].link = bpf_program__attach(progs[i].prog);
                if (!*progs[i].link)
                        return negative_errno();
        }

        k->rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_ring_event, k, NULL);
        if (!k->rb)
                return negative_errno();

        r = sd_event_add_io(k->event, &k->rb_source, ring_buffer__epoll_fd(k->rb), EPOLLIN,
                            on_ring_io, k);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(k->rb_source, "kernel-reclaim");
        /* The kernel is short of memory now: before client requests and timers. */
        (void) sd_event_source_set_priority(k->rb_source, SD_EVENT_PRIORITY_IMPORTANT);
        return 0;
}

static void kernel_bpf_pressure_stop(kernel_watch *k) {
        struct kernel_bpf *skel = k->skel;

        k->rb_source = sd_event_source_disable_unref(k->rb_source);
        ring_buffer__free(k->rb);
        k->rb = NULL;
        if (!skel)
                return;
        bpf_link__destroy(skel->links.scav_direct_reclaim);
        bpf_link__destroy(skel->links.scav_kswapd_wake);
        bpf_link__destroy(skel->links.scav_memcg_reclaim);
        skel->links.scav_direct_reclaim = NULL;
        skel->links.scav_kswapd_wake = NULL;
        skel->links.scav_memcg_reclaim = NULL;
}

static int on_psi_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        kernel_watch *k = userdata;

        if (revents & EPOLLERR) {
                /* The trigger's file went away (cannot happen for /proc, can
                 * for a cgroup's memory.pressure): stop listening, say so. */
                log_full_errno(LOG_WARNING, -EIO, "kernel: PSI trigger failed; no pressure response from now on");
                k->psi_source = sd_event_source_disable_unref(k->psi_source);
                k->mode = "off";
                return 0;
        }
        if (revents & EPOLLPRI)
                kernel_dispatch(k, "psi memory some");
        return 0;
}

static int kernel_psi_start(kernel_watch *k) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = open(KERNEL_PSI_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        /* The kernel wants the trigger with its terminating NUL. */
        if (write(fd, KERNEL_PSI_TRIGGER, sizeof(KERNEL_PSI_TRIGGER)) < 0)
                return negative_errno();

        r = sd_event_add_io(k->event, &k->psi_source, fd, EPOLLPRI, on_psi_io, k);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(k->psi_source, "kernel-psi");
        (void) sd_event_source_set_priority(k->psi_source, SD_EVENT_PRIORITY_IMPORTANT);
        k->psi_fd = TAKE_FD(fd);
        return 0;
}

int kernel_watch_new(sd_event *e, enum config_tristate bpf, enum config_pressure pressure,
                     kernel_pressure_fn fn, void *userdata, kernel_watch **ret) {
        kernel_watch *k;
        int r;

        assert(e);
        assert(ret);

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->event = sd_event_ref(e);
        k->fn = fn;
        k->userdata = userdata;
        k->psi_fd = -EBADF;
        k->mode = "off";

        if (bpf != CONFIG_OFF) {
                char why[512];

                r = kernel_bpf_load(k, pressure_wants_bpf(pressure), why, sizeof(why));
                if (r < 0) {
                        if (bpf == CONFIG_ON) {
                                log_full_errno(LOG_ERR, r, "kernel: bpf=on but BPF is unavailable: %s", why);
                                kernel_watch_free(k);
                                return -EOPNOTSUPP;
                        }
                        log_full_errno(LOG_NOTICE, r, "kernel: BPF unavailable (%s); page faults are not counted%s",
                                       why, pressure == PRESSURE_AUTO ? ", pressure comes from PSI" : "");
                }
        }

        if (pressure_wants_bpf(pressure) && k->skel) {
                r = kernel_bpf_pressure_start(k);
                if (r >= 0)
                        k->mode = "bpf";
                else {
                        kernel_bpf_pressure_stop(k);
                        if (pressure == PRESSURE_BPF) {
                                log_full_errno(LOG_ERR, r, "kernel: pressure=bpf but the reclaim tracepoints cannot be attached: %m");
                                kernel_watch_free(k);
                                return -EOPNOTSUPP;
                        }
                        log_full_errno(LOG_NOTICE, r, "kernel: reclaim tracepoints cannot be attached (%m), pressure comes from PSI");
                }
        } else if (pressure == PRESSURE_BPF) {
                log_full_errno(LOG_ERR, -EOPNOTSUPP, "kernel: pressure=bpf needs BPF, which is %s",
                               bpf == CONFIG_OFF ? "turned off (bpf=off)" : "unavailable");
                kernel_watch_free(k);
                return -EOPNOTSUPP;
        }

        if (pressure == PRESSURE_PSI || (pressure == PRESSURE_AUTO && !k->rb_source)) {
                r = kernel_psi_start(k);
                if (r >= 0)
                        k->mode = "psi";
                else if (pressure == PRESSURE_PSI) {
                        log_full_errno(LOG_ERR, r, "kernel: pressure=psi but no trigger on " KERNEL_PSI_PATH ": %m");
                        kernel_watch_free(k);
                        return -EOPNOTSUPP;
                } else
                        log_full_errno(LOG_NOTICE, r,
                                       "kernel: PSI unavailable (" KERNEL_PSI_PATH ": %m); no response to memory pressure");
        }

        log_info("kernel: page faults %s; pressure from %s", k->skel ? "counted by BPF" : "not counted",
                 k->rb_source ? "BPF reclaim tracepoints" :
                 k->psi_source ? "a PSI trigger (" KERNEL_PSI_TRIGGER ")" : "nowhere");
        *ret = k;
        return 0;
}

kernel_watch *kernel_watch_free(kernel_watch *k) {
        if (!k)
                return NULL;
        kernel_bpf_pressure_stop(k);
        kernel_bpf__destroy(k->skel);
        free(k->counters);
        k->psi_source = sd_event_source_disable_unref(k->psi_source);
        closep(&k->psi_fd);
        sd_event_unref(k->event);
        free(k);
        return NULL;
}

static uint32_t counter_hash(uint32_t pool_id, uint32_t slot) {
        uint64_t h = ((uint64_t) pool_id << 32 | slot) * UINT64_C(0x9e3779b97f4a7c15);

        return (uint32_t) (h >> 32) & (KW_MAX_COUNTERS - 1);
}

/*
 * The index of (pool_id, slot)'s counter; with create, a new one (zeroed
 * in the BPF array, which may hold a forgotten pool's counts) when it has
 * none. -ENOENT without create, -ENOSPC when all are taken.
 */
static int counter_index(kernel_watch *k, uint32_t pool_id, uint32_t slot, bool create, uint32_t *ret) {
        uint32_t h = counter_hash(pool_id, slot), free_idx = UINT32_MAX;

        for (uint32_t probe = 0; probe < KW_MAX_COUNTERS; probe++) {
                uint32_t i = (h + probe) & (KW_MAX_COUNTERS - 1);
                struct kernel_counter *c = &k->counters[i];

                if (c->state == COUNTER_USED && c->pool_id == pool_id && c->slot == slot) {
                        *ret = i;
                        return 0;
                }
                if (c->state != COUNTER_USED && free_idx == UINT32_MAX)
                        free_idx = i;
                if (c->state == COUNTER_EMPTY)
                        break;
        }
        if (!create)
                return -ENOENT;
        if (free_idx == UINT32_MAX)
                return -ENOSPC;

        uint64_t zeros[k->n_cpus];

        memset(zeros, 0, sizeof(zeros));
        if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.counters), &free_idx, zeros, BPF_ANY) < 0)
                return negative_errno();
        k->counters[free_idx] = (struct kernel_counter) { .pool_id = pool_id, .slot = slot, .state = COUNTER_USED };
        k->n_counters++;
        *ret = free_idx;
        return 0;
}

/*
 * The procs map is the only copy of a process's ranges: each change writes
 * the whole value, which the kernel swaps in as one element, so the fault
 * program sees either the old or the new set, never half of one.
 */
int kernel_watch_add_mapping(kernel_watch *k, pid_t tgid, uint64_t addr, uint64_t len,
                             uint32_t pool_id, uint32_t slot) {
        struct kw_proc proc = {};
        uint32_t key = tgid, pool_counter, slot_counter;
        unsigned i;
        int fd, r;

        assert(k);

        if (tgid <= 0 || len == 0 || addr + len < addr || slot == KERNEL_SLOT_POOL)
                return -EINVAL;
        if (!k->skel)
                return 0;

        r = counter_index(k, pool_id, KERNEL_SLOT_POOL, true, &pool_counter);
        if (r < 0)
                return r;
        r = counter_index(k, pool_id, slot, true, &slot_counter);
        if (r < 0)
                return r;

        fd = bpf_map__fd(k->skel->maps.procs);
        if (bpf_map_lookup_elem(fd, &key, &proc) < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                proc = (struct kw_proc) {};
        }

        /* A client that maps its pool again (after a daemon restart, say)
         * replaces its range. */
        for (i = 0; i < proc.n && i < KW_MAX_RANGES; i++)
                if (proc.ranges[i].pool_id == pool_id && proc.ranges[i].slot == slot)
                        break;
        if (i == KW_MAX_RANGES)
                return -E2BIG;
        proc.ranges[i] = (struct kw_range) {
                .addr = addr,
                .len = len,
                .pool_id = pool_id,
                .slot = slot,
                .pool_counter = pool_counter,
                .slot_counter = slot_counter,
        };
        if (i == proc.n)
                proc.n++;

        if (bpf_map_update_elem(fd, &key, &proc, BPF_ANY) < 0)
                return negative_errno();
        return 0;
}

int kernel_watch_remove_mapping(kernel_watch *k, pid_t tgid, uint32_t pool_id, uint32_t slot) {
        struct kw_proc proc;
        uint32_t key = tgid;
        unsigned j = 0;
        int fd;

        assert(k);

        if (!k->skel)
                return 0;
        fd = bpf_map__fd(k->skel->maps.procs);
        if (bpf_map_lookup_elem(fd, &key, &proc) < 0)
                return errno == ENOENT ? 0 : negative_errno();

        for (unsigned i = 0; i < proc.n && i < KW_MAX_RANGES; i++)
                if (proc.ranges[i].pool_id != pool_id || proc.ranges[i].slot != slot)
                        proc.ranges[j++] = proc.ranges[i];
        if (j == proc.n)
                return 0;
        proc.n = j;

        if ((j == 0 ? bpf_map_delete_elem(fd, &key) : bpf_map_update_elem(fd, &key, &proc, BPF_EXIST)) < 0 &&
            errno != ENOENT)
                return negative_errno();
        return 0;
}

void kernel_watch_remove_process(kernel_watch *k, pid_t tgid) {
        uint32_t key = tgid;

        assert(k);

        if (!k->skel)
                return;
        (void) bpf_map_delete_elem(bpf_map__fd(k->skel->maps.procs), &key);
}

/* Forgets a pool: its ranges in every process and its counters, so that a
 * later pool given the same id starts from zero. */
void kernel_watch_remove_pool(kernel_watch *k, uint32_t pool_id) {
        uint32_t key, next;
        bool first;
        int fd;

        assert(k);

        if (!k->skel)
                return;

        fd = bpf_map__fd(k->skel->maps.procs);
        for (first = true; bpf_map_get_next_key(fd, first ? NULL : &key, &next) == 0; first = false) {
                struct kw_proc proc;
                unsigned j = 0;

                key = next;
                if (bpf_map_lookup_elem(fd, &key, &proc) < 0)
                        continue;
                for (unsigned i = 0; i < proc.n && i < KW_MAX_RANGES; i++)
                        if (proc.ranges[i].pool_id != pool_id)
                                proc.ranges[j++] = proc.ranges[i];
                if (j == proc.n)
                        continue;
                proc.n = j;
                /* Deleting the current key would restart the walk; an empty
                 * entry costs one lookup per fault of that process until it
                 * leaves. */
                (void) bpf_map_update_elem(fd, &key, &proc, BPF_EXIST);
        }

        /* Tombstones, not EMPTY: later entries' probe chains pass here.
         * Entries cannot move (their positions are the counters' indexes),
         * so the table only starts afresh once nothing is in it. */
        for (uint32_t i = 0; i < KW_MAX_COUNTERS; i++)
                if (k->counters[i].state == COUNTER_USED && k->counters[i].pool_id == pool_id) {
                        k->counters[i].state = COUNTER_DELETED;
                        k->n_counters--;
                }
        if (k->n_counters == 0)
                memset(k->counters, 0, KW_MAX_COUNTERS * sizeof(struct kernel_counter));
}

static uint64_t counter_read(kernel_watch *k, uint32_t pool_id, uint32_t slot) {
        uint64_t sum = 0;
        uint32_t i;

        if (!k->skel || counter_index(k, pool_id, slot, false, &i) < 0)
                return 0;

        uint64_t values[k->n_cpus];

        if (bpf_map_lookup_elem(bpf_map__fd(k->skel->maps.counters), &i, values) < 0)
                return 0;
        for (int c = 0; c < k->n_cpus; c++)
                sum += values[c];
        return sum;
}

uint64_t kernel_watch_faults(kernel_watch *k, uint32_t pool_id) {
        assert(k);
        return counter_read(k, pool_id, KERNEL_SLOT_POOL);
}

uint64_t kernel_watch_slot_faults(kernel_watch *k, uint32_t pool_id, uint32_t slot) {
        assert(k);
        return slot == KERNEL_SLOT_POOL ? 0 : counter_read(k, pool_id, slot);
}

uint64_t kernel_watch_faults_since(kernel_watch *k, uint32_t pool_id, uint64_t *mark) {
        uint64_t now, d;

        assert(k);
        assert(mark);

        now = kernel_watch_faults(k, pool_id);
        /* The counter restarts when its pool is removed and re-added. */
        d = now >= *mark ? now - *mark : now;
        *mark = now;
        return d;
}

uint64_t kernel_watch_pressure_events(kernel_watch *k) {
        assert(k);
        return k->pressure_events;
}

uint64_t kernel_watch_reclaim_seen(kernel_watch *k) {
        uint64_t sum = 0;

        assert(k);

        if (!k->skel)
                return 0;
        for (unsigned i = 0; i < _KW_REASON_MAX; i++)
                sum += k->skel->bss->pressure_seen[i];
        return sum;
}

bool kernel_watch_has_bpf(kernel_watch *k) {
        assert(k);
        return k->skel;
}

const char *kernel_watch_mode(kernel_watch *k) {
        assert(k);
        return k->mode;
}

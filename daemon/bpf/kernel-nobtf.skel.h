/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Stands in for the generated kernel.skel.h when the build cannot make it
 * (no kernel BTF to generate vmlinux.h from, no bpftool or clang; bpf.mk
 * copies it into place): the same struct, whose open always fails, so that
 * the daemon builds and runs with fault counters reading 0 and pressure
 * from PSI.
 */

#include <errno.h>
#include <stdlib.h>

#include <bpf/libbpf.h>

#define KERNEL_BPF_STUB 1

struct kernel_bpf {
        struct {
                struct bpf_map *procs, *counters, *events;
        } maps;
        struct {
                struct bpf_program *scav_page_fault_user, *scav_direct_reclaim, *scav_kswapd_wake,
                        *scav_memcg_reclaim;
        } progs;
        struct {
                struct bpf_link *scav_page_fault_user, *scav_direct_reclaim, *scav_kswapd_wake,
                        *scav_memcg_reclaim;
        } links;
        struct {
                __u64 pidns_dev, pidns_ino;
        } *rodata;
        struct {
                __u64 pressure_seen[3], pressure_last_ns[3];
        } *bss;
};

static inline struct kernel_bpf *kernel_bpf__open(void) {
        errno = EOPNOTSUPP;
        return NULL;
}

static inline int kernel_bpf__load(struct kernel_bpf *skel) {
        return -EOPNOTSUPP;
}

static inline void kernel_bpf__destroy(struct kernel_bpf *skel) {
        free(skel);
}

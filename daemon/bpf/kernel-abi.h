/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the BPF programs (kernel.bpf.c) and their loader (daemon/kernel.c)
 * share: the layout of map keys, values and ring buffer events. Fixed-width
 * fields only, since both a BPF object and the daemon read them.
 */

#ifndef __VMLINUX_H__
#include <stdint.h>
typedef uint32_t __kw_u32;
typedef uint64_t __kw_u64;
#else
typedef __u32 __kw_u32;
typedef __u64 __kw_u64;
#endif

/* Pool mappings one client process may have registered at once. */
#define KW_MAX_RANGES 8
/* Processes watched at once (clients of all pools). */
#define KW_MAX_PROCS 4096
/* Fault counters: one per pool and one per (pool, slot), indexes into a
 * per-CPU array the loader hands out (a power of two). */
#define KW_MAX_COUNTERS 16384
/* A reclaim reason raises at most one event per this much time. */
#define KW_PRESSURE_GAP_NS 10000000ULL

enum kw_reason {
        KW_REASON_DIRECT_RECLAIM,
        KW_REASON_KSWAPD,
        KW_REASON_MEMCG_RECLAIM,
        _KW_REASON_MAX,
};

/* The program needs only the counters' indexes; pool and slot are for
 * the loader, which edits ranges by them. */
struct kw_range {
        __kw_u64 addr;
        __kw_u64 len;
        __kw_u32 pool_id;
        __kw_u32 slot;
        __kw_u32 pool_counter;
        __kw_u32 slot_counter;
};

/* Value of the procs map, keyed by tgid. Ranges [0, n) are valid. */
struct kw_proc {
        __kw_u32 n;
        __kw_u32 _pad;
        struct kw_range ranges[KW_MAX_RANGES];
};

/* One ring buffer record: a reclaim the kernel started. */
struct kw_event {
        __kw_u64 ts_ns;        /* bpf_ktime_get_ns() */
        __kw_u32 reason;       /* enum kw_reason */
        __kw_u32 pid;          /* the task that entered reclaim (kswapd: the kswapd thread) */
        __kw_u64 seen;         /* reclaim entries of this reason so far, sent or rate-limited */
        char comm[16];
};

// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * scavd's eyes in the kernel (issue 6). Two concerns, one object so that a
 * single load decides whether the daemon has BPF at all:
 *
 *  - page_fault_user: a fault at an address inside a pool mapping of a
 *    registered client process is the price of memory the scavenger released
 *    and the client touched again. Counted per pool and per (pool, slot), in
 *    per-CPU counters the loader assigns to each.
 *  - reclaim begins (direct, kswapd wake-up, memcg): the kernel is short of
 *    memory and scavd holds free pages it could give back now. One ring
 *    buffer record per reason per KW_PRESSURE_GAP_NS at most, since reclaim
 *    fires hundreds of times a second under a tight memcg and the daemon
 *    needs to hear it once.
 *
 * Tracepoint arguments are the kernel's (btf_trace_* typedefs in vmlinux.h);
 * tp_btf is used because this machine kind refuses fentry, kprobes and
 * tracefs-based tracepoints.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "kernel-abi.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, KW_MAX_PROCS);
        __type(key, __u32);                 /* tgid */
        __type(value, struct kw_proc);
} procs SEC(".maps");

/* Per-CPU so that faulting CPUs never share a cache line; an array, so
 * that a lookup is an index, not a hash. */
struct {
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
        __uint(max_entries, KW_MAX_COUNTERS);
        __type(key, __u32);
        __type(value, __u64);
} counters SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_RINGBUF);
        __uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* Reclaim entries seen per reason (rate-limited or not), and when the last
 * record of each reason was sent. Races between CPUs cost at most an extra
 * record, which the daemon tolerates. */
__u64 pressure_seen[_KW_REASON_MAX];
__u64 pressure_last_ns[_KW_REASON_MAX];

/*
 * Client pids reach the daemon through SO_PEERCRED, in the daemon's pid
 * namespace. Set by the loader when that is not the initial namespace, so
 * that the programs see tgids as the daemon does; zero (the usual case)
 * keeps the cheaper global tgid.
 */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;

static __always_inline __u32 current_tgid(void) {
        struct bpf_pidns_info ns;

        if (!pidns_ino)
                return bpf_get_current_pid_tgid() >> 32;
        /* A task outside the daemon's namespace cannot be its client. */
        if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
                return 0;
        return ns.tgid;
}

static __always_inline void count(__u32 index) {
        __u64 *v = bpf_map_lookup_elem(&counters, &index);

        /* Per-CPU, yet atomic: a preemptible kernel may run this program
         * for another task on the same CPU between a load and a store. */
        if (v)
                __sync_fetch_and_add(v, 1);
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(scav_page_fault_user, unsigned long address, struct pt_regs *regs,
             unsigned long error_code) {
        __u32 tgid = current_tgid();
        struct kw_proc *p;

        if (!tgid)
                return 0;
        p = bpf_map_lookup_elem(&procs, &tgid);
        if (!p)
                return 0;

        for (int i = 0; i < KW_MAX_RANGES; i++) {
                struct kw_range *r = &p->ranges[i];

                if (i >= p->n)
                        break;
                if (address - r->addr >= r->len)
                        continue;
                count(r->pool_counter);
                count(r->slot_counter);
                break;
        }
        return 0;
}

static __always_inline int pressure(enum kw_reason reason) {
        __u64 now = bpf_ktime_get_ns(), seen;
        struct kw_event *ev;

        seen = __sync_fetch_and_add(&pressure_seen[reason], 1) + 1;
        if (pressure_last_ns[reason] && now - pressure_last_ns[reason] < KW_PRESSURE_GAP_NS)
                return 0;
        pressure_last_ns[reason] = now;

        ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
        if (!ev)
                return 0;
        ev->ts_ns = now;
        ev->reason = reason;
        ev->pid = bpf_get_current_pid_tgid() >> 32;
        ev->seen = seen;
        bpf_get_current_comm(ev->comm, sizeof(ev->comm));
        bpf_ringbuf_submit(ev, 0);
        return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(scav_direct_reclaim, int order, gfp_t gfp_flags) {
        return pressure(KW_REASON_DIRECT_RECLAIM);
}

SEC("tp_btf/mm_vmscan_kswapd_wake")
int BPF_PROG(scav_kswapd_wake, int nid, int zid, int order) {
        return pressure(KW_REASON_KSWAPD);
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(scav_memcg_reclaim, int order, gfp_t gfp_flags) {
        return pressure(KW_REASON_MEMCG_RECLAIM);
}

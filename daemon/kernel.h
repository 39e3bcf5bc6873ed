/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Kernel awareness (issue 6): BPF programs counting user page faults in the
 * pools' mappings and turning reclaim events into immediate release, with
 * PSI triggers as the fallback. Implemented in daemon/kernel.c and
 * daemon/bpf/.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"

typedef struct kernel_watch kernel_watch;

/* Called from the event loop when the kernel reclaims; why is for the trace. */
typedef void (*kernel_pressure_fn)(const char *why, void *userdata);

/* bpf/pressure modes from the configuration. -EOPNOTSUPP when bpf=on and BPF
 * cannot be had, or pressure=bpf/psi and that source cannot be had (with a
 * clear log line). With bpf=auto and pressure=auto it always succeeds: no
 * BPF means fault counters reading 0 and pressure from PSI (or none), each
 * said once. Pressure calls come from e's loop (ring buffer or PSI trigger
 * file descriptors); nothing polls. */
int kernel_watch_new(sd_event *e, enum config_tristate bpf, enum config_pressure pressure,
                     kernel_pressure_fn fn, void *userdata, kernel_watch **ret);
kernel_watch *kernel_watch_free(kernel_watch *k);

/* A client mapped pool `pool_id`'s heap at [addr, addr+len) in process tgid. */
int kernel_watch_add_mapping(kernel_watch *k, pid_t tgid, uint64_t addr, uint64_t len,
                             uint32_t pool_id, uint32_t slot);
void kernel_watch_remove_process(kernel_watch *k, pid_t tgid);
/* One client left one pool (the process may stay in others). */
int kernel_watch_remove_mapping(kernel_watch *k, pid_t tgid, uint32_t pool_id, uint32_t slot);
/* The pool is gone: its ranges in every process and its counters. */
void kernel_watch_remove_pool(kernel_watch *k, uint32_t pool_id);

/* Page faults counted so far in a pool (all clients) and in one slot. */
uint64_t kernel_watch_faults(kernel_watch *k, uint32_t pool_id);
uint64_t kernel_watch_slot_faults(kernel_watch *k, uint32_t pool_id, uint32_t slot);
/* Faults in the pool since *mark, which it then advances: per-generation
 * counts for the scavenger, which knows what it released and when and so
 * can call those faults refaults. */
uint64_t kernel_watch_faults_since(kernel_watch *k, uint32_t pool_id, uint64_t *mark);
/* Reclaim/PSI events seen (as delivered to kernel_pressure_fn). */
uint64_t kernel_watch_pressure_events(kernel_watch *k);
/* Reclaim entries the BPF programs saw, including those rate-limited away. */
uint64_t kernel_watch_reclaim_seen(kernel_watch *k);
/* The BPF programs are loaded (fault counters are live). */
bool kernel_watch_has_bpf(kernel_watch *k);
/* "bpf", "psi" or "off": where pressure comes from. */
const char *kernel_watch_mode(kernel_watch *k);

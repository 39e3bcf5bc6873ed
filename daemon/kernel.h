/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Kernel awareness (issue 6): BPF programs counting user page faults in the
 * pools' mappings and turning reclaim events into immediate release, with
 * PSI triggers as the fallback. Implemented in daemon/kernel.c and
 * daemon/bpf/.
 */

#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"

typedef struct kernel_watch kernel_watch;

/* Called from the event loop when the kernel reclaims; why is for the trace. */
typedef void (*kernel_pressure_fn)(const char *why, void *userdata);

/* bpf/pressure modes from the configuration. -EOPNOTSUPP when bpf=on and BPF
 * cannot be had (with a clear log line). */
int kernel_watch_new(sd_event *e, enum config_tristate bpf, enum config_pressure pressure,
                     kernel_pressure_fn fn, void *userdata, kernel_watch **ret);
kernel_watch *kernel_watch_free(kernel_watch *k);

/* A client mapped pool `pool_id`'s heap at [addr, addr+len) in process tgid. */
int kernel_watch_add_mapping(kernel_watch *k, pid_t tgid, uint64_t addr, uint64_t len,
                             uint32_t pool_id, uint32_t slot);
void kernel_watch_remove_process(kernel_watch *k, pid_t tgid);

/* Page faults counted so far in a pool (all clients) and in one slot. */
uint64_t kernel_watch_faults(kernel_watch *k, uint32_t pool_id);
uint64_t kernel_watch_slot_faults(kernel_watch *k, uint32_t pool_id, uint32_t slot);
/* Reclaim/PSI events seen. */
uint64_t kernel_watch_pressure_events(kernel_watch *k);
/* "bpf", "psi" or "off": what the daemon actually uses. */
const char *kernel_watch_mode(kernel_watch *k);

/* SPDX-License-Identifier: MIT */
/*
 * Reclaim in a memory cgroup reaches the daemon through the BPF ring buffer
 * (issue 6): pressure=bpf calls back with "memcg reclaim" within a bounded
 * time of a process starting to thrash its 64 MiB group's page cache, and
 * the callbacks stay rate-limited while reclaim goes on.
 */

#include "test-kernel-pressure.h"

TEST_DEFINE_GLOBALS;

int main(void) {
        return pressure_test(CONFIG_AUTO, PRESSURE_BPF, "bpf", "memcg reclaim", MEMCG_READ, 10 * 1000000ULL);
}

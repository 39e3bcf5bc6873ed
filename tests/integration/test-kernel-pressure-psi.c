/* SPDX-License-Identifier: MIT */
/*
 * Without BPF (bpf=off), memory pressure reaches the daemon through a PSI
 * trigger on /proc/pressure/memory (issue 6): a process writing through
 * its 64 MiB memory cgroup's page cache stalls on writeback long enough
 * for the 150 ms in 2 s trigger within a bounded time.
 */

#include "test-kernel-pressure.h"

TEST_DEFINE_GLOBALS;

int main(void) {
        return pressure_test(CONFIG_OFF, PRESSURE_PSI, "psi", NULL, MEMCG_WRITE, 20 * 1000000ULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * The daemon without the privilege for BPF (issue 6): started from a
 * process that dropped CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (from its
 * bounding set too, so the daemon cannot regain them), with bpf = auto it
 * says once that BPF is unavailable, answers pressure through PSI where
 * the kernel has it, and serves clients; with bpf = on it refuses to start
 * and says why.
 */

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "test-kernel-daemon.h"

TEST_DEFINE_GLOBALS;

static const char config_auto[] =
        "[daemon]\n"
        "bpf = auto\n"
        "pressure = auto\n"
        "\n"
        "[pool " KD_POOL "]\n"
        "capacity = 64M\n";

static const char config_on[] =
        "[daemon]\n"
        "bpf = on\n"
        "\n"
        "[pool " KD_POOL "]\n"
        "capacity = 64M\n";

static int drop_bpf_caps(void) {
        static const int caps[] = { CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN };
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct c[2];

        for (size_t i = 0; i < ELEMENTSOF(caps); i++)
                /* Without CAP_SETPCAP (not root) the bounding set stays, but then
                 * nothing can raise these capabilities again either. */
                if (prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
                        return -errno;
        if (syscall(SYS_capget, &h, c) < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(caps); i++) {
                c[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
                c[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
                c[caps[i] / 32].inheritable &= ~(1u << (caps[i] % 32));
        }
        if (syscall(SYS_capset, &h, c) < 0)
                return -errno;
        return 0;
}

int main(void) {
        bool have_psi = access("/proc/pressure/memory", W_OK) == 0;
        uint64_t off, faults, pressure, my_faults;
        struct test_daemon d;
        scav_pool *p;
        int r;

        if (!test_scavd_path())
                TEST_SKIP("no scavd binary (set SCAVD or BUILD)");
        r = drop_bpf_caps();
        CHECKF(r == 0, "dropping capabilities: %s", strerror(-r));
        if (r < 0)
                return TEST_END();

        r = test_daemon_start(&d, config_auto);
        CHECKF(r == 0, "starting the daemon with bpf = auto and no CAP_BPF: %s", strerror(-r));
        if (r == 0) {
                r = scav_open(KD_POOL, &p);
                CHECKF(r == 0, "scav_open: %s", strerror(-r));
                if (r == 0) {
                        r = scav_alloc(p, 1 << 20, 0, &off);
                        CHECKF(r == 0, "scav_alloc: %s", strerror(-r));
                        if (r == 0) {
                                memset(scav_ptr(p, off), 1, 1 << 20);
                                CHECK(scav_free(p, off) == 0);
                        }
                        r = kd_daemon_counters(&d, &faults, &pressure, &my_faults);
                        CHECKF(r == 0, "scavctl: %s", strerror(-r));
                        if (r == 0)
                                CHECK_EQ_U64(faults, 0);
                        scav_close(p);
                }
                r = test_daemon_stop(&d);
                CHECKF(r == 0, "daemon exit status %d", r);
                CHECKF(test_daemon_log_count(&d, "BPF unavailable", NULL) == 1, "%u \"BPF unavailable\" lines",
                       test_daemon_log_count(&d, "BPF unavailable", NULL));
                if (have_psi)
                        CHECK(test_daemon_log_count(&d, "BPF unavailable", "pressure comes from PSI") == 1);
                if (test_failures)
                        test_daemon_dump_log(&d);
                test_daemon_cleanup(&d);
        }

        /* bpf = on: refused at start, with the reason in the log. */
        r = test_daemon_start(&d, config_on);
        CHECKF(r < 0, "the daemon started with bpf = on and no CAP_BPF");
        if (r == 0)
                (void) test_daemon_stop(&d);
        CHECKF(test_daemon_log_count(&d, "bpf=on", "CAP_BPF") >= 1, "no line saying bpf=on needs CAP_BPF");
        if (test_failures)
                test_daemon_dump_log(&d);
        test_daemon_cleanup(&d);
        return TEST_END();
}

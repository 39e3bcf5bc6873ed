/* SPDX-License-Identifier: MIT */
/*
 * Without the privilege for BPF (issue 6): in a child that dropped CAP_BPF,
 * CAP_PERFMON and CAP_SYS_ADMIN, bpf=auto still gives a working watch
 * (pressure from PSI where the kernel has it, one log line saying so, fault
 * counters reading zero), while bpf=on and pressure=bpf refuse with
 * -EOPNOTSUPP. The parent, still privileged, shows what the drop took away.
 */

#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../daemon/kernel.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static const int dropped_caps[] = { CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN };

static int drop_caps(void) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2];

        for (size_t i = 0; i < sizeof(dropped_caps) / sizeof(dropped_caps[0]); i++)
                /* Without CAP_SETPCAP (not root) the bounding set stays, but then
                 * nothing can raise these capabilities again either. */
                if (prctl(PR_CAPBSET_DROP, dropped_caps[i], 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
                        return -errno;
        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        for (size_t i = 0; i < sizeof(dropped_caps) / sizeof(dropped_caps[0]); i++) {
                int c = dropped_caps[i];

                d[c / 32].effective &= ~(1u << (c % 32));
                d[c / 32].permitted &= ~(1u << (c % 32));
                d[c / 32].inheritable &= ~(1u << (c % 32));
        }
        if (syscall(SYS_capset, &h, d) < 0)
                return -errno;
        return 0;
}

/* Runs kernel_watch_new with stderr captured; returns its result and the
 * number of log lines containing needle. */
static int watch_new_logged(sd_event *e, enum config_tristate bpf, enum config_pressure pressure,
                            const char *needle, unsigned *n_lines, kernel_watch **ret) {
        char buf[4096] = {};
        int fd, saved, r;
        ssize_t n;

        fd = memfd_create("log", MFD_CLOEXEC);
        saved = dup(STDERR_FILENO);
        if (fd < 0 || saved < 0)
                return -errno;
        fflush(stderr);
        dup2(fd, STDERR_FILENO);
        r = kernel_watch_new(e, bpf, pressure, NULL, NULL, ret);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);

        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        *n_lines = 0;
        for (char *line = strtok(buf, "\n"); line && n > 0; line = strtok(NULL, "\n")) {
                fprintf(stderr, "  log: %s\n", line);
                if (strstr(line, needle))
                        (*n_lines)++;
        }
        return r;
}

static int child(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        kernel_watch *k = NULL;
        bool have_psi = access("/proc/pressure/memory", W_OK) == 0;
        unsigned lines;
        int r;

        r = drop_caps();
        CHECKF(r == 0, "dropping capabilities: %s", strerror(-r));
        if (r < 0)
                return 1;
        CHECK(sd_event_new(&e) >= 0);

        r = watch_new_logged(e, CONFIG_AUTO, PRESSURE_AUTO, "BPF unavailable", &lines, &k);
        CHECKF(r == 0, "bpf=auto without privilege: %s", strerror(-r));
        if (r == 0) {
                CHECK(!kernel_watch_has_bpf(k));
                CHECKF(strcmp(kernel_watch_mode(k), have_psi ? "psi" : "off") == 0, "mode %s",
                       kernel_watch_mode(k));
                CHECK_EQ_U64(lines, 1);
                /* Everything else still answers. */
                CHECK_EQ_U64(kernel_watch_add_mapping(k, getpid(), 0x100000, 4096, 1, 0), 0);
                CHECK_EQ_U64(kernel_watch_faults(k, 1), 0);
                CHECK_EQ_U64(kernel_watch_slot_faults(k, 1, 0), 0);
                kernel_watch_remove_process(k, getpid());
                k = kernel_watch_free(k);
        }

        r = watch_new_logged(e, CONFIG_ON, PRESSURE_AUTO, "bpf=on", &lines, &k);
        CHECK_EQ_U64(r, (uint64_t) -EOPNOTSUPP);
        CHECK_EQ_U64(lines, 1);
        if (r == 0)
                k = kernel_watch_free(k);

        r = watch_new_logged(e, CONFIG_AUTO, PRESSURE_BPF, "pressure=bpf", &lines, &k);
        CHECK_EQ_U64(r, (uint64_t) -EOPNOTSUPP);
        CHECK_EQ_U64(lines, 1);
        if (r == 0)
                k = kernel_watch_free(k);

        if (have_psi) {
                r = watch_new_logged(e, CONFIG_OFF, PRESSURE_PSI, "unavailable", &lines, &k);
                CHECKF(r == 0, "bpf=off pressure=psi: %s", strerror(-r));
                CHECK_EQ_U64(lines, 0);
                if (r == 0) {
                        CHECK(strcmp(kernel_watch_mode(k), "psi") == 0);
                        k = kernel_watch_free(k);
                }
        }
        return test_failures ? 1 : 0;
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        kernel_watch *k = NULL;
        pid_t pid;
        int r, status;

        /* What the privileged parent has, for the record: the child's
         * checks hold either way. */
        CHECK(sd_event_new(&e) >= 0);
        r = kernel_watch_new(e, CONFIG_AUTO, PRESSURE_AUTO, NULL, NULL, &k);
        CHECKF(r == 0, "bpf=auto: %s", strerror(-r));
        if (r == 0) {
                printf("privileged: BPF %s, pressure from %s\n",
                       kernel_watch_has_bpf(k) ? "loaded" : "unavailable", kernel_watch_mode(k));
                kernel_watch_free(k);
        }

        fflush(stdout);
        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
                _exit(child());
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged child failed (status 0x%x)", status);
        return TEST_END();
}

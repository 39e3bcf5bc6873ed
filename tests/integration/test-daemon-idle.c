/* SPDX-License-Identifier: MIT */
/*
 * Issue 3's bar: the daemon idle with 10 pools and 50 connected clients uses
 * no CPU -- no wake-ups while nothing happens.
 *
 * A real daemon with 10 pools; 5 client processes each open all 10 (50
 * sessions), one of them holding 32 MiB in pool p0. Once the daemon has
 * settled, over 5 s its context switches (voluntary and involuntary, summed
 * over its threads in /proc/PID/task/TID/status) and CPU ticks
 * (/proc/PID/stat) must not grow at all. We allow exactly 0: a task asleep
 * in epoll_wait with no timer armed is not scheduled, so neither counter can
 * move without a real wake-up; an involuntary switch needs the task to be
 * running. Reading /proc does not wake it.
 *
 * Then the client frees its 32 MiB with nothing else prodding the daemon:
 * its WAKE makes the parked pool run generations again, the goal is
 * recomputed and the memory released (the heap memfd's st_blocks drop,
 * read from the kernel, not from the daemon). Then idle again: 0 wake-ups.
 */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define MiB (UINT64_C(1) << 20)
#define POOLS 10
#define PROCS 5
#define HOLD_MIB 32

static const char config[] =
        "[daemon]\nscavtrace = 1\ngeneration_interval = 100ms\nscavenge_percent = 10\n"
        "pressure = off\nbpf = off\n"
        "[pool p0]\ncapacity = 256M\n[pool p1]\ncapacity = 256M\n[pool p2]\ncapacity = 256M\n"
        "[pool p3]\ncapacity = 256M\n[pool p4]\ncapacity = 256M\n[pool p5]\ncapacity = 256M\n"
        "[pool p6]\ncapacity = 256M\n[pool p7]\ncapacity = 256M\n[pool p8]\ncapacity = 256M\n"
        "[pool p9]\ncapacity = 256M\n";

/*
 * A client process: opens every pool, the first of them (holder) backs
 * HOLD_MIB in p0, says so on `ready`, then sleeps in read(cmd): 'f' frees
 * the memory (and says so), EOF closes everything and exits.
 */
static int client(bool holder, int ready, int cmd) {
        scav_pool *p[POOLS] = {};
        uint64_t offs[HOLD_MIB];
        char c;
        int r;

        for (int i = 0; i < POOLS; i++) {
                char name[8];

                snprintf(name, sizeof(name), "p%d", i);
                r = scav_open(name, &p[i]);
                if (r < 0) {
                        fprintf(stderr, "client: scav_open(%s): %s\n", name, strerror(-r));
                        return 1;
                }
        }
        if (holder)
                for (int i = 0; i < HOLD_MIB; i++) {
                        r = scav_alloc(p[0], MiB, 0, &offs[i]);
                        if (r < 0) {
                                fprintf(stderr, "client: scav_alloc: %s\n", strerror(-r));
                                return 1;
                        }
                        memset(scav_ptr(p[0], offs[i]), 0x5a, MiB);
                }
        if (write(ready, "r", 1) != 1)
                return 1;
        while (read(cmd, &c, 1) == 1)
                if (c == 'f' && holder) {
                        for (int i = 0; i < HOLD_MIB; i++)
                                if (scav_free(p[0], offs[i]) < 0)
                                        return 1;
                        if (write(ready, "f", 1) != 1)
                                return 1;
                }
        for (int i = 0; i < POOLS; i++)
                scav_close(p[i]);
        return 0;
}

/* Waits until the daemon's context switches stay put for one second (it
 * parked everything), at most 20 s. */
static bool settle(pid_t pid) {
        int64_t a = test_proc_ctxt_switches(pid), b;

        for (int i = 0; i < 20; i++) {
                sleep(1);
                b = test_proc_ctxt_switches(pid);
                if (a == b)
                        return true;
                a = b;
        }
        return false;
}

static void measure_idle(pid_t pid, const char *when) {
        int64_t cs0, cs1, t0, t1;

        CHECKF(settle(pid), "%s: the daemon did not settle in 20 s", when);
        cs0 = test_proc_ctxt_switches(pid);
        t0 = test_proc_cpu_ticks(pid);
        sleep(5);
        cs1 = test_proc_ctxt_switches(pid);
        t1 = test_proc_cpu_ticks(pid);
        CHECK(cs0 >= 0 && t0 >= 0);
        printf("%s: %" PRIi64 " context switches, %" PRIi64 " CPU ticks in 5 s\n", when, cs1 - cs0, t1 - t0);
        CHECKF(cs1 == cs0, "%s: the daemon woke %" PRIi64 " times in 5 s", when, cs1 - cs0);
        CHECKF(t1 == t0, "%s: the daemon used %" PRIi64 " CPU ticks in 5 s", when, t1 - t0);
}

int main(void) {
        struct test_daemon d;
        pid_t kids[PROCS] = {};
        int ready[2], cmd[PROCS][2];
        scav_pool *watch = NULL;
        int64_t blocks0, blocks = 0;
        uint64_t t;
        char c;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = test_daemon_start(&d, config);
        if (r < 0) {
                fprintf(stderr, "test_daemon_start: %s\n", strerror(-r));
                return 1;
        }
        if (pipe2(ready, O_CLOEXEC) < 0) {
                CHECK(false);
                goto out;
        }
        /* One command pipe per client: only the holder may see 'f'. */
        for (int i = 0; i < PROCS; i++) {
                if (pipe2(cmd[i], O_CLOEXEC) < 0) {
                        CHECK(false);
                        goto out;
                }
                kids[i] = fork();
                if (kids[i] == 0) {
                        close(ready[0]);
                        for (int k = 0; k <= i; k++)
                                close(cmd[k][1]);
                        _exit(client(i == 0, ready[1], cmd[i][0]));
                }
                CHECK(kids[i] > 0);
                close(cmd[i][0]);
        }
        close(ready[1]);
        for (int i = 0; i < PROCS; i++) {
                r = (int) read(ready[0], &c, 1);
                CHECKF(r == 1 && c == 'r', "client %d did not start", i);
                if (r != 1)
                        goto out;
        }

        /* The heap memfd of p0, for st_blocks: the kernel's count, no daemon involved. */
        r = scav_open("p0", &watch);
        CHECKF(r == 0, "scav_open: %s", strerror(-r));
        if (r < 0)
                goto out;

        measure_idle(d.pid, "idle, 50 clients");
        blocks0 = test_fd_blocks(scav_heap_fd(watch));
        CHECKF(blocks0 >= (int64_t) (HOLD_MIB * MiB / 512), "p0 holds %" PRIi64 " KiB", blocks0 / 2);

        /* Only the only holder's frees: nobody else talks to the daemon. */
        CHECK(write(cmd[0][1], "f", 1) == 1);
        CHECK(read(ready[0], &c, 1) == 1 && c == 'f');
        t = test_now_usec();
        while (test_now_usec() - t < 20 * 1000000ull) {
                blocks = test_fd_blocks(scav_heap_fd(watch));
                if (blocks < blocks0 / 2)
                        break;
                usleep(20000);
        }
        printf("after the free: p0 backed %" PRIi64 " -> %" PRIi64 " KiB in %.2f s\n", blocks0 / 2, blocks / 2,
               (double) (test_now_usec() - t) / 1e6);
        CHECKF(blocks < blocks0 / 2, "the daemon did not release p0's freed memory: %" PRIi64 " KiB backed",
               blocks / 2);

        measure_idle(d.pid, "idle again");

        {
                struct scav_stats st;
                CHECK(scav_stats(watch, &st) == 0);
                printf("p0: gen %" PRIu64 ", in use %" PRIu64 " KiB, retained %" PRIu64 " KiB, goal %s\n", st.gen,
                       st.inuse >> 10, st.retained >> 10, st.retained_goal == UINT64_MAX ? "none" : "set");
        }
        CHECK(test_pool_check(&d, "p0"));
out:
        if (watch)
                scav_close(watch);
        for (int i = 0; i < PROCS; i++)
                if (kids[i] > 0)
                        close(cmd[i][1]);
        for (int i = 0; i < PROCS; i++)
                if (kids[i] > 0) {
                        int status;
                        CHECK(waitpid(kids[i], &status, 0) == kids[i] && WIFEXITED(status) &&
                              WEXITSTATUS(status) == 0);
                }
        if (test_failures)
                test_daemon_dump_log(&d);
        CHECK(test_daemon_stop(&d) == 0);
        test_daemon_cleanup(&d);
        return TEST_END();
}

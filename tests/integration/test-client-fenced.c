/* SPDX-License-Identifier: MIT */
/*
 * Issue 13: a client that cannot register for membarrier (a seccomp filter
 * answers ENOSYS, as on an old kernel or in a strict sandbox) fences every
 * thread-cache operation itself and never arms libscav's inline paths,
 * which are built without the fence. Its threads allocate and free as any
 * client's (the data of every block intact), the daemon still takes an
 * idle thread's cache back (without membarrier: the cache says it is
 * fenced), and everything comes back when the client exits.
 */

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define PAGE 4096ull
#define LIVE 64
#define STEPS 20000
#define BLOCKS 24

static const char config[] =
        "[daemon]\n"
        "generation_interval = 100ms\n"
        "pressure = off\n"
        "bpf = off\n"
        "[pool fenced]\n"
        "capacity = 256M\n";

/* membarrier() fails with ENOSYS from now on, in this thread and the threads it starts. */
static int deny_membarrier(void) {
#if defined(__x86_64__)
        struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return -errno;
        return syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) < 0 && errno == ENOSYS ? 0 : -EPERM;
#else
        return -EOPNOTSUPP;
#endif
}

struct worker {
        scav_pool *p;
        unsigned id;
        unsigned errors;
};

static uint64_t stamp(unsigned id, unsigned step) {
        return (uint64_t) id << 32 | step;
}

/* Random frees and allocations of 1 to 40 pages (the page cache and the
 * lists), each block stamped at both ends and checked before its free. */
static void *churn(void *arg) {
        struct worker *w = arg;
        struct { uint64_t off, len, mark; } live[LIVE] = {};
        uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1);

        for (unsigned step = 1; step <= STEPS; step++) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                unsigned i = (unsigned) (seed % LIVE);
                if (live[i].len) {
                        uint64_t *a = scav_ptr(w->p, live[i].off);
                        uint64_t *b = scav_ptr(w->p, live[i].off + live[i].len - sizeof(uint64_t));
                        w->errors += !a || !b || *a != live[i].mark || *b != live[i].mark;
                        w->errors += scav_free(w->p, live[i].off) != 0;
                        live[i].len = 0;
                }
                uint64_t len = (1 + (seed >> 32) % 40) * PAGE;
                if (scav_alloc(w->p, len, 0, &live[i].off) != 0) {
                        w->errors++;
                        continue;
                }
                live[i].len = len;
                live[i].mark = stamp(w->id, step);
                *(uint64_t *) scav_ptr(w->p, live[i].off) = live[i].mark;
                *(uint64_t *) scav_ptr(w->p, live[i].off + len - sizeof(uint64_t)) = live[i].mark;
        }
        for (unsigned i = 0; i < LIVE; i++)
                if (live[i].len)
                        w->errors += scav_free(w->p, live[i].off) != 0;
        return NULL;
}

/* The client: returns its exit status. */
static int client(int filled_fd, int go_fd) {
        struct worker w[2];
        pthread_t t[2];
        scav_pool *q;
        unsigned errors = 0;
        uint64_t offs[BLOCKS], live;
        char c;

        if (deny_membarrier() < 0)
                return 77;
        if (scav_open("fenced", &q) < 0)
                return 10;
        for (unsigned i = 0; i < 2; i++) {
                w[i] = (struct worker) { .p = q, .id = i + 1 };
                if (pthread_create(&t[i], NULL, churn, &w[i]) != 0)
                        return 11;
        }
        for (unsigned i = 0; i < 2; i++) {
                pthread_join(t[i], NULL);
                errors += w[i].errors;
        }
        if (errors) {
                fprintf(stderr, "fenced client: %u errors in the churn\n", errors);
                return 12;
        }
        /* Fill this thread's lists, keep 3 pages live, and go idle. */
        for (unsigned i = 0; i < BLOCKS; i++)
                if (scav_alloc(q, (16 + 4 * (i % 8)) * PAGE, 0, &offs[i]) != 0)
                        return 13;
        for (unsigned i = 0; i < BLOCKS; i++)
                if (scav_free(q, offs[i]) != 0)
                        return 14;
        if (scav_alloc(q, 3 * PAGE, 0, &live) != 0)
                return 15;
        if (write(filled_fd, "f", 1) != 1 || read(go_fd, &c, 1) != 1)
                return 16;
        /* Still allocating after the reap. */
        if (scav_free(q, live) != 0 || scav_alloc(q, 20 * PAGE, 0, &live) != 0 || scav_free(q, live) != 0)
                return 17;
        scav_close(q);
        return 0;
}

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        int filled[2], go[2], status;
        scav_pool *p;
        char c;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("fenced", &p) == 0);
        CHECK(pipe(filled) == 0 && pipe(go) == 0);

        pid_t pid = fork();
        if (pid == 0) {
                close(filled[0]);
                close(go[1]);
                _exit(client(filled[1], go[0]));
        }
        close(filled[1]);
        close(go[0]);
        if (read(filled[0], &c, 1) != 1) {
                /* The client ended before filling its cache: why. */
                CHECK(waitpid(pid, &status, 0) == pid);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
                        printf("SKIP: cannot deny membarrier with seccomp here\n");
                        scav_close(p);
                        test_daemon_finish(&d);
                        return 77;
                }
                CHECKF(false, "fenced client ended early: %s %d", WIFEXITED(status) ? "exit" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        } else {
                CHECK(scav_stats(p, &st) == 0);
                CHECKF(st.inuse > (BLOCKS * 16 + 3) * PAGE, "in use %" PRIu64 ": the fenced thread's lists count",
                       st.inuse);
                /* The daemon takes the idle, fenced thread's cache back. */
                CHECKF(test_wait_inuse(p, 3 * PAGE, &st),
                       "in use still %" PRIu64 ": the fenced idle cache never came back", st.inuse);
                CHECK(write(go[1], "g", 1) == 1);
                CHECK(waitpid(pid, &status, 0) == pid);
                CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fenced client: %s %d",
                       WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                CHECKF(test_wait_inuse(p, 0, &st), "in use %" PRIu64 " after the fenced client exited", st.inuse);
        }
        CHECK(test_pool_check(&d, "fenced"));
        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

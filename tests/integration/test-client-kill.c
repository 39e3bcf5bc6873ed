/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: clients killed with SIGKILL at random moments during allocation
 * storms (cached and locked paths, so some die inside the heap lock or with
 * a half-updated page cache). Afterwards in-use is exactly what the
 * survivors hold, and `scavctl check` passes (also while the storm runs).
 *
 * The children are this program again (fork, then exec at once): a child
 * forked from the parent's threads (libscav's watcher among them) and left
 * running may inherit a lock that one of them held, and under
 * AddressSanitizer its allocator then hung once in CI, forever.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define STORMERS 4
#define KILLS 120
#define PAGE 4096ull

static const char config[] =
        "[pool storm]\n"
        "capacity = 512M\n"
        "max_clients = 64\n";

/* Allocates and frees at random until killed; says "ready" once storming. */
static void stormer(int ready_fd, unsigned seed) {
        uint64_t offs[256] = {};
        size_t lens[256] = {};
        scav_pool *p;

        if (scav_open("storm", &p) < 0)
                _exit(1);
        srand(seed);
        for (unsigned long i = 0;; i++) {
                unsigned k = (unsigned) rand() % 256;
                if (i == 64 && write(ready_fd, "r", 1) != 1)
                        _exit(2);
                if (lens[k]) {
                        if (scav_free(p, offs[k]) < 0)
                                _exit(3);
                        lens[k] = 0;
                        continue;
                }
                /* Mostly small (page caches, no lock), some large (heap lock). */
                size_t n = rand() % 4 ? 1 + (size_t) rand() % 15 : 16 + (size_t) rand() % 240;
                unsigned flags = rand() % 8 == 0 ? SCAV_ALLOC_ZERO : 0;
                int r = scav_alloc(p, n * PAGE, flags, &offs[k]);
                if (r == -ENOMEM)
                        continue;
                if (r < 0)
                        _exit(4);
                lens[k] = n * PAGE;
                for (size_t j = 0; j < n; j += 4)
                        ((volatile char *) scav_ptr(p, offs[k]))[j * PAGE] = (char) i;
        }
}

struct churn_args {
        scav_pool *p;
        int from_parent;
        int ret;
};

/* Churns large allocations until told to stop, then frees them. It runs in
 * a thread of its own so that its exit gives its page caches back (cached
 * pages count as in use): the parent then sees exactly what the survivor
 * holds. */
static void *churn_thread(void *userdata) {
        struct churn_args *a = userdata;
        uint64_t churn[8] = {};
        char c;

        for (unsigned i = 0;; i++) {
                struct timeval tv = {};
                fd_set set;
                FD_ZERO(&set);
                FD_SET(a->from_parent, &set);
                if (select(a->from_parent + 1, &set, NULL, NULL, &tv) > 0)
                        break;
                unsigned k = i % 8;
                if (churn[k] && scav_free(a->p, churn[k] - 1) < 0) {
                        a->ret = 4;
                        return NULL;
                }
                churn[k] = 0;
                uint64_t off;
                if (scav_alloc(a->p, (16 + i % 100) * PAGE, 0, &off) == 0)
                        churn[k] = off + 1;
                usleep(100);
        }
        if (read(a->from_parent, &c, 1) != 1) {
                a->ret = 5;
                return NULL;
        }
        for (int k = 0; k < 8; k++)
                if (churn[k] && scav_free(a->p, churn[k] - 1) < 0) {
                        a->ret = 6;
                        return NULL;
                }
        return NULL;
}

/* Holds 2 MiB throughout, churns large allocations until told to stop,
 * then says "settled" and waits to be told to go. */
static int survivor(int to_parent, int from_parent) {
        uint64_t hold[2];
        pthread_t t;
        scav_pool *p;
        char c;

        if (scav_open("storm", &p) < 0)
                return 1;
        for (int i = 0; i < 2; i++)
                if (scav_alloc(p, 1 << 20, 0, &hold[i]) < 0)
                        return 2;
        if (write(to_parent, "r", 1) != 1)
                return 3;
        struct churn_args a = { .p = p, .from_parent = from_parent };
        if (pthread_create(&t, NULL, churn_thread, &a) != 0 || pthread_join(t, NULL) != 0)
                return 8;
        if (a.ret != 0)
                return a.ret;
        if (write(to_parent, "s", 1) != 1 || read(from_parent, &c, 1) != 1)
                return 7;
        scav_close(p);
        return 0;
}

/* This program as a child: `ROLE A B`, with fd (inherited, the others are
 * close-on-exec) as A. Only async-signal-safe calls between fork and exec. */
static pid_t spawn_self(const char *role, int fd, unsigned long b) {
        char a_str[16], b_str[24];
        pid_t pid;

        snprintf(a_str, sizeof(a_str), "%d", fd);
        snprintf(b_str, sizeof(b_str), "%lu", b);
        pid = fork();
        if (pid == 0) {
                if (fcntl(fd, F_SETFD, 0) < 0)
                        _exit(126);
                execl("/proc/self/exe", "/proc/self/exe", role, a_str, b_str, (char *) NULL);
                _exit(127);
        }
        return pid;
}

/* Starts a stormer. Most are killed only once they storm; one in eight at
 * once, so that some die inside scav_open() (HELLO, mapping, MAPPED). */
static pid_t spawn_stormer(unsigned seed, int *ready_fd) {
        int pfd[2];
        pid_t pid;
        char c;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        pid = spawn_self("stormer", pfd[1], seed);
        close(pfd[1]);
        if (seed % 8 != 0 && read(pfd[0], &c, 1) != 1)
                fprintf(stderr, "stormer %d died before storming\n", pid);
        *ready_fd = pfd[0];  /* kept open until the kill: the stormer never sees EPIPE */
        return pid;
}

static bool wait_clients(scav_pool *p, uint64_t want, struct scav_stats *st) {
        uint64_t deadline = test_now_usec() + 30 * 1000000ull;

        do {
                if (scav_stats(p, st) == 0 && st->clients == want)
                        return true;
                usleep(2000);
        } while (test_now_usec() < deadline);
        return false;
}

int main(int argc, char **argv) {
        struct test_daemon d;
        struct scav_stats st;
        pid_t storm[STORMERS], surv;
        int storm_fd[STORMERS];
        int up[2], down[2], status, kills = 0, checks = 0;
        uint64_t mine[3];
        scav_pool *p;
        char c, out[8192];

        if (argc == 4 && strcmp(argv[1], "stormer") == 0)
                stormer(atoi(argv[2]), (unsigned) strtoul(argv[3], NULL, 10));
        if (argc == 4 && strcmp(argv[1], "survivor") == 0)
                _exit(survivor(atoi(argv[2]), atoi(argv[3])));

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        srand(12345);

        CHECK(scav_open("storm", &p) == 0);
        for (int i = 0; i < 3; i++)
                CHECK(scav_alloc(p, 1 << 20, 0, &mine[i]) == 0);

        CHECK(pipe2(up, O_CLOEXEC) == 0 && pipe2(down, O_CLOEXEC) == 0);
        /* The survivor reads its other pipe, down, as B: keep it open across the exec. */
        CHECK(fcntl(down[0], F_SETFD, 0) == 0);
        surv = spawn_self("survivor", up[1], (unsigned long) down[0]);
        CHECK(surv > 0);
        CHECK(fcntl(down[0], F_SETFD, FD_CLOEXEC) == 0);
        CHECK(read(up[0], &c, 1) == 1);

        for (int i = 0; i < STORMERS; i++)
                storm[i] = spawn_stormer((unsigned) rand(), &storm_fd[i]);

        while (kills < KILLS) {
                int i = rand() % STORMERS;

                usleep((useconds_t) (rand() % 3000));
                CHECK(kill(storm[i], SIGKILL) == 0);
                CHECK(waitpid(storm[i], &status, 0) == storm[i]);
                if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
                        CHECKF(false, "stormer ended on its own before the kill: status 0x%x", status);
                kills++;
                close(storm_fd[i]);
                storm[i] = spawn_stormer((unsigned) rand(), &storm_fd[i]);
                if (kills % 30 == 0) {
                        CHECKF(test_pool_check(&d, "storm"), "check during the storm, after %d kills", kills);
                        checks++;
                }
        }
        for (int i = 0; i < STORMERS; i++) {
                kill(storm[i], SIGKILL);
                waitpid(storm[i], NULL, 0);
                close(storm_fd[i]);
                kills++;
        }
        printf("%d clients killed with SIGKILL, %d checks during the storm\n", kills, checks);

        /* Survivor stops churning; the dead are reclaimed by the daemon. */
        CHECK(write(down[1], "s", 1) == 1);
        CHECK(read(up[0], &c, 1) == 1 && c == 's');
        CHECKF(wait_clients(p, 2, &st), "clients %" PRIu64 ", want 2 (us and the survivor)", st.clients);
        printf("after the storm: inuse %" PRIu64 " bytes, clients %" PRIu64 "\n", st.inuse, st.clients);
        CHECKF(st.inuse == 5ull << 20, "inuse %" PRIu64 ", want %llu (3 MiB ours + 2 MiB the survivor's)",
               st.inuse, 5ull << 20);
        CHECK(test_pool_check(&d, "storm"));
        CHECK(test_scavctl(&d, out, sizeof(out), "--json", "status", "storm", NULL) == 0);
        printf("%s", out);

        CHECK(write(down[1], "x", 1) == 1);
        CHECK(waitpid(surv, &status, 0) == surv);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "survivor status 0x%x", status);
        for (int i = 0; i < 3; i++)
                CHECK(scav_free(p, mine[i]) == 0);
        CHECK(scav_stats(p, &st) == 0);
        CHECK_EQ_U64(st.inuse, 0);
        CHECK(test_pool_check(&d, "storm"));

        scav_close(p);
        test_daemon_finish(&d);
        return TEST_END();
}

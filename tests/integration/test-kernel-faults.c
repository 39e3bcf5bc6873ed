/* SPDX-License-Identifier: MIT */
/*
 * Page-fault accounting (issue 6): a child process maps a memfd as a client
 * maps a pool's heap; with its range registered, the N fresh pages it
 * touches there count for the pool and for its slot, the M pages it
 * touches outside do not, and nothing counts once the process is removed.
 * Real kernel, real BPF programs; skipped where BPF cannot be loaded.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../daemon/kernel.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

#define N_IN 256        /* pages touched inside the registered range, per phase */
#define N_OUT 1024      /* pages touched outside it */
#define POOL 7
#define SLOT 3

struct child {
        pid_t pid;
        int to_child, from_child;
};

static void child_main(int memfd, int rd, int wr) {
        size_t page = sysconf(_SC_PAGESIZE);
        uint64_t addr[2];
        char *in, *out;
        char c;

        in = mmap(NULL, 2 * N_IN * page, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        out = mmap(NULL, N_OUT * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (in == MAP_FAILED || out == MAP_FAILED)
                _exit(2);
        /* One fault per page, as the counts below assume. */
        (void) madvise(in, 2 * N_IN * page, MADV_NOHUGEPAGE);
        (void) madvise(out, N_OUT * page, MADV_NOHUGEPAGE);

        addr[0] = (uintptr_t) in;
        addr[1] = (uintptr_t) out;
        if (write(wr, addr, sizeof(addr)) != sizeof(addr))
                _exit(2);

        /* Phase 1: registered. */
        if (read(rd, &c, 1) != 1)
                _exit(2);
        for (size_t i = 0; i < N_IN; i++)
                in[i * page] = 1;
        for (size_t i = 0; i < N_OUT; i++)
                out[i * page] = 1;
        if (write(wr, "1", 1) != 1)
                _exit(2);

        /* Phase 2: removed; fresh pages of the same mapping. */
        if (read(rd, &c, 1) != 1)
                _exit(2);
        for (size_t i = N_IN; i < 2 * N_IN; i++)
                in[i * page] = 1;
        if (write(wr, "2", 1) != 1)
                _exit(2);
        _exit(0);
}

static int child_start(struct child *c, uint64_t addr[2]) {
        _cleanup_close_ int memfd = -EBADF;
        int down[2], up[2];
        size_t page = sysconf(_SC_PAGESIZE);

        memfd = memfd_create("test-kernel-faults", MFD_CLOEXEC);
        if (memfd < 0 || ftruncate(memfd, 2 * N_IN * page) < 0)
                return -errno;
        if (pipe(down) < 0 || pipe(up) < 0)
                return -errno;

        c->pid = fork();
        if (c->pid < 0)
                return -errno;
        if (c->pid == 0) {
                close(down[1]);
                close(up[0]);
                child_main(memfd, down[0], up[1]);
        }
        close(down[0]);
        close(up[1]);
        c->to_child = down[1];
        c->from_child = up[0];
        if (read(c->from_child, addr, 2 * sizeof(uint64_t)) != 2 * sizeof(uint64_t))
                return -EIO;
        return 0;
}

static int child_step(struct child *c) {
        char ch;

        if (write(c->to_child, "g", 1) != 1 || read(c->from_child, &ch, 1) != 1)
                return -EIO;
        return 0;
}

static void test_api_bounds(kernel_watch *k) {
        pid_t me = getpid();

        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x10000, 0, 1, 1), (uint64_t) -EINVAL);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, UINT64_MAX - 10, 4096, 1, 1), (uint64_t) -EINVAL);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, 0, 0x10000, 4096, 1, 1), (uint64_t) -EINVAL);

        /* Eight ranges fit, a ninth does not; the same (pool, slot) replaces. */
        for (uint32_t i = 0; i < 8; i++)
                CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x100000 * (i + 1), 4096, 100 + i, 0), 0);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x10000000, 4096, 200, 0), (uint64_t) -E2BIG);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x20000000, 8192, 103, 0), 0);
        CHECK_EQ_U64(kernel_watch_remove_mapping(k, me, 103, 0), 0);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x10000000, 4096, 200, 0), 0);
        kernel_watch_remove_pool(k, 200);
        CHECK_EQ_U64(kernel_watch_add_mapping(k, me, 0x10000000, 4096, 201, 0), 0);
        kernel_watch_remove_process(k, me);
        CHECK_EQ_U64(kernel_watch_remove_mapping(k, me, 201, 0), 0);
}

/* The counters' table: thousands of (pool, slot) pairs over fake tgids
 * fill it until -ENOSPC; forgetting pools frees their counters for others,
 * which start from zero. */
static void test_counter_table(kernel_watch *k) {
        const pid_t base = 3000000;     /* beyond the pids in use: only map keys */
        unsigned added = 0, full = 0;
        int r;

        for (pid_t t = 0; t < 2100; t++)
                for (uint32_t p = 0; p < 8; p++) {
                        r = kernel_watch_add_mapping(k, base + t, 0x10000000 + p * 0x100000, 4096, 1000 + p, t);
                        if (r == 0)
                                added++;
                        else if (r == -ENOSPC)
                                full++;
                        else
                                CHECKF(false, "add_mapping(tgid %d, pool %u): %s", (int) (base + t), 1000 + p,
                                       strerror(-r));
                }
        printf("counter table: %u mappings added, %u refused (full)\n", added, full);
        CHECKF(added >= 16000, "only %u counters", added);
        CHECKF(full > 0, "16800 pairs never filled a table of 16384");
        CHECK_EQ_U64(kernel_watch_slot_faults(k, 1003, 1500), 0);

        for (uint32_t p = 0; p < 4; p++)
                kernel_watch_remove_pool(k, 1000 + p);
        r = kernel_watch_add_mapping(k, base + 2099, 0x20000000, 4096, 1000, 2099);
        CHECKF(r == 0, "add_mapping after freeing pools: %s", strerror(-r));
        CHECK_EQ_U64(kernel_watch_faults(k, 1000), 0);
        for (uint32_t p = 4; p < 8; p++)
                kernel_watch_remove_pool(k, 1000 + p);
        kernel_watch_remove_pool(k, 1000);
        for (pid_t t = 0; t < 2100; t++)
                kernel_watch_remove_process(k, base + t);
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        kernel_watch *k = NULL;
        struct child c = {};
        uint64_t addr[2], pool, slot, mark = 0, since;
        size_t page = sysconf(_SC_PAGESIZE);
        int r, status;

        r = sd_event_new(&e);
        if (r < 0) {
                fprintf(stderr, "sd_event_new: %s\n", strerror(-r));
                return 1;
        }
        r = kernel_watch_new(e, CONFIG_AUTO, PRESSURE_OFF, NULL, NULL, &k);
        if (r < 0) {
                fprintf(stderr, "kernel_watch_new(bpf=auto, pressure=off): %s\n", strerror(-r));
                return 1;
        }
        if (!kernel_watch_has_bpf(k))
                TEST_SKIP("BPF programs cannot be loaded here (needs root with CAP_BPF, CAP_PERFMON and BTF)");
        CHECK(strcmp(kernel_watch_mode(k), "off") == 0);

        test_api_bounds(k);
        test_counter_table(k);

        r = child_start(&c, addr);
        CHECKF(r == 0, "starting the child: %s", strerror(-r));
        if (r < 0)
                return TEST_END();

        CHECK_EQ_U64(kernel_watch_add_mapping(k, c.pid, addr[0], 2 * N_IN * page, POOL, SLOT), 0);
        /* Another pool's range in the same process that the child never touches. */
        CHECK_EQ_U64(kernel_watch_add_mapping(k, c.pid, addr[0] + 2 * N_IN * page, page, POOL + 1, SLOT), 0);
        (void) kernel_watch_faults_since(k, POOL, &mark);

        CHECK_EQ_U64(child_step(&c), 0);
        pool = kernel_watch_faults(k, POOL);
        slot = kernel_watch_slot_faults(k, POOL, SLOT);
        since = kernel_watch_faults_since(k, POOL, &mark);
        printf("phase 1: %d pages in, %d out: pool %" PRIu64 " faults, slot %" PRIu64 "\n",
               N_IN, N_OUT, pool, slot);
        CHECKF(pool >= N_IN, "pool faults %" PRIu64 " < %d pages touched", pool, N_IN);
        CHECKF(slot >= N_IN, "slot faults %" PRIu64 " < %d pages touched", slot, N_IN);
        /* The outside pages would push the count past N_IN + N_OUT. */
        CHECKF(pool < N_IN + N_OUT / 2, "pool faults %" PRIu64 " count pages outside the range", pool);
        CHECK_EQ_U64(since, pool);
        CHECK_EQ_U64(kernel_watch_slot_faults(k, POOL, SLOT + 1), 0);
        CHECK_EQ_U64(kernel_watch_faults(k, POOL + 1), 0);
        CHECK_EQ_U64(kernel_watch_slot_faults(k, POOL + 1, SLOT), 0);

        kernel_watch_remove_process(k, c.pid);
        CHECK_EQ_U64(child_step(&c), 0);
        CHECK_EQ_U64(kernel_watch_faults(k, POOL), pool);
        CHECK_EQ_U64(kernel_watch_faults_since(k, POOL, &mark), 0);

        CHECK(waitpid(c.pid, &status, 0) == c.pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);

        /* A removed pool's counters start again from zero. */
        kernel_watch_remove_pool(k, POOL);
        CHECK_EQ_U64(kernel_watch_faults(k, POOL), 0);
        CHECK_EQ_U64(kernel_watch_slot_faults(k, POOL, SLOT), 0);

        kernel_watch_free(k);
        return TEST_END();
}

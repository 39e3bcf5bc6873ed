/* SPDX-License-Identifier: MIT */
/*
 * Pool access from peer credentials: users, primary group, supplementary
 * groups read from /proc of a live process (a child that changes its
 * groups), and the group database when /proc cannot tell.
 */

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../daemon/access.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static struct pool_config pool(const uid_t *users, unsigned nu, const gid_t *groups, unsigned ng) {
        struct pool_config p;

        pool_config_defaults(&p);
        for (unsigned i = 0; i < nu; i++)
                p.allow_users[i] = users[i];
        for (unsigned i = 0; i < ng; i++)
                p.allow_groups[i] = groups[i];
        p.n_allow_users = nu;
        p.n_allow_groups = ng;
        p.allow_all = nu == 0 && ng == 0;
        return p;
}

static void test_table(void) {
        static const uid_t u[] = { 1000, 1001 };
        static const gid_t g[] = { 2000 };
        /* pid 0: no /proc entry, so only the group database speaks (uid 4000000 has none). */
        static const struct {
                const char *name;
                unsigned nu, ng;
                uid_t uid;
                gid_t gid;
                bool want;
        } cases[] = {
                { "no lists: everyone", 0, 0, 4000000, 4000000, true },
                { "root always", 2, 1, 0, 0, true },
                { "listed user", 2, 0, 1001, 5, true },
                { "unlisted user", 2, 0, 1002, 5, false },
                { "users only, gid irrelevant", 2, 0, 1002, 2000, false },
                { "primary group", 0, 1, 4000000, 2000, true },
                { "other group", 0, 1, 4000000, 2001, false },
                { "user or group", 2, 1, 1000, 7, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct pool_config p = pool(u, cases[i].nu, g, cases[i].ng);
                struct ucred cred = { .pid = 0, .uid = cases[i].uid, .gid = cases[i].gid };
                bool got = access_peer_allowed(&p, &cred);
                CHECKF(got == cases[i].want, "%s: got %d, want %d", cases[i].name, got, cases[i].want);
        }
}

/* A child with supplementary group 4321 is admitted by allow_groups = 4321. */
static void test_supplementary_proc(void) {
        int up[2], down[2];
        pid_t pid;
        char c;

        if (geteuid() != 0) {
                printf("supplementary groups via /proc: not root, part skipped\n");
                return;
        }
        CHECK(pipe(up) == 0 && pipe(down) == 0);
        pid = fork();
        if (pid == 0) {
                gid_t supp = 4321;
                /* Only the parent holds the write end: if it dies, read() ends. */
                close(down[1]);
                close(up[0]);
                if (setgroups(1, &supp) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(1);
                (void) !write(up[1], "r", 1);
                (void) !read(down[0], &c, 1);
                _exit(0);
        }
        CHECK(read(up[0], &c, 1) == 1);
        {
                static const gid_t yes[] = { 4321 }, no[] = { 4322 };
                struct pool_config p1 = pool(NULL, 0, yes, 1), p2 = pool(NULL, 0, no, 1);
                struct ucred cred = { .pid = pid, .uid = 65534, .gid = 65534 };
                gid_t groups[8];
                int n = access_peer_groups(pid, 65534, groups, 8);

                CHECKF(n == 1 && groups[0] == 4321, "groups of the child: n=%d", n);
                CHECK(access_peer_allowed(&p1, &cred));
                CHECK(!access_peer_allowed(&p2, &cred));
        }
        (void) !write(down[1], "x", 1);
        waitpid(pid, NULL, 0);
        close(up[0]);
        close(up[1]);
        close(down[0]);
        close(down[1]);
}

/* Without /proc (pid 0), the group database: root's groups include gid 0. */
static void test_group_database(void) {
        gid_t groups[64];
        int n = access_peer_groups(0, 0, groups, 64);
        bool has0 = false;

        for (int i = 0; i < n; i++)
                has0 |= groups[i] == 0;
        CHECKF(n >= 1 && has0, "groups of uid 0 from the database: n=%d", n);
        CHECK(access_peer_groups(0, 4000000, groups, 64) == 0);
}

int main(void) {
        test_table();
        test_supplementary_proc();
        test_group_database();
        return TEST_END();
}

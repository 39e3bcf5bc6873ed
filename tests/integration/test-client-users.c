/* SPDX-License-Identifier: MIT */
/*
 * Issue 3: a client running as another user (fork, setgid, setuid) is
 * refused where the pool does not allow it and admitted where it does, by
 * user and by group (primary or supplementary). Needs root to change user.
 */

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "macro.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

#define OTHER_UID 65534
#define OTHER_GID 65534
#define SUPP_GID 4321

static const struct {
        const char *pool;
        int want;  /* for the other user */
} cases[] = {
        { "everyone", 0 },        /* no allow list */
        { "rootonly", -EACCES },  /* allow_users = 0 */
        { "byuser", 0 },          /* allow_users names the other user */
        { "bygroup", 0 },         /* allow_groups names its primary group */
        { "bysupp", 0 },          /* allow_groups names a supplementary group */
        { "othergroup", -EACCES },/* allow_groups = a group it is not in */
};

static const char config[] =
        "[pool everyone]\ncapacity = 4M\n"
        "[pool rootonly]\ncapacity = 4M\nallow_users = 0\n"
        "[pool byuser]\ncapacity = 4M\nallow_users = 0 65534\n"
        "[pool bygroup]\ncapacity = 4M\nallow_groups = 65534\n"
        "[pool bysupp]\ncapacity = 4M\nallow_groups = 4321\n"
        "[pool othergroup]\ncapacity = 4M\nallow_groups = 4322\n";

/* As the other user: each case's scav_open result as one byte. */
static int as_other_user(int out) {
        gid_t supp = SUPP_GID;

        if (setgroups(1, &supp) < 0 || setgid(OTHER_GID) < 0 || setuid(OTHER_UID) < 0)
                return 100;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                scav_pool *p = NULL;
                int r = scav_open(cases[i].pool, &p);
                if (r == 0) {
                        /* Admitted means usable. */
                        uint64_t off;
                        if (scav_alloc(p, 4096, 0, &off) < 0 || scav_free(p, off) < 0)
                                r = -EIO;
                        scav_close(p);
                }
                signed char c = (signed char) r;
                if (write(out, &c, 1) != 1)
                        return 101;
        }
        return 0;
}

int main(void) {
        struct test_daemon d;
        int pfd[2], status;
        pid_t pid;

        if (geteuid() != 0)
                TEST_SKIP("changing user needs root");
        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();

        /* Root is admitted where root is listed or nothing is (whether the
         * daemon lets root into the group-only pools is its policy). */
        for (size_t i = 0; i < 3; i++) {
                scav_pool *p;
                int r = scav_open(cases[i].pool, &p);

                CHECKF(r == 0, "root opening %s: %d (%s)", cases[i].pool, r, strerror(-r));
                if (r == 0)
                        scav_close(p);
        }

        CHECK(pipe(pfd) == 0);
        pid = fork();
        if (pid == 0) {
                close(pfd[0]);
                _exit(as_other_user(pfd[1]));
        }
        close(pfd[1]);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                signed char c = 0;
                CHECKF(read(pfd[0], &c, 1) == 1, "no answer for %s", cases[i].pool);
                printf("uid %d gid %d (+%d) opening %-10s: %d (%s)\n", OTHER_UID, OTHER_GID, SUPP_GID,
                       cases[i].pool, c, c ? strerror(-c) : "admitted");
                CHECKF(c == cases[i].want, "uid %d opening %s: %d (%s), want %d (%s)", OTHER_UID,
                       cases[i].pool, c, strerror(-c), cases[i].want, strerror(-cases[i].want));
        }
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "other-user child status 0x%x", status);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                CHECK(test_pool_check(&d, cases[i].pool));
        test_daemon_finish(&d);
        return TEST_END();
}

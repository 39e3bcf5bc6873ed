/* SPDX-License-Identifier: MIT */
/*
 * Access to a pool. SO_PEERCRED carries only the primary gid, but
 * administrators grant pools to groups people are members of, so the
 * supplementary groups are looked up too: first in /proc, which is what
 * the process really holds, then in the group database when /proc cannot
 * tell (the process is gone, or /proc is hidden from us).
 */

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"

int access_peer_groups(pid_t pid, uid_t uid, gid_t *groups, int max) {
        char path[64], line[4096];
        FILE *f;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%u/status", (unsigned) pid);
        f = pid > 0 ? fopen(path, "re") : NULL;
        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "Groups:", 7) == 0) {
                                char *p = line + 7, *e;
                                for (;;) {
                                        unsigned long g = strtoul(p, &e, 10);
                                        if (e == p || n >= max)
                                                break;
                                        groups[n++] = (gid_t) g;
                                        p = e;
                                }
                                fclose(f);
                                return n;
                        }
                fclose(f);
        }

        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return 0;
        n = max;
        if (getgrouplist(res->pw_name, res->pw_gid, groups, &n) < 0)
                return 0;
        return n;
}

bool access_peer_allowed(const struct pool_config *cfg, const struct ucred *cred) {
        gid_t groups[256];
        int n;

        if (cred->uid == 0 || cfg->allow_all)
                return true;
        for (unsigned i = 0; i < cfg->n_allow_users && i < CONFIG_MAX_IDS; i++)
                if (cfg->allow_users[i] == cred->uid)
                        return true;
        if (cfg->n_allow_groups == 0)
                return false;
        for (unsigned i = 0; i < cfg->n_allow_groups && i < CONFIG_MAX_IDS; i++)
                if (cfg->allow_groups[i] == cred->gid)
                        return true;
        n = access_peer_groups(cred->pid, cred->uid, groups, (int) (sizeof(groups) / sizeof(groups[0])));
        for (int k = 0; k < n; k++)
                for (unsigned i = 0; i < cfg->n_allow_groups && i < CONFIG_MAX_IDS; i++)
                        if (cfg->allow_groups[i] == groups[k])
                                return true;
        return false;
}

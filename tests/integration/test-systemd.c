/* SPDX-License-Identifier: MIT */
/*
 * scavd under a service manager, without systemd as PID 1: this program is
 * the manager. It speaks the real protocol: a listening SOCK_SEQPACKET socket
 * passed with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, a NOTIFY_SOCKET datagram
 * socket read with credentials (NotifyAccess=main) and SCM_RIGHTS, a file
 * descriptor store kept by FDNAME (FDSTORE=1, FDSTOREREMOVE=1, duplicates of
 * a stored file ignored and names checked as systemd does), handed back
 * after the listening socket on the next start.
 *
 * It drives start -> READY=1, reload with a good and a bad file, the
 * watchdog, SIGTERM and restart, SIGKILL and restart, then the bar: 20
 * restarts, half of them SIGKILL, while client processes (libscav) allocate,
 * write, verify and free continuously, and are seen doing so while the
 * daemon is away. After each restart every live
 * allocation of every client is read back through a fresh session (so
 * through the daemon's current heap memfd, not an old mapping) and
 * `scavctl check` must pass; at the end every allocation made before any
 * restart is freed, a client killed while the daemon was away has been
 * reclaimed, and the pool's in-use bytes are back to zero. Beside them, a
 * producer/consumer ring of named frames (tests/lib/ring.c) shares memory
 * by references and names in pool "ring" across every restart: held still
 * around each restart, it must find the same shared allocations,
 * references and names afterwards, and never a frame changed under a
 * reference.
 *
 * A real systemd keeps the store across `systemctl restart` and automatic
 * restarts (Restart=on-failure), which is what the SIGTERM and SIGKILL
 * restarts here model.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "scav.h"
#include "../lib/ring.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

extern char **environ;

#define POOL "data"
#define POOL_EXTRA "extra"
#define POOL_RING "ring"
#define RING_PROCS 4            /* two producers, two consumers */
#define N_WORKERS 3
#define MAX_LIVE 200
#define STORE_MAX 1024          /* FileDescriptorStoreMax= of scavd.service */
#define BAR_RESTARTS 20
#define START_TIMEOUT_MS 30000  /* sanitized builds start slowly on a loaded machine */

/* ---- what the clients and this manager share (MAP_SHARED before fork) ---- */

struct rec {
        uint64_t off, len, tag;
        uint32_t epoch;          /* restarts seen when it was allocated */
};

struct client_state {
        atomic_int paused;       /* acknowledges shm.pause */
        atomic_int stop;
        atomic_int done;
        atomic_uint_fast64_t ops;
        uint64_t allocs, frees, frees_across_restart, bytes_written, bytes_self_verified;
        uint64_t errors;
        char err[256];
        bool victim;             /* killed while the daemon is away */
        bool dead;
        pid_t pid;
        uint32_t n_live;
        struct rec live[MAX_LIVE];
};

struct shm {
        atomic_int pause;        /* manager asks every client to hold still */
        atomic_uint epoch;       /* daemon restarts so far */
        struct client_state c[N_WORKERS + 1];
};

static struct ring_shm *ring;
static pid_t ring_pids[RING_PROCS];

static struct shm *shm;

static void pattern_fill(void *p, uint64_t len, uint64_t tag) {
        uint64_t *w = p;

        for (uint64_t i = 0; i < len / 8; i++)
                w[i] = test_mix64(tag + i);
}

/* Returns the byte offset of the first wrong word, or -1. */
static int64_t pattern_check(const void *p, uint64_t len, uint64_t tag) {
        const uint64_t *w = p;

        for (uint64_t i = 0; i < len / 8; i++)
                if (w[i] != test_mix64(tag + i))
                        return (int64_t) (i * 8);
        return -1;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void msleep(unsigned ms) {
        usleep(ms * 1000u);
}

/* ---- client processes ---- */

static _printf_(2, 3) void client_fail(struct client_state *c, const char *fmt, ...) {
        va_list ap;

        if (c->errors++ == 0) {
                va_start(ap, fmt);
                vsnprintf(c->err, sizeof(c->err), fmt, ap);
                va_end(ap);
        }
}

static void client_verify_one(struct client_state *c, scav_pool *p, const struct rec *r) {
        const void *ptr = scav_ptr(p, r->off);
        int64_t bad;

        if (!ptr) {
                client_fail(c, "scav_ptr(%#" PRIx64 ") = NULL", r->off);
                return;
        }
        bad = pattern_check(ptr, r->len, r->tag);
        if (bad >= 0)
                client_fail(c, "allocation %#" PRIx64 "+%" PRIu64 " (epoch %u): wrong data at +%" PRId64,
                            r->off, r->len, r->epoch, bad);
        else
                c->bytes_self_verified += r->len;
}

static void client_free_at(struct client_state *c, scav_pool *p, uint32_t i) {
        struct rec r = c->live[i];
        int k;

        client_verify_one(c, p, &r);
        k = scav_free(p, r.off);
        if (k < 0)
                client_fail(c, "scav_free(%#" PRIx64 ", epoch %u, now %u): %s", r.off, r.epoch,
                            atomic_load(&shm->epoch), strerror(-k));
        else {
                c->frees++;
                if (r.epoch < atomic_load(&shm->epoch))
                        c->frees_across_restart++;
        }
        c->live[i] = c->live[--c->n_live];
}

static const uint64_t sizes[] = { 8, 24, 256, 4096, 8192, 12288, 65536, 65536 + 8, 196608 };

/* Allocates, writes, verifies and frees without end; the daemon may be away
 * at any moment and must not be noticed. */
static _Noreturn void client_main(struct client_state *c, unsigned id) {
        scav_pool *p = NULL;
        uint64_t seq = 0, rnd = test_mix64(id + 1);
        int r;

        /* Nothing of the manager's: not the store, not the sockets. */
        close_range(3, ~0U, 0);

        for (int tries = 0; (r = scav_open(POOL, &p)) < 0 && tries < 200; tries++)
                msleep(50);
        if (r < 0) {
                client_fail(c, "scav_open(%s): %s", POOL, strerror(-r));
                atomic_store(&c->done, 1);
                _exit(1);
        }

        while (!atomic_load(&c->stop)) {
                if (atomic_load(&shm->pause)) {
                        atomic_store(&c->paused, 1);
                        while (atomic_load(&shm->pause) && !atomic_load(&c->stop))
                                msleep(1);
                        atomic_store(&c->paused, 0);
                        continue;
                }

                rnd = test_mix64(rnd);
                if (c->n_live < MAX_LIVE && (c->n_live == 0 || rnd % 3 != 0)) {
                        struct rec n = {
                                .len = sizes[(rnd >> 8) % ELEMENTSOF(sizes)],
                                .tag = ((uint64_t) id << 56) | (seq++ << 20),
                                .epoch = atomic_load(&shm->epoch),
                        };
                        r = scav_alloc(p, n.len, 0, &n.off);
                        if (r < 0)
                                client_fail(c, "scav_alloc(%" PRIu64 "): %s", n.len, strerror(-r));
                        else {
                                pattern_fill(scav_ptr(p, n.off), n.len, n.tag);
                                c->live[c->n_live++] = n;
                                c->allocs++;
                                c->bytes_written += n.len;
                        }
                } else
                        client_free_at(c, p, (uint32_t) ((rnd >> 16) % c->n_live));

                if (atomic_fetch_add(&c->ops, 1) % 128 == 0)
                        for (uint32_t i = 0; i < c->n_live; i++)
                                client_verify_one(c, p, &c->live[i]);
                usleep(200);
        }

        /* Everything allocated, whatever the restarts since, is freed. */
        while (c->n_live > 0)
                client_free_at(c, p, c->n_live - 1);
        scav_close(p);
        atomic_store(&c->done, 1);
        _exit(c->errors ? 1 : 0);
}

static pid_t client_spawn(unsigned id, bool victim) {
        struct client_state *c = &shm->c[id];
        pid_t pid;

        c->victim = victim;
        fflush(NULL);
        pid = fork();
        if (pid == 0)
                client_main(c, id);
        c->pid = pid;
        return pid;
}

static bool clients_wait_ops(uint64_t min_ops, unsigned timeout_ms) {
        uint64_t end = now_usec() + (uint64_t) timeout_ms * 1000;

        for (;;) {
                bool all = true;
                for (unsigned i = 0; i <= N_WORKERS; i++)
                        if (!shm->c[i].dead && atomic_load(&shm->c[i].ops) < min_ops)
                                all = false;
                if (all)
                        return true;
                if (now_usec() > end)
                        return false;
                msleep(5);
        }
}

static bool clients_pause(void) {
        uint64_t end = now_usec() + 20 * 1000000ull;

        atomic_store(&shm->pause, 1);
        for (;;) {
                bool all = true;
                for (unsigned i = 0; i <= N_WORKERS; i++)
                        if (!shm->c[i].dead && !atomic_load(&shm->c[i].paused))
                                all = false;
                if (all)
                        return true;
                if (now_usec() > end)
                        return false;
                msleep(1);
        }
}

static void clients_resume(void) {
        atomic_store(&shm->pause, 0);
}

/* ---- the service manager ---- */

struct stored_fd {
        char name[256];
        int fd;
};

struct manager {
        char dir[64];
        char socket_path[108], notify_path[108], config_path[128], log_path[128];
        const char *scavd;
        int listen_fd, notify_fd;
        struct stored_fd store[STORE_MAX];
        unsigned n_store;

        pid_t pid;
        bool exited;
        int wstatus;

        /* since the last start */
        unsigned n_ready, n_reloading, n_reloading_monotonic, n_stopping, n_watchdog;
        unsigned n_fdstore_msgs;
        char status[1024];
        unsigned n_status, n_status_at_ready; /* STATUS= messages; how many before the last READY=1 */
        /* over the whole run: protocol errors of the daemon */
        unsigned n_foreign, n_bad_fdname, n_fds_without_store, n_store_dups;
};

/* As systemd's fdname_is_valid(): printable ASCII, no ':', at most 255. */
static bool fdname_is_valid(const char *s) {
        size_t n = 0;

        for (; s[n]; n++)
                if (s[n] < ' ' || s[n] >= 127 || s[n] == ':')
                        return false;
        return n <= 255;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;

        if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0)
                return false;
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino &&
               fcntl(a, F_GETFL) == fcntl(b, F_GETFL);
}

static void store_add(struct manager *m, const char *name, int fd) {
        for (unsigned i = 0; i < m->n_store; i++)
                if (same_file(m->store[i].fd, fd)) {
                        /* systemd ignores a file it holds already */
                        m->n_store_dups++;
                        close(fd);
                        return;
                }
        if (m->n_store >= STORE_MAX) {
                fprintf(stderr, "manager: fd store full, dropping \"%s\"\n", name);
                close(fd);
                return;
        }
        snprintf(m->store[m->n_store].name, sizeof(m->store[0].name), "%s", name);
        m->store[m->n_store++].fd = fd;
}

static void store_remove(struct manager *m, const char *name) {
        for (unsigned i = 0; i < m->n_store;)
                if (strcmp(m->store[i].name, name) == 0) {
                        close(m->store[i].fd);
                        m->store[i] = m->store[--m->n_store];
                } else
                        i++;
}

static unsigned store_count_prefix(struct manager *m, const char *prefix) {
        unsigned n = 0;

        for (unsigned i = 0; i < m->n_store; i++)
                if (strncmp(m->store[i].name, prefix, strlen(prefix)) == 0)
                        n++;
        return n;
}

static void notify_handle(struct manager *m, char *buf, const struct ucred *cred, int *fds,
                          unsigned n_fds) {
        bool fdstore = false, fdstore_remove = false, reloading = false, monotonic = false;
        bool ready = false, status = false;
        char fdname[512] = "";
        bool have_name = false;

        if (!cred || cred->pid != m->pid || m->pid <= 0) {
                /* NotifyAccess=main: anything else is dropped. */
                m->n_foreign++;
                fprintf(stderr, "manager: notification from pid %d, main pid is %d: ignored\n",
                        cred ? cred->pid : -1, m->pid);
                for (unsigned i = 0; i < n_fds; i++)
                        close(fds[i]);
                return;
        }

        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (strcmp(line, "READY=1") == 0)
                        ready = true;
                else if (strcmp(line, "RELOADING=1") == 0)
                        reloading = true;
                else if (strncmp(line, "MONOTONIC_USEC=", 15) == 0)
                        monotonic = strtoull(line + 15, NULL, 10) > 0;
                else if (strcmp(line, "STOPPING=1") == 0)
                        m->n_stopping++;
                else if (strcmp(line, "WATCHDOG=1") == 0)
                        m->n_watchdog++;
                else if (strncmp(line, "STATUS=", 7) == 0) {
                        snprintf(m->status, sizeof(m->status), "%s", line + 7);
                        status = true;
                }
                else if (strcmp(line, "FDSTORE=1") == 0)
                        fdstore = true;
                else if (strcmp(line, "FDSTOREREMOVE=1") == 0)
                        fdstore_remove = true;
                else if (strncmp(line, "FDNAME=", 7) == 0) {
                        snprintf(fdname, sizeof(fdname), "%s", line + 7);
                        have_name = true;
                }
        }
        if (status)
                m->n_status++;
        if (ready) {
                m->n_ready++;
                /* A STATUS= in the same message describes the ready state. */
                m->n_status_at_ready = m->n_status - status;
        }
        if (reloading) {
                m->n_reloading++;
                if (monotonic)
                        m->n_reloading_monotonic++;
        }

        if (have_name && !fdname_is_valid(fdname)) {
                fprintf(stderr, "manager: invalid FDNAME=\"%s\" (systemd stores it as \"stored\")\n", fdname);
                m->n_bad_fdname++;
                snprintf(fdname, sizeof(fdname), "stored");
        } else if (!have_name)
                snprintf(fdname, sizeof(fdname), "stored");

        if (fdstore) {
                m->n_fdstore_msgs++;
                for (unsigned i = 0; i < n_fds; i++)
                        store_add(m, fdname, fds[i]);
        } else {
                if (n_fds > 0)
                        m->n_fds_without_store++;
                for (unsigned i = 0; i < n_fds; i++)
                        close(fds[i]);
        }
        if (fdstore_remove && have_name)
                store_remove(m, fdname);
}

/* Reads every queued notification; returns how many. */
static int notify_drain(struct manager *m) {
        int n = 0;

        for (;;) {
                char buf[4097];
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 64)];
                } control;
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                struct ucred *cred = NULL;
                int fds[64];
                unsigned n_fds = 0;
                ssize_t k;

                k = recvmsg(m->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return n;
                }
                buf[k] = '\0';
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET)
                                continue;
                        if (c->cmsg_type == SCM_CREDENTIALS &&
                            c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                                cred = (struct ucred *) CMSG_DATA(c);
                        else if (c->cmsg_type == SCM_RIGHTS) {
                                unsigned cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (unsigned i = 0; i < cnt && n_fds < ELEMENTSOF(fds); i++)
                                        fds[n_fds++] = ((int *) CMSG_DATA(c))[i];
                        }
                }
                if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
                        fprintf(stderr, "manager: truncated notification\n");
                notify_handle(m, buf, cred, fds, n_fds);
                n++;
        }
}

static void manager_reap(struct manager *m) {
        if (m->pid > 0 && !m->exited && waitpid(m->pid, &m->wstatus, WNOHANG) == m->pid)
                m->exited = true;
}

/* Processes notifications until cond() holds, the daemon exits, or time is up. */
static bool manager_wait(struct manager *m, bool (*cond)(struct manager *, unsigned),
                         unsigned arg, unsigned timeout_ms) {
        uint64_t end = now_usec() + (uint64_t) timeout_ms * 1000;

        for (;;) {
                struct pollfd pfd = { .fd = m->notify_fd, .events = POLLIN };

                notify_drain(m);
                if (cond(m, arg))
                        return true;
                manager_reap(m);
                if (m->exited) {
                        notify_drain(m);
                        return cond(m, arg);
                }
                if (now_usec() > end)
                        return false;
                (void) poll(&pfd, 1, 20);
        }
}

static bool cond_ready(struct manager *m, unsigned n) {
        return m->n_ready >= n;
}

/* A STATUS= sent with or after the last READY=1. */
static bool cond_status(struct manager *m, unsigned n) {
        return m->n_status > m->n_status_at_ready;
}

static bool cond_watchdog(struct manager *m, unsigned n) {
        return m->n_watchdog >= n;
}

static bool cond_exited(struct manager *m, unsigned n) {
        return m->exited;
}

static void uint_to_str(char *out, unsigned long v) {
        char tmp[24];
        int n = 0;

        do
                tmp[n++] = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        while (n > 0)
                *out++ = tmp[--n];
        *out = '\0';
}

/*
 * Starts the daemon as systemd would: the listening socket first, then the
 * stored descriptors, from fd 3 on, with their names. The environment is
 * built before fork(): this process may have threads (libscav's).
 */
static int manager_start(struct manager *m, uint64_t watchdog_usec) {
        static char env_fds[32], env_pid[32], env_names[STORE_MAX * 80], env_notify[160],
                env_wd[48], env_wdpid[32];
        char *envp[64];
        char *argv[] = { (char *) m->scavd, (char *) "--config", m->config_path, NULL };
        int pass[STORE_MAX + 1];
        unsigned n_pass = 0, n_env = 0;
        size_t used;
        pid_t pid;

        pass[n_pass++] = m->listen_fd;
        used = (size_t) snprintf(env_names, sizeof(env_names), "LISTEN_FDNAMES=scavd.socket");
        for (unsigned i = 0; i < m->n_store; i++) {
                pass[n_pass++] = m->store[i].fd;
                used += (size_t) snprintf(env_names + used, sizeof(env_names) - used, ":%s",
                                          m->store[i].name);
        }
        snprintf(env_fds, sizeof(env_fds), "LISTEN_FDS=%u", n_pass);
        snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", m->notify_path);
        snprintf(env_wd, sizeof(env_wd), "WATCHDOG_USEC=%" PRIu64, watchdog_usec);
        strcpy(env_pid, "LISTEN_PID=");
        strcpy(env_wdpid, "WATCHDOG_PID=");

        for (char **e = environ; *e && n_env < ELEMENTSOF(envp) - 8; e++)
                if (strncmp(*e, "LISTEN_", 7) != 0 && strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 &&
                    strncmp(*e, "WATCHDOG_", 9) != 0 && strncmp(*e, "SCAVD_SOCKET=", 13) != 0)
                        envp[n_env++] = *e;
        envp[n_env++] = env_fds;
        envp[n_env++] = env_pid;
        envp[n_env++] = env_names;
        envp[n_env++] = env_notify;
        if (watchdog_usec > 0) {
                envp[n_env++] = env_wd;
                envp[n_env++] = env_wdpid;
        }
        envp[n_env] = NULL;

        m->n_ready = m->n_reloading = m->n_reloading_monotonic = m->n_stopping = m->n_watchdog = 0;
        m->n_status = m->n_status_at_ready = 0;
        m->status[0] = '\0';
        m->exited = false;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int tmp[STORE_MAX + 1], log_fd;

                log_fd = open(m->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
                if (log_fd >= 0) {
                        dup2(log_fd, 1);
                        dup2(log_fd, 2);
                }
                for (unsigned i = 0; i < n_pass; i++)
                        tmp[i] = fcntl(pass[i], F_DUPFD_CLOEXEC, 3 + STORE_MAX + 8);
                for (unsigned i = 0; i < n_pass; i++)
                        if (tmp[i] < 0 || dup2(tmp[i], 3 + (int) i) < 0)
                                _exit(126);
                close_range(3 + n_pass, ~0U, 0);
                uint_to_str(env_pid + strlen("LISTEN_PID="), (unsigned long) getpid());
                uint_to_str(env_wdpid + strlen("WATCHDOG_PID="), (unsigned long) getpid());
                execve(m->scavd, argv, envp);
                _exit(127);
        }
        m->pid = pid;
        return 0;
}

static void print_log_tail(struct manager *m) {
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", m->log_path);
        fprintf(stderr, "---- scavd log (last lines) ----\n");
        fflush(stderr);
        (void) !system(cmd);
        fprintf(stderr, "----\n");
}

static bool manager_start_ready(struct manager *m, uint64_t watchdog_usec, const char *what) {
        int r = manager_start(m, watchdog_usec);

        CHECKF(r >= 0, "%s: fork: %s", what, strerror(-r));
        if (r < 0)
                return false;
        if (!manager_wait(m, cond_ready, 1, START_TIMEOUT_MS)) {
                CHECKF(false, "%s: no READY=1 (exited=%d status=%#x)", what, m->exited, m->wstatus);
                print_log_tail(m);
                return false;
        }
        /* STATUS= may come in the same message or just after. */
        CHECKF(manager_wait(m, cond_status, 0, 10000), "%s: READY=1 without STATUS=", what);
        return true;
}

/* SIGTERM (what `systemctl restart` sends first) or SIGKILL (a crash). */
static bool manager_stop(struct manager *m, int sig, const char *what) {
        kill(m->pid, sig);
        if (!manager_wait(m, cond_exited, 0, START_TIMEOUT_MS)) {
                CHECKF(false, "%s: daemon did not exit on signal %d", what, sig);
                kill(m->pid, SIGKILL);
                waitpid(m->pid, &m->wstatus, 0);
                m->exited = true;
                return false;
        }
        if (sig == SIGTERM) {
                CHECKF(WIFEXITED(m->wstatus) && WEXITSTATUS(m->wstatus) == 0,
                       "%s: exit after SIGTERM: status %#x", what, m->wstatus);
                CHECKF(m->n_stopping >= 1, "%s: no STOPPING=1 before exit", what);
        } else
                CHECKF(WIFSIGNALED(m->wstatus) && WTERMSIG(m->wstatus) == sig,
                       "%s: status %#x, want killed by %d", what, m->wstatus, sig);
        m->pid = 0;
        return true;
}

static int manager_init(struct manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int one = 1;

        snprintf(m->dir, sizeof(m->dir), "/tmp/scavd-systemd.XXXXXX");
        if (!mkdtemp(m->dir))
                return -errno;
        snprintf(m->socket_path, sizeof(m->socket_path), "%s/scavd.sock", m->dir);
        snprintf(m->notify_path, sizeof(m->notify_path), "%s/notify", m->dir);
        snprintf(m->config_path, sizeof(m->config_path), "%s/scavd.conf", m->dir);
        snprintf(m->log_path, sizeof(m->log_path), "%s/scavd.log", m->dir);

        m->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (m->listen_fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->socket_path);
        if (bind(m->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            listen(m->listen_fd, SOMAXCONN) < 0)
                return -errno;

        m->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (m->notify_fd < 0)
                return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->notify_path);
        if (bind(m->notify_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            setsockopt(m->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
                return -errno;
        return 0;
}

/* ---- configuration ---- */

static void write_config(struct manager *m, bool extra, const char *garbage) {
        FILE *f = fopen(m->config_path, "we");

        if (!f) {
                perror("config");
                exit(2);
        }
        fprintf(f, "[daemon]\n"
                   "bpf = off\n"
                   "pressure = off\n"
                   "scavtrace = 0\n"
                   "\n"
                   "[pool " POOL "]\n"
                   "capacity = 256M\n"
                   "max_clients = 32\n"
                   "\n"
                   "[pool " POOL_RING "]\n"
                   "capacity = 64M\n"
                   "max_names = 64\n");
        if (extra)
                fprintf(f, "\n[pool " POOL_EXTRA "]\ncapacity = 16M\nretain_extra_percent = 20\n");
        if (garbage)
                fputs(garbage, f);
        fclose(f);
}

/* ---- checks through the daemon ---- */

static int run_scavctl(const char *arg1, const char *arg2) {
        const char *ctl = getenv("SCAVCTL");
        char *argv[] = { (char *) ctl, (char *) arg1, (char *) arg2, NULL };
        pid_t pid;
        int status;

        if (posix_spawn(&pid, ctl, NULL, NULL, argv, environ) != 0)
                return -1;
        if (waitpid(pid, &status, 0) != pid)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static struct {
        ino_t heap_ino;
        uint64_t bytes_verified, allocs_verified, rounds;
        uint64_t gen, released_total;  /* statistics live in the meta memfd: they survive too */
} totals;

/*
 * Reads back every live allocation of every living client through a fresh
 * session, i.e. through the heap memfd the daemon serves now; checks that
 * it is the same file as before the restarts, and scavctl check.
 */
static void verify_round(struct manager *m, const char *what) {
        scav_pool *p = NULL;
        struct scav_stats st = {};
        struct stat sb;
        uint64_t bytes = 0, n = 0, live_bytes = 0;
        unsigned bad = 0;
        int r, rc;

        /* A service manager reads what the daemon tells it (STATUS= each generation)
         * all the time: one that stops reading stalls its sd_notify(). */
        notify_drain(m);
        CHECKF(clients_pause(), "%s: clients did not pause", what);
        r = scav_open(POOL, &p);
        CHECKF(r >= 0, "%s: scav_open(%s) after restart: %s", what, POOL, strerror(-r));
        if (r >= 0) {
                CHECKF(fstat(scav_heap_fd(p), &sb) == 0, "%s: fstat heap", what);
                if (totals.heap_ino == 0)
                        totals.heap_ino = sb.st_ino;
                CHECKF(sb.st_ino == totals.heap_ino,
                       "%s: the daemon serves another heap memfd (inode %lu, was %lu): pool lost",
                       what, (unsigned long) sb.st_ino, (unsigned long) totals.heap_ino);

                for (unsigned i = 0; i <= N_WORKERS; i++) {
                        struct client_state *c = &shm->c[i];
                        if (c->dead)
                                continue;
                        for (uint32_t j = 0; j < c->n_live; j++) {
                                const struct rec *rc_ = &c->live[j];
                                const void *ptr = scav_ptr(p, rc_->off);
                                int64_t off = ptr ? pattern_check(ptr, rc_->len, rc_->tag) : 0;
                                if (off >= 0) {
                                        if (bad++ < 5)
                                                fprintf(stderr,
                                                        "%s: client %u allocation %#" PRIx64 "+%" PRIu64
                                                        " (epoch %u): wrong at +%" PRId64 "\n",
                                                        what, i, rc_->off, rc_->len, rc_->epoch, off);
                                        continue;
                                }
                                bytes += rc_->len;
                                n++;
                        }
                        for (uint32_t j = 0; j < c->n_live; j++)
                                live_bytes += c->live[j].len;
                        notify_drain(m);
                }
                CHECKF(bad == 0, "%s: %u allocations read back wrong", what, bad);
                r = scav_stats(p, &st);
                CHECKF(r >= 0, "%s: scav_stats: %s", what, strerror(-r));
                CHECKF(st.inuse >= live_bytes, "%s: inuse %" PRIu64 " < live bytes %" PRIu64,
                       what, st.inuse, live_bytes);
                CHECKF(st.gen >= totals.gen, "%s: generation %" PRIu64 ", was %" PRIu64, what,
                       st.gen, totals.gen);
                CHECKF(st.released_total >= totals.released_total,
                       "%s: released_total %" PRIu64 ", was %" PRIu64, what, st.released_total,
                       totals.released_total);
                totals.gen = st.gen;
                totals.released_total = st.released_total;
                scav_close(p);
        }
        clients_resume();

        notify_drain(m);
        rc = run_scavctl("check", POOL);
        CHECKF(rc == 0, "%s: scavctl check %s: exit %d", what, POOL, rc);

        totals.bytes_verified += bytes;
        totals.allocs_verified += n;
        totals.rounds++;
        printf("%s: %" PRIu64 " allocations, %" PRIu64 " bytes read back; inuse %" PRIu64
               ", store %u fds\n", what, n, bytes, st.inuse, m->n_store);
}

/* pools: besides the ring's, which is always there. */
static void check_store(struct manager *m, unsigned pools, const char *what) {
        pools++;
        manager_reap(m);
        notify_drain(m);
        CHECKF(store_count_prefix(m, "pool/") == 2 * pools,
               "%s: %u pool descriptors in the store, want %u (2 per pool)", what,
               store_count_prefix(m, "pool/"), 2 * pools);
        CHECKF(m->n_store == store_count_prefix(m, "pool/"),
               "%s: %u descriptors in the store that are no pool's", what,
               m->n_store - store_count_prefix(m, "pool/"));
}

/* The ring's shared allocations, references and names, read from shared memory. */
static bool ring_stats(struct scav_stats *st) {
        scav_pool *p = NULL;
        int r = scav_open(POOL_RING, &p);
        if (r >= 0) {
                r = scav_stats(p, st);
                scav_close(p);
        }
        return r >= 0;
}

static bool daemon_restart(struct manager *m, int sig, unsigned away_ms, int kill_client,
                           const char *what) {
        struct scav_stats before = {}, after = {};

        /* The ring holds still between operations (holding nothing but its names):
         * the restart must lose none of its references or names. */
        bool ring_runs = ring_pids[0] > 0;
        if (ring_runs) {
                CHECKF(ring_pause(ring, RING_PROCS), "%s: the ring did not pause", what);
                CHECKF(ring_stats(&before), "%s: ring statistics before", what);
        }
        if (!manager_stop(m, sig, what))
                return false;
        /* The daemon is away: the clients keep working in shared memory,
         * and one may die; the daemon must reclaim it when it is back. */
        if (kill_client >= 0) {
                struct client_state *c = &shm->c[kill_client];
                kill(c->pid, SIGKILL);
                waitpid(c->pid, NULL, 0);
                c->dead = true;
        }
        /* Each living client allocates, writes and frees while the daemon is
         * away: nothing on their path needs it. */
        {
                uint64_t base[N_WORKERS + 1], end = now_usec() + 20 * 1000000ull;
                bool all;

                for (unsigned i = 0; i <= N_WORKERS; i++)
                        base[i] = atomic_load(&shm->c[i].ops);
                do {
                        all = true;
                        for (unsigned i = 0; i <= N_WORKERS; i++)
                                if (!shm->c[i].dead && atomic_load(&shm->c[i].ops) < base[i] + 20)
                                        all = false;
                        if (!all)
                                msleep(2);
                } while (!all && now_usec() < end);
                CHECKF(all, "%s: a client made no progress while the daemon was away", what);
        }
        msleep(away_ms);
        atomic_fetch_add(&shm->epoch, 1);
        if (!manager_start_ready(m, 0, what))
                return false;
        if (!ring_runs)
                return true;
        CHECKF(ring_stats(&after), "%s: ring statistics after", what);
        CHECKF(after.shared == before.shared && after.refs == before.refs && after.names == before.names &&
               after.names == after.refs,
               "%s: the ring had %" PRIu64 " shared, %" PRIu64 " references, %" PRIu64 " names; after the restart %"
               PRIu64 ", %" PRIu64 ", %" PRIu64, what, before.shared, before.refs, before.names, after.shared,
               after.refs, after.names);
        ring_resume(ring);
        return true;
}

/* SIGHUP (ExecReload=) or, with ctl, `scavctl reload`. */
static bool reload_by(struct manager *m, bool ctl, int want_ctl_rc, const char *what) {
        unsigned ready0 = m->n_ready, reloading0 = m->n_reloading;

        if (ctl) {
                int rc = run_scavctl("reload", NULL);
                CHECKF(want_ctl_rc == 0 ? rc == 0 : rc != 0, "%s: scavctl reload: exit %d", what, rc);
        } else
                kill(m->pid, SIGHUP);
        if (!manager_wait(m, cond_ready, ready0 + 1, START_TIMEOUT_MS)) {
                CHECKF(false, "%s: no READY=1 after SIGHUP (exited=%d)", what, m->exited);
                print_log_tail(m);
                return false;
        }
        CHECKF(m->n_reloading == reloading0 + 1, "%s: %u RELOADING=1 before READY=1, want 1",
               what, m->n_reloading - reloading0);
        CHECKF(m->n_reloading_monotonic == m->n_reloading,
               "%s: RELOADING=1 without MONOTONIC_USEC= in the same message", what);
        CHECKF(manager_wait(m, cond_status, 0, 10000), "%s: no STATUS= with or after READY=1", what);
        return true;
}

static bool reload(struct manager *m, const char *what) {
        return reload_by(m, false, 0, what);
}

static void pool_usable(const char *name, const char *what) {
        scav_pool *p = NULL;
        uint64_t off;
        int r = scav_open(name, &p);

        CHECKF(r >= 0, "%s: scav_open(%s): %s", what, name, strerror(-r));
        if (r < 0)
                return;
        r = scav_alloc(p, 4096, SCAV_ALLOC_ZERO, &off);
        CHECKF(r >= 0, "%s: scav_alloc in %s: %s", what, name, strerror(-r));
        if (r >= 0)
                CHECKF(scav_free(p, off) == 0, "%s: scav_free in %s", what, name);
        scav_close(p);
}

static uint64_t pool_inuse(const char *name) {
        scav_pool *p = NULL;
        struct scav_stats st = {};

        if (scav_open(name, &p) < 0)
                return UINT64_MAX;
        if (scav_stats(p, &st) < 0)
                st.inuse = UINT64_MAX;
        scav_close(p);
        return st.inuse;
}

int main(void) {
        static struct manager m = { .listen_fd = -1, .notify_fd = -1 };
        unsigned restarts = 0, kills = 0;
        int r;

        m.scavd = getenv("SCAVD");
        if (!m.scavd || access(m.scavd, X_OK) < 0)
                TEST_SKIP("no daemon at $SCAVD (%s)", m.scavd ? m.scavd : "unset");
        if (!getenv("SCAVCTL") || access(getenv("SCAVCTL"), X_OK) < 0)
                TEST_SKIP("no scavctl at $SCAVCTL");

        r = manager_init(&m);
        if (r < 0) {
                fprintf(stderr, "manager setup: %s\n", strerror(-r));
                return 1;
        }
        setenv("SCAVD_SOCKET", m.socket_path, 1);
        write_config(&m, false, NULL);

        shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shm == MAP_FAILED)
                return 1;

        /* start -> READY=1, the pool's memfds in the store */
        if (!manager_start_ready(&m, 0, "first start"))
                goto out;
        /* READY=1 means usable: no retry here. */
        pool_usable(POOL, "first start");
        check_store(&m, 1, "first start");

        for (unsigned i = 0; i < N_WORKERS; i++)
                client_spawn(i, false);
        client_spawn(N_WORKERS, true);
        ring = ring_shm_new();
        if (!ring)
                goto out;
        for (unsigned i = 0; i < RING_PROCS; i++) {
                uint64_t seed = test_mix64(i + 1000);
                fflush(NULL);
                ring_pids[i] = fork();
                if (ring_pids[i] == 0) {
                        close_range(3, ~0U, 0); /* nothing of the manager's */
                        if (i % 2)
                                ring_consumer(ring, POOL_RING, seed, -1);
                        ring_producer(ring, POOL_RING, seed, -1);
                }
        }
        CHECKF(clients_wait_ops(100, 60000), "clients made no progress");
        verify_round(&m, "before any restart");

        /* reload, good file: a new pool appears, the old one keeps serving */
        write_config(&m, true, NULL);
        if (!reload(&m, "reload good"))
                goto out;
        pool_usable(POOL_EXTRA, "reload good");
        check_store(&m, 2, "reload good");

        /* reload, bad file: the running configuration stays, STATUS= says so */
        write_config(&m, true, "\n[pool broken]\ncapacity = banana\n");
        if (!reload(&m, "reload bad"))
                goto out;
        printf("STATUS after the bad reload: %s\n", m.status);
        CHECKF(strstr(m.status, "scavd.conf:") != NULL,
               "reload bad: STATUS= does not name file:line: \"%s\"", m.status);
        CHECKF(strstr(m.status, "capacity") != NULL,
               "reload bad: STATUS= does not name the key: \"%s\"", m.status);
        pool_usable(POOL_EXTRA, "reload bad");
        pool_usable(POOL, "reload bad");
        CHECKF(scav_open("broken", &(scav_pool *){ NULL }) < 0, "reload bad: pool 'broken' exists");
        verify_round(&m, "after the reloads");
        write_config(&m, true, NULL);
        if (!reload(&m, "reload fixed"))
                goto out;
        CHECKF(strstr(m.status, "banana") == NULL && strstr(m.status, "scavd.conf:") == NULL,
               "reload fixed: STATUS= still reports the old error: %s", m.status);

        /* The same through `scavctl reload`: it answers with the error. */
        write_config(&m, true, "\n[pool broken]\ncapacity = banana\n");
        if (!reload_by(&m, true, 1, "scavctl reload bad"))
                goto out;
        CHECKF(strstr(m.status, "banana") != NULL, "scavctl reload bad: STATUS=%s", m.status);
        write_config(&m, true, NULL);
        if (!reload_by(&m, true, 0, "scavctl reload good"))
                goto out;
        pool_usable(POOL_EXTRA, "scavctl reload good");

        /* SIGTERM and restart, with the watchdog on */
        if (!manager_stop(&m, SIGTERM, "SIGTERM"))
                goto out;
        msleep(100);
        atomic_fetch_add(&shm->epoch, 1);
        if (!manager_start_ready(&m, 1000000, "restart after SIGTERM"))
                goto out;
        restarts++;
        CHECKF(manager_wait(&m, cond_watchdog, 2, 20000),
               "watchdog: %u WATCHDOG=1 within 20 s with WATCHDOG_USEC=1s", m.n_watchdog);
        printf("watchdog: %u WATCHDOG=1 received\n", m.n_watchdog);
        verify_round(&m, "after SIGTERM");
        check_store(&m, 2, "after SIGTERM");

        /* SIGKILL and restart; a client dies while the daemon is away */
        if (!daemon_restart(&m, SIGKILL, 200, N_WORKERS, "SIGKILL"))
                goto out;
        restarts++, kills++;
        verify_round(&m, "after SIGKILL");
        check_store(&m, 2, "after SIGKILL");

        /* The bar: 20 restarts, half SIGKILL at random points, clients running. */
        for (unsigned i = 0; i < BAR_RESTARTS; i++) {
                char what[64];
                int sig = i % 2 ? SIGKILL : SIGTERM;
                uint64_t rnd = test_mix64(i + 77);

                msleep((unsigned) (rnd % 250));
                snprintf(what, sizeof(what), "restart %u (%s)", i + 1, sig == SIGKILL ? "SIGKILL" : "SIGTERM");
                if (!daemon_restart(&m, sig, (unsigned) (rnd >> 20) % 200, -1, what))
                        goto out;
                restarts++;
                kills += sig == SIGKILL;
                verify_round(&m, what);
                check_store(&m, 2, what);
                if (test_failures)
                        goto out;
        }

        /* The ring stops (its processes die holding references, which go with
         * their slots); its names are drained: nothing of it is left. */
        {
                struct scav_stats st = {};
                scav_pool *p = NULL;

                for (unsigned i = 0; i < RING_PROCS; i++) {
                        kill(ring_pids[i], SIGKILL);
                        waitpid(ring_pids[i], NULL, 0);
                        ring_pids[i] = 0;
                }
                printf("ring: %" PRIu64 " frames published, %" PRIu64 " consumed across the restarts\n",
                       atomic_load(&ring->produced), atomic_load(&ring->consumed));
                CHECKF(atomic_load(&ring->failures) == 0, "ring: %" PRIu64 " failures, the first: %s",
                       atomic_load(&ring->failures), ring->failure);
                CHECKF(atomic_load(&ring->consumed) > 0, "ring: nothing consumed");
                CHECK(scav_open(POOL_RING, &p) == 0);
                for (int t = 0; t < 300; t++) {
                        if (scav_stats(p, &st) == 0 && st.clients == 1)
                                break;
                        notify_drain(&m);
                        msleep(50);
                }
                CHECKF(ring_drain(p) >= 0, "ring: drain");
                CHECK(scav_stats(p, &st) == 0);
                CHECKF(st.inuse == 0 && st.shared == 0 && st.refs == 0 && st.names == 0,
                       "ring: %" PRIu64 " bytes in use, %" PRIu64 " shared, %" PRIu64 " references, %" PRIu64
                       " names left", st.inuse, st.shared, st.refs, st.names);
                scav_close(p);
                r = run_scavctl("check", POOL_RING);
                CHECKF(r == 0, "scavctl check %s: exit %d", POOL_RING, r);
        }

        /* The clients free everything they still hold, then leave. */
        for (unsigned i = 0; i < N_WORKERS; i++)
                atomic_store(&shm->c[i].stop, 1);
        for (unsigned i = 0; i < N_WORKERS; i++) {
                struct client_state *c = &shm->c[i];
                int status = 0;

                waitpid(c->pid, &status, 0);
                c->dead = true;
                CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0 && c->errors == 0,
                       "client %u: status %#x, %" PRIu64 " errors, first: %s", i, status,
                       c->errors, c->err);
                printf("client %u: %" PRIu64 " allocations, %" PRIu64 " frees (%" PRIu64
                       " of allocations made before a restart), %" PRIu64 " bytes written, %" PRIu64
                       " bytes verified by itself\n",
                       i, c->allocs, c->frees, c->frees_across_restart, c->bytes_written,
                       c->bytes_self_verified);
                CHECKF(c->frees_across_restart > 0, "client %u freed nothing allocated before a restart", i);
        }

        /* No page leaked: the dead client's and the leavers' pages are back. */
        {
                uint64_t inuse = UINT64_MAX;
                for (int t = 0; t < 300 && inuse != 0; t++) {
                        inuse = pool_inuse(POOL);
                        notify_drain(&m);
                        if (inuse != 0)
                                msleep(50);
                }
                CHECKF(inuse == 0, "pool %s: %" PRIu64 " bytes in use after every client left", POOL, inuse);
                CHECKF(pool_inuse(POOL_EXTRA) == 0, "pool %s: pages in use", POOL_EXTRA);
                r = run_scavctl("check", POOL);
                CHECKF(r == 0, "final scavctl check: exit %d", r);
        }

        /* A stored pool the configuration no longer names is adopted,
         * kept while it has clients (none here), then dropped and taken out
         * of the store. */
        write_config(&m, false, NULL);
        if (!daemon_restart(&m, SIGTERM, 50, -1, "restart without pool extra"))
                goto out;
        restarts++;
        for (int t = 0; t < 200 && store_count_prefix(&m, "pool/" POOL_EXTRA "/") > 0; t++) {
                notify_drain(&m);
                msleep(50);
        }
        CHECKF(store_count_prefix(&m, "pool/" POOL_EXTRA "/") == 0,
               "pool %s, no longer configured and unused, still in the store", POOL_EXTRA);
        CHECKF(scav_open(POOL_EXTRA, &(scav_pool *){ NULL }) < 0, "pool %s still served", POOL_EXTRA);
        check_store(&m, 1, "restart without pool extra");
        {
                char cmd[512];
                snprintf(cmd, sizeof(cmd), "grep -q '%s.*drop' %s", POOL_EXTRA, m.log_path);
                CHECKF(system(cmd) == 0, "no log line about dropping pool %s", POOL_EXTRA);
        }

        CHECKF(m.n_foreign == 0, "%u notifications from other processes than the main one", m.n_foreign);
        CHECKF(m.n_bad_fdname == 0, "%u FDNAME= that systemd refuses", m.n_bad_fdname);
        CHECKF(m.n_fds_without_store == 0, "%u notifications with descriptors but no FDSTORE=1",
               m.n_fds_without_store);
        manager_stop(&m, SIGTERM, "final stop");

        printf("restarts: %u (%u SIGKILL), verification rounds: %" PRIu64 ", allocations read back: %"
               PRIu64 ", bytes read back: %" PRIu64 ", duplicate stores ignored: %u\n",
               restarts, kills, totals.rounds, totals.allocs_verified, totals.bytes_verified,
               m.n_store_dups);
out:
        for (unsigned i = 0; i < RING_PROCS; i++)
                if (ring_pids[i] > 0) {
                        kill(ring_pids[i], SIGKILL);
                        waitpid(ring_pids[i], NULL, 0);
                }
        for (unsigned i = 0; i <= N_WORKERS; i++)
                if (shm->c[i].pid > 0 && !shm->c[i].dead) {
                        atomic_store(&shm->c[i].stop, 1);
                        kill(shm->c[i].pid, SIGKILL);
                        waitpid(shm->c[i].pid, NULL, 0);
                }
        if (m.pid > 0 && !m.exited) {
                kill(m.pid, SIGKILL);
                waitpid(m.pid, NULL, 0);
        }
        if (test_failures)
                print_log_tail(&m);
        else if (!getenv("KEEP")) {
                char cmd[128];
                snprintf(cmd, sizeof(cmd), "rm -rf %s", m.dir);
                (void) !system(cmd);
        }
        return TEST_END();
}

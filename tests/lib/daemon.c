/* SPDX-License-Identifier: MIT */
/*
 * The real daemon for integration tests: a private directory, a generated
 * configuration, a private socket, and the daemon's log kept for failures.
 */

#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "macro.h"
#include "scav.h"
#include "test.h"

uint64_t test_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static const char *find_binary(const char *env, const char *name) {
        static char buf[2][512];
        const char *e = getenv(env), *b;
        char *out = buf[strcmp(name, "scavd") == 0 ? 0 : 1];

        if (e && *e && access(e, X_OK) == 0)
                return e;
        b = getenv("BUILD");
        snprintf(out, 512, "%s/%s", b && *b ? b : "build", name);
        return access(out, X_OK) == 0 ? out : NULL;
}

const char *test_scavd_path(void) {
        return find_binary("SCAVD", "scavd");
}

const char *test_scavctl_path(void) {
        return find_binary("SCAVCTL", "scavctl");
}

static bool socket_answers(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        r = connect(fd, (struct sockaddr *) &sa, sizeof(sa));
        close(fd);
        return r == 0;
}

void test_daemon_dump_log(const struct test_daemon *d) {
        char line[1024];
        FILE *f = fopen(d->log, "re");
        long n = 0, skip;

        if (!f)
                return;
        while (fgets(line, sizeof(line), f))
                n++;
        skip = n > 40 ? n - 40 : 0;
        rewind(f);
        fprintf(stderr, "--- daemon log (%s), last lines ---\n", d->log);
        for (long i = 0; fgets(line, sizeof(line), f); i++)
                if (i >= skip)
                        fputs(line, stderr);
        fprintf(stderr, "--- end of daemon log ---\n");
        fclose(f);
}

unsigned test_daemon_log_count(const struct test_daemon *d, const char *a, const char *b) {
        char line[2048];
        unsigned n = 0;
        FILE *f = fopen(d->log, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (strstr(line, a) && (!b || strstr(line, b)))
                        n++;
        fclose(f);
        return n;
}

bool test_daemon_log_has(const struct test_daemon *d, const char *needle) {
        return test_daemon_log_count(d, needle, NULL) > 0;
}

bool test_daemon_wait_log(const struct test_daemon *d, const char *needle, unsigned seconds) {
        uint64_t deadline = test_now_usec() + (uint64_t) seconds * 1000000;

        while (!test_daemon_log_has(d, needle)) {
                if (test_now_usec() >= deadline)
                        return false;
                usleep(10000);
        }
        return true;
}

static int spawn(struct test_daemon *d) {
        const char *scavd = test_scavd_path();
        uint64_t deadline;
        pid_t pid;

        if (!scavd)
                TEST_SKIP("no scavd binary (set SCAVD or BUILD)");
        pid_t parent = getpid();
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* A test that crashes or is killed by run.sh's timeout takes
                 * its daemon with it (a clean stop: SIGTERM). */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        dup2(fd, 1);
                        dup2(fd, 2);
                }
                /* Not our service manager's business. */
                unsetenv("NOTIFY_SOCKET");
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                unsetenv("LISTEN_FDNAMES");
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
                execl(scavd, "scavd", "--config", d->config, "--socket", d->socket, (char *) NULL);
                _exit(127);
        }
        d->pid = pid;

        deadline = test_now_usec() + 30 * 1000000ull;
        while (test_now_usec() < deadline) {
                int status;

                if (waitpid(pid, &status, WNOHANG) == pid) {
                        d->pid = 0;
                        fprintf(stderr, "scavd exited during start-up (status 0x%x)\n", status);
                        test_daemon_dump_log(d);
                        return -ECHILD;
                }
                if (socket_answers(d->socket))
                        return 0;
                usleep(10000);
        }
        fprintf(stderr, "scavd did not answer on %s within 30 s\n", d->socket);
        test_daemon_dump_log(d);
        test_daemon_kill(d);
        return -ETIMEDOUT;
}

static int make_dir(struct test_daemon *d) {
        memset(d, 0, sizeof(*d));
        snprintf(d->dir, sizeof(d->dir), "/tmp/scavd-test.XXXXXX");
        if (!mkdtemp(d->dir))
                return -errno;
        /* Clients of other users (setuid tests) must reach the socket. */
        chmod(d->dir, 0755);
        snprintf(d->socket, sizeof(d->socket), "%s/scavd.sock", d->dir);
        snprintf(d->config, sizeof(d->config), "%s/scavd.conf", d->dir);
        snprintf(d->log, sizeof(d->log), "%s/scavd.log", d->dir);
        setenv("SCAVD_SOCKET", d->socket, 1);
        return 0;
}

int test_daemon_start(struct test_daemon *d, const char *config) {
        FILE *f;
        int r;

        r = make_dir(d);
        if (r < 0)
                return r;
        f = fopen(d->config, "we");
        if (!f)
                return -errno;
        fputs(config, f);
        if (fclose(f) != 0)
                return -errno;
        return spawn(d);
}

int test_daemon_start_file(struct test_daemon *d, const char *config_file) {
        char cmd[1024];
        int r;

        r = make_dir(d);
        if (r < 0)
                return r;
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", config_file, d->config);
        if (system(cmd) != 0)
                return -EIO;
        return spawn(d);
}

int test_daemon_restart(struct test_daemon *d) {
        return spawn(d);
}

int test_daemon_stop(struct test_daemon *d) {
        uint64_t deadline;
        int status;

        if (d->pid <= 0)
                return -ESRCH;
        kill(d->pid, SIGTERM);
        deadline = test_now_usec() + 30 * 1000000ull;
        while (test_now_usec() < deadline) {
                pid_t r = waitpid(d->pid, &status, WNOHANG);
                if (r == d->pid) {
                        d->pid = 0;
                        if (WIFEXITED(status))
                                return WEXITSTATUS(status);
                        return 128 + WTERMSIG(status);
                }
                usleep(5000);
        }
        fprintf(stderr, "scavd did not stop within 30 s of SIGTERM\n");
        test_daemon_kill(d);
        return -ETIMEDOUT;
}

void test_daemon_kill(struct test_daemon *d) {
        if (d->pid <= 0)
                return;
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
}

void test_daemon_cleanup(struct test_daemon *d) {
        char cmd[512];

        if (!d->dir[0])
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
        (void) !system(cmd);
        d->dir[0] = 0;
}

int test_scavctl(const struct test_daemon *d, char *out, size_t outlen, ...) {
        const char *argv[32];
        const char *ctl = test_scavctl_path();
        int pfd[2], status, n = 0;
        size_t got = 0;
        va_list ap;
        pid_t pid;

        if (!ctl)
                return -ENOENT;
        argv[n++] = "scavctl";
        argv[n++] = "--socket";
        argv[n++] = d->socket;
        va_start(ap, outlen);
        for (const char *a; n < 31 && (a = va_arg(ap, const char *));)
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                dup2(pfd[1], 1);
                dup2(pfd[1], 2);
                execv(ctl, (char **) argv);
                _exit(127);
        }
        close(pfd[1]);
        for (;;) {
                char buf[4096];
                ssize_t k = read(pfd[0], buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if (out && got + 1 < outlen) {
                        size_t c = MIN((size_t) k, outlen - 1 - got);
                        memcpy(out + got, buf, c);
                        got += c;
                }
        }
        if (out && outlen)
                out[got] = 0;
        close(pfd[0]);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool test_pool_check(const struct test_daemon *d, const char *pool) {
        char out[4096];
        int r = test_scavctl(d, out, sizeof(out), "check", pool, NULL);

        if (r != 0)
                fprintf(stderr, "scavctl check %s: exit %d: %s", pool, r, out);
        return r == 0;
}

bool test_wait_inuse(scav_pool *p, uint64_t want, struct scav_stats *st) {
        uint64_t deadline = test_now_usec() + 30 * 1000000ull;

        do {
                if (scav_stats(p, st) == 0 && st->inuse == want)
                        return true;
                usleep(5000);
        } while (test_now_usec() < deadline);
        return false;
}

int test_proc_fd_count(pid_t pid) {
        char path[64];
        struct dirent *de;
        DIR *dir;
        int n = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        dir = opendir(path);
        if (!dir)
                return -errno;
        while ((de = readdir(dir)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(dir);
        return n;
}

int64_t test_proc_vmrss_kb(pid_t pid) {
        char path[64], line[256];
        int64_t kb = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %" SCNd64, &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

int64_t test_fd_blocks(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        return (int64_t) st.st_blocks;
}

/* The sum of read_task() over every thread of pid (/proc/PID/task/TID/file), or -errno. */
static int64_t sum_over_tasks(pid_t pid, const char *file, int64_t (*read_task)(FILE *f)) {
        char path[64];
        struct dirent *de;
        int64_t sum = 0;
        DIR *dir;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        dir = opendir(path);
        if (!dir)
                return -errno;
        while ((de = readdir(dir))) {
                char tpath[384];
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                int n = snprintf(tpath, sizeof(tpath), "%s/%s/%s", path, de->d_name, file);
                if (n < 0 || (size_t) n >= sizeof(tpath))
                        continue;
                f = fopen(tpath, "re");
                if (!f)
                        continue; /* the thread exited */
                sum += read_task(f);
                fclose(f);
        }
        closedir(dir);
        return sum;
}

static int64_t read_schedstat_ns(FILE *f) {
        unsigned long long ns;
        return fscanf(f, "%llu", &ns) == 1 ? (int64_t) ns : 0;
}

int64_t test_proc_cpu_ns(pid_t pid) {
        return sum_over_tasks(pid, "schedstat", read_schedstat_ns);
}

static int64_t read_ctxt_switches(FILE *f) {
        char line[256];
        int64_t sum = 0;
        while (fgets(line, sizeof(line), f)) {
                long long v;
                if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
                    sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
                        sum += v;
        }
        return sum;
}

int64_t test_proc_ctxt_switches(pid_t pid) {
        return sum_over_tasks(pid, "status", read_ctxt_switches);
}

int64_t test_proc_cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long ut, st;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');          /* comm may contain spaces */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -EBADMSG;
        return (int64_t) (ut + st);
}

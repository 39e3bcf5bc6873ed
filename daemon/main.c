/* SPDX-License-Identifier: MIT */
/*
 * scavd: sets up one sd-event loop with everything the daemon does on it
 * (listening socket and sessions, signals, watchdog, scavenger timers,
 * kernel pressure), tells the service manager when it is ready, and tears
 * it down in reverse on SIGTERM.
 *
 *   scavd [--config FILE] [--socket PATH]
 *   scavd --check-config [FILE]
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "build-version.h"
#include "fdstore.h"
#include "log.h"
#include "manager.h"
#include "server.h"
#include "session.h"

#define DEFAULT_CONFIG "/etc/scavd/scavd.conf"
#define DEFAULT_SOCKET "/run/scavd/scavd.sock"

static const char *arg_config = DEFAULT_CONFIG;
static const char *arg_socket;
static bool arg_check_config;

static void help(void) {
        printf("Usage: scavd [OPTIONS]\n\n"
               "Owns shared-memory page pools and returns their free pages to the kernel.\n\n"
               "  -c --config FILE     configuration file (default " DEFAULT_CONFIG ",\n"
               "                       drop-ins in FILE.d/*.conf)\n"
               "  -s --socket PATH     listen on PATH (default: configuration's socket,\n"
               "                       then $SCAVD_SOCKET, then " DEFAULT_SOCKET ")\n"
               "     --check-config [FILE]\n"
               "                       validate the configuration (FILE, else --config's)\n"
               "                       and exit (0 = valid)\n"
               "  -h --help            show this help\n"
               "     --version         show the version\n");
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_CHECK_CONFIG = 0x100, ARG_VERSION };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "socket", required_argument, NULL, 's' },
                { "check-config", optional_argument, NULL, ARG_CHECK_CONFIG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        const char *check_file = NULL;
        bool have_config = false;
        int c;

        while ((c = getopt_long(argc, argv, "c:s:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        have_config = true;
                        break;
                case 's':
                        arg_socket = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
                        if (optarg)
                                check_file = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("scavd " SCAV_BUILD_VERSION "\n");
                        return 0;
                default:
                        return -EINVAL;
                }
        /* --check-config FILE, as well as --check-config=FILE. */
        if (arg_check_config && !check_file && optind < argc)
                check_file = argv[optind++];
        if (check_file) {
                if (have_config) {
                        fprintf(stderr, "scavd: --check-config %s and --config %s: give the file once\n",
                                check_file, arg_config);
                        return -EINVAL;
                }
                arg_config = check_file;
        }
        if (optind < argc) {
                fprintf(stderr, "scavd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int on_term(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct manager *m = userdata;

        log_info("%s: stopping", strsignal((int) si->ssi_signo));
        (void) sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
        return sd_event_exit(m->event, 0);
}

static int on_hup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct manager *m = userdata;
        char err[512];

        log_info("SIGHUP: reloading %s", m->config_path);
        (void) manager_reload(m, err, sizeof(err));
        return 0;
}

static const char *socket_path(const struct daemon_config *c) {
        const char *e;

        if (arg_socket)
                return arg_socket;
        if (c->socket[0])
                return c->socket;
        e = getenv("SCAVD_SOCKET");
        if (e && *e)
                return e;
        return DEFAULT_SOCKET;
}

static int run(struct manager *m) {
        struct fdstore_pool stored[MANAGER_MAX_POOLS];
        char err[512];
        int listen_fd = -EBADF, n_stored, r;
        sigset_t ss;

        m->config = calloc(1, sizeof(*m->config));
        if (!m->config)
                return log_error_errno(-ENOMEM, "out of memory");
        snprintf(m->config_path, sizeof(m->config_path), "%s", arg_config);
        r = config_load(m->config_path, m->config, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                (void) sd_notifyf(0, "STATUS=Bad configuration: %s", err);
                return r;
        }
        if (config_warning(m->config))
                log_warning("%s: %s", m->config_path, config_warning(m->config));
        m->uid = geteuid();

        /* One descriptor per session: take the soft limit up to the hard one
         * (sd-event uses epoll, not select, so high numbers are fine). */
        {
                struct rlimit rl;
                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                        rl.rlim_cur = rl.rlim_max;
                        (void) setrlimit(RLIMIT_NOFILE, &rl);
                }
        }

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop: %m");
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_term, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_term, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_hup, m);
        if (r < 0)
                return log_error_errno(r, "cannot watch signals: %m");
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "cannot enable the watchdog: %m");

        r = workers_new(m->event, m->config->lock_timeout_usec, &m->workers);
        if (r < 0)
                return r;
        r = scavenger_new(m->event, m->config, &m->scavenger);
        if (r < 0)
                return log_error_errno(r, "cannot start the scavenger: %m");
        scavenger_set_status_callback(m->scavenger, manager_status_changed, m);
        r = kernel_watch_new(m->event, m->config->bpf, m->config->pressure, manager_pressure, m, &m->kernel);
        if (r < 0) {
                /* What was asked for explicitly must not be silently missing. */
                if (m->config->bpf == CONFIG_ON)
                        return log_error_errno(r, "bpf = on, but kernel awareness cannot be had: %m");
                if (m->config->pressure == PRESSURE_BPF || m->config->pressure == PRESSURE_PSI)
                        return log_error_errno(r, "pressure = %s, but that pressure source cannot be had: %m",
                                               m->config->pressure == PRESSURE_BPF ? "bpf" : "psi");
                log_warning_errno(r, "kernel awareness unavailable, continuing without: %m");
                m->kernel = NULL;
        }

        if (m->kernel)
                scavenger_set_kernel(m->scavenger, m->kernel);

        m->pool_adopted = session_pool_adopted;
        m->pool_dropped = session_pool_dropped;
        m->pool_quarantined = session_pool_quarantined;
        n_stored = fdstore_adopt(&listen_fd, stored, (int) ELEMENTSOF(stored));
        if (n_stored < 0) {
                log_warning_errno(n_stored, "cannot take passed descriptors: %m");
                n_stored = 0;
                listen_fd = -EBADF;
        }
        r = manager_start_pools(m, stored, n_stored);
        if (r < 0)
                return r;
        r = server_new(m, listen_fd, socket_path(m->config), &m->server);
        if (r < 0)
                return r;

        m->ready = true;
        manager_notify_ready(m);
        log_info("ready: %u pools", m->n_pools);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        return 0;
}

int main(int argc, char *argv[]) {
        struct manager m = {};
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        if (arg_check_config) {
                struct daemon_config *c = calloc(1, sizeof(*c));
                char err[512];

                if (!c)
                        return 1;
                r = config_load(arg_config, c, err, sizeof(err));
                if (r < 0)
                        fprintf(stderr, "%s\n", err);
                else {
                        const char *w = config_warning(c);

                        /* Valid, but probably not what was meant: said, not refused. */
                        if (w)
                                fprintf(stderr, "%s: warning: %s\n", arg_config, w);
                        printf("%s: valid, %u pools\n", arg_config, c->n_pools);
                }
                free(c);
                return r < 0 ? 1 : 0;
        }

        r = run(&m);
        m.server = server_free(m.server);
        manager_done(&m);
        m.event = sd_event_unref(m.event);
        return r < 0 ? 1 : 0;
}

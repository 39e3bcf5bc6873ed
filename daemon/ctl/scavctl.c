/* SPDX-License-Identifier: MIT */
/*
 * scavctl: look at and steer scavd's pools. Talks to the daemon over its
 * socket with the control requests of lib/proto.h; human tables by default,
 * one JSON document with --json. Links only libscav.
 */

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "build-version.h"
#include "macro.h"
#include "proto.h"
#include "scav-conn.h"

static const char *arg_socket;
static bool arg_json;
static const char *arg_command; /* for error objects */
static bool replied;            /* the last request got an answer from the daemon */

union reply {
        struct scav_msg_reply rep;
        char buf[SCAV_MSG_MAX];
};

static void *reply_payload(union reply *u) {
        return u->buf + sizeof(struct scav_msg_reply);
}

/* 1536 -> "1.5K"; bytes below 1 KiB as they are. */
static const char *fmt_size(uint64_t v, char buf[static 32]) {
        static const char units[] = "KMGTPE";
        double d = (double) v;
        int u = -1;

        if (v < 1024) {
                snprintf(buf, 32, "%" PRIu64 "B", v);
                return buf;
        }
        while (d >= 1024 && u < 5) {
                d /= 1024;
                u++;
        }
        snprintf(buf, 32, "%.1f%c", d, units[u]);
        return buf;
}

static void json_string(const char *s, size_t n) {
        putchar('"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

/*
 * With --json, a failure is also one JSON object on standard output, as a
 * failed reload's is, so that a script reads one document whatever
 * happened: {"ok":false,"command":...,"pool":...,"errno":...,"error":...}.
 * The message itself goes to standard error as always.
 */
static void json_error(const char *pool, int r, const char *msg) {
        const char *name = r < 0 ? strerrorname_np(-r) : NULL;

        printf("{\"ok\":false,\"command\":");
        if (arg_command)
                json_string(arg_command, strlen(arg_command));
        else
                printf("null");
        printf(",\"pool\":");
        if (pool)
                json_string(pool, strlen(pool));
        else
                printf("null");
        printf(",\"errno\":");
        if (name)
                json_string(name, strlen(name));
        else
                printf("null");
        printf(",\"error\":");
        json_string(msg, strlen(msg));
        printf("}\n");
}

/* A usage error: one line, and the JSON object with --json; returns 2. */
_printf_(1, 2) static int usage(const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "scavctl: %s (see 'scavctl --help')\n", msg);
        if (arg_json)
                json_error(NULL, 0, msg);
        return 2;
}

/* The socket refused us, not the daemon: say who may connect. The group
 * is the socket's own (scavd's, from scavd.socket), when it can be seen. */
static void socket_denied(const char *path, char *msg, size_t len) {
        const char *group = "scavd";
        struct stat st;
        struct group *g;

        if (stat(path, &st) == 0 && (g = getgrgid(st.st_gid)))
                group = g->gr_name;
        snprintf(msg, len,
                 "cannot connect to scavd at %s: permission denied: only root and members of the group \"%s\" "
                 "may connect (usermod -aG %s USER, then log in again)", path, group, group);
}

/* Reports a failed request in words a person can act on; returns 1. With
 * json = false, only on standard error (a row of a list that goes on). */
static int fail_to(bool json, int r, const char *what, const char *pool) {
        const char *path = arg_socket ? arg_socket : scav_socket_path();
        char msg[1024];

        switch (r) {
        case -ECONNREFUSED:
                snprintf(msg, sizeof(msg), "cannot reach scavd at %s: no daemon is listening", path);
                break;
        case -ENOENT:
                snprintf(msg, sizeof(msg), "%s: no pool named \"%s\"", what, pool ? pool : "");
                break;
        case -EACCES:
        case -EPERM:
                /* Both the socket and a pool's allow list say EACCES: only
                 * the daemon answers in the second case. */
                if (!replied)
                        socket_denied(path, msg, sizeof(msg));
                else if (pool)
                        snprintf(msg, sizeof(msg),
                                 "%s: pool %s: permission denied (not in the pool's allow_users or allow_groups)",
                                 what, pool);
                else
                        snprintf(msg, sizeof(msg), "%s: permission denied", what);
                break;
        case -EPROTO:
                snprintf(msg, sizeof(msg), "scavd at %s speaks another protocol version", path);
                break;
        default:
                snprintf(msg, sizeof(msg), "%s%s%s: %s", what, pool ? ": pool " : "", pool ? pool : "",
                         strerror(-r));
        }
        fprintf(stderr, "scavctl: %s\n", msg);
        if (json && arg_json)
                json_error(pool, r, msg);
        return 1;
}

static int fail(int r, const char *what, const char *pool) {
        return fail_to(true, r, what, pool);
}

static int request(enum scav_msg_type type, const char *pool, uint64_t bytes, union reply *u) {
        int r;

        memset(u, 0, sizeof(*u));
        r = scav_ctl_request(arg_socket, type, pool, bytes, u, sizeof(*u));
        replied = u->rep.hdr.magic == SCAV_PROTO_MAGIC;
        return r;
}

/* The pools' names, one per line in the reply, into a NULL-terminated array. */
static int get_pools(char ***ret) {
        union reply u;
        char **names = NULL;
        size_t n = 0;
        const char *p, *end;
        int r;

        r = request(SCAV_MSG_POOLS, NULL, 0, &u);
        if (r < 0)
                return r;
        p = reply_payload(&u);
        end = p + u.rep.count;
        names = calloc(1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                char **nn = realloc(names, (n + 2) * sizeof(char *));
                if (!nn)
                        return -ENOMEM;
                names = nn;
                if (len > 0)
                        names[n++] = strndup(p, len);
                names[n] = NULL;
                p += len + 1;
        }
        *ret = names;
        return (int) n;
}

static void free_names(char **names) {
        for (char **n = names; n && *n; n++)
                free(*n);
        free(names);
}

static int get_status(const char *pool, struct scav_msg_pool_status *st) {
        union reply u;
        int r = request(SCAV_MSG_STATUS, pool, 0, &u);

        if (r < 0)
                return r;
        if (u.rep.count != 1)
                return -EBADMSG;
        memcpy(st, reply_payload(&u), sizeof(*st));
        return 0;
}

/* Width of the POOL column: the longest name shown, at least 16. */
static int name_width = 16;

static void status_header(void) {
        printf("%-*s %9s %9s %9s %9s %9s %9s %6s %9s %7s %9s %9s %8s %s\n", name_width, "POOL", "CAPACITY", "HEAP",
               "IN USE", "RELEASED", "RETAINED", "GOAL", "GEN", "REL.TOTAL", "CLIENTS", "FAULTS", "REFAULTS",
               "PRESSURE", "STATE");
}

static void status_row(const struct scav_msg_pool_status *st) {
        char a[32], b[32], c[32], d[32], e[32], f[32], g[32];
        const char *state = st->flags & SCAV_POOL_STUCK         ? "stuck"
                            : st->flags & SCAV_POOL_QUARANTINED ? "quarantined"
                            : st->flags & SCAV_POOL_DRAINING    ? "draining"
                                                                 : "ok";

        printf("%-*s %9s %9s %9s %9s %9s %9s %6" PRIu64 " %9s %7" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8" PRIu64
               " %s\n", name_width, st->name,
               fmt_size(st->capacity, a), fmt_size(st->heap_sys, b), fmt_size(st->inuse, c),
               fmt_size(st->released, d), fmt_size(st->retained, e),
               st->retained_goal == UINT64_MAX ? "-" : fmt_size(st->retained_goal, f), st->gen,
               fmt_size(st->released_total, g), st->clients, st->faults, st->refaults, st->pressure_events,
               state);
}

static void status_json(const struct scav_msg_pool_status *st) {
        printf("{\"pool\":");
        json_string(st->name, strnlen(st->name, sizeof(st->name)));
        printf(",\"quarantined\":%s,\"stuck\":%s,\"draining\":%s", st->flags & SCAV_POOL_QUARANTINED ? "true" : "false",
               st->flags & SCAV_POOL_STUCK ? "true" : "false", st->flags & SCAV_POOL_DRAINING ? "true" : "false");
        printf(",\"page_size\":%u,\"capacity\":%" PRIu64 ",\"heap_sys\":%" PRIu64 ",\"inuse\":%" PRIu64
               ",\"released\":%" PRIu64 ",\"retained\":%" PRIu64,
               st->page_size, st->capacity, st->heap_sys, st->inuse, st->released, st->retained);
        if (st->retained_goal == UINT64_MAX)
                printf(",\"retained_goal\":null");
        else
                printf(",\"retained_goal\":%" PRIu64, st->retained_goal);
        printf(",\"memory_limit\":%" PRIu64 ",\"peak_inuse\":%" PRIu64 ",\"gen\":%" PRIu64
               ",\"gen_released\":%" PRIu64 ",\"released_total\":%" PRIu64
               ",\"growth_scavenged\":%" PRIu64 ",\"clients\":%" PRIu64 ",\"connections\":%" PRIu64
               ",\"max_clients\":%" PRIu64 ",\"recoveries\":%" PRIu64 ",\"faults\":%" PRIu64
               ",\"refaults\":%" PRIu64 ",\"pressure_events\":%" PRIu64,
               st->memory_limit, st->peak_inuse, st->gen, st->gen_released, st->released_total,
               st->growth_scavenged, st->clients, st->connections, st->max_clients, st->recoveries,
               st->faults, st->refaults, st->pressure_events);
        printf(",\"shared\":%" PRIu64 ",\"refs\":%" PRIu64 ",\"names\":%" PRIu64 ",\"max_shared\":%" PRIu64
               ",\"max_names\":%" PRIu64 "}",
               st->shared, st->refs, st->names, st->max_shared, st->max_names);
}

static int cmd_status(const char *pool) {
        struct scav_msg_pool_status st;
        char **names = NULL;
        int r, n, failed = 0;

        if (pool) {
                name_width = MAX(name_width, (int) strlen(pool));
                r = get_status(pool, &st);
                if (r < 0)
                        return fail(r, "status", pool);
                if (arg_json) {
                        status_json(&st);
                        putchar('\n');
                } else {
                        status_header();
                        status_row(&st);
                }
                return 0;
        }

        n = get_pools(&names);
        if (n < 0)
                return fail(n, "status", NULL);
        for (int i = 0; i < n; i++)
                name_width = MAX(name_width, (int) strlen(names[i]));
        if (arg_json)
                putchar('[');
        else
                status_header();
        for (int i = 0, first = 1; i < n; i++) {
                r = get_status(names[i], &st);
                if (r < 0) {
                        /* A pool dropped between the two requests is no error. */
                        if (r != -ENOENT) {
                                fail_to(false, r, "status", names[i]);
                                failed = 1;
                        }
                        continue;
                }
                if (arg_json) {
                        if (!first)
                                putchar(',');
                        status_json(&st);
                        first = 0;
                } else
                        status_row(&st);
        }
        if (arg_json)
                printf("]\n");
        free_names(names);
        return failed;
}

static int cmd_pools(void) {
        char **names = NULL;
        int n = get_pools(&names);

        if (n < 0)
                return fail(n, "pools", NULL);
        if (arg_json) {
                putchar('[');
                for (int i = 0; i < n; i++) {
                        if (i)
                                putchar(',');
                        json_string(names[i], strlen(names[i]));
                }
                printf("]\n");
        } else
                for (int i = 0; i < n; i++)
                        printf("%s\n", names[i]);
        free_names(names);
        return 0;
}

static int cmd_clients(const char *pool) {
        struct scav_msg_pool_status st;
        struct scav_msg_client c;
        union reply u;
        int r;

        r = get_status(pool, &st);
        if (r < 0)
                return fail(r, "clients", pool);
        r = request(SCAV_MSG_CLIENTS, pool, 0, &u);
        if (r < 0)
                return fail(r, "clients", pool);

        if (arg_json)
                printf("{\"pool\":\"%s\",\"slots\":%" PRIu64 ",\"clients\":[", pool, u.rep.value);
        else
                printf("%5s %8s %8s %9s %9s %9s %8s %8s\n", "SLOT", "PID", "UID", "CONNECTED", "IN USE",
                       "CACHED", "FAULTS", "REFS");
        for (uint32_t i = 0; i < u.rep.count; i++) {
                char a[32], b[32];

                memcpy(&c, (char *) reply_payload(&u) + i * sizeof(c), sizeof(c));
                if (arg_json)
                        printf("%s{\"slot\":%u,\"pid\":%u,\"uid\":%u,\"connected\":%s,\"inuse_pages\":%" PRIu64
                               ",\"inuse\":%" PRIu64 ",\"cached_pages\":%" PRIu64 ",\"cached\":%" PRIu64
                               ",\"faults\":%" PRIu64 ",\"refs\":%" PRIu64 ",\"shared\":%" PRIu64 "}",
                               i ? "," : "", c.slot, c.pid, c.uid, c.connected ? "true" : "false",
                               c.inuse_pages, c.inuse_pages * st.page_size, c.cached_pages,
                               c.cached_pages * st.page_size, c.faults, c.refs, c.shared);
                else
                        printf("%5u %8u %8u %9s %9s %9s %8" PRIu64 " %8" PRIu64 "\n", c.slot, c.pid, c.uid,
                               c.connected ? "yes" : "no", fmt_size(c.inuse_pages * st.page_size, a),
                               fmt_size(c.cached_pages * st.page_size, b), c.faults, c.refs);
        }
        if (arg_json)
                printf("]}\n");
        else if (u.rep.count == 0)
                printf("(no clients)\n");
        else if (u.rep.value > u.rep.count)
                printf("(%" PRIu64 " slots in all; %u shown)\n", u.rep.value, u.rep.count);
        return 0;
}

static const char *hex(uint64_t v, char buf[static 32]) {
        snprintf(buf, 32, "0x%" PRIx64, v);
        return buf;
}

/* The pool's published names, a reply of them at a time. */
static int cmd_names(const char *pool) {
        union reply u;
        uint64_t from = 0, shown = 0;
        int r;

        if (arg_json)
                printf("{\"pool\":\"%s\",\"names\":[", pool);
        do {
                r = request(SCAV_MSG_NAMES, pool, from, &u);
                if (r < 0) {
                        if (arg_json && shown == 0)
                                printf("]}\n"); /* an empty document before the error's */
                        return fail(r, "names", pool);
                }
                if (shown == 0 && !arg_json)
                        printf("%-40s %18s %9s %6s\n", "NAME", "OFFSET", "SIZE", "REFS");
                for (uint32_t i = 0; i < u.rep.count; i++, shown++) {
                        struct scav_msg_name nm;
                        char a[32], h[32];

                        memcpy(&nm, (char *) reply_payload(&u) + i * sizeof(nm), sizeof(nm));
                        if (arg_json) {
                                printf("%s{\"name\":", shown ? "," : "");
                                json_string(nm.name, strnlen(nm.name, sizeof(nm.name)));
                                printf(",\"offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"refs\":%" PRIu64 "}",
                                       nm.off, nm.bytes, nm.refs);
                        } else
                                printf("%-40s %18s %9s %6" PRIu64 "\n", nm.name, hex(nm.off, h),
                                       fmt_size(nm.bytes, a), nm.refs);
                }
                from = u.rep.value;
        } while (from != 0);
        if (arg_json)
                printf("]}\n");
        else if (shown == 0)
                printf("(no names)\n");
        return 0;
}

static int cmd_scavenge(const char *pool, const char *size) {
        uint64_t bytes = 0;
        union reply u;
        char a[32];
        int r;

        if (size) {
                char *end;
                unsigned long long v;
                uint64_t mult = 1;

                errno = 0;
                v = strtoull(size, &end, 10);
                if (errno || end == size || size[0] == '-')
                        return usage("scavenge: bad size \"%s\"", size);
                switch (*end) {
                case 'K': case 'k': mult = 1ull << 10; end++; break;
                case 'M': case 'm': mult = 1ull << 20; end++; break;
                case 'G': case 'g': mult = 1ull << 30; end++; break;
                case 'T': case 't': mult = 1ull << 40; end++; break;
                }
                if (*end == 'B' || *end == 'b')
                        end++;
                if (*end || (v && mult > UINT64_MAX / v))
                        return usage("scavenge: bad size \"%s\" (K/M/G/T suffixes)", size);
                bytes = v * mult;
        }
        r = request(SCAV_MSG_SCAVENGE, pool, bytes, &u);
        if (r < 0)
                return fail(r, "scavenge", pool);
        if (arg_json)
                printf("{\"pool\":\"%s\",\"released\":%" PRIu64 "}\n", pool, u.rep.value);
        else
                printf("pool %s: released %s (%" PRIu64 " bytes)\n", pool, fmt_size(u.rep.value, a),
                       u.rep.value);
        return 0;
}

static int cmd_check(const char *pool) {
        union reply u;
        int r = request(SCAV_MSG_CHECK, pool, 0, &u);
        const char *text = reply_payload(&u);
        size_t n = MIN((size_t) u.rep.count, sizeof(u) - sizeof(u.rep));

        if (r < 0 && r != -EUCLEAN)
                return fail(r, "check", pool);
        if (arg_json) {
                printf("{\"pool\":\"%s\",\"ok\":%s,\"problem\":", pool, r < 0 ? "false" : "true");
                if (r < 0)
                        json_string(text, n);
                else
                        printf("null");
                printf("}\n");
        } else if (r < 0)
                fprintf(stderr, "scavctl: check: pool %s %s: %.*s\n", pool,
                        n >= 6 && memcmp(text, "stuck:", 6) == 0 ? "is quarantined" : "is inconsistent", (int) n,
                        text);
        else
                printf("pool %s: ok\n", pool);
        return r < 0 ? 1 : 0;
}

static int cmd_reload(void) {
        union reply u;
        int r = request(SCAV_MSG_RELOAD, NULL, 0, &u);
        const char *text = reply_payload(&u);
        size_t n = MIN((size_t) u.rep.count, sizeof(u) - sizeof(u.rep));

        if (r < 0 && (r == -ECONNREFUSED || n == 0 || u.rep.hdr.type != SCAV_MSG_RELOAD_REPLY))
                return fail(r, "reload", NULL);
        if (arg_json) {
                printf("{\"ok\":%s,\"error\":", r < 0 ? "false" : "true");
                if (r < 0)
                        json_string(text, n);
                else
                        printf("null");
                printf("}\n");
        } else if (r < 0)
                fprintf(stderr, "scavctl: reload failed, the running configuration stays: %.*s\n",
                        (int) n, text);
        else
                printf("configuration reloaded\n");
        return r < 0 ? 1 : 0;
}

static void help(FILE *f) {
        fprintf(f,
                "Usage: scavctl [OPTIONS] COMMAND [ARGS]\n"
                "\n"
                "Inspect and control scavd pools.\n"
                "\n"
                "Commands:\n"
                "  status [POOL]          statistics of one pool or of every pool\n"
                "  pools                  the pools' names\n"
                "  clients POOL           the pool's client slots\n"
                "  names POOL             the names published in the pool\n"
                "  scavenge POOL [BYTES]  release free memory now (default: all; K/M/G/T)\n"
                "  check POOL             verify the pool's invariants\n"
                "  reload                 reload the daemon's configuration\n"
                "\n"
                "Options (before or after the command):\n"
                "  --socket PATH  the daemon's socket (default $SCAVD_SOCKET, else\n"
                "                 /run/scavd/scavd.sock)\n"
                "  --json         one JSON document instead of tables, errors included\n"
                "  -h, --help     this text\n"
                "  --version      the version\n");
}

static const char *const commands[] = { "status", "pools", "clients", "names", "scavenge", "check", "reload",
                                        "help" };

/* --json is looked for first, so that a usage error found before it is a
 * JSON document too. Not past "--", nor as the value of --socket. */
static bool want_json(int argc, char **argv) {
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (strcmp(argv[i], "--socket") == 0)
                        i++;
                else if (strcmp(argv[i], "--json") == 0)
                        return true;
        }
        return false;
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_JSON, ARG_VERSION };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "json", no_argument, NULL, ARG_JSON },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        const char *cmd;
        int c, nargs;
        bool known = false;

        arg_json = want_json(argc, argv);
        /* Options may follow the command (GNU getopt permutes argv: the
         * command and its arguments end up after them); "--" ends them, so
         * that a value starting with '-' can be passed. Errors are ours:
         * one line each. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", opts, NULL)) >= 0)
                switch (c) {
                case ARG_SOCKET:
                        arg_socket = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case 'h':
                        help(stdout);
                        return 0;
                case ARG_VERSION:
                        printf("scavctl " SCAV_BUILD_VERSION "\n");
                        return 0;
                case ':':
                        return usage("option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage("unknown option '-%c'", optopt);
                        return usage("unknown option '%s'", argv[optind - 1]);
                }
        if (optind >= argc)
                return usage("no command given");
        cmd = argv[optind];
        nargs = argc - optind - 1;
        char **args = argv + optind + 1;

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                known = known || strcmp(cmd, commands[i]) == 0;
        if (!known)
                return usage("unknown command '%s'", cmd);
        arg_command = cmd;

        for (int i = 0; i < nargs; i++)
                if (strcmp(cmd, "help") && !scav_pool_name_valid(args[i]) &&
                    !(strcmp(cmd, "scavenge") == 0 && i == 1))
                        return usage("%s: a pool name is made of [A-Za-z0-9_.-], at most 63 characters, not '%s'",
                                     cmd, args[i]);

        if (strcmp(cmd, "status") == 0 && nargs <= 1)
                return cmd_status(nargs ? args[0] : NULL);
        if (strcmp(cmd, "pools") == 0 && nargs == 0)
                return cmd_pools();
        if (strcmp(cmd, "clients") == 0 && nargs == 1)
                return cmd_clients(args[0]);
        if (strcmp(cmd, "names") == 0 && nargs == 1)
                return cmd_names(args[0]);
        if (strcmp(cmd, "scavenge") == 0 && (nargs == 1 || nargs == 2))
                return cmd_scavenge(args[0], nargs == 2 ? args[1] : NULL);
        if (strcmp(cmd, "check") == 0 && nargs == 1)
                return cmd_check(args[0]);
        if (strcmp(cmd, "reload") == 0 && nargs == 0)
                return cmd_reload();
        if (strcmp(cmd, "help") == 0) {
                help(stdout);
                return 0;
        }
        return usage("%s: wrong number of arguments", cmd);
}

/* SPDX-License-Identifier: MIT */
/*
 * scavd.conf: a [daemon] section and one [pool NAME] section per pool, read
 * with inih from the main file and then from its drop-in directory in
 * lexical order, later values winning. Every error names file:line and the
 * key, because the person reading it has an editor open at that line.
 *
 * inih reports only the line of the first error, not which key failed, so
 * the text is fed to it through a reader that counts lines: the handler
 * always knows the line it is looking at.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "heap/heap.h"
#include "macro.h"

#define CONFIG_MAX_FILE_SIZE (1u << 20)
#define CONFIG_MAX_LINE 190u          /* inih's line buffer is 200 bytes */
#define CONFIG_MAX_PAGE_SIZE (1u << 20)
#define CONFIG_MAX_CAPACITY (UINT64_C(64) << 40)
#define CONFIG_MAX_CLIENTS 4096u
#define CONFIG_MAX_SHARDS 4096u
#define CONFIG_MAX_RETAIN_EXTRA 10000u
#define CONFIG_MAX_KEY 32u            /* longer keys are unknown anyway */
#define CONFIG_MAX_SECTION_KEYS 64u

void pool_config_defaults(struct pool_config *p) {
        memset(p, 0, sizeof(*p));
        p->capacity = 0; /* required */
        p->page_size = 4096;
        p->scavenge_percent = -1;
        p->retain_extra_percent = HEAP_DEFAULT_RETAIN_EXTRA_PERCENT;
        p->reservation_shards = HEAP_DEFAULT_RESERVATION_SHARDS;
        p->memory_limit = 0;
        p->max_clients = 64;
        p->max_shared = HEAP_DEFAULT_MAX_SHARES;
        p->max_names = HEAP_DEFAULT_MAX_NAMES;
        p->max_clients_per_user = CONFIG_UNSET;
        p->reserved_clients = CONFIG_UNSET;
        p->allow_all = true;
        p->huge_pages = false;
}

void config_defaults(struct daemon_config *c) {
        memset(c, 0, sizeof(*c));
        c->socket[0] = 0; /* unset: --socket, $SCAVD_SOCKET, /run/scavd/scavd.sock */
        c->scavtrace = 0;
        c->scavenge_percent = 1.0;
        c->generation_interval_usec = 1000000;
        c->bpf = CONFIG_AUTO;
        c->pressure = PRESSURE_AUTO;
        c->pressure_cpu_percent = 50.0;
        c->lock_timeout_usec = 5000000;
        c->n_pools = 0;
}

/* ---- value parsers: 0 or -errno, never partial ---- */

static int parse_u64(const char *s, uint64_t *ret, const char **end) {
        char *e;
        unsigned long long v;

        if (!s || *s < '0' || *s > '9') /* no sign, no spaces, no empty */
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &e, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || e == s)
                return -EINVAL;
        *ret = v;
        *end = e;
        return 0;
}

int config_parse_size(const char *s, uint64_t *ret) {
        const char *e;
        uint64_t v;
        unsigned shift = 0;
        int r;

        r = parse_u64(s, &v, &e);
        if (r < 0)
                return r;
        switch (*e) {
        case 0: break;
        case 'K': case 'k': shift = 10; e++; break;
        case 'M': case 'm': shift = 20; e++; break;
        case 'G': case 'g': shift = 30; e++; break;
        case 'T': case 't': shift = 40; e++; break;
        default: return -EINVAL;
        }
        if (*e != 0)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        const char *e;
        uint64_t v;
        int r;

        r = parse_u64(s, &v, &e);
        if (r < 0)
                return r;
        if (*e != 0)
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* "1", "0.5", "2%": a finite percentage in [0, 100]. */
static int parse_percent(const char *s, double *ret) {
        char *e;
        double v;

        if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &e);
        if (errno != 0 || e == s)
                return -EINVAL;
        if (*e == '%')
                e++;
        if (*e != 0 || !isfinite(v))
                return -EINVAL;
        if (v < 0 || v > 100)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* Seconds with an optional unit: "1", "0.25", "500ms", "2s", "100us", "1min". */
static int parse_duration(const char *s, uint64_t *ret_usec) {
        char *e;
        double v, mult = 1e6;

        if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &e);
        if (errno != 0 || e == s || !isfinite(v))
                return -EINVAL;
        if (strcmp(e, "") == 0 || strcmp(e, "s") == 0)
                mult = 1e6;
        else if (strcmp(e, "ms") == 0)
                mult = 1e3;
        else if (strcmp(e, "us") == 0)
                mult = 1;
        else if (strcmp(e, "min") == 0)
                mult = 60e6;
        else if (strcmp(e, "h") == 0)
                mult = 3600e6;
        else
                return -EINVAL;
        v *= mult;
        if (v < 1000 || v > 3600e6) /* 1 ms .. 1 h */
                return -ERANGE;
        *ret_usec = (uint64_t) v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "yes", "true", "on" };
        static const char *const no[] = { "0", "no", "false", "off" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static bool pool_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= SCAV_POOL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

/* ---- parsing state ---- */

struct parse_state {
        struct daemon_config *c;
        const char *file;
        const char *text, *pos;
        unsigned line;          /* line the handler is looking at */
        unsigned section_line;  /* line of the last [section] header */
        char section[CONFIG_MAX_LINE + 1];     /* section the handler is in */
        char raw_section[CONFIG_MAX_LINE + 1]; /* inih truncates section names: ours is whole */
        int kind;               /* 0 none yet, 1 daemon, 2 pool */
        struct pool_config *pool;
        int error;              /* first error */
        unsigned error_line;
        char *err;
        size_t errlen;

        /* What this file said already. A section or a key given twice in
         * one file is an error, since one of the two values would be lost
         * without a word; a drop-in saying it again is how overriding
         * works, and each file gets a parse_state of its own. */
        bool indented;          /* the line starts with a blank (inih: a continuation) */
        unsigned daemon_line;   /* [daemon] seen on this line, or 0 */
        unsigned n_pools_seen;
        struct {
                char name[SCAV_POOL_NAME_MAX];
                unsigned line;
        } pools_seen[CONFIG_MAX_POOLS];
        unsigned n_keys;        /* keys of the current section */
        struct {
                char name[CONFIG_MAX_KEY];
                unsigned line;
        } keys[CONFIG_MAX_SECTION_KEYS];
        char last_key[CONFIG_MAX_KEY];
};

_printf_(4, 5) static int fail(struct parse_state *s, unsigned line, int error, const char *fmt, ...) {
        va_list ap;
        int n;

        if (s->error < 0)
                return 0; /* keep the first */
        s->error = error;
        s->error_line = line;
        if (s->err && s->errlen > 0) {
                n = snprintf(s->err, s->errlen, "%s:%u: ", s->file, line);
                if (n >= 0 && (size_t) n < s->errlen) {
                        va_start(ap, fmt);
                        vsnprintf(s->err + n, s->errlen - n, fmt, ap);
                        va_end(ap);
                }
        }
        return 0;
}

static const char *error_word(int r) {
        return r == -ERANGE ? "out of range" : "invalid";
}

/* Resolves "[pool NAME]" to its pool, creating it on first sight. */
static int enter_section(struct parse_state *s, const char *section) {
        struct daemon_config *c = s->c;
        const char *name;

        snprintf(s->section, sizeof(s->section), "%s", section);
        s->pool = NULL;
        if (strcmp(section, "daemon") == 0) {
                s->kind = 1;
                return 0;
        }
        if (strncmp(section, "pool", 4) != 0 || (section[4] != ' ' && section[4] != '\t')) {
                s->kind = -1;
                return fail(s, s->section_line, -EINVAL,
                            "[%s]: unknown section (want [daemon] or [pool NAME])", section);
        }
        name = section + 4;
        name += strspn(name, " \t");
        s->kind = 2;
        if (!pool_name_valid(name)) {
                s->kind = -1;
                return fail(s, s->section_line, -EINVAL,
                            "[%s]: pool name must be 1-63 characters of [A-Za-z0-9_.-]", section);
        }
        for (unsigned i = 0; i < c->n_pools; i++)
                if (strcmp(c->pools[i].name, name) == 0) {
                        s->pool = &c->pools[i];
                        return 1;
                }
        if (c->n_pools >= CONFIG_MAX_POOLS) {
                s->kind = -1;
                return fail(s, s->section_line, -E2BIG, "[%s]: more than %u pools", section,
                            CONFIG_MAX_POOLS);
        }
        s->pool = &c->pools[c->n_pools++];
        pool_config_defaults(s->pool);
        snprintf(s->pool->name, sizeof(s->pool->name), "%s", name);
        snprintf(s->pool->file, sizeof(s->pool->file), "%s", s->file);
        s->pool->line = s->section_line;
        return 1;
}

/* "alice 1000, bob": names or numbers, separated by spaces or commas. */
static int parse_ids(struct parse_state *s, const char *key, const char *value, bool groups) {
        struct pool_config *p = s->pool;
        char buf[CONFIG_MAX_LINE + 1];
        char *save = NULL, *tok;
        unsigned n = 0;

        snprintf(buf, sizeof(buf), "%s", value);
        for (tok = strtok_r(buf, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                uint64_t id;
                bool numeric = *tok >= '0' && *tok <= '9';

                if (n >= CONFIG_MAX_IDS)
                        return fail(s, s->line, -E2BIG, "%s: more than %u entries", key,
                                    CONFIG_MAX_IDS);
                if (numeric) {
                        if (parse_uint(tok, 0, UINT32_MAX - 1, &id) < 0)
                                return fail(s, s->line, -EINVAL, "%s: invalid id '%s'", key, tok);
                } else if (groups) {
                        struct group gr, *res = NULL;
                        char sbuf[4096];
                        if (getgrnam_r(tok, &gr, sbuf, sizeof(sbuf), &res) != 0 || !res)
                                return fail(s, s->line, -ENOENT, "%s: unknown group '%s'", key, tok);
                        id = res->gr_gid;
                } else {
                        struct passwd pw, *res = NULL;
                        char sbuf[4096];
                        if (getpwnam_r(tok, &pw, sbuf, sizeof(sbuf), &res) != 0 || !res)
                                return fail(s, s->line, -ENOENT, "%s: unknown user '%s'", key, tok);
                        id = res->pw_uid;
                }
                if (groups)
                        p->allow_groups[n++] = (gid_t) id;
                else
                        p->allow_users[n++] = (uid_t) id;
        }
        if (groups)
                p->n_allow_groups = n;
        else
                p->n_allow_users = n;
        return 1;
}

static int daemon_key(struct parse_state *s, const char *key, const char *value) {
        struct daemon_config *c = s->c;
        uint64_t u;
        int r;

        if (strcmp(key, "socket") == 0) {
                if (value[0] == 0 || strlen(value) >= sizeof(c->socket))
                        return fail(s, s->line, -EINVAL, "socket: path empty or longer than %zu bytes",
                                    sizeof(c->socket) - 1);
                snprintf(c->socket, sizeof(c->socket), "%s", value);
        } else if (strcmp(key, "scavtrace") == 0) {
                r = parse_uint(value, 0, 2, &u);
                if (r < 0)
                        return fail(s, s->line, r, "scavtrace: %s value '%s' (want 0, 1 or 2)",
                                    error_word(r), value);
                c->scavtrace = (unsigned) u;
        } else if (strcmp(key, "scavenge_percent") == 0) {
                r = parse_percent(value, &c->scavenge_percent);
                if (r < 0)
                        return fail(s, s->line, r, "scavenge_percent: %s value '%s' (want 0-100)",
                                    error_word(r), value);
        } else if (strcmp(key, "generation_interval") == 0) {
                r = parse_duration(value, &c->generation_interval_usec);
                if (r < 0)
                        return fail(s, s->line, r,
                                    "generation_interval: %s value '%s' (want seconds or us, ms, s, min, h; 1ms-1h)",
                                    error_word(r), value);
        } else if (strcmp(key, "bpf") == 0) {
                bool b;
                if (strcasecmp(value, "auto") == 0)
                        c->bpf = CONFIG_AUTO;
                else if (parse_bool(value, &b) == 0)
                        c->bpf = b ? CONFIG_ON : CONFIG_OFF;
                else
                        return fail(s, s->line, -EINVAL, "bpf: invalid value '%s' (want auto, on or off)",
                                    value);
        } else if (strcmp(key, "pressure") == 0) {
                if (strcasecmp(value, "auto") == 0)
                        c->pressure = PRESSURE_AUTO;
                else if (strcasecmp(value, "bpf") == 0)
                        c->pressure = PRESSURE_BPF;
                else if (strcasecmp(value, "psi") == 0)
                        c->pressure = PRESSURE_PSI;
                else if (strcasecmp(value, "off") == 0)
                        c->pressure = PRESSURE_OFF;
                else
                        return fail(s, s->line, -EINVAL,
                                    "pressure: invalid value '%s' (want auto, bpf, psi or off)", value);
        } else if (strcmp(key, "pressure_cpu_percent") == 0) {
                r = parse_percent(value, &c->pressure_cpu_percent);
                if (r < 0)
                        return fail(s, s->line, r, "pressure_cpu_percent: %s value '%s' (want 0-100)",
                                    error_word(r), value);
        } else if (strcmp(key, "lock_timeout") == 0) {
                r = parse_duration(value, &c->lock_timeout_usec);
                if (r < 0)
                        return fail(s, s->line, r, "lock_timeout: %s value '%s' (want seconds or us, ms, s, min, h; 1ms-1h)",
                                    error_word(r), value);
        } else
                return fail(s, s->line, -EINVAL, "%s: unknown key in [daemon]", key);
        return 1;
}

static int pool_key(struct parse_state *s, const char *key, const char *value) {
        struct pool_config *p = s->pool;
        uint64_t u;
        int r;

        if (strcmp(key, "capacity") == 0) {
                r = config_parse_size(value, &u);
                if (r >= 0 && (u == 0 || u > CONFIG_MAX_CAPACITY))
                        r = -ERANGE;
                if (r < 0)
                        return fail(s, s->line, r, "capacity: %s size '%s' (want 1 chunk to 64T, K/M/G/T)",
                                    error_word(r), value);
                p->capacity = u;
        } else if (strcmp(key, "page_size") == 0) {
                r = config_parse_size(value, &u);
                if (r >= 0 && (u < 4096 || u > CONFIG_MAX_PAGE_SIZE || (u & (u - 1)) != 0))
                        r = -ERANGE;
                if (r < 0)
                        return fail(s, s->line, r, "page_size: %s size '%s' (want a power of two, 4K-1M)",
                                    error_word(r), value);
                p->page_size = (uint32_t) u;
        } else if (strcmp(key, "scavenge_percent") == 0) {
                r = parse_percent(value, &p->scavenge_percent);
                if (r < 0)
                        return fail(s, s->line, r, "scavenge_percent: %s value '%s' (want 0-100)",
                                    error_word(r), value);
        } else if (strcmp(key, "retain_extra_percent") == 0) {
                r = parse_uint(value, 0, CONFIG_MAX_RETAIN_EXTRA, &u);
                if (r < 0)
                        return fail(s, s->line, r, "retain_extra_percent: %s value '%s' (want 0-%u)",
                                    error_word(r), value, CONFIG_MAX_RETAIN_EXTRA);
                p->retain_extra_percent = (uint32_t) u;
        } else if (strcmp(key, "reservation_shards") == 0) {
                r = parse_uint(value, 1, CONFIG_MAX_SHARDS, &u);
                if (r < 0)
                        return fail(s, s->line, r, "reservation_shards: %s value '%s' (want 1-%u)",
                                    error_word(r), value, CONFIG_MAX_SHARDS);
                p->reservation_shards = (uint32_t) u;
        } else if (strcmp(key, "memory_limit") == 0) {
                r = config_parse_size(value, &u);
                if (r < 0)
                        return fail(s, s->line, r, "memory_limit: %s size '%s' (want K/M/G/T, 0 = none)",
                                    error_word(r), value);
                p->memory_limit = u;
        } else if (strcmp(key, "max_clients") == 0) {
                r = parse_uint(value, 1, CONFIG_MAX_CLIENTS, &u);
                if (r < 0)
                        return fail(s, s->line, r, "max_clients: %s value '%s' (want 1-%u)",
                                    error_word(r), value, CONFIG_MAX_CLIENTS);
                p->max_clients = (uint32_t) u;
        } else if (strcmp(key, "max_shared") == 0) {
                r = parse_uint(value, 1, HEAP_MAX_SHARES, &u);
                if (r < 0)
                        return fail(s, s->line, r, "max_shared: %s value '%s' (want 1-%u)",
                                    error_word(r), value, HEAP_MAX_SHARES);
                p->max_shared = (uint32_t) u;
        } else if (strcmp(key, "max_names") == 0) {
                r = parse_uint(value, 1, HEAP_MAX_NAMES, &u);
                if (r < 0)
                        return fail(s, s->line, r, "max_names: %s value '%s' (want 1-%u)",
                                    error_word(r), value, HEAP_MAX_NAMES);
                p->max_names = (uint32_t) u;
        } else if (strcmp(key, "max_clients_per_user") == 0) {
                r = parse_uint(value, 1, CONFIG_MAX_CLIENTS, &u);
                if (r < 0)
                        return fail(s, s->line, r, "max_clients_per_user: %s value '%s' (want 1-%u)",
                                    error_word(r), value, CONFIG_MAX_CLIENTS);
                p->max_clients_per_user = (uint32_t) u;
        } else if (strcmp(key, "reserved_clients") == 0) {
                r = parse_uint(value, 0, CONFIG_MAX_CLIENTS - 1, &u);
                if (r < 0)
                        return fail(s, s->line, r, "reserved_clients: %s value '%s' (want 0-%u)",
                                    error_word(r), value, CONFIG_MAX_CLIENTS - 1);
                p->reserved_clients = (uint32_t) u;
        } else if (strcmp(key, "allow_users") == 0)
                return parse_ids(s, key, value, false);
        else if (strcmp(key, "allow_groups") == 0)
                return parse_ids(s, key, value, true);
        else if (strcmp(key, "huge_pages") == 0) {
                if (parse_bool(value, &p->huge_pages) < 0)
                        return fail(s, s->line, -EINVAL, "huge_pages: invalid value '%s' (want yes or no)",
                                    value);
        } else
                return fail(s, s->line, -EINVAL, "%s: unknown key in [pool %s]", key, p->name);
        return 1;
}

/* Called for each [section] header line, before the handler sees its keys
 * (a section without keys reaches no handler, but is still a repetition). */
static void section_once(struct parse_state *s) {
        const char *sec = s->raw_section, *name;

        s->n_keys = 0;
        s->last_key[0] = 0;
        if (strcmp(sec, "daemon") == 0) {
                if (s->daemon_line)
                        fail(s, s->line, -EINVAL, "[daemon]: section given twice in one file (first on line %u)",
                             s->daemon_line);
                s->daemon_line = s->line;
                return;
        }
        if (strncmp(sec, "pool", 4) != 0 || (sec[4] != ' ' && sec[4] != '\t'))
                return; /* the handler names what is wrong with it */
        name = sec + 4 + strspn(sec + 4, " \t");
        if (!pool_name_valid(name))
                return;
        for (unsigned i = 0; i < s->n_pools_seen; i++)
                if (strcmp(s->pools_seen[i].name, name) == 0) {
                        fail(s, s->line, -EINVAL, "[%s]: section given twice in one file (first on line %u)", sec,
                             s->pools_seen[i].line);
                        return;
                }
        if (s->n_pools_seen < ELEMENTSOF(s->pools_seen)) { /* else the handler refuses the pool */
                snprintf(s->pools_seen[s->n_pools_seen].name, SCAV_POOL_NAME_MAX, "%s", name);
                s->pools_seen[s->n_pools_seen++].line = s->line;
        }
}

/* -EINVAL when key was given before in this section of this file. inih
 * takes an indented line right after a key as a continuation: a second
 * value of that key, which would silently replace the first; said as
 * such, rather than as whatever the key's parser makes of the line. */
static int key_once(struct parse_state *s, const char *key) {
        bool continuation = s->indented && strcmp(key, s->last_key) == 0;

        snprintf(s->last_key, sizeof(s->last_key), "%s", key);
        if (continuation) {
                fail(s, s->line, -EINVAL, "%s: an indented line continues its value; values are one line "
                     "(remove the indentation)", key);
                return -EINVAL;
        }
        for (unsigned i = 0; i < s->n_keys; i++)
                if (strcmp(s->keys[i].name, key) == 0) {
                        fail(s, s->line, -EINVAL, "%s: given twice in [%s] (first on line %u)", key, s->section,
                             s->keys[i].line);
                        return -EINVAL;
                }
        if (strlen(key) < CONFIG_MAX_KEY && s->n_keys < CONFIG_MAX_SECTION_KEYS) {
                snprintf(s->keys[s->n_keys].name, CONFIG_MAX_KEY, "%s", key);
                s->keys[s->n_keys++].line = s->line;
        }
        return 0;
}

static int handler(void *user, const char *section, const char *key, const char *value) {
        struct parse_state *s = user;

        if (s->error < 0)
                return 1; /* inih keeps going; we stop listening */
        section = s->raw_section;
        if (s->kind == 0 || strcmp(section, s->section) != 0) {
                if (section[0] == 0)
                        return fail(s, s->line, -EINVAL, "%s: key outside a section ([daemon] or [pool NAME])",
                                    key);
                enter_section(s, section);
                if (s->error < 0)
                        return 1;
        }
        if (s->kind < 0)
                return 1;
        if (key_once(s, key) < 0)
                return 1;
        if (!value)
                value = "";
        return s->kind == 1 ? daemon_key(s, key, value) : pool_key(s, key, value);
}

/* inih's reader: one line per call, counting lines as it goes. */
static char *reader(char *str, int num, void *stream) {
        struct parse_state *s = stream;
        const char *nl;
        size_t n;

        if (*s->pos == 0)
                return NULL;
        nl = strchr(s->pos, '\n');
        n = nl ? (size_t) (nl - s->pos) + 1 : strlen(s->pos);
        if (n > (size_t) num - 1)
                n = (size_t) num - 1; /* cannot happen: lines were checked */
        memcpy(str, s->pos, n);
        str[n] = 0;
        s->pos += n;
        s->line++;
        {
                const char *t = str + strspn(str, " \t");
                const char *e = *t == '[' ? strchr(t, ']') : NULL;
                if (e) {
                        s->section_line = s->line;
                        snprintf(s->raw_section, sizeof(s->raw_section), "%.*s", (int) (e - t - 1), t + 1);
                        section_once(s);
                }
                s->indented = str[0] == ' ' || str[0] == '\t';
        }
        return str;
}

/* Parses one text into c without defaults or final checks. */
static int parse_text(const char *file, const char *text, size_t len, struct daemon_config *c,
                      char *err, size_t errlen) {
        struct parse_state s = {
                .c = c, .file = file, .text = text, .pos = text, .err = err, .errlen = errlen,
        };
        unsigned line = 1;
        size_t col = 0;
        int r;

        /* inih cuts long lines into pieces and cannot see NUL bytes: refuse both. */
        for (size_t i = 0; i < len; i++) {
                if (text[i] == 0)
                        return fail(&s, line, -EINVAL, "NUL byte in the file"), s.error;
                if (text[i] == '\n') {
                        line++;
                        col = 0;
                } else if (++col > CONFIG_MAX_LINE)
                        return fail(&s, line, -EINVAL, "line longer than %u characters", CONFIG_MAX_LINE),
                               s.error;
        }

        r = ini_parse_stream(reader, &s, handler, &s);
        /* inih returns the first bad line; a syntax error there comes before ours. */
        if (r > 0 && (s.error == 0 || (unsigned) r < s.error_line)) {
                s.error = 0;
                return fail(&s, (unsigned) r, -EINVAL,
                            "syntax error (want [section], key = value, or a # comment)"),
                       s.error;
        }
        if (s.error < 0)
                return s.error;
        if (r < 0)
                return fail(&s, 0, -ENOMEM, "out of memory"), s.error;
        return 0;
}

/* Checks what only the whole configuration can tell, and rounds capacity up
 * to whole chunks, which is what the heap will use anyway. */
static int finalize(struct daemon_config *c, char *err, size_t errlen) {
        for (unsigned i = 0; i < c->n_pools; i++) {
                struct pool_config *p = &c->pools[i];
                uint64_t chunk = (uint64_t) HEAP_CHUNK_PAGES * p->page_size;

                if (p->capacity == 0) {
                        snprintf(err, errlen, "%s:%u: capacity: required in [pool %s]", p->file, p->line,
                                 p->name);
                        return -EINVAL;
                }
                if (p->capacity > CONFIG_MAX_CAPACITY - chunk) {
                        snprintf(err, errlen, "%s:%u: capacity: more than 64T in [pool %s]", p->file,
                                 p->line, p->name);
                        return -ERANGE;
                }
                p->capacity = DIV_ROUND_UP(p->capacity, chunk) * chunk;
                p->allow_all = p->n_allow_users == 0 && p->n_allow_groups == 0;
                /* Slots: 1/16 kept back for root and the daemon's user, and
                 * no other user may hold more than 3/4 of them. */
                if (p->reserved_clients == CONFIG_UNSET)
                        p->reserved_clients = p->max_clients / 16;
                else if (p->reserved_clients >= p->max_clients) {
                        snprintf(err, errlen, "%s:%u: reserved_clients: %u is not below max_clients %u in [pool %s]",
                                 p->file, p->line, p->reserved_clients, p->max_clients, p->name);
                        return -ERANGE;
                }
                if (p->max_clients_per_user == CONFIG_UNSET)
                        p->max_clients_per_user = MAX(p->max_clients * 3 / 4, 1u);
        }
        return 0;
}

const char *config_warning(const struct daemon_config *c) {
        if (c->n_pools == 0)
                return "no [pool NAME] section: clients have no pool to open";
        return NULL;
}

int config_parse_string(const char *name, const char *text, struct daemon_config *c, char *err,
                        size_t errlen) {
        int r;

        if (err && errlen)
                err[0] = 0;
        config_defaults(c);
        r = parse_text(name, text, strlen(text), c, err, errlen);
        if (r < 0)
                return r;
        return finalize(c, err, errlen);
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EISDIR;
        if (st.st_size > CONFIG_MAX_FILE_SIZE)
                return -EFBIG;
        buf = malloc(CONFIG_MAX_FILE_SIZE + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, CONFIG_MAX_FILE_SIZE + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > CONFIG_MAX_FILE_SIZE)
                        return -EFBIG;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

static int parse_file(const char *path, struct daemon_config *c, char *err, size_t errlen) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        r = read_file(path, &text, &len);
        if (r < 0) {
                snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-r));
                return r;
        }
        return parse_text(path, text, len, c, err, errlen);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Drop-ins live in FILE.d/: scavd.conf -> scavd.conf.d/. */
static void dropin_dir(const char *path, char *buf, size_t len) {
        snprintf(buf, len, "%s.d", path);
}

int config_load(const char *path, struct daemon_config *c, char *err, size_t errlen) {
        char dir[4096], file[4096 + 256];
        char *names[1024];
        size_t n_names = 0;
        DIR *d;
        int r;

        if (err && errlen)
                err[0] = 0;
        config_defaults(c);
        r = parse_file(path, c, err, errlen);
        if (r < 0)
                return r;

        dropin_dir(path, dir, sizeof(dir));
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT && errno != ENOTDIR) {
                        r = negative_errno();
                        snprintf(err, errlen, "%s: cannot read: %s", dir, strerror(-r));
                        return r;
                }
        } else {
                struct dirent *de;

                while ((de = readdir(d))) {
                        size_t l = strlen(de->d_name);
                        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".conf") != 0)
                                continue;
                        if (n_names >= ELEMENTSOF(names))
                                break;
                        names[n_names] = strdup(de->d_name);
                        if (!names[n_names])
                                break;
                        n_names++;
                }
                closedir(d);
                qsort(names, n_names, sizeof(names[0]), cmp_str);
                for (size_t i = 0; i < n_names; i++) {
                        if (r >= 0) {
                                snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
                                r = parse_file(file, c, err, errlen);
                        }
                        free(names[i]);
                }
                if (r < 0)
                        return r;
        }
        return finalize(c, err, errlen);
}

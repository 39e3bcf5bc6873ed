/* SPDX-License-Identifier: MIT */
/*
 * The configuration parser: every key with good and bad values, messages
 * that name file:line and the key, size suffixes, drop-ins read in lexical
 * order with later values winning, and sections or keys repeated within one
 * file refused.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../daemon/config.h"
#include "macro.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static struct daemon_config cfg;

static const struct pool_config *find(const struct daemon_config *c, const char *name) {
        for (unsigned i = 0; i < c->n_pools; i++)
                if (strcmp(c->pools[i].name, name) == 0)
                        return &c->pools[i];
        return NULL;
}

static void test_sizes(void) {
        static const struct {
                const char *in;
                int r;
                uint64_t want;
        } cases[] = {
                { "0", 0, 0 },
                { "4096", 0, 4096 },
                { "4K", 0, 4096 },
                { "4k", 0, 4096 },
                { "64M", 0, 64ull << 20 },
                { "1G", 0, 1ull << 30 },
                { "2T", 0, 2ull << 40 },
                { "16777215T", 0, 16777215ull << 40 },
                { "16777216T", -ERANGE, 0 },
                { "18446744073709551615", 0, UINT64_MAX },
                { "18446744073709551616", -ERANGE, 0 },
                { "", -EINVAL, 0 },
                { "K", -EINVAL, 0 },
                { "-1", -EINVAL, 0 },
                { "+1", -EINVAL, 0 },
                { " 1", -EINVAL, 0 },
                { "1 G", -EINVAL, 0 },
                { "1GB", -EINVAL, 0 },
                { "1P", -EINVAL, 0 },
                { "1.5G", -EINVAL, 0 },
                { "0x10", -EINVAL, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v = 12345;
                int r = config_parse_size(cases[i].in, &v);
                CHECKF(r == cases[i].r, "size '%s': got %d, want %d", cases[i].in, r, cases[i].r);
                if (r == 0)
                        CHECKF(v == cases[i].want, "size '%s': got %llu, want %llu", cases[i].in,
                               (unsigned long long) v, (unsigned long long) cases[i].want);
        }
}

static void test_every_key(void) {
        char err[512];
        const struct pool_config *p;
        const char *text =
                "# a comment\n"
                "; another\n"
                "[daemon]\n"
                "socket = /tmp/x.sock\n"
                "scavtrace = 2\n"
                "scavenge_percent = 2.5\n"
                "generation_interval = 250ms\n"
                "bpf = off\n"
                "pressure = psi\n"
                "pressure_cpu_percent = 25%\n"
                "\n"
                "[pool a]\n"
                "capacity = 64M\n"
                "page_size = 8K\n"
                "scavenge_percent = 0.5\n"
                "retain_extra_percent = 20\n"
                "reservation_shards = 8\n"
                "memory_limit = 32M\n"
                "max_clients = 7\n"
                "max_shared = 100\n"
                "max_names = 9\n"
                "allow_users = root 1234, 99\n"
                "allow_groups = 0 4321\n"
                "huge_pages = yes\n"
                "[pool b.c-d_e]\n"
                "capacity = 1\n";
        int r = config_parse_string("t.conf", text, &cfg, err, sizeof(err));

        CHECKF(r == 0, "got %d: %s", r, err);
        CHECK(strcmp(cfg.socket, "/tmp/x.sock") == 0);
        CHECK(cfg.scavtrace == 2);
        CHECK(cfg.scavenge_percent == 2.5);
        CHECK_EQ_U64(cfg.generation_interval_usec, 250000);
        CHECK(cfg.bpf == CONFIG_OFF);
        CHECK(cfg.pressure == PRESSURE_PSI);
        CHECK(cfg.pressure_cpu_percent == 25);
        CHECK_EQ_U64(cfg.n_pools, 2);
        p = find(&cfg, "a");
        CHECK(p != NULL);
        if (p) {
                CHECK_EQ_U64(p->capacity, 64ull << 20);
                CHECK_EQ_U64(p->page_size, 8192);
                CHECK(p->scavenge_percent == 0.5);
                CHECK_EQ_U64(p->retain_extra_percent, 20);
                CHECK_EQ_U64(p->reservation_shards, 8);
                CHECK_EQ_U64(p->memory_limit, 32ull << 20);
                CHECK_EQ_U64(p->max_clients, 7);
                CHECK_EQ_U64(p->max_shared, 100);
                CHECK_EQ_U64(p->max_names, 9);
                CHECK_EQ_U64(p->n_allow_users, 3);
                CHECK(p->allow_users[0] == 0 && p->allow_users[1] == 1234 && p->allow_users[2] == 99);
                CHECK_EQ_U64(p->n_allow_groups, 2);
                CHECK(p->allow_groups[0] == 0 && p->allow_groups[1] == 4321);
                CHECK(!p->allow_all);
                CHECK(p->huge_pages);
                CHECK_EQ_U64(p->line, 12);
                CHECK(strcmp(p->file, "t.conf") == 0);
        }
        p = find(&cfg, "b.c-d_e");
        CHECK(p != NULL);
        if (p) {
                /* Rounded up to one chunk of 512 pages; defaults elsewhere. */
                CHECK_EQ_U64(p->capacity, 512 * 4096);
                CHECK_EQ_U64(p->page_size, 4096);
                CHECK(p->scavenge_percent < 0);
                CHECK_EQ_U64(p->retain_extra_percent, 10);
                CHECK_EQ_U64(p->reservation_shards, 64);
                CHECK_EQ_U64(p->memory_limit, 0);
                CHECK_EQ_U64(p->max_clients, 64);
                CHECK_EQ_U64(p->max_shared, 16384);
                CHECK_EQ_U64(p->max_names, 1024);
                CHECK(p->allow_all);
                CHECK(!p->huge_pages);
        }

        /* Defaults of the daemon section. */
        r = config_parse_string("d.conf", "[pool x]\ncapacity=1G\n", &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(cfg.socket[0] == 0);
        CHECK(cfg.scavtrace == 0);
        CHECK(cfg.scavenge_percent == 1);
        CHECK_EQ_U64(cfg.generation_interval_usec, 1000000);
        CHECK(cfg.bpf == CONFIG_AUTO && cfg.pressure == PRESSURE_AUTO);
        CHECK(cfg.pressure_cpu_percent == 50);
}

/* Every bad value of every key gives "file:line: key: ..." */
static void test_bad(void) {
        static const struct {
                const char *name, *text, *want;
                int r;
        } cases[] = {
                { "unknown daemon key", "[daemon]\nfoo = 1\n", "b.conf:2: foo: unknown key", -EINVAL },
                { "unknown pool key", "[pool a]\ncapacity=1G\nbar = 1\n", "b.conf:3: bar: unknown key", -EINVAL },
                { "unknown section", "\n[daemons]\nx=1\n", "b.conf:2: [daemons]: unknown section", -EINVAL },
                { "key outside section", "socket=/x\n", "b.conf:1: socket: key outside a section", -EINVAL },
                { "bad pool name", "[pool a/b]\ncapacity=1G\n", "b.conf:1: [pool a/b]: pool name", -EINVAL },
                { "empty pool name", "[pool ]\ncapacity=1G\n", "b.conf:1: [pool ]: pool name", -EINVAL },
                { "long pool name",
                  "[pool aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\ncapacity=1G\n",
                  "b.conf:1: [pool aaaa", -EINVAL },
                { "syntax", "[daemon]\nscavtrace = 1\nnot a pair\n", "b.conf:3: syntax error", -EINVAL },
                { "socket empty", "[daemon]\nsocket =\n", "b.conf:2: socket:", -EINVAL },
                { "socket too long",
                  "[daemon]\nsocket = /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                  "b.conf:2: socket:", -EINVAL },
                { "scavtrace 3", "[daemon]\nscavtrace = 3\n", "b.conf:2: scavtrace: out of range", -ERANGE },
                { "scavtrace word", "[daemon]\nscavtrace = yes\n", "b.conf:2: scavtrace: invalid", -EINVAL },
                { "percent 101", "[daemon]\nscavenge_percent = 101\n", "b.conf:2: scavenge_percent: out of range", -ERANGE },
                { "percent neg", "[daemon]\nscavenge_percent = -1\n", "b.conf:2: scavenge_percent: invalid", -EINVAL },
                { "percent nan", "[daemon]\nscavenge_percent = nan\n", "b.conf:2: scavenge_percent: invalid", -EINVAL },
                { "percent junk", "[daemon]\nscavenge_percent = 1x\n", "b.conf:2: scavenge_percent: invalid", -EINVAL },
                { "interval unit", "[daemon]\ngeneration_interval = 5d\n", "b.conf:2: generation_interval: invalid", -EINVAL },
                { "interval small", "[daemon]\ngeneration_interval = 10us\n", "b.conf:2: generation_interval: out of range", -ERANGE },
                { "interval big", "[daemon]\ngeneration_interval = 2h\n", "b.conf:2: generation_interval: out of range", -ERANGE },
                { "interval too big", "[daemon]\ngeneration_interval = 61min\n", "b.conf:2: generation_interval: out of range", -ERANGE },
                { "bpf", "[daemon]\nbpf = maybe\n", "b.conf:2: bpf: invalid", -EINVAL },
                { "pressure", "[daemon]\npressure = lots\n", "b.conf:2: pressure: invalid", -EINVAL },
                { "pressure cpu", "[daemon]\npressure_cpu_percent = 200\n", "b.conf:2: pressure_cpu_percent: out of range", -ERANGE },
                { "capacity missing", "[daemon]\n\n[pool a]\npage_size=4K\n", "b.conf:3: capacity: required", -EINVAL },
                { "capacity zero", "[pool a]\ncapacity = 0\n", "b.conf:2: capacity: out of range", -ERANGE },
                { "capacity huge", "[pool a]\ncapacity = 65T\n", "b.conf:2: capacity: out of range", -ERANGE },
                { "capacity junk", "[pool a]\ncapacity = 1X\n", "b.conf:2: capacity: invalid", -EINVAL },
                { "capacity overflow", "[pool a]\ncapacity = 99999999999999999999\n", "b.conf:2: capacity: out of range", -ERANGE },
                { "page size 3K", "[pool a]\ncapacity=1G\npage_size = 3K\n", "b.conf:3: page_size: out of range", -ERANGE },
                { "page size 2K", "[pool a]\ncapacity=1G\npage_size = 2K\n", "b.conf:3: page_size: out of range", -ERANGE },
                { "page size 2M", "[pool a]\ncapacity=1G\npage_size = 2M\n", "b.conf:3: page_size: out of range", -ERANGE },
                { "pool percent", "[pool a]\ncapacity=1G\nscavenge_percent = 100.5\n", "b.conf:3: scavenge_percent: out of range", -ERANGE },
                { "retain", "[pool a]\ncapacity=1G\nretain_extra_percent = -5\n", "b.conf:3: retain_extra_percent: invalid", -EINVAL },
                { "retain big", "[pool a]\ncapacity=1G\nretain_extra_percent = 10001\n", "b.conf:3: retain_extra_percent: out of range", -ERANGE },
                { "shards 0", "[pool a]\ncapacity=1G\nreservation_shards = 0\n", "b.conf:3: reservation_shards: out of range", -ERANGE },
                { "shards junk", "[pool a]\ncapacity=1G\nreservation_shards = 1k\n", "b.conf:3: reservation_shards: invalid", -EINVAL },
                { "limit", "[pool a]\ncapacity=1G\nmemory_limit = lots\n", "b.conf:3: memory_limit: invalid", -EINVAL },
                { "clients 0", "[pool a]\ncapacity=1G\nmax_clients = 0\n", "b.conf:3: max_clients: out of range", -ERANGE },
                { "clients big", "[pool a]\ncapacity=1G\nmax_clients = 5000\n", "b.conf:3: max_clients: out of range", -ERANGE },
                { "shared 0", "[pool a]\ncapacity=1G\nmax_shared = 0\n", "b.conf:3: max_shared: out of range", -ERANGE },
                { "shared big", "[pool a]\nmax_shared = 16777217\n", "b.conf:2: max_shared: out of range", -ERANGE },
                { "names 0", "[pool a]\ncapacity=1G\nmax_names = 0\n", "b.conf:3: max_names: out of range", -ERANGE },
                { "names junk", "[pool a]\nmax_names = many\n", "b.conf:2: max_names:", -EINVAL },
                { "user unknown", "[pool a]\ncapacity=1G\nallow_users = no-such-user-xyz\n", "b.conf:3: allow_users: unknown user 'no-such-user-xyz'", -ENOENT },
                { "group unknown", "[pool a]\ncapacity=1G\nallow_groups = root no-such-group-xyz\n", "b.conf:3: allow_groups: unknown group 'no-such-group-xyz'", -ENOENT },
                { "uid junk", "[pool a]\ncapacity=1G\nallow_users = 12ab\n", "b.conf:3: allow_users: invalid id '12ab'", -EINVAL },
                { "uid -1", "[pool a]\ncapacity=1G\nallow_users = 4294967295\n", "b.conf:3: allow_users: invalid id", -EINVAL },
                { "huge pages", "[pool a]\ncapacity=1G\nhuge_pages = sometimes\n", "b.conf:3: huge_pages: invalid", -EINVAL },
                { "first error wins", "[pool a]\ncapacity=1X\nmax_clients=0\n", "b.conf:2: capacity:", -EINVAL },
                { "syntax before key error", "[daemon]\nbroken\nfoo=1\n", "b.conf:2: syntax error", -EINVAL },
                /* One file says a thing once; a drop-in may say it again (test_dropins). */
                { "pool twice", "[pool a]\ncapacity=1G\n[pool b]\ncapacity=2M\n[pool a]\nmax_clients=3\n",
                  "b.conf:5: [pool a]: section given twice in one file (first on line 1)", -EINVAL },
                { "pool twice in a row", "[pool a]\ncapacity=1G\n[pool a]\ncapacity=2G\n",
                  "b.conf:3: [pool a]: section given twice in one file (first on line 1)", -EINVAL },
                { "pool twice, second empty", "[pool a]\ncapacity=1G\n\n[pool \ta]\n",
                  "b.conf:4: [pool \ta]: section given twice in one file (first on line 1)", -EINVAL },
                { "daemon twice", "[daemon]\nscavtrace=1\n[pool a]\ncapacity=1G\n[daemon]\nbpf=off\n",
                  "b.conf:5: [daemon]: section given twice in one file (first on line 1)", -EINVAL },
                { "daemon key twice", "[daemon]\nscavtrace = 1\nbpf = off\nscavtrace = 2\n",
                  "b.conf:4: scavtrace: given twice in [daemon] (first on line 2)", -EINVAL },
                { "pool key twice", "[pool a]\ncapacity=1G\nmax_clients=3\n# again\ncapacity = 2G\n",
                  "b.conf:5: capacity: given twice in [pool a] (first on line 2)", -EINVAL },
                { "same value twice", "[pool a]\ncapacity=1G\ncapacity=1G\n",
                  "b.conf:3: capacity: given twice in [pool a] (first on line 2)", -EINVAL },
                { "allow list twice", "[pool a]\ncapacity=1G\nallow_users = 5\nallow_users =\n",
                  "b.conf:4: allow_users: given twice in [pool a] (first on line 3)", -EINVAL },
                { "key twice, first bad", "[pool a]\ncapacity=1X\ncapacity=1G\n", "b.conf:2: capacity: invalid",
                  -EINVAL },
                { "indented continuation", "[pool a]\ncapacity=1G\n  max_clients = 3\n",
                  "b.conf:3: capacity: an indented line continues its value", -EINVAL },
                { "indented continuation, valid value", "[pool a]\ncapacity=1G\n\t2G\n",
                  "b.conf:3: capacity: an indented line continues its value", -EINVAL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char err[512] = "";
                int r = config_parse_string("b.conf", cases[i].text, &cfg, err, sizeof(err));
                CHECKF(r == cases[i].r, "%s: got %d, want %d (%s)", cases[i].name, r, cases[i].r, err);
                CHECKF(strncmp(err, cases[i].want, strlen(cases[i].want)) == 0, "%s: message '%s', want '%s...'",
                       cases[i].name, err, cases[i].want);
        }
}

static void test_misc(void) {
        char err[512], big[400];
        int r;

        /* Booleans and tristates in their spellings. */
        r = config_parse_string("m.conf", "[daemon]\nbpf = YES\n[pool a]\ncapacity=1G\nhuge_pages = On\n", &cfg,
                                err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(cfg.bpf == CONFIG_ON && cfg.pools[0].huge_pages);
        r = config_parse_string("m.conf", "[daemon]\nbpf = auto\ngeneration_interval = 0.5\n", &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(cfg.bpf == CONFIG_AUTO);
        CHECK_EQ_U64(cfg.generation_interval_usec, 500000);
        /* Every unit the message names, the range's ends included. */
        r = config_parse_string("m.conf", "[daemon]\ngeneration_interval = 1h\nlock_timeout = 1ms\n", &cfg, err,
                                sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK_EQ_U64(cfg.generation_interval_usec, UINT64_C(3600000000));
        CHECK_EQ_U64(cfg.lock_timeout_usec, 1000);

        /* The same key in different sections, an indented first key and
         * blank lines are no repetition. */
        r = config_parse_string("m.conf", "[daemon]\nscavenge_percent=2\n[pool a]\n  capacity=1G\n\n"
                                "scavenge_percent=1\n[pool b]\ncapacity=2M\nscavenge_percent=1\n",
                                &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK_EQ_U64(cfg.n_pools, 2);
        CHECK_EQ_U64(find(&cfg, "a")->capacity, 1ull << 30);

        /* An empty allow list means everyone. */
        r = config_parse_string("m.conf", "[pool a]\ncapacity=1G\nallow_users =\n", &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(cfg.pools[0].allow_all && cfg.pools[0].n_allow_users == 0);

        /* Lines too long for inih are refused, not split. */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        memcpy(big, "[daemon]\n#", 10);
        r = config_parse_string("m.conf", big, &cfg, err, sizeof(err));
        CHECK(r == -EINVAL);
        CHECKF(strncmp(err, "m.conf:2: line longer", 21) == 0, "%s", err);

        /* Too many ids. */
        {
                char ids[4096] = "[pool a]\ncapacity=1G\nallow_users=";
                for (int k = 0; k < 65; k++)
                        strcat(ids, "1 ");
                r = config_parse_string("m.conf", ids, &cfg, err, sizeof(err));
                CHECK(r < 0);
        }

        /* Pool names of 63 characters survive whole (inih alone would cut them at 49). */
        r = config_parse_string("m.conf", "[pool nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn]\ncapacity=1G\n", &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(strlen(cfg.pools[0].name) == 63);

        /* Empty text, or only [daemon]: no pools, valid, with a warning. */
        r = config_parse_string("m.conf", "", &cfg, err, sizeof(err));
        CHECK(r == 0 && cfg.n_pools == 0);
        CHECK(config_warning(&cfg) != NULL && strstr(config_warning(&cfg), "no [pool NAME]"));
        r = config_parse_string("m.conf", "[daemon]\nscavtrace=1\n", &cfg, err, sizeof(err));
        CHECK(r == 0 && cfg.n_pools == 0 && config_warning(&cfg) != NULL);
        r = config_parse_string("m.conf", "[pool a]\ncapacity=1G\n", &cfg, err, sizeof(err));
        CHECK(r == 0 && config_warning(&cfg) == NULL);

        /* A tiny error buffer truncates, never overflows. */
        char tiny[8];
        r = config_parse_string("m.conf", "[daemon]\nfoo=1\n", &cfg, tiny, sizeof(tiny));
        CHECK(r < 0 && strlen(tiny) < sizeof(tiny));
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        CHECK(f != NULL);
        if (!f)
                return;
        fputs(text, f);
        fclose(f);
}

static void test_dropins(void) {
        char dir[] = "/tmp/test-config.XXXXXX", path[256], d[256], f[300], err[512];
        int r;

        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/scavd.conf", dir);
        snprintf(d, sizeof(d), "%s/scavd.conf.d", dir);

        /* Missing main file: an error naming it. */
        r = config_load(path, &cfg, err, sizeof(err));
        CHECK(r == -ENOENT);
        CHECKF(strstr(err, "scavd.conf") != NULL, "%s", err);

        write_file(path, "[daemon]\nscavtrace = 1\n[pool a]\ncapacity = 1G\nmax_clients = 3\n");
        /* No drop-in directory is fine. */
        r = config_load(path, &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(cfg.scavtrace == 1 && cfg.n_pools == 1);

        CHECK(mkdir(d, 0755) == 0);
        snprintf(f, sizeof(f), "%s/20-b.conf", d);
        write_file(f, "[daemon]\nscavtrace = 2\n[pool a]\nmax_clients = 20\n");
        snprintf(f, sizeof(f), "%s/10-a.conf", d);
        write_file(f, "[daemon]\nscavtrace = 0\n[pool a]\nmax_clients = 10\n[pool b]\ncapacity = 2G\n");
        snprintf(f, sizeof(f), "%s/30-c.conf.disabled", d);
        write_file(f, "[daemon]\nscavtrace = 0\n");
        snprintf(f, sizeof(f), "%s/.hidden.conf", d);
        write_file(f, "garbage\n");
        r = config_load(path, &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        /* 10-a then 20-b: 20-b wins; other names are ignored. */
        CHECK(cfg.scavtrace == 2);
        CHECK_EQ_U64(cfg.n_pools, 2);
        CHECK_EQ_U64(find(&cfg, "a")->max_clients, 20);
        CHECK_EQ_U64(find(&cfg, "a")->capacity, 1ull << 30);
        CHECK_EQ_U64(find(&cfg, "b")->capacity, 2ull << 30);

        /* A drop-in gives a key of the main file again: an override, no
         * repetition; and an empty allow list there means everyone again. */
        write_file(path, "[daemon]\nscavtrace = 1\n[pool a]\ncapacity = 1G\nmax_clients = 3\nallow_users = 5\n");
        snprintf(f, sizeof(f), "%s/25-allow.conf", d);
        write_file(f, "[pool a]\nallow_users =\ncapacity = 2G\n");
        r = config_load(path, &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK(find(&cfg, "a")->allow_all && find(&cfg, "a")->n_allow_users == 0);
        CHECK_EQ_U64(find(&cfg, "a")->capacity, 2ull << 30);
        /* ... but a drop-in repeating itself is refused, naming the drop-in. */
        write_file(f, "[pool a]\nallow_users =\n[pool a]\ncapacity = 2G\n");
        r = config_load(path, &cfg, err, sizeof(err));
        CHECK(r == -EINVAL);
        CHECKF(strstr(err, "scavd.conf.d/25-allow.conf:3: [pool a]: section given twice") != NULL, "%s", err);
        unlink(f);
        write_file(path, "[daemon]\nscavtrace = 1\n[pool a]\ncapacity = 1G\nmax_clients = 3\n");

        /* An error in a drop-in names the drop-in and its line. */
        snprintf(f, sizeof(f), "%s/15-bad.conf", d);
        write_file(f, "# bad\n[pool b]\nmemory_limit = 12Q\n");
        r = config_load(path, &cfg, err, sizeof(err));
        CHECK(r == -EINVAL);
        CHECKF(strstr(err, "scavd.conf.d/15-bad.conf:3: memory_limit: invalid") != NULL, "%s", err);
        unlink(f);

        /* A pool without capacity in the main file gets it from a drop-in. */
        snprintf(f, sizeof(f), "%s/10-a.conf", d);
        unlink(f);
        snprintf(f, sizeof(f), "%s/20-b.conf", d);
        unlink(f);
        write_file(path, "[pool c]\nmax_clients = 3\n");
        snprintf(f, sizeof(f), "%s/40-cap.conf", d);
        write_file(f, "[pool c]\ncapacity = 8M\n");
        r = config_load(path, &cfg, err, sizeof(err));
        CHECKF(r == 0, "%s", err);
        CHECK_EQ_U64(find(&cfg, "c")->capacity, 8ull << 20);
        unlink(f);
        /* ... and without, the error names where the section starts. */
        r = config_load(path, &cfg, err, sizeof(err));
        CHECK(r == -EINVAL);
        CHECKF(strstr(err, "scavd.conf:1: capacity: required") != NULL, "%s", err);

        /* The shipped default configuration is valid. */
        {
                const char *top = getenv("SCAV_TOP");
                char conf[512];
                snprintf(conf, sizeof(conf), "%s/conf/scavd.conf", top ? top : ".");
                if (access(conf, R_OK) == 0) {
                        r = config_load(conf, &cfg, err, sizeof(err));
                        CHECKF(r == 0, "%s", err);
                        CHECK(find(&cfg, "default") != NULL);
                }
        }

        snprintf(f, sizeof(f), "rm -rf '%s'", dir);
        if (system(f) != 0)
                fprintf(stderr, "cleanup of %s failed\n", dir);
}

int main(void) {
        test_sizes();
        test_every_key();
        test_bad();
        test_misc();
        test_dropins();
        return TEST_END();
}

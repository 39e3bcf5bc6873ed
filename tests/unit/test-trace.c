/* SPDX-License-Identifier: MIT */
/*
 * scavtrace formatting and the journal fields it sends.
 *
 * trace.c is compiled into this program directly (unit tests link only
 * libscav.a, not the daemon's objects or libsystemd), and the one libsystemd
 * function it calls is replaced by a recorder, so that the fields can be
 * checked without a journald. The real journal is tested in
 * tests/integration/test-pacing.
 */

#include "../../daemon/trace.c"

#include <fcntl.h>

#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

static char sent[16][600];
static int n_sent;

int sd_journal_sendv_with_location(const char *file, const char *line, const char *func,
                                   const struct iovec *iov, int n) {
        n_sent = 0;
        for (int i = 0; i < n && i < 16; i++) {
                snprintf(sent[i], sizeof(sent[i]), "%.*s", (int) iov[i].iov_len,
                         (const char *) iov[i].iov_base);
                n_sent++;
        }
        return 0;
}

static bool has_field(const char *want) {
        for (int i = 0; i < n_sent; i++)
                if (strcmp(sent[i], want) == 0)
                        return true;
        return false;
}

static void test_format_gen(void) {
        static const struct {
                const char *name;
                struct trace_gen g;
                const char *want;
        } cases[] = {
                { "plain", { "media", 7, 10 << 20, 300 << 20, 64 << 20, 128 << 20, false, false, NULL },
                  "scav media 7: 10240 KiB work, 307200 KiB total, 50% util" },
                { "forced", { "p", 1, 4096, 4096, 0, 4096, true, false, NULL },
                  "scav p 1: 4 KiB work, 4 KiB total, 0% util (forced)" },
                { "reset", { "p", 2, 0, 0, 3, 4, false, true, NULL },
                  "scav p 2: 0 KiB work, 0 KiB total, 75% util [controller reset]" },
                { "forced-wins", { "p", 2, 0, 0, 0, 0, true, true, NULL },
                  "scav p 2: 0 KiB work, 0 KiB total, 0% util (forced)" },
                { "forced-why", { "p", 3, 8192, 8192, 0, 8192, true, false, "memcg reclaim" },
                  "scav p 3: 8 KiB work, 8 KiB total, 0% util (forced: memcg reclaim)" },
                { "forced-scavctl", { "p", 3, 0, 0, 0, 0, true, true, "scavctl" },
                  "scav p 3: 0 KiB work, 0 KiB total, 0% util (forced: scavctl)" },
                { "why-unforced", { "p", 4, 0, 0, 0, 0, false, false, "ignored" },
                  "scav p 4: 0 KiB work, 0 KiB total, 0% util" },
                { "huge", { "p", UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, false, false, NULL },
                  "scav p 18446744073709551615: 18014398509481983 KiB work, 18014398509481983 KiB total, 100% util" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[512];
                int n = trace_format_gen(&cases[i].g, buf, sizeof(buf));

                CHECKF(n == (int) strlen(cases[i].want) && strcmp(buf, cases[i].want) == 0,
                       "%s: got \"%s\" (%d), want \"%s\"", cases[i].name, buf, n, cases[i].want);
        }

        char small[8];
        CHECK(trace_format_gen(&cases[0].g, small, sizeof(small)) == -ENOBUFS);
}

static void test_format_pacing(void) {
        struct trace_pacing pc = { "media", 3, 70 << 20, 90 << 20, 0.25, 0.01, 0, 0, 0 };
        char buf[512];

        CHECK(trace_format_pacing(&pc, buf, sizeof(buf)) > 0);
        CHECKF(strcmp(buf, "scav media 3: pacing: goal 71680 KiB, 92160 KiB retained, sleep ratio 0.25, 1.000% cpu") == 0,
               "got \"%s\"", buf);
        pc.goal = UINT64_MAX;
        CHECK(trace_format_pacing(&pc, buf, sizeof(buf)) > 0);
        CHECKF(strstr(buf, "goal none,") != NULL, "got \"%s\"", buf);

        /* Refaults and the goal's extra room, only when there are some. */
        pc.goal = 70 << 20;
        pc.refaults = 512;
        pc.goal_extra = 25;
        pc.faults = 600;
        CHECK(trace_format_pacing(&pc, buf, sizeof(buf)) > 0);
        CHECKF(strcmp(buf, "scav media 3: pacing: goal 71680 KiB, 92160 KiB retained, sleep ratio 0.25, 1.000% cpu"
                           ", faults 600, refaults 512, goal +25%") == 0, "got \"%s\"", buf);
}

static void test_journal_fields(void) {
        struct trace t = { .level = 1, .journal = true };
        struct trace_gen g = { "media", 7, 10 << 20, 300 << 20, 64 << 20, 128 << 20, false, true, NULL };
        struct trace_pacing pc = { "media", 7, 70 << 20, 90 << 20, 0.25, 0.01, 0, 0, 0 };

        trace_gen(&t, &g);
        CHECK(has_field("MESSAGE=scav media 7: 10240 KiB work, 307200 KiB total, 50% util [controller reset]"));
        CHECK(has_field("MESSAGE_ID=" TRACE_MESSAGE_ID_GEN));
        CHECK(has_field("PRIORITY=6"));
        CHECK(has_field("SCAV_POOL=media"));
        CHECK(has_field("SCAV_GEN=7"));
        CHECK(has_field("SCAV_RELEASED_BYTES=10485760"));
        CHECK(has_field("SCAV_TOTAL_RELEASED_BYTES=314572800"));
        CHECK(has_field("SCAV_UTIL_PERCENT=50"));
        CHECK(!has_field("SCAV_FORCED=yes"));

        g.forced = true;
        g.why = "kswapd";
        trace_gen(&t, &g);
        CHECK(has_field("MESSAGE=scav media 7: 10240 KiB work, 307200 KiB total, 50% util (forced: kswapd)"));
        CHECK(has_field("SCAV_FORCED=kswapd"));
        g.forced = false;
        g.why = NULL;

        /* Level 1: no pacing lines. */
        n_sent = 0;
        trace_pacing(&t, &pc);
        CHECK(n_sent == 0);
        t.level = 2;
        trace_pacing(&t, &pc);
        CHECK(has_field("MESSAGE_ID=" TRACE_MESSAGE_ID_PACING));
        CHECK(has_field("SCAV_GOAL_BYTES=73400320"));
        CHECK(has_field("SCAV_RETAINED_BYTES=94371840"));
        CHECK(has_field("PRIORITY=7"));
        CHECK(has_field("SCAV_CPU_PERCENT=1.000"));
        CHECK(has_field("SCAV_FAULTS=0"));
        CHECK(has_field("SCAV_REFAULTS=0"));
        CHECK(has_field("SCAV_GOAL_EXTRA_PERCENT=0"));

        t.level = 0;
        n_sent = 0;
        trace_gen(&t, &g);
        CHECK(n_sent == 0);
}

/* Without journald, plain lines on stderr, one per write. */
static void test_stderr(void) {
        struct trace t = { .level = 1, .journal = false };
        struct trace_gen g = { "media", 7, 10 << 20, 300 << 20, 64 << 20, 128 << 20, true, false, NULL };
        char path[] = "/tmp/test-trace.XXXXXX", buf[512] = {};
        int fd, saved;
        ssize_t n;

        fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd < 0)
                return;
        unlink(path);
        saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        n_sent = 0;
        trace_gen(&t, &g);
        trace_gen(&t, &g);
        dup2(saved, STDERR_FILENO);
        close(saved);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        CHECK(n_sent == 0);
        CHECKF(n > 0 && strcmp(buf, "scav media 7: 10240 KiB work, 307200 KiB total, 50% util (forced)\n"
                                    "scav media 7: 10240 KiB work, 307200 KiB total, 50% util (forced)\n") == 0,
               "got \"%s\"", buf);
}

/* JOURNAL_STREAM counts only while stderr is that very stream. */
static void test_detect(void) {
        struct stat st;
        char v[64];
        bool socket = access(JOURNAL_SOCKET, F_OK) == 0;

        CHECK(fstat(STDERR_FILENO, &st) == 0);
        snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", v, 1);
        CHECK(trace_under_journal());
        snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev, (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", v, 1);
        CHECK(trace_under_journal() == socket);
        setenv("JOURNAL_STREAM", "garbage", 1);
        CHECK(trace_under_journal() == socket);
        unsetenv("JOURNAL_STREAM");
        CHECK(trace_under_journal() == socket);
}

int main(void) {
        test_format_gen();
        test_format_pacing();
        test_journal_fields();
        test_stderr();
        test_detect();
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/*
 * The library while the daemon is away (issue 5's client side; restarts
 * with the file descriptor store are test-systemd's): allocation, freeing
 * and data go on in shared memory; a new scav_open is refused with
 * -ECONNREFUSED; scav_scavenge releases memory itself. A daemon that comes
 * back *without* the pool's memfds (no fd store) serves another heap: the
 * library notices on reconnecting and allocation answers -ESTALE, while
 * the memory already held stays readable and can be freed.
 */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../lib/daemon.h"
#include "../lib/test.h"
#include "scav.h"

TEST_DEFINE_GLOBALS;

static const char config[] =
        "[pool rs]\n"
        "capacity = 128M\n";

int main(void) {
        struct test_daemon d;
        struct scav_stats st;
        uint64_t keep, off, offs[64], deadline;
        int64_t released;
        scav_pool *p, *q;
        int r, n = 0;

        CHECK(test_daemon_start(&d, config) == 0);
        if (d.pid <= 0)
                return TEST_END();
        CHECK(scav_open("rs", &p) == 0);
        CHECK(scav_alloc(p, 1 << 20, 0, &keep) == 0);
        memset(scav_ptr(p, keep), 0x77, 1 << 20);

        /* The daemon dies. */
        test_daemon_kill(&d);
        for (int i = 0; i < 64; i++) {
                r = scav_alloc(p, (size_t) (1 + i % 40) * 4096, 0, &offs[i]);
                CHECKF(r == 0, "alloc %d with the daemon gone: %s", i, strerror(-r));
                if (r == 0)
                        memset(scav_ptr(p, offs[i]), i, 4096);
        }
        for (int i = 0; i < 64; i++)
                if (scav_free(p, offs[i]) == 0)
                        n++;
        CHECKF(n == 64, "%d of 64 frees with the daemon gone", n);
        r = scav_open("rs", &q);
        CHECKF(r == -ECONNREFUSED, "scav_open with no daemon: %d (%s)", r, strerror(-r));
        CHECK(scav_stats(p, &st) == 0);
        printf("daemon gone: inuse %" PRIu64 " KiB, retained %" PRIu64 " KiB\n", st.inuse >> 10,
               st.retained >> 10);
        released = scav_scavenge(p, 0);
        printf("scav_scavenge without a daemon released %" PRId64 " KiB\n", released >> 10);
        CHECKF(released > 0, "scav_scavenge with no daemon: %" PRId64, released);

        /* It comes back with nothing stored: a new, empty pool of the same name. */
        CHECK(test_daemon_restart(&d) == 0);
        deadline = test_now_usec() + 20 * 1000000ull;
        do {
                r = scav_alloc(p, 4096, 0, &off);
                if (r == 0)
                        CHECK(scav_free(p, off) == 0);
                else
                        break;
                usleep(5000);
        } while (test_now_usec() < deadline);
        CHECKF(r == -ESTALE, "alloc after the daemon came back with another heap: %d (%s)", r,
               strerror(-r));
        {
                const uint8_t *b = scav_ptr(p, keep);
                bool same = true;
                for (int i = 0; i < 1 << 20; i++)
                        same &= b[i] == 0x77;
                CHECKF(same, "data held before the restart still reads back");
        }
        CHECK(scav_free(p, keep) == 0);
        scav_close(p);

        /* New clients get the new pool. */
        CHECK(scav_open("rs", &q) == 0);
        CHECK(scav_alloc(q, 4096, 0, &off) == 0 && scav_free(q, off) == 0);
        scav_close(q);
        CHECK(test_pool_check(&d, "rs"));
        test_daemon_finish(&d);
        return TEST_END();
}

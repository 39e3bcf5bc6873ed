/* SPDX-License-Identifier: MIT */
/*
 * The pacing policy with a fake clock and a fake release function of known
 * cost, as the Go runtime's TestScavenger (mgcscavenge_test.go) does.
 *
 * pacer.c is pure (no I/O, no clock, no libsystemd), so it is compiled into
 * this program directly: the Makefile links unit tests with libscav.a only,
 * not with the daemon's objects, and this keeps the test self-contained.
 */

#include "../../daemon/pacer.c"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../lib/test.h"
#include "macro.h"

TEST_DEFINE_GLOBALS;

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define PHYS 4096u
#define GOAL_NONE UINT64_MAX

/* ---- piController ---------------------------------------------------- */

static void test_pi_table(void) {
        static const struct {
                const char *name;
                double input, setpoint, period;
                bool want_ok;
                double want;
                bool want_err_overflow, want_input_overflow;
        } cases[] = {
                { "proportional", 0, 0.01, 0, true, 0.3375 * 0.01, false, false },
                { "clamp-low", 1, 0, 0, true, 0.001, false, false },
                { "clamp-high", 0, 1e4, 0, true, 1000, false, false },
                { "input-inf", -INFINITY, 0.01, 1e6, false, 0.001, false, true },
                { "input-nan", NAN, 0.01, 1e6, false, 0.001, false, true },
                /* kp * 1e308 is finite, (kp * 1e9 / ti) * 1e308 is not. */
                { "integral-overflow", -1e308, 0, 1e9, false, 0.001, true, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct pacer_pi c;
                double out = -1;
                bool ok;

                pacer_pi_init(&c);
                ok = pacer_pi_next(&c, cases[i].input, cases[i].setpoint, cases[i].period, &out);
                CHECKF(ok == cases[i].want_ok, "%s: ok=%d", cases[i].name, ok);
                CHECKF(fabs(out - cases[i].want) < 1e-12, "%s: out=%g want %g", cases[i].name, out,
                       cases[i].want);
                CHECKF(c.err_overflow == cases[i].want_err_overflow &&
                       c.input_overflow == cases[i].want_input_overflow,
                       "%s: flags err=%d input=%d", cases[i].name, c.err_overflow, c.input_overflow);
                if (!ok)
                        CHECKF(c.err_integral == 0, "%s: integral %g after reset", cases[i].name,
                               c.err_integral);
        }
}

/* The integral and the anti-windup term, by hand. */
static void test_pi_integral(void) {
        struct pacer_pi c;
        double out, integral;

        pacer_pi_init(&c);
        CHECK(pacer_pi_next(&c, 0, 0.01, 1e6, &out));
        integral = (0.3375 * 1e6 / 3.2e6) * 0.01;
        CHECKF(fabs(c.err_integral - integral) < 1e-15, "integral %g want %g", c.err_integral, integral);
        CHECK(pacer_pi_next(&c, 0, 0.01, 1e6, &out));
        CHECKF(fabs(out - (0.3375 * 0.01 + integral)) < 1e-15, "out %g", out);

        /* Clamped at max: the integral is pulled back by (p/tt)*(out-raw). */
        pacer_pi_init(&c);
        c.err_integral = 2000;
        CHECK(pacer_pi_next(&c, 0.01, 0.01, 1e8, &out));
        CHECKF(out == 1000, "out %g", out);
        CHECKF(fabs(c.err_integral - (2000 + 0.1 * (1000 - 2000))) < 1e-9, "integral %g", c.err_integral);
}

/* ---- sleep and the controller reset ------------------------------------ */

static void test_sleep_basics(void) {
        struct pacer p;

        pacer_init(&p, 1);
        CHECK(p.target == 0.01);
        CHECK(p.sleep_ratio == PACER_STARTING_SLEEP_RATIO);
        CHECK(pacer_credit(10) == PACER_MIN_WORK_NS);
        CHECK(pacer_credit(3e6) == 3e6);
        CHECK_EQ_U64(pacer_sleep_ns(&p, 1e6), 1000000000);      /* 1 ms / 0.001 */
        p.sleep_ratio = 1e-30;
        CHECK(pacer_sleep_ns(&p, 1e6) > 0);                      /* saturates, no UB */
        pacer_set_percent(&p, 0);
        CHECK(p.target == 0);
}

static void test_controller_reset(void) {
        struct pacer p;
        int64_t left;

        pacer_init(&p, 1);
        p.sleep_ratio = 0.5;
        /* No CPUs: the fraction is infinite; the controller's input overflows. */
        pacer_slept(&p, 1e6, 0, 0);
        CHECK(p.controller.input_overflow);
        CHECK(p.sleep_ratio == PACER_STARTING_SLEEP_RATIO);
        CHECK(p.cooldown_ns == PACER_COOLDOWN_NS);
        CHECK(pacer_take_reset(&p));
        CHECK(!pacer_take_reset(&p));

        /* During the cooldown the ratio holds and the time counts down. */
        pacer_slept(&p, 1e6, 999000000, 2);
        CHECK(p.sleep_ratio == PACER_STARTING_SLEEP_RATIO);
        CHECK_EQ_U64(p.cooldown_ns, PACER_COOLDOWN_NS - 1000000000);
        for (int i = 0; i < 3; i++)
                pacer_slept(&p, 1e6, 999000000, 2);
        left = p.cooldown_ns;
        CHECK_EQ_U64(left, 1000000000);
        pacer_slept(&p, 1e6, 2000000000, 2);                   /* outlasts it */
        CHECK_EQ_U64(p.cooldown_ns, 0);
        CHECK(p.sleep_ratio == PACER_STARTING_SLEEP_RATIO);

        /* Then the controller drives again: far below target, the ratio rises. */
        pacer_slept(&p, 1e6, 1000000000, 2);
        CHECKF(p.sleep_ratio > PACER_STARTING_SLEEP_RATIO, "ratio %g", p.sleep_ratio);
        CHECK(!pacer_take_reset(&p));
}

/* ---- a simulated scavenger: fake clock, fake release --------------------- */

/* TestScavenger's workedTime: 10 µs per 4 KiB page. */
static int64_t worked_time(uint64_t bytes) {
        return (int64_t) ((bytes + 4095) / 4096) * 10000;
}

#define SIM_POOLS 10

struct sim_pool {
        struct pacer_pool pp;
        uint64_t released;
        double worked, burst_worked;
        int64_t done_at;          /* when it last reached its goal */
};

struct sim {
        struct pacer pacer;
        unsigned cpus;
        int64_t now;
        size_t n;
        struct sim_pool pools[SIM_POOLS];
        struct pacer_pool *pps[SIM_POOLS];
        double worked;            /* actual fake work, not the credited */
        int64_t slept, waited;
        unsigned resets, bursts;
};

static void sim_init(struct sim *s, double percent, unsigned cpus, size_t n) {
        memset(s, 0, sizeof(*s));
        pacer_init(&s->pacer, percent);
        s->cpus = cpus;
        s->n = n;
        for (size_t i = 0; i < n; i++) {
                s->pools[i].pp.goal = GOAL_NONE;
                s->pools[i].pp.share = -1;
                s->pps[i] = &s->pools[i].pp;
        }
}

/* Gives pool i `work` bytes over its goal (a generation starting). */
static void sim_add_work(struct sim *s, size_t i, uint64_t work) {
        struct pacer_pool *pp = &s->pools[i].pp;

        pp->goal = 64 * MiB;
        pp->retained = pp->goal + work;
        pp->exhausted = false;
}

/* The scavenge callback of scavenger.c, with the fake release. */
static int64_t sim_scavenge(void *userdata, uint64_t nbytes, int64_t *ret_ns) {
        struct sim *s = userdata;

        for (;;) {
                ssize_t i = pacer_pick(s->pps, s->n, s->now);
                struct sim_pool *sp;
                uint64_t got;
                int64_t t;

                if (i < 0)
                        return 0;
                sp = &s->pools[i];
                got = MIN(nbytes, pacer_pool_excess(&sp->pp));
                t = worked_time(got);
                s->now += t;
                sp->pp.retained -= got;
                sp->released += got;
                sp->worked += (double) t;
                sp->burst_worked += (double) t;
                s->worked += (double) t;
                if (pacer_pool_excess(&sp->pp) == 0)
                        sp->done_at = s->now;
                if (got < nbytes)
                        sp->pp.exhausted = true;
                if (got > 0) {
                        *ret_ns = t;
                        return (int64_t) got;
                }
        }
}

/* Runs the scavenger from a wake-up until it parks: run, sleep, run, ... */
static void sim_until_parked(struct sim *s) {
        for (unsigned guard = 0; guard < 10000000; guard++) {
                struct pacer_burst b;
                int64_t start = s->now, sleep, next;
                double credited;

                pacer_run(&b, sim_scavenge, s, PHYS);
                for (size_t i = 0; i < s->n; i++) {
                        pacer_pool_charge(&s->pools[i].pp, start, s->pools[i].burst_worked, s->cpus);
                        s->pools[i].burst_worked = 0;
                }
                if (b.released == 0) {
                        /* Nothing ready: park, or wait for a pool's share (not a controlled sleep). */
                        next = pacer_next_ready(s->pps, s->n, s->now);
                        if (next == INT64_MAX)
                                return;
                        s->waited += next - s->now;
                        s->now = next;
                        continue;
                }
                s->bursts++;
                credited = pacer_credit(b.worked);
                sleep = pacer_sleep_ns(&s->pacer, credited);
                s->now += sleep;
                s->slept += sleep;
                pacer_slept(&s->pacer, credited, sleep, s->cpus);
                if (pacer_take_reset(&s->pacer))
                        s->resets++;
        }
        CHECKF(false, "scavenger never parked");
}

static double sim_fraction(const struct sim *s) {
        return s->worked / (((double) s->slept + (double) s->waited + s->worked) * (double) s->cpus);
}

static uint64_t sim_released(const struct sim *s) {
        uint64_t r = 0;

        for (size_t i = 0; i < s->n; i++)
                r += s->pools[i].released;
        return r;
}

/* TestScavenger's checks: exact work done, CPU fraction within 0.5 points. */
static void sim_verify(const char *name, const struct sim *s, uint64_t want_work, double percent) {
        double f = sim_fraction(s);

        CHECKF(sim_released(s) == want_work, "%s: released %" PRIu64 " want %" PRIu64, name,
               sim_released(s), want_work);
        CHECKF(fabs(f - percent / 100) <= 0.005, "%s: CPU fraction %.4f%% want %.2f%%", name, f * 100,
               percent);
        CHECKF(s->resets == 0, "%s: %u controller resets", name, s->resets);
        printf("%-28s released %6" PRIu64 " KiB, CPU fraction %.4f%% (target %.2f%%), %u bursts\n", name,
               sim_released(s) / KiB, f * 100, percent, s->bursts);
}

/* Port of TestScavenger: run to completion, no work, again, stop at a goal. */
static void test_scavenger(unsigned cpus) {
        const uint64_t total = 64 * MiB - 3 * PHYS;
        const uint64_t stopping_point = 1 * MiB - 3 * PHYS;
        struct sim s;
        char name[64];

        sim_init(&s, 1, cpus, 1);

        sim_add_work(&s, 0, total);
        sim_until_parked(&s);
        snprintf(name, sizeof(name), "scavenger/%ucpu/first", cpus);
        sim_verify(name, &s, total, 1);

        /* No work: right back to sleep. */
        sim_until_parked(&s);
        snprintf(name, sizeof(name), "scavenger/%ucpu/idle", cpus);
        sim_verify(name, &s, total, 1);

        sim_add_work(&s, 0, total);
        sim_until_parked(&s);
        snprintf(name, sizeof(name), "scavenger/%ucpu/again", cpus);
        sim_verify(name, &s, 2 * total, 1);

        /* A goal part way: stops there. */
        sim_add_work(&s, 0, total);
        s.pools[0].pp.goal += stopping_point;
        sim_until_parked(&s);
        snprintf(name, sizeof(name), "scavenger/%ucpu/stop-at-goal", cpus);
        sim_verify(name, &s, 2 * total + (total - stopping_point), 1);
        CHECK_EQ_U64(s.pools[0].pp.retained, s.pools[0].pp.goal);
}

/* Other budgets: the same controller meets them. */
static void test_scavenger_percents(void) {
        static const double percents[] = { 0.5, 2, 5 };

        for (size_t i = 0; i < ELEMENTSOF(percents); i++) {
                struct sim s;
                char name[64];

                sim_init(&s, percents[i], 2, 1);
                sim_add_work(&s, 0, 256 * MiB);
                sim_until_parked(&s);
                snprintf(name, sizeof(name), "scavenger/percent=%.1f", percents[i]);
                sim_verify(name, &s, 256 * MiB, percents[i]);
        }
}

/* Ten pools over their goals use the same total budget as one. */
static void test_budget_shared(void) {
        const uint64_t total = 160 * MiB;
        struct sim one, ten;
        double f1, f10, t1, t10;

        sim_init(&one, 1, 2, 1);
        sim_add_work(&one, 0, total);
        sim_until_parked(&one);
        sim_verify("budget/one-pool", &one, total, 1);

        sim_init(&ten, 1, 2, 10);
        for (size_t i = 0; i < 10; i++)
                sim_add_work(&ten, i, total / 10 + (i + 1) * 64 * KiB - 5 * 64 * KiB);
        sim_until_parked(&ten);
        sim_verify("budget/ten-pools", &ten, total + 5 * 64 * KiB, 1);

        f1 = sim_fraction(&one);
        f10 = sim_fraction(&ten);
        t1 = (double) one.now;
        t10 = (double) ten.now;
        CHECKF(fabs(f10 - f1) < 0.001, "fractions one %.4f%% ten %.4f%%", f1 * 100, f10 * 100);
        /* Same budget, same work: about the same time to goal. */
        CHECKF(fabs(t10 - t1) / t1 < 0.1, "time to goal one %.2fs ten %.2fs", t1 / 1e9, t10 / 1e9);
        printf("budget: one pool %.2fs, ten pools %.2fs to goal\n", t1 / 1e9, t10 / 1e9);

        /* Furthest over first: the pools were drained towards each other, so
         * all reached their goals within the last few bursts. */
        for (size_t i = 0; i < 10; i++)
                CHECKF(ten.now - ten.pools[i].done_at < ten.now / 20, "pool %zu done at %.2fs of %.2fs", i,
                       ten.pools[i].done_at / 1e9, ten.now / 1e9);
}

static void test_pick(void) {
        struct pacer_pool a = { .retained = 100, .goal = 50, .share = -1 };
        struct pacer_pool b = { .retained = 300, .goal = 100, .share = -1 };
        struct pacer_pool c = { .retained = 900, .goal = GOAL_NONE, .share = -1 };
        struct pacer_pool d = { .retained = 900, .goal = 100, .share = 0 };
        struct pacer_pool *all[] = { &a, &b, &c, &d };

        CHECK(pacer_pick(all, 4, 0) == 1);             /* b: 200 over */
        b.exhausted = true;
        CHECK(pacer_pick(all, 4, 0) == 0);
        a.eligible_at = 10;
        CHECK(pacer_pick(all, 4, 0) == -1);             /* d never: share 0 */
        CHECK(pacer_next_ready(all, 4, 0) == 10);
        CHECK(pacer_pick(all, 4, 10) == 0);
        a.retained = 50;                                /* at goal */
        CHECK(pacer_next_ready(all, 4, 0) == INT64_MAX);

        CHECK(pacer_pool_share(-1, 1) < 0);
        CHECK(pacer_pool_share(5, 1) < 0);              /* cannot raise it */
        CHECK(pacer_pool_share(0.25, 1) == 0.0025);
        CHECK(pacer_pool_share(0, 1) == 0);
        CHECK(pacer_pool_share(-1, 0) == 0);            /* daemon's budget 0: off */
}

/* A pool's own scavenge_percent only lowers its share; 0 keeps it out. */
static void test_pool_share(void) {
        struct sim s;
        double fa;

        /* Alone, the capped pool gets its own share, not the daemon's. */
        sim_init(&s, 1, 2, 3);
        s.pools[0].pp.share = pacer_pool_share(0.25, 1);
        s.pools[2].pp.share = pacer_pool_share(0, 1);
        sim_add_work(&s, 0, 128 * MiB);
        sim_until_parked(&s);
        CHECK_EQ_U64(s.pools[0].released, 128 * MiB);
        fa = sim_fraction(&s);
        CHECKF(fa <= 0.0025 * 1.05 && fa >= 0.0025 * 0.8, "capped pool used %.4f%%", fa * 100);
        printf("share: capped pool (0.25%%) alone used %.4f%%\n", fa * 100);

        /* With others: the uncapped one has the rest of the budget, the one
         * with scavenge_percent = 0 nothing, and the scavenger still parks. */
        sim_add_work(&s, 0, 32 * MiB);
        sim_add_work(&s, 1, 32 * MiB);
        sim_add_work(&s, 2, 32 * MiB);
        sim_until_parked(&s);
        CHECK_EQ_U64(s.pools[0].released, 160 * MiB);
        CHECK_EQ_U64(s.pools[1].released, 32 * MiB);
        CHECK_EQ_U64(s.pools[2].released, 0);
        CHECKF(s.pools[1].done_at < s.pools[0].done_at, "uncapped pool done at %.2fs, capped %.2fs",
               s.pools[1].done_at / 1e9, s.pools[0].done_at / 1e9);
        CHECKF(sim_fraction(&s) <= 0.015, "total %.4f%%", sim_fraction(&s) * 100);
}

/* A controller failure mid-run: the trace mark appears once, pacing recovers. */
static void test_sim_reset(void) {
        struct sim s;

        sim_init(&s, 1, 2, 1);
        sim_add_work(&s, 0, 16 * MiB);
        sim_until_parked(&s);
        s.pacer.controller.err_integral = INFINITY;     /* the assumptions broke */
        sim_add_work(&s, 0, 16 * MiB);
        sim_until_parked(&s);
        CHECK(s.resets == 1);
        CHECK(s.pacer.controller.input_overflow);
        CHECK_EQ_U64(sim_released(&s), 32 * MiB);
        s.resets = 0;
        s.worked = 0;
        s.slept = s.waited = 0;
        for (size_t i = 0; i < 1; i++)
                s.pools[i].released = 0;
        sim_add_work(&s, 0, 256 * MiB);
        sim_until_parked(&s);
        sim_verify("reset/recovered", &s, 256 * MiB, 1);
}

/* ---- refaults -------------------------------------------------------- */

static void test_refaults_count(void) {
        /* A memfd page faults once when first touched: growth is not refaulting. */
        CHECK_EQ_U64(pacer_refaults(1000, 1000 * PHYS, PHYS), 0);
        CHECK_EQ_U64(pacer_refaults(1000, 400 * PHYS, PHYS), 600);
        CHECK_EQ_U64(pacer_refaults(10, 2 * MiB, PHYS), 0);
        CHECK_EQ_U64(pacer_refaults(0, 0, PHYS), 0);
        CHECK_EQ_U64(pacer_refaults(UINT64_MAX, 0, PHYS), UINT64_MAX);
}

static void test_reused_since(void) {
        uint64_t mark = PACER_REUSED_UNKNOWN;

        /* The first reading only sets the mark: a heap restored with a big count is not a refault. */
        CHECK_EQ_U64(pacer_reused_since(&mark, 64 * MiB), 0);
        CHECK_EQ_U64(mark, 64 * MiB);
        CHECK_EQ_U64(pacer_reused_since(&mark, 80 * MiB), 16 * MiB);
        CHECK_EQ_U64(pacer_reused_since(&mark, 80 * MiB), 0);
        /* Down (pages given back untouched, or a client's scribble): nothing, and counting goes on from there. */
        CHECK_EQ_U64(pacer_reused_since(&mark, 8 * MiB), 0);
        CHECK_EQ_U64(pacer_reused_since(&mark, 12 * MiB), 4 * MiB);
        /* A saturated count (a scribble) counts once, and the next reading starts afresh. */
        CHECK_EQ_U64(pacer_reused_since(&mark, UINT64_MAX), UINT64_MAX - 12 * MiB);
        CHECK_EQ_U64(pacer_reused_since(&mark, 20 * MiB), 0);
        CHECK_EQ_U64(pacer_reused_since(&mark, 24 * MiB), 4 * MiB);
}

static void test_refault_goal(void) {
        struct pacer_refault rf = {};
        unsigned extra;

        /* Nothing released lately: faults are not the scavenger's doing. */
        CHECK(pacer_refault_update(&rf, 0, 64 * MiB) == 0);

        /* 32 MiB released, 16 MiB of it faulted back at once (50% > 25%): extra room. */
        CHECK(pacer_refault_update(&rf, 32 * MiB, 16 * MiB) == PACER_REFAULT_STEP);
        /* Again and again: it grows by steps, bounded. */
        for (int i = 0; i < 20; i++)
                extra = pacer_refault_update(&rf, 32 * MiB, 16 * MiB);
        CHECK(extra == PACER_REFAULT_EXTRA_MAX);

        /* Refaults stop: the extra decays back to nothing. */
        extra = pacer_refault_update(&rf, 32 * MiB, 0);
        CHECK(extra == PACER_REFAULT_EXTRA_MAX / 2);
        for (int i = 0; i < 10; i++)
                extra = pacer_refault_update(&rf, 0, 0);
        CHECK(extra == 0);

        /* Under the ratio: 4 MiB refaulted of 32 MiB released (12.5%) raises nothing. */
        rf = (struct pacer_refault) {};
        CHECK(pacer_refault_update(&rf, 32 * MiB, 4 * MiB) == 0);

        /* The window remembers earlier generations: a refault in the
         * generation after a release counts against that release. */
        rf = (struct pacer_refault) {};
        CHECK(pacer_refault_update(&rf, 32 * MiB, 0) == 0);
        CHECK(pacer_refault_update(&rf, 0, 8 * MiB) == PACER_REFAULT_STEP); /* 8 > 25% of 16 */

        /* Noise: below PACER_REFAULT_MIN_BYTES nothing happens, whatever the ratio. */
        rf = (struct pacer_refault) {};
        CHECK(pacer_refault_update(&rf, 64 * KiB, PACER_REFAULT_MIN_BYTES - 4096) == 0);
}

static void test_pressure_cap(void) {
        const int64_t ms = 1000000;

        /* 50%: 10 ms of release, then nothing until 20 ms after it began. */
        CHECK(pacer_pressure_next(100 * ms, 10 * ms, 50) == 120 * ms);
        /* 10%: ten times the work. */
        CHECK(pacer_pressure_next(0, 5 * ms, 10) == 50 * ms);
        /* 100% and more: only the work itself. */
        CHECK(pacer_pressure_next(7, 3, 100) == 10);
        CHECK(pacer_pressure_next(7, 3, 250) == 10);
        /* 0: pressure release off. */
        CHECK(pacer_pressure_next(0, 1, 0) == INT64_MAX);
        /* A clock that saw nothing: no pause. */
        CHECK(pacer_pressure_next(42, 0, 50) == 42);
        /* No overflow. */
        CHECK(pacer_pressure_next(INT64_MAX / 2, INT64_MAX / 2, 1) == INT64_MAX);
}

int main(void) {
        test_pi_table();
        test_pi_integral();
        test_sleep_basics();
        test_controller_reset();
        test_pick();
        test_scavenger(1);
        test_scavenger(2);
        test_scavenger_percents();
        test_budget_shared();
        test_pool_share();
        test_sim_reset();
        test_refaults_count();
        test_reused_since();
        test_refault_goal();
        test_pressure_cap();
        return TEST_END();
}

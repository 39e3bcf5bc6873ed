/* SPDX-License-Identifier: MIT */
/*
 * The background scavenger's pacing policy, ported from the seed's
 * scavengerState (mgcscavenge.go) and piController (mgcpacer.go). Pure:
 * the caller supplies time and does the releasing.
 */

#include <assert.h>
#include <math.h>

#include "pacer.h"

/*
 * Ports piController.reset (mgcpacer.go): forget the integral, keep the
 * tuning and the error flags (they say why it was reset).
 */
void pacer_pi_reset(struct pacer_pi *c) {
        assert(c);
        c->err_integral = 0;
}

/*
 * The controller of scavengerState.init: input is the CPU fraction used,
 * setpoint the ideal one, output the ratio of time worked to time slept, so
 * that output rises with input's shortfall (a direct relationship is easier
 * to tune than the sleep time itself). Tuned loosely by Ziegler-Nichols in
 * Go; the wide clamp lets the controller hunt.
 */
void pacer_pi_init(struct pacer_pi *c) {
        assert(c);
        *c = (struct pacer_pi) {
                .kp = 0.3375,
                .ti = 3.2e6,
                .tt = 1e9,
                .min = 0.001,
                .max = 1000.0,
        };
}

/*
 * Ports piController.next (mgcpacer.go). A PI controller with clamping and
 * back-calculation anti-windup (the tt term pulls the integral back while the
 * output is clamped). A non-finite output or integral means the assumption
 * of a proportional response broke down; the controller resets and reports
 * failure so that the caller can fall back to something conservative.
 */
bool pacer_pi_next(struct pacer_pi *c, double input, double setpoint, double period, double *ret) {
        double prop, raw, out;

        assert(c);
        assert(ret);

        prop = c->kp * (setpoint - input);
        raw = prop + c->err_integral;
        if (!isfinite(raw)) {
                pacer_pi_reset(c);
                c->input_overflow = true;
                *ret = c->min;
                return false;
        }
        out = raw < c->min ? c->min : raw > c->max ? c->max : raw;

        if (c->ti != 0 && c->tt != 0) {
                c->err_integral += (c->kp * period / c->ti) * (setpoint - input) +
                                   (period / c->tt) * (out - raw);
                if (!isfinite(c->err_integral)) {
                        pacer_pi_reset(c);
                        c->err_overflow = true;
                        *ret = c->min;
                        return false;
                }
        }
        *ret = out;
        return true;
}

void pacer_init(struct pacer *p, double scavenge_percent) {
        assert(p);
        *p = (struct pacer) {
                .sleep_ratio = PACER_STARTING_SLEEP_RATIO,
        };
        pacer_pi_init(&p->controller);
        pacer_set_percent(p, scavenge_percent);
}

void pacer_set_percent(struct pacer *p, double scavenge_percent) {
        assert(p);
        p->target = scavenge_percent > 0 ? scavenge_percent / 100.0 : 0;
}

/*
 * From scavengerState.sleep: a burst that did not fill PACER_MIN_WORK_NS
 * (not enough work) would ask for a sleep too short to be reliable; pretend
 * it was that long, which only makes the sleep longer. Go then multiplies by
 * 1 + scavengeCostRatio, which is 0 on Linux; refault cost is measured
 * separately here (kernel.c), so no factor either.
 */
double pacer_credit(double worked) {
        return worked < PACER_MIN_WORK_NS ? PACER_MIN_WORK_NS : worked;
}

int64_t pacer_sleep_ns(const struct pacer *p, double credited) {
        double ns;

        assert(p);
        ns = credited / p->sleep_ratio;
        if (!(ns < 9e18))
                return INT64_C(9000000000000000000);
        return (int64_t) ns;
}

/*
 * The rest of scavengerState.sleep. While cooling down from a controller
 * failure, the ratio stays at the conservative start value and the time
 * worked and slept counts against the cooldown (sloppy on purpose: it only
 * has to outlast a transient). Otherwise the measured fraction of the
 * machine's CPU capacity drives the controller towards the target.
 */
void pacer_slept(struct pacer *p, double credited, int64_t slept, unsigned cpus) {
        double fraction, ratio;

        assert(p);

        if (p->cooldown_ns > 0) {
                int64_t t = slept + (int64_t) credited;

                if (t > p->cooldown_ns)
                        p->cooldown_ns = 0;
                else
                        p->cooldown_ns -= t;
                return;
        }

        fraction = credited / (((double) slept + credited) * (double) cpus);
        p->last_fraction = fraction;
        if (!pacer_pi_next(&p->controller, fraction, p->target, (double) slept + credited, &ratio)) {
                p->sleep_ratio = PACER_STARTING_SLEEP_RATIO;
                p->cooldown_ns = PACER_COOLDOWN_NS;
                p->controller_reset = true;      /* controllerFailed */
                return;
        }
        p->sleep_ratio = ratio;
}

bool pacer_take_reset(struct pacer *p) {
        bool r;

        assert(p);
        r = p->controller_reset;
        p->controller_reset = false;
        return r;
}

/*
 * Ports scavengerState.run. Works in quanta of PACER_QUANTUM (the daemon's
 * pacer_run_for in bigger ones: pacer.h says why) until PACER_MIN_WORK_NS of work is
 * done or nothing is left. When the clock saw no time pass, assume the
 * empirical 10 µs per physical page rather than nothing, so that a coarse
 * clock cannot make the scavenger think it is free.
 */
void pacer_run(struct pacer_burst *b, pacer_scavenge_fn scavenge, void *userdata,
               uint64_t phys_page_size) {
        pacer_run_for(b, PACER_MIN_WORK_NS, PACER_QUANTUM, scavenge, userdata, phys_page_size);
}

void pacer_run_for(struct pacer_burst *b, double budget_ns, uint64_t quantum, pacer_scavenge_fn scavenge,
                   void *userdata, uint64_t phys_page_size) {
        assert(b);
        assert(scavenge);
        assert(phys_page_size > 0);

        *b = (struct pacer_burst) {};
        while (b->worked < budget_ns) {
                int64_t r, ns = 0;

                r = scavenge(userdata, quantum, &ns);
                if (r < 0) {
                        b->error = (int) r;
                        break;
                }
                if (r == 0)
                        break;
                if (ns <= 0)
                        b->worked += PACER_APPROX_NS_PER_PHYS_PAGE * (double) ((uint64_t) r / phys_page_size);
                else
                        b->worked += (double) ns;
                b->released += (uint64_t) r;
        }
}

uint64_t pacer_pool_excess(const struct pacer_pool *pp) {
        assert(pp);
        if (pp->goal == UINT64_MAX || pp->retained <= pp->goal)
                return 0;
        return pp->retained - pp->goal;
}

bool pacer_pool_ready(const struct pacer_pool *pp, int64_t now) {
        assert(pp);
        return pacer_pool_excess(pp) > 0 && !pp->exhausted && pp->share != 0 &&
               pp->eligible_at <= now;
}

/* The furthest over goal first: it has the most to give back. */
ssize_t pacer_pick(struct pacer_pool *const *pools, size_t n, int64_t now) {
        ssize_t best = -1;
        uint64_t best_excess = 0;

        for (size_t i = 0; i < n; i++) {
                uint64_t e;

                if (!pacer_pool_ready(pools[i], now))
                        continue;
                e = pacer_pool_excess(pools[i]);
                if (e > best_excess) {
                        best = (ssize_t) i;
                        best_excess = e;
                }
        }
        return best;
}

int64_t pacer_next_ready(struct pacer_pool *const *pools, size_t n, int64_t now) {
        int64_t t = INT64_MAX;

        for (size_t i = 0; i < n; i++) {
                const struct pacer_pool *pp = pools[i];

                if (pacer_pool_excess(pp) == 0 || pp->exhausted || pp->share == 0)
                        continue;
                t = pp->eligible_at < t ? pp->eligible_at : t;
        }
        return t != INT64_MAX && t < now ? now : t;
}

void pacer_pool_charge(struct pacer_pool *pp, int64_t start, double worked, unsigned cpus) {
        int64_t base;
        double wait;

        assert(pp);
        if (pp->share <= 0 || cpus == 0)
                return;
        base = pp->eligible_at > start ? pp->eligible_at : start;
        wait = worked / (pp->share * (double) cpus);
        pp->eligible_at = wait < 9e18 - (double) base ? base + (int64_t) wait : INT64_MAX;
}

/* A pool's scavenge_percent can only lower its share of the daemon's budget. */
double pacer_pool_share(double pool_percent, double daemon_percent) {
        if (daemon_percent <= 0 || pool_percent == 0)
                return 0;
        if (pool_percent < 0 || pool_percent >= daemon_percent)
                return -1;
        return pool_percent / 100.0;
}

/*
 * The window is the bytes released in this and the last generations (each
 * older one counting half as much), so a refault in the generation after a
 * release is set against that release. Refaults with nothing released
 * lately are not the scavenger's doing (first touches the growth estimate
 * missed, pages shared by several processes) and raise nothing.
 */
unsigned pacer_refault_update(struct pacer_refault *rf, uint64_t released, uint64_t refaulted) {
        double window;

        assert(rf);
        window = rf->released_recent / 2 + (double) released;
        rf->released_recent = window;
        if (refaulted >= PACER_REFAULT_MIN_BYTES && window > 0 &&
            (double) refaulted > PACER_REFAULT_RATIO * window) {
                rf->extra_percent += PACER_REFAULT_STEP;
                if (rf->extra_percent > PACER_REFAULT_EXTRA_MAX)
                        rf->extra_percent = PACER_REFAULT_EXTRA_MAX;
        } else
                rf->extra_percent /= 2;
        return rf->extra_percent;
}

uint64_t pacer_refaults(uint64_t faults, uint64_t grown_bytes, uint32_t phys_page_size) {
        uint64_t grown;

        assert(phys_page_size > 0);
        grown = grown_bytes / phys_page_size;
        return faults > grown ? faults - grown : 0;
}

/*
 * The counter lives in the heap's header, which every client may write: a
 * value that went down (or a client's scribble) counts nothing, and what it
 * can do at worst is raise its own pool's goal, which is capped
 * (PACER_REFAULT_EXTRA_MAX).
 */
uint64_t pacer_reused_since(uint64_t *mark, uint64_t now) {
        uint64_t d;

        assert(mark);
        d = *mark != PACER_REUSED_UNKNOWN && now > *mark ? now - *mark : 0;
        *mark = now;
        return d;
}

int64_t pacer_pressure_next(int64_t start, int64_t worked, double percent) {
        double pause;

        if (!(percent > 0))
                return INT64_MAX;
        if (percent >= 100 || worked <= 0)
                return start + (worked > 0 ? worked : 0);
        pause = (double) worked / (percent / 100.0);
        if (!(pause < 9e18 - (double) start))
                return INT64_MAX;
        return start + (int64_t) pause;
}

/* SPDX-License-Identifier: MIT */
/*
 * The background scavenger on sd-event: carries out what pacer.c decides.
 *
 * Per pool, a generation timer (generation_interval) ends a generation
 * (scavengeStartGen), traces it, and sets the next goal; it also fires a
 * third and two thirds of the way, for a reap of client threads' caches
 * alone, so that a thread's cache comes back within one generation of the
 * thread going idle (reap.c: idle is "no operation since the last reap",
 * so the second reap after its last operation takes it: at most two thirds
 * of a generation later). A reap that finds no cache active costs two
 * short lock holds (the reap, the job's figures) and no barrier; a parked
 * pool has no timer at all. One background scavenger serves every pool:
 * it wakes when a generation finds a pool over its goal, works a burst
 * (>= 1 ms in 2 MiB quanta, bgscavenge's run), sleeps worked / sleepRatio
 * on a one-shot timer, and parks -- no timer armed -- when no pool has
 * work. The seed's goroutine park/ready/sleep becomes the
 * states of that one timer.
 *
 * The work itself runs on the pools' workers (pool_post): a generation is
 * a job, so is a forced scavenge, and a burst is one job on the pool
 * furthest over its goal, then, while the burst has worked less than 1 ms
 * and another pool has work, one on the next (what pacer_run's loop does
 * across pools). Time worked is the worker thread's CPU time. The event
 * loop keeps the policy and sees the pools' figures as their jobs checked
 * them.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "log.h"
#include "macro.h"
#include "pacer.h"
#include "pool.h"
#include "poolwork.h"
#include "scavenger.h"
#include "trace.h"

enum scav_state {
        SCAV_PARKED,    /* no timer: nothing to do until a generation or a wake-up */
        SCAV_SLEEPING,  /* paced sleep after a burst; the controller learns from it */
        SCAV_WAITING,   /* pools with work have used their own share; not a paced sleep */
        SCAV_RUNNABLE,  /* woken: run at the next loop iteration */
        SCAV_RUNNING,   /* a burst's job is on a pool's worker */
};

/* What a generation compares to decide that nothing happened in the pool. */
struct gen_snapshot {
        uint64_t inuse, heap_sys, released;
};

/* Reaps of client threads' caches alone between two generations: an idle
 * thread's caches are back two reaps after its last operation, within 2/3
 * of a generation. */
#define REAPS_BETWEEN_GENS 2u

struct pool_scav {
        scavenger *s;
        struct pool *pool;
        sd_event_source *gen_timer;
        struct pacer_pool pp;
        uint64_t forced_this_gen;  /* forced bytes already traced as "(forced)" */
        double burst_worked;       /* ns of this burst spent on this pool */
        struct gen_snapshot last;  /* the heap when the last generation ended */
        bool gen_parked;           /* no generation timer armed: nothing changed, nothing to do */
        bool gen_running;          /* a generation job is on the worker */
        int64_t last_wake;         /* CLOCK_MONOTONIC ns of the last scavenger_wake() */
        uint64_t fault_mark;       /* kernel_watch_faults_since() */
        uint64_t fault_heap_sys;   /* heap_sys when faults were last counted */
        uint64_t reused_mark;      /* the heap's released_reused then (pacer_reused_since) */
        struct pacer_refault rf;
        bool tc_held;              /* thread caches held free pages at the last reap (issue 13) */
        unsigned reaps_left;       /* reaps of thread caches alone before the next generation... */
        uint64_t gen_at;           /* ...which starts at this CLOCK_MONOTONIC usec */
};


struct scavenger {
        sd_event *event;
        struct trace trace;
        struct pacer pacer;
        double percent;            /* the daemon's scavenge_percent */
        uint64_t gen_interval_usec;
        uint32_t phys_page_size;
        bool stopping;             /* no new work: the daemon is going */

        sd_event_source *timer;    /* the background scavenger's one timer */
        enum scav_state state;
        int64_t sleep_start;       /* CLOCK_MONOTONIC ns */
        double credited;           /* the burst's work as the controller counts it */
        int64_t burst_start;
        struct pacer_burst burst;  /* the burst under way, over its jobs */

        struct pool_scav **pools;
        struct pacer_pool **pps;   /* pools[i]->pp, the view pacer_pick takes */
        size_t n_pools;

        void (*status_changed)(void *userdata);
        void *status_userdata;
        kernel_watch *kernel;      /* fault counters, or NULL */
};

static int64_t clock_ns(clockid_t id) {
        struct timespec ts;

        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The seed's GOMAXPROCS: the CPUs this daemon may run on. */
static unsigned daemon_cpus(void) {
        cpu_set_t set;
        int n;

        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return 1;
        n = CPU_COUNT(&set);
        return n > 0 ? (unsigned) n : 1;
}

static uint64_t ns_to_usec_up(int64_t ns) {
        return ns <= 0 ? 0 : (uint64_t) DIV_ROUND_UP(ns, 1000);
}

static int bg_timer_cb(sd_event_source *src, uint64_t usec, void *userdata);

/* Arms the background scavenger's timer for CLOCK_MONOTONIC time at_ns. */
static int bg_arm(scavenger *s, int64_t at_ns) {
        uint64_t usec = ns_to_usec_up(at_ns);
        int r;

        if (!s->timer) {
                /* 1 µs accuracy: sleeps are tens of ms, and sd-event's default slack is 250 ms. */
                r = sd_event_add_time(s->event, &s->timer, CLOCK_MONOTONIC, usec, 1, bg_timer_cb, s);
                if (r < 0)
                        return log_error_errno(r, "scavenger: failed to add timer: %m");
                (void) sd_event_source_set_description(s->timer, "scavenger");
                return 0;
        }
        r = sd_event_source_set_time(s->timer, usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                return log_error_errno(r, "scavenger: failed to arm timer: %m");
        return 0;
}

static void bg_park(scavenger *s) {
        s->state = SCAV_PARKED;
        if (s->timer)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
}

/* Ports scavengerState.wake: a parked (or share-waiting) scavenger runs now. */
static void bg_wake(scavenger *s) {
        if (s->state != SCAV_PARKED && s->state != SCAV_WAITING)
                return;
        if (bg_arm(s, clock_ns(CLOCK_MONOTONIC)) >= 0)
                s->state = SCAV_RUNNABLE;
}

/* ---- bursts ---- */

/* One pool's part of a burst, on its worker. */
struct burst_job {
        struct pool_job pj;
        scavenger *s;
        struct poolwork_burst w;
};

static void burst_run(struct pool_job *pj) {
        struct burst_job *j = (struct burst_job *) pj;

        poolwork_burst(pj->pool->heap, &j->w);
        pj->error = j->w.b.error;
}

static void bg_burst_step(scavenger *s);

static void burst_done(struct pool_job *pj) {
        struct burst_job *j = (struct burst_job *) pj;
        struct pool_scav *ps = pj->pool->scav;
        scavenger *s = j->s;

        if (ps && (pj->cancelled || pj->pool->quarantined)) {
                ps->pp.goal = HEAP_GOAL_NONE;
                ps->pp.exhausted = true;
        } else if (ps) {
                s->burst.released += j->w.b.released;
                s->burst.worked += j->w.b.worked;
                ps->burst_worked += j->w.b.worked;
                if (j->w.b.error)
                        log_warning_errno(j->w.b.error, "pool %s: scavenging failed: %m", pj->pool->cfg.name);
                if (pj->have_stats)
                        ps->pp.retained = pj->stats.retained;
                if (j->w.exhausted)
                        ps->pp.exhausted = true;
        }
        bg_burst_step(s);
}

static void pools_refresh(scavenger *s) {
        for (size_t i = 0; i < s->n_pools; i++) {
                struct pool_scav *ps = s->pools[i];

                if (ps->pool->quarantined) {
                        ps->pp.goal = HEAP_GOAL_NONE;
                        continue;
                }
                ps->pp.retained = ps->pool->view.retained;
                ps->pp.share = pacer_pool_share(ps->pool->cfg.scavenge_percent, s->percent);
        }
}

/* The end of a burst: charge the pools' shares, then sleep, wait for a
 * pool's share, or park. */
static void bg_burst_end(scavenger *s) {
        unsigned cpus = daemon_cpus();
        int64_t next;

        for (size_t i = 0; i < s->n_pools; i++) {
                pacer_pool_charge(&s->pools[i]->pp, s->burst_start, s->pools[i]->burst_worked, cpus);
                s->pools[i]->burst_worked = 0;
        }

        if (s->burst.released == 0) {
                next = pacer_next_ready(s->pps, s->n_pools, clock_ns(CLOCK_MONOTONIC));
                if (next == INT64_MAX) {
                        bg_park(s);
                        /* Every pool at its goal: worth a STATUS= update. */
                        if (s->status_changed)
                                s->status_changed(s->status_userdata);
                        return;
                }
                if (bg_arm(s, next) < 0) {
                        bg_park(s);
                        return;
                }
                s->state = SCAV_WAITING;
                return;
        }

        s->credited = pacer_credit(s->burst.worked);
        s->sleep_start = clock_ns(CLOCK_MONOTONIC);
        if (bg_arm(s, s->sleep_start + pacer_sleep_ns(&s->pacer, s->credited)) < 0) {
                bg_park(s);
                return;
        }
        s->state = SCAV_SLEEPING;
}

/* pacer_run's loop over jobs: the pool furthest over its goal among those
 * ready at the start of the burst, until 1 ms of work or no pool left. */
static void bg_burst_step(scavenger *s) {
        while (!s->stopping && s->burst.worked < PACER_MIN_WORK_NS) {
                struct burst_job *j;
                ssize_t i;

                i = pacer_pick(s->pps, s->n_pools, s->burst_start);
                if (i < 0)
                        break;
                j = pool_job_new(s->pools[i]->pool, sizeof(*j), burst_run, burst_done);
                if (!j)
                        break;
                j->s = s;
                j->pj.check_on_error = true;
                j->w.goal = s->pools[i]->pp.goal;
                j->w.budget_ns = PACER_MIN_WORK_NS - s->burst.worked;
                j->w.phys_page_size = s->phys_page_size;
                s->state = SCAV_RUNNING;
                pool_post(&j->pj);
                return;
        }
        if (s->stopping) {
                bg_park(s);
                return;
        }
        bg_burst_end(s);
}

/*
 * bgscavenge's loop body, one turn per timer expiry: account the sleep that
 * ended (scavengerState.sleep's second half), then start a burst.
 */
static int bg_timer_cb(sd_event_source *src, uint64_t usec, void *userdata) {
        scavenger *s = userdata;
        int64_t now;

        now = clock_ns(CLOCK_MONOTONIC);
        if (s->state == SCAV_SLEEPING)
                pacer_slept(&s->pacer, s->credited, now - s->sleep_start, daemon_cpus());

        pools_refresh(s);
        s->burst_start = now;
        s->burst = (struct pacer_burst) {};
        bg_burst_step(s);
        return 0;
}

/* ---- generations ---- */

typedef void (*force_fn)(void *userdata, int64_t released, int64_t cpu_ns);

/* A generation, or a forced scavenge (which starts one first), on the pool's worker. */
struct gen_job {
        struct pool_job pj;
        scavenger *s;
        uint64_t memory_limit;
        struct heap_gen_report rep;
        bool gen_started;          /* rep is the generation that ended */
        bool tc_held;              /* thread caches still hold pages after the generation's reap */
        bool force;
        struct poolwork_force f;
        char why[64];
        force_fn cb;
        void *userdata;
};

static void gen_run(struct pool_job *pj) {
        struct gen_job *j = (struct gen_job *) pj;
        heap *h = pj->pool->heap;

        if (j->force) {
                j->f.memory_limit = j->memory_limit;
                pj->error = poolwork_force(h, &j->f, &pj->pool->wk_stop, pj->problem, sizeof(pj->problem));
                j->gen_started = j->f.gen_started;
                j->rep = j->f.rep;
                return;
        }
        pj->error = poolwork_start_gen(h, j->memory_limit, &j->rep, &j->tc_held);
        j->gen_started = pj->error >= 0;
}

/*
 * A generation ended: the trace line of the generation that ended
 * (printScavTrace from scavengeStartGen), and the goal for the next one
 * (gcPaceScavenger: peak in-use of the ended generation plus
 * retain_extra_percent, at most 95% of memory_limit). st: the pool's
 * figures right after the new generation started.
 */
static void generation_ended(struct pool_scav *ps, const struct heap_gen_report *rep, const struct heap_stats *st) {
        scavenger *s = ps->s;
        struct pool *p = ps->pool;
        uint64_t goal, work, grown, reused, faults = 0, refaulted = 0;
        unsigned extra;

        /* Forced scavenges of the generation were traced on their own lines. */
        work = rep->released - MIN(ps->forced_this_gen, rep->released);
        ps->forced_this_gen = 0;
        trace_gen(&s->trace, &(struct trace_gen) {
                .pool = p->cfg.name,
                .gen = rep->gen,
                .work = work,
                .total = rep->total,
                .inuse = rep->inuse,
                .retained = rep->retained,
                .controller_reset = s->trace.level > 0 && pacer_take_reset(&s->pacer),
        });

        /* Refaults: faults of the ended generation beyond what the heap's
         * growth explains. Released memory that comes back at once earns the
         * pool a higher goal (pacer_refault_update). Without BPF, the heap's
         * own count of released pages that allocation took back stands in
         * for them: each of those faults when first written. */
        grown = st->heap_sys > ps->fault_heap_sys ? st->heap_sys - ps->fault_heap_sys : 0;
        ps->fault_heap_sys = st->heap_sys;
        reused = pacer_reused_since(&ps->reused_mark, st->released_reused);
        if (s->kernel && kernel_watch_has_bpf(s->kernel)) {
                faults = kernel_watch_faults_since(s->kernel, p->id, &ps->fault_mark);
                refaulted = pacer_refaults(faults, grown, s->phys_page_size);
        } else
                refaulted = pacer_refaults(reused / s->phys_page_size, grown, s->phys_page_size);
        p->refaults += refaulted;
        extra = pacer_refault_update(&ps->rf, rep->released, refaulted * s->phys_page_size);

        goal = heap_retained_goal(rep->peak_inuse, st->retained, p->cfg.retain_extra_percent + extra,
                                  p->cfg.memory_limit, s->phys_page_size);
        /* The one word of the meta region the event loop writes: the daemon's own (see pool.h). */
        heap_set_goal(p->heap, goal);
        p->goal = goal;
        ps->pp.goal = goal;
        ps->pp.exhausted = false;
        ps->pp.retained = st->retained;
        ps->pp.share = pacer_pool_share(p->cfg.scavenge_percent, s->percent);

        trace_pacing(&s->trace, &(struct trace_pacing) {
                .pool = p->cfg.name,
                .gen = rep->gen + 1,
                .goal = goal,
                .retained = ps->pp.retained,
                .sleep_ratio = s->pacer.sleep_ratio,
                .cpu_fraction = s->pacer.last_fraction,
                .refaults = refaulted,
                .goal_extra = extra,
                .faults = faults,
        });

        if (pacer_pool_ready(&ps->pp, clock_ns(CLOCK_MONOTONIC)))
                bg_wake(s);
}

/* The timer for what comes next: the reap reaps_left before the generation, or the generation. */
static void gen_arm_next(struct pool_scav *ps) {
        uint64_t step = ps->s->gen_interval_usec / (REAPS_BETWEEN_GENS + 1);

        (void) sd_event_source_set_time(ps->gen_timer, ps->gen_at - ps->reaps_left * step);
        (void) sd_event_source_set_enabled(ps->gen_timer, SD_EVENT_ONESHOT);
}

/* The next generation an interval from now, and the reaps before it. */
static void gen_arm(struct pool_scav *ps) {
        ps->gen_parked = false;
        ps->gen_at = ns_to_usec_up(clock_ns(CLOCK_MONOTONIC)) + ps->s->gen_interval_usec;
        ps->reaps_left = REAPS_BETWEEN_GENS;
        gen_arm_next(ps);
}

/* A parked pool's generations start again, one interval from now. */
static void gen_unpark(struct pool_scav *ps) {
        if (ps->gen_parked && !ps->gen_running && !ps->pool->quarantined)
                gen_arm(ps);
}

/*
 * Whether a pool may stop running generations: nothing happened in it
 * during the generation that just ended (same in-use, grown heap and
 * released bytes as when it began, and in-use never rose above where it
 * was: no allocation or free in between that the totals hide), and the
 * background scavenger has nothing to do for it (within its goal, or
 * background release off, or the whole generation searched without finding
 * anything). Pure.
 */
static bool gen_may_park(const struct gen_snapshot *before, const struct gen_snapshot *now,
                         uint64_t peak_inuse, const struct pacer_pool *pp, bool searched_all) {
        if (now->inuse != before->inuse || now->heap_sys != before->heap_sys ||
            now->released != before->released || peak_inuse > before->inuse)
                return false;
        return pacer_pool_excess(pp) == 0 || pp->share == 0 || searched_all;
}

/*
 * Generations run every generation_interval while something happens in a
 * pool. A pool in which nothing changed during a generation and in which
 * the background scavenger has nothing to do parks its generation timer:
 * an idle daemon has no timer armed at all. scavenger_wake() (a client
 * connects, disconnects or says it freed memory; pressure; reload) and
 * scavenger_force() start its generations again. A pool is not parked
 * within SCAV_WAKE_INTERVAL_MS of a wake-up: a client sends at most one
 * WAKE per interval, so frees that follow a WAKE closely are still seen by
 * the generations that WAKE started.
 */
static void gen_done(struct pool_job *pj);

static struct gen_job *gen_job_new(struct pool_scav *ps) {
        struct gen_job *j = pool_job_new(ps->pool, sizeof(*j), gen_run, gen_done);

        if (!j)
                return NULL;
        j->s = ps->s;
        j->pj.check_on_error = true;
        j->memory_limit = ps->pool->cfg.memory_limit;
        return j;
}

/* A reap between generations: a job of its own, in the generation's place
 * (gen_running), which then arms the next reap or the generation. */
struct reap_job {
        struct pool_job pj;
        uint64_t gen_at;        /* the schedule it belongs to (ps->gen_at when posted) */
        bool tc_held;
};

static void reap_run(struct pool_job *pj) {
        struct reap_job *j = (struct reap_job *) pj;

        pj->error = poolwork_reap_caches(pj->pool->heap, &j->tc_held);
}

static void reap_done(struct pool_job *pj) {
        struct reap_job *j = (struct reap_job *) pj;
        struct pool_scav *ps = pj->pool->scav;

        if (!ps)
                return;
        ps->gen_running = false;
        if (pj->cancelled || pj->pool->quarantined || ps->s->stopping)
                return;
        if (pj->error >= 0)
                ps->tc_held = j->tc_held;
        /* A reload may have re-armed the schedule meanwhile (gen_arm): then
         * its reaps are all still to come. Either way the timer is set
         * again, in case it fired while this job ran (gen_timer_cb skips). */
        if (ps->gen_at == j->gen_at)
                ps->reaps_left--;
        gen_arm_next(ps);
        if (ps->s->status_changed)
                ps->s->status_changed(ps->s->status_userdata);
}

static int reap_between(struct pool_scav *ps) {
        struct reap_job *j = pool_job_new(ps->pool, sizeof(*j), reap_run, reap_done);

        if (!j)
                return -ENOMEM;
        j->pj.check_on_error = true;
        j->gen_at = ps->gen_at;
        ps->gen_running = true;
        pool_post(&j->pj);
        return 0;
}

static int gen_timer_cb(sd_event_source *src, uint64_t usec, void *userdata) {
        struct pool_scav *ps = userdata;
        struct gen_job *j;

        if (ps->gen_running || ps->s->stopping)
                return 0;
        if (ps->reaps_left > 0) {
                if (reap_between(ps) < 0)
                        gen_arm(ps);
                return 0;
        }
        j = gen_job_new(ps);
        if (!j) {
                gen_arm(ps);
                return 0;
        }
        ps->gen_running = true;
        pool_post(&j->pj);
        return 0;
}

/* After a timer's generation: run the next one an interval from now, or park. */
static void gen_after(struct pool_scav *ps, const struct heap_gen_report *rep, const struct heap_stats *st,
                      bool searched_all) {
        scavenger *s = ps->s;
        struct gen_snapshot now;
        bool changed;

        now = (struct gen_snapshot) { .inuse = st->inuse, .heap_sys = st->heap_sys, .released = st->released };
        changed = memcmp(&now, &ps->last, sizeof(now)) != 0;
        if (gen_may_park(&ps->last, &now, rep->peak_inuse, &ps->pp, searched_all) && !ps->tc_held &&
            clock_ns(CLOCK_MONOTONIC) - ps->last_wake >= (int64_t) SCAV_WAKE_INTERVAL_MS * 1000000) {
                ps->gen_parked = true;
                log_debug("pool %s: idle at generation %" PRIu64 ", generations parked", ps->pool->cfg.name,
                          st->gen);
        } else
                gen_arm(ps);
        ps->last = now;
        if (changed && s->status_changed)
                s->status_changed(s->status_userdata);
}

/* After a forced scavenge: ports mheap.scavengeAll's second half, a "(forced)" trace line. */
static void force_after(struct pool_scav *ps, struct gen_job *j, const struct heap_stats *st) {
        scavenger *s = ps->s;
        struct pool *p = ps->pool;

        ps->forced_this_gen += (uint64_t) j->f.released;
        ps->pp.retained = st->retained;
        gen_unpark(ps);
        trace_gen(&s->trace, &(struct trace_gen) {
                .pool = p->cfg.name,
                .gen = st->gen,
                .work = (uint64_t) j->f.released,
                .total = st->released,
                .inuse = st->inuse,
                .retained = st->retained,
                .forced = true,
                .why = j->why,
        });
        log_debug("pool %s: forced scavenge (%s) released %" PRIi64 " bytes", p->cfg.name, j->why, j->f.released);
}

static void gen_done(struct pool_job *pj) {
        struct gen_job *j = (struct gen_job *) pj;
        struct pool *p = pj->pool;
        struct pool_scav *ps = p->scav;
        scavenger *s = j->s;
        bool searched_all;

        if (ps && !j->force)
                ps->gen_running = false;
        if (!ps || pj->cancelled || p->quarantined) {
                if (ps && !j->force && s->status_changed)
                        s->status_changed(s->status_userdata);
                if (j->force && j->cb)
                        j->cb(j->userdata, -EUCLEAN, 0);
                return;
        }
        if (j->f.skipped) {
                if (j->cb)
                        j->cb(j->userdata, 0, 0);
                return;
        }
        if (!j->gen_started || (!j->force && !pj->have_stats)) {
                log_warning_errno(pj->error, "pool %s: %s failed: %m", p->cfg.name,
                                  j->force ? "forced scavenge" : "starting a scavenge generation");
                if (!j->force)
                        gen_arm(ps);
                else if (j->cb)
                        j->cb(j->userdata, pj->error, j->f.cpu_ns);
                return;
        }

        searched_all = ps->pp.exhausted;
        generation_ended(ps, &j->rep, j->force ? &j->f.gen_stats : &pj->stats);
        if (!j->force) {
                ps->tc_held = j->tc_held;
                gen_after(ps, &j->rep, &pj->stats, searched_all);
                return;
        }
        if (pj->have_stats)
                force_after(ps, j, &pj->stats);
        if (j->cb)
                j->cb(j->userdata, pj->error < 0 ? pj->error : j->f.released, j->f.cpu_ns);
}

int scavenger_new(sd_event *e, const struct daemon_config *cfg, scavenger **ret) {
        scavenger *s;
        long pg;

        assert(e);
        assert(cfg);
        assert(ret);

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        pg = sysconf(_SC_PAGESIZE);
        s->phys_page_size = pg > 0 ? (uint32_t) pg : 4096;
        s->state = SCAV_PARKED;
        pacer_init(&s->pacer, cfg->scavenge_percent);
        scavenger_reconfigure(s, cfg);
        *ret = s;
        return 0;
}

static void pool_scav_free(struct pool_scav *ps) {
        if (!ps)
                return;
        sd_event_source_disable_unref(ps->gen_timer);
        if (ps->pool)
                ps->pool->scav = NULL;
        free(ps);
}

scavenger *scavenger_free(scavenger *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_pools; i++)
                pool_scav_free(s->pools[i]);
        free(s->pools);
        free(s->pps);
        sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void scavenger_stop(scavenger *s) {
        s->stopping = true;
        bg_park(s);
        for (size_t i = 0; i < s->n_pools; i++)
                (void) sd_event_source_set_enabled(s->pools[i]->gen_timer, SD_EVENT_OFF);
}

void scavenger_reconfigure(scavenger *s, const struct daemon_config *cfg) {
        uint64_t old_interval = s->gen_interval_usec;

        assert(s);
        assert(cfg);

        trace_init(&s->trace, cfg->scavtrace);
        s->percent = cfg->scavenge_percent;
        pacer_set_percent(&s->pacer, cfg->scavenge_percent);
        s->gen_interval_usec = cfg->generation_interval_usec > 0 ? cfg->generation_interval_usec : 1000000;

        /* A new interval applies now; tunables may have given a parked pool work. */
        for (size_t i = 0; i < s->n_pools; i++) {
                struct pool_scav *ps = s->pools[i];

                if (!ps->gen_timer || ps->pool->quarantined)
                        continue;
                if (old_interval != s->gen_interval_usec || ps->gen_parked)
                        gen_arm(ps);
        }

        /* A pool's share, or the budget itself, may have changed. */
        pools_refresh(s);
        if (s->n_pools > 0)
                bg_wake(s);
}

int scavenger_add_pool(scavenger *s, struct pool *p) {
        _cleanup_free_ struct pool_scav *ps = NULL;
        struct pool_scav **pools;
        struct pacer_pool **pps;
        uint64_t now;
        int r;

        assert(s);
        assert(p);
        assert(!p->scav);

        ps = calloc(1, sizeof(*ps));
        if (!ps)
                return -ENOMEM;
        ps->s = s;
        ps->pool = p;
        ps->reused_mark = PACER_REUSED_UNKNOWN;
        ps->pp = (struct pacer_pool) {
                .goal = HEAP_GOAL_NONE,
                .share = pacer_pool_share(p->cfg.scavenge_percent, s->percent),
        };

        pools = reallocarray(s->pools, s->n_pools + 1, sizeof(*pools));
        if (!pools)
                return -ENOMEM;
        s->pools = pools;
        pps = reallocarray(s->pps, s->n_pools + 1, sizeof(*pps));
        if (!pps)
                return -ENOMEM;
        s->pps = pps;

        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return log_error_errno(r, "pool %s: failed to read the event clock: %m", p->cfg.name);
        r = sd_event_add_time(s->event, &ps->gen_timer, CLOCK_MONOTONIC, now + s->gen_interval_usec,
                              s->gen_interval_usec / 50, gen_timer_cb, ps);
        if (r < 0)
                return log_error_errno(r, "pool %s: failed to add the generation timer: %m", p->cfg.name);
        (void) sd_event_source_set_description(ps->gen_timer, "scavenger-generation");
        gen_arm(ps); /* the same time, and the reaps before it */

        s->pools[s->n_pools] = ps;
        s->pps[s->n_pools] = &ps->pp;
        s->n_pools++;
        p->scav = TAKE_PTR(ps);
        return 0;
}

void scavenger_remove_pool(scavenger *s, struct pool *p) {
        assert(s);
        assert(p);

        for (size_t i = 0; i < s->n_pools; i++) {
                if (s->pools[i]->pool != p)
                        continue;
                pool_scav_free(s->pools[i]);
                memmove(s->pools + i, s->pools + i + 1, (s->n_pools - i - 1) * sizeof(*s->pools));
                memmove(s->pps + i, s->pps + i + 1, (s->n_pools - i - 1) * sizeof(*s->pps));
                s->n_pools--;
                break;
        }
        p->scav = NULL;
        if (s->n_pools == 0)
                bg_park(s);
}

void scavenger_wake(scavenger *s, struct pool *p) {
        struct pool_scav *ps;

        assert(s);
        if (p) {
                ps = p->scav;
                if (!ps || p->quarantined)
                        return;
                ps->last_wake = clock_ns(CLOCK_MONOTONIC);
                gen_unpark(ps);
                /* Freed memory may lie where this generation already searched:
                 * let the next burst try once more. */
                ps->pp.exhausted = false;
                ps->pp.retained = p->view.retained;
                if (!pacer_pool_ready(&ps->pp, clock_ns(CLOCK_MONOTONIC)))
                        return;
        }
        bg_wake(s);
}

/*
 * Ports mheap.scavengeAll: a new generation so that the whole heap is
 * walked, then release unpaced, and a "(forced)" trace line. Used for
 * scavctl scavenge / scav_scavenge and for memory pressure.
 */
int scavenger_force(scavenger *s, struct pool *p, uint64_t bytes, bool if_free, const char *why,
                    void (*cb)(void *userdata, int64_t released, int64_t cpu_ns), void *userdata) {
        struct pool_scav *ps;
        struct gen_job *j;

        assert(s);
        assert(p);

        ps = p->scav;
        if (!ps)
                return -ENOENT;
        if (p->quarantined)
                return -EUCLEAN;
        j = gen_job_new(ps);
        if (!j)
                return -ENOMEM;
        j->force = true;
        j->f.if_free = if_free;
        j->f.bytes = bytes;
        snprintf(j->why, sizeof(j->why), "%s", why ?: "request");
        j->cb = cb;
        j->userdata = userdata;
        pool_post(&j->pj);
        return 0;
}

static void format_size(char *buf, size_t len, uint64_t bytes) {
        if (bytes >= (UINT64_C(1) << 30))
                snprintf(buf, len, "%.1fG", (double) bytes / (double) (UINT64_C(1) << 30));
        else
                snprintf(buf, len, "%.1fM", (double) bytes / (double) (UINT64_C(1) << 20));
}

void scavenger_status(scavenger *s, char *buf, size_t len) {
        uint64_t inuse = 0, retained = 0, released = 0, gen = 0;
        char a[32], b[32], c[32];

        assert(s);
        if (len == 0)
                return;
        for (size_t i = 0; i < s->n_pools; i++) {
                struct pool *p = s->pools[i]->pool;

                if (p->quarantined)
                        continue;
                inuse += p->view.inuse;
                retained += p->view.retained;
                released += p->view.released;
                gen = MAX(gen, p->view.gen);
        }
        format_size(a, sizeof(a), inuse);
        format_size(b, sizeof(b), retained);
        format_size(c, sizeof(c), released);
        snprintf(buf, len, "%s in use, %s retained, %s released, gen %" PRIu64 "%s", a, b, c, gen,
                 s->state == SCAV_PARKED ? "" : ", scavenging");
}

void scavenger_set_kernel(scavenger *s, kernel_watch *k) {
        assert(s);
        s->kernel = k;
}

void scavenger_set_status_callback(scavenger *s, void (*cb)(void *userdata), void *userdata) {
        assert(s);
        s->status_changed = cb;
        s->status_userdata = userdata;
}

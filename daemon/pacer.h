/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How fast the background scavenger may work: the seed's scavengerState
 * policy as pure functions of time and counters (no clock, no I/O), so that
 * it can be tested with a fake clock as Go's TestScavenger does. scavenger.c
 * measures time and releases memory; this file only decides.
 *
 * Times are nanoseconds. A CPU fraction is of the machine's capacity: worked
 * / ((worked + slept) * CPUs), CPUs being those the daemon may run on (the
 * seed's GOMAXPROCS).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Go's startingScavSleepRatio: conservative start, and the fallback after a reset. */
#define PACER_STARTING_SLEEP_RATIO 0.001
/* Go's minScavWorkTime: shorter bursts make sleeps too short to be reliable. */
#define PACER_MIN_WORK_NS 1e6
/* Go's scavengeQuantum: latency over throughput, a goroutine's turn on its P (pacer_run). */
#define PACER_QUANTUM (UINT64_C(64) << 10)
/*
 * The daemon's quantum (poolwork.c): a chunk, 2 MiB (heap_scavenge never
 * releases across one in a piece). A burst runs on the pool's worker
 * thread, not in anyone's allocation, and lasts at least PACER_MIN_WORK_NS
 * anyway (a 2 MiB punch-hole takes ~0.45 ms); a memfd's punch-hole costs
 * per call: releasing the 0.93 GiB a 1 GiB burst left took 0.31-0.33 CPU-s
 * in 64 KiB quanta and 0.20-0.22 in 2 MiB ones, the floor of 2 MiB pieces
 * (0.23 CPU-s per GiB); at the same 1% the goal came 4-6 s sooner.
 */
#define PACER_DAEMON_QUANTUM (UINT64_C(2048) << 10)
/* Go's approxWorkedNSPerPhysicalPage: cost assumed when the clock saw nothing. */
#define PACER_APPROX_NS_PER_PHYS_PAGE 10e3
/* How long the controller is bypassed after it failed. */
#define PACER_COOLDOWN_NS INT64_C(5000000000)

/* Ports piController (mgcpacer.go). */
struct pacer_pi {
        double kp, ti, tt;   /* proportional gain, integral time, anti-windup reset time */
        double min, max;     /* output clamp */
        double err_integral;
        bool err_overflow, input_overflow;
};

/* The scavenger's tuning of piController (scavengerState.init). */
void pacer_pi_init(struct pacer_pi *c);
/* Feeds one sample; false (and the controller reset, *ret = min) when the
 * output or the integral is not finite. */
bool pacer_pi_next(struct pacer_pi *c, double input, double setpoint, double period, double *ret);
void pacer_pi_reset(struct pacer_pi *c);

/* The sleep half of scavengerState. */
struct pacer {
        struct pacer_pi controller;
        double target;            /* ideal CPU fraction, scavenge_percent / 100 */
        double sleep_ratio;       /* worked : slept; higher = more aggressive */
        int64_t cooldown_ns;      /* controller bypassed while > 0 */
        bool controller_reset;    /* not yet reported by the trace */
        double last_fraction;     /* last measured CPU fraction, for scavtrace = 2 */
};

void pacer_init(struct pacer *p, double scavenge_percent);
/* Live reload: the controller keeps its state, only the setpoint moves. */
void pacer_set_percent(struct pacer *p, double scavenge_percent);

/* A burst shorter than PACER_MIN_WORK_NS is counted as that long (scavengerState.sleep). */
double pacer_credit(double worked);
/* How long to sleep after `credited` ns of work (from pacer_credit). */
int64_t pacer_sleep_ns(const struct pacer *p, double credited);
/* After the sleep: feeds the measured fraction to the controller, or
 * counts down the cooldown; a non-finite output resets the controller. */
void pacer_slept(struct pacer *p, double credited, int64_t slept, unsigned cpus);
/* Whether the next trace line should say "[controller reset]"; clears it. */
bool pacer_take_reset(struct pacer *p);

/*
 * One burst (scavengerState.run). scavenge releases at most nbytes from the
 * pool that should be served next and stores the time it took in *ret_ns
 * (0 if the clock did not move); it returns the bytes released, 0 when no
 * pool has work, or a negative errno. The burst ends after
 * PACER_MIN_WORK_NS of work or when nothing is left.
 */
typedef int64_t (*pacer_scavenge_fn)(void *userdata, uint64_t nbytes, int64_t *ret_ns);

struct pacer_burst {
        uint64_t released;
        double worked;       /* ns */
        int error;           /* first negative errno of scavenge, 0 if none */
};

void pacer_run(struct pacer_burst *b, pacer_scavenge_fn scavenge, void *userdata,
               uint64_t phys_page_size);
/* The same until budget_ns of work, in quanta of quantum bytes: the part of
 * a burst one pool's worker does (the daemon's burst goes on with the next
 * pool while it has less than PACER_MIN_WORK_NS). */
void pacer_run_for(struct pacer_burst *b, double budget_ns, uint64_t quantum, pacer_scavenge_fn scavenge,
                   void *userdata, uint64_t phys_page_size);

/*
 * Sharing the daemon's budget between pools. One background scavenger
 * serves the pools over their goals, the furthest over first. A pool whose
 * own scavenge_percent is below the daemon's gets at most that fraction of
 * the machine: after a burst of w ns on it, it waits until w / (share *
 * CPUs) ns after the burst began before it is served again.
 */
struct pacer_pool {
        uint64_t retained;   /* current, refreshed by the caller */
        uint64_t goal;       /* HEAP_GOAL_NONE (UINT64_MAX): nothing to do */
        double share;        /* own cap as a fraction; < 0: none (the daemon's) */
        bool exhausted;      /* scavenge found nothing more this generation */
        int64_t eligible_at; /* ns; before this the pool has used its share */
};

/* How far over its goal a pool is (0 if not over or nothing to do). */
uint64_t pacer_pool_excess(const struct pacer_pool *pp);
/* Whether the pool has work the background scavenger may do at now. */
bool pacer_pool_ready(const struct pacer_pool *pp, int64_t now);
/* The pool to serve next (furthest over goal among the ready), or -1. */
ssize_t pacer_pick(struct pacer_pool *const *pools, size_t n, int64_t now);
/* Earliest time a pool with work becomes ready, INT64_MAX if none will. */
int64_t pacer_next_ready(struct pacer_pool *const *pools, size_t n, int64_t now);
/* Charges a burst of worked ns that began at start to the pool's share. */
void pacer_pool_charge(struct pacer_pool *pp, int64_t start, double worked, unsigned cpus);
/* A pool's share from its scavenge_percent and the daemon's (< 0: unset). */
double pacer_pool_share(double pool_percent, double daemon_percent);

/*
 * Refaults (issue 6): pages released and then faulted back in at once cost
 * four times what releasing them saved. Per pool and generation, the
 * caller counts refaults (faults beyond the heap's growth: a memfd page
 * faults once when first touched, again only after it was punched out) and
 * the bytes the generation released. When the bytes refaulted exceed
 * PACER_REFAULT_RATIO of what the last generations released, the pool's
 * retained goal gets extra room: +PACER_REFAULT_STEP percentage points of
 * in-use per such generation, at most PACER_REFAULT_EXTRA_MAX on top of
 * retain_extra_percent; each generation without that many refaults halves
 * the extra.
 */
#define PACER_REFAULT_RATIO 0.25
#define PACER_REFAULT_STEP 25u
#define PACER_REFAULT_EXTRA_MAX 100u
/* Fewer refaulted bytes than this in a generation are noise (a few pages
 * shared between processes fault once in each). */
#define PACER_REFAULT_MIN_BYTES (UINT64_C(256) << 10)

struct pacer_refault {
        double released_recent;   /* bytes released lately, halved each generation */
        unsigned extra_percent;   /* added to retain_extra_percent */
};

/* Feeds one generation; returns the extra percentage points of goal. */
unsigned pacer_refault_update(struct pacer_refault *rf, uint64_t released, uint64_t refaulted);

/* Refaulted pages of a generation: faults minus the pages the heap grew by, floored at 0. */
uint64_t pacer_refaults(uint64_t faults, uint64_t grown_bytes, uint32_t phys_page_size);

/* Bytes the heap's released_reused counter (now) rose by since *mark, which
 * it then becomes; 0 the first time (*mark PACER_REUSED_UNKNOWN) and when
 * it went down. */
#define PACER_REUSED_UNKNOWN UINT64_MAX
uint64_t pacer_reused_since(uint64_t *mark, uint64_t now);

/*
 * The CPU cap of release under pressure (pressure_cpu_percent): after a
 * pressure release that began at start and took worked ns, further pressure
 * events are ignored until the returned time, so that release under pressure
 * uses at most that fraction of a CPU. percent <= 0: pressure release is
 * off (INT64_MAX); >= 100: no pause.
 */
int64_t pacer_pressure_next(int64_t start, int64_t worked, double percent);

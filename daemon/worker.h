/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Worker threads: each pool's shared memory is worked on by a thread of its
 * own, so that a lock a client holds stalls that pool's work and nothing
 * else: the event loop never waits for a pool. The event loop posts jobs to
 * a worker; the worker runs them in order; their completions come back
 * through one eventfd that the event loop watches, where each job's done
 * callback runs.
 *
 * While any job is in flight one timer is armed: a worker whose heap has
 * waited for a lock for lock_timeout is reported stuck (once per wait), and
 * from then on is no reason to keep the timer armed. Idle, the threads
 * sleep on a condition variable and no timer is armed.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "heap/heap.h"

struct worker;

/* A job: embed it first in a struct of your own, allocated with malloc. */
struct job {
        void (*run)(struct job *j);  /* on the worker thread */
        void (*done)(struct job *j); /* on the event loop, exactly once; worker.c frees j after it */
        void (*release)(struct job *j); /* frees j on the event loop (NULL: free()) */
        bool cancelled;              /* done before or without run finishing: worker_cancel, worker_free */

        /* worker.c's */
        struct worker *worker;
        bool answered;               /* done already ran (cancelled while running) */
        struct job *next;
};

typedef struct workers workers;

int workers_new(sd_event *e, uint64_t lock_timeout_usec, workers **ret);
/* Every worker must be gone (worker_free) before. */
workers *workers_free(workers *ws);
void workers_set_lock_timeout(workers *ws, uint64_t usec);
uint64_t workers_lock_timeout(workers *ws);

/* Called on the event loop when w's heap has waited lock_timeout or more
 * for a lock: wait says which lock and who held it then. */
typedef void (*worker_stuck_fn)(void *userdata, const struct heap_lock_wait *wait, int64_t waited_ns);

/* name: for the thread (ps, gdb); wait: what the worker's heap publishes
 * (heap_set_untrusted). */
int worker_new(workers *ws, const char *name, struct heap_lock_wait *wait, worker_stuck_fn stuck, void *userdata,
               struct worker **ret);
void worker_post(struct worker *w, struct job *j);
/* done(cancelled) for every job not finished: queued ones are dropped, the
 * running one is answered now and freed when it returns. */
void worker_cancel(struct worker *w);
/* Cancels what is left, stops the thread and waits for it at most timeout.
 * false: the thread is still inside a job (stuck on a lock) and was left
 * behind; whatever that job touches must stay valid until the process ends. */
bool worker_free(struct worker *w, uint64_t timeout_usec);

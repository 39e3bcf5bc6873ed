/* SPDX-License-Identifier: MIT */
/*
 * Worker threads and their jobs. Each worker is one thread with a queue;
 * the event loop posts, the thread runs jobs in order, and completed jobs
 * go onto one list that an eventfd announces to the event loop.
 *
 * Stuck workers: a heap made untrusted publishes each lock wait (since
 * when, on whom) in its struct heap_lock_wait. While some worker has jobs
 * in flight, a timer looks at the waits of those workers; one that has
 * waited lock_timeout is reported once, then written off (the timer no
 * longer waits for it: its job may never end). A written-off worker is
 * never joined: worker_free leaves its thread behind, and the caller keeps
 * what the thread may still touch.
 *
 * Who touches what: queue, current, stop, exited and abandoned are under
 * the worker's mutex; the done list under the set's mutex; everything else
 * belongs to the event loop.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "worker.h"

#define WORKER_STACK_SIZE (1u << 20)

struct worker {
        workers *ws;
        pthread_t thread;
        char name[16];

        pthread_mutex_t lock;
        pthread_cond_t cond;     /* jobs for the thread; its exit for worker_free */
        struct job *head, *tail; /* queued */
        struct job *current;     /* running */
        bool stop, exited, abandoned;

        /* Event loop. */
        struct heap_lock_wait *wait;
        worker_stuck_fn stuck;
        void *userdata;
        unsigned in_flight;      /* posted, not yet done */
        bool written_off;        /* reported stuck: not watched any more */
        bool report;             /* to be reported by the running watchdog pass */
        int64_t reported_since;
        struct worker *prev, *next;
};

struct workers {
        sd_event *event;
        int efd;
        sd_event_source *efd_source;
        sd_event_source *timer;
        uint64_t lock_timeout_usec;
        struct worker *list;
        unsigned busy;           /* workers with jobs in flight, written-off ones excluded */

        pthread_mutex_t lock;
        struct job *done_head, *done_tail;
};

static int64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the thread ---- */

static void complete(workers *ws, struct job *j) {
        uint64_t one = 1;

        j->next = NULL;
        pthread_mutex_lock(&ws->lock);
        if (ws->done_tail)
                ws->done_tail->next = j;
        else
                ws->done_head = j;
        ws->done_tail = j;
        pthread_mutex_unlock(&ws->lock);
        /* EAGAIN: the counter is already non-zero, the loop will look. */
        (void) !write(ws->efd, &one, sizeof(one));
}

static void *worker_main(void *arg) {
        struct worker *w = arg;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct job *j;

                while (!w->head && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (w->stop)
                        break;
                j = w->head;
                w->head = j->next;
                if (!w->head)
                        w->tail = NULL;
                w->current = j;
                pthread_mutex_unlock(&w->lock);

                j->run(j);

                /* Under the worker's lock, so that worker_free either sees the
                 * job handed over or leaves the thread behind before it is. */
                pthread_mutex_lock(&w->lock);
                w->current = NULL;
                if (w->abandoned)
                        /* Left behind: the job was answered by worker_free, and
                         * the set may be gone; its memory is malloc's either way. */
                        free(j);
                else
                        complete(w->ws, j);
        }
        w->exited = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* ---- the event loop's side ---- */

static void job_release(struct job *j) {
        if (j->release)
                j->release(j);
        else
                free(j);
}

static int watchdog_arm(workers *ws, int64_t at_ns) {
        uint64_t usec = at_ns <= 0 ? 0 : (uint64_t) DIV_ROUND_UP(at_ns, 1000);
        int r;

        r = sd_event_source_set_time(ws->timer, usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(ws->timer, SD_EVENT_ONESHOT);
        return r;
}

static void busy_changed(workers *ws, struct worker *w, int delta) {
        if (w->written_off)
                return;
        if (delta > 0 && w->in_flight++ == 0) {
                if (ws->busy++ == 0)
                        (void) watchdog_arm(ws, now_ns() + (int64_t) ws->lock_timeout_usec * 500);
        } else if (delta < 0 && w->in_flight > 0 && --w->in_flight == 0) {
                if (--ws->busy == 0)
                        (void) sd_event_source_set_enabled(ws->timer, SD_EVENT_OFF);
        }
}

/* A worker reported stuck: the watchdog stops waiting for it. */
static void write_off(workers *ws, struct worker *w) {
        if (w->written_off)
                return;
        if (w->in_flight > 0 && --ws->busy == 0)
                (void) sd_event_source_set_enabled(ws->timer, SD_EVENT_OFF);
        w->written_off = true;
}

/*
 * Every timeout/2 while jobs are in flight, or exactly when a wait seen
 * earlier reaches lock_timeout. Reports run after the scan: a report may
 * quarantine a pool, and that may free workers.
 */
static int on_watchdog(sd_event_source *src, uint64_t usec, void *userdata) {
        workers *ws = userdata;
        int64_t now = now_ns(), timeout = (int64_t) ws->lock_timeout_usec * 1000, next = INT64_MAX;
        bool any = false;

        for (struct worker *w = ws->list; w; w = w->next) {
                int64_t since;

                if (w->written_off || w->in_flight == 0)
                        continue;
                since = atomic_load_explicit(&w->wait->since_ns, memory_order_acquire);
                if (since != 0 && now - since >= timeout && since != w->reported_since) {
                        w->reported_since = since;
                        w->report = true;
                        any = true;
                }
        }
        while (any) {
                any = false;
                for (struct worker *w = ws->list; w; w = w->next) {
                        struct heap_lock_wait copy;

                        if (!w->report)
                                continue;
                        w->report = false;
                        write_off(ws, w);
                        atomic_init(&copy.since_ns, w->reported_since);
                        atomic_init(&copy.lock, atomic_load_explicit(&w->wait->lock, memory_order_relaxed));
                        atomic_init(&copy.holder, atomic_load_explicit(&w->wait->holder, memory_order_relaxed));
                        w->stuck(w->userdata, &copy, now - w->reported_since);
                        any = true;
                        break; /* the list may have changed */
                }
        }

        for (struct worker *w = ws->list; w; w = w->next) {
                int64_t since;

                if (w->written_off || w->in_flight == 0)
                        continue;
                since = atomic_load_explicit(&w->wait->since_ns, memory_order_acquire);
                next = MIN(next, since != 0 && since != w->reported_since ? since + timeout : now + timeout / 2);
        }
        if (next != INT64_MAX)
                (void) watchdog_arm(ws, MAX(next, now + 1000000));
        return 0;
}

static void finish(struct job *j) {
        workers *ws = j->worker->ws;

        busy_changed(ws, j->worker, -1);
        if (!j->answered)
                j->done(j);
        job_release(j);
}

static int on_completion(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        workers *ws = userdata;
        struct job *list;
        uint64_t v;

        (void) !read(ws->efd, &v, sizeof(v));
        pthread_mutex_lock(&ws->lock);
        list = ws->done_head;
        ws->done_head = ws->done_tail = NULL;
        pthread_mutex_unlock(&ws->lock);
        while (list) {
                struct job *j = list;
                list = j->next;
                finish(j);
        }
        return 0;
}

int workers_new(sd_event *e, uint64_t lock_timeout_usec, workers **ret) {
        workers *ws;
        int r;

        ws = calloc(1, sizeof(*ws));
        if (!ws)
                return -ENOMEM;
        ws->event = sd_event_ref(e);
        ws->lock_timeout_usec = lock_timeout_usec;
        pthread_mutex_init(&ws->lock, NULL);
        ws->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ws->efd < 0) {
                r = negative_errno();
                workers_free(ws);
                return log_error_errno(r, "cannot create the workers' eventfd: %m");
        }
        r = sd_event_add_io(e, &ws->efd_source, ws->efd, EPOLLIN, on_completion, ws);
        if (r >= 0)
                r = sd_event_add_time(e, &ws->timer, CLOCK_MONOTONIC, 0, 10000, on_watchdog, ws);
        if (r >= 0)
                r = sd_event_source_set_enabled(ws->timer, SD_EVENT_OFF);
        if (r < 0) {
                workers_free(ws);
                return log_error_errno(r, "cannot watch the workers: %m");
        }
        (void) sd_event_source_set_description(ws->efd_source, "workers");
        (void) sd_event_source_set_description(ws->timer, "workers-watchdog");
        *ret = ws;
        return 0;
}

workers *workers_free(workers *ws) {
        if (!ws)
                return NULL;
        sd_event_source_disable_unref(ws->efd_source);
        sd_event_source_disable_unref(ws->timer);
        closep(&ws->efd);
        /* Completions of workers already freed were taken with them. */
        while (ws->done_head) {
                struct job *j = ws->done_head;
                ws->done_head = j->next;
                free(j);
        }
        pthread_mutex_destroy(&ws->lock);
        sd_event_unref(ws->event);
        free(ws);
        return NULL;
}

void workers_set_lock_timeout(workers *ws, uint64_t usec) {
        ws->lock_timeout_usec = usec;
        if (ws->busy > 0)
                (void) watchdog_arm(ws, now_ns());
}

uint64_t workers_lock_timeout(workers *ws) {
        return ws->lock_timeout_usec;
}

int worker_new(workers *ws, const char *name, struct heap_lock_wait *wait, worker_stuck_fn stuck, void *userdata,
               struct worker **ret) {
        pthread_attr_t attr;
        sigset_t all, old;
        struct worker *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->ws = ws;
        w->wait = wait;
        w->stuck = stuck;
        w->userdata = userdata;
        /* A thread's name is 15 characters at most. */
        memcpy(w->name, name, MIN(strlen(name), sizeof(w->name) - 1));
        pthread_mutex_init(&w->lock, NULL);
        {
                pthread_condattr_t ca;
                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&w->cond, &ca);
                pthread_condattr_destroy(&ca);
        }

        /* Signals are the event loop's (signalfd): the thread takes none. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
        r = -pthread_create(&w->thread, &attr, worker_main, w);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                pthread_cond_destroy(&w->cond);
                pthread_mutex_destroy(&w->lock);
                free(w);
                return log_error_errno(r, "%s: cannot start a worker thread: %m", name);
        }
        (void) pthread_setname_np(w->thread, w->name);

        w->next = ws->list;
        if (ws->list)
                ws->list->prev = w;
        ws->list = w;
        *ret = w;
        return 0;
}

void worker_post(struct worker *w, struct job *j) {
        j->worker = w;
        j->next = NULL;
        j->cancelled = j->answered = false;
        busy_changed(w->ws, w, +1);
        pthread_mutex_lock(&w->lock);
        if (w->tail)
                w->tail->next = j;
        else
                w->head = j;
        w->tail = j;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

void worker_cancel(struct worker *w) {
        struct job *queued, *cur;

        pthread_mutex_lock(&w->lock);
        queued = w->head;
        w->head = w->tail = NULL;
        cur = w->current;
        pthread_mutex_unlock(&w->lock);

        /* The running job is answered now; its memory stays the thread's until it returns. */
        if (cur && !cur->answered) {
                cur->answered = true;
                cur->cancelled = true;
                cur->done(cur);
        }
        while (queued) {
                struct job *j = queued;
                queued = j->next;
                busy_changed(w->ws, w, -1);
                j->cancelled = true;
                j->answered = true;
                j->done(j);
                job_release(j);
        }
}

bool worker_free(struct worker *w, uint64_t timeout_usec) {
        workers *ws;
        struct timespec deadline;
        bool exited;

        if (!w)
                return true;
        ws = w->ws;
        worker_cancel(w);
        /* Reported stuck: its job ends when the lock's holder lets go, if
         * ever; a thread that got out meanwhile still gets a moment. */
        if (w->written_off)
                timeout_usec = MIN(timeout_usec, 100000);

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t) (timeout_usec / 1000000);
        deadline.tv_nsec += (long) (timeout_usec % 1000000) * 1000;
        if (deadline.tv_nsec >= 1000000000) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_broadcast(&w->cond);
        while (!w->exited)
                if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT)
                        break;
        exited = w->exited;
        if (!exited)
                w->abandoned = true;
        pthread_mutex_unlock(&w->lock);

        write_off(ws, w);
        if (w->prev)
                w->prev->next = w->next;
        else
                ws->list = w->next;
        if (w->next)
                w->next->prev = w->prev;

        if (!exited) {
                log_warning("%s: worker thread still waits inside a job, left behind", w->name);
                (void) pthread_detach(w->thread);
                return false;
        }
        pthread_join(w->thread, NULL);

        /* Its completions not seen yet: answered already, only memory now. */
        pthread_mutex_lock(&ws->lock);
        for (struct job **p = &ws->done_head; *p;) {
                struct job *j = *p;
                if (j->worker != w) {
                        p = &j->next;
                        continue;
                }
                *p = j->next;
                job_release(j);
        }
        ws->done_tail = NULL;
        for (struct job *j = ws->done_head; j; j = j->next)
                ws->done_tail = j;
        pthread_mutex_unlock(&ws->lock);

        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return true;
}

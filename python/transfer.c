/* SPDX-License-Identifier: MIT */
/*
 * Pickled Buffers in flight. A handle holds no reference (scav.h), so a
 * sender that drops its Buffer right after pickling it -- q.put(buf); del
 * buf, or a multiprocessing worker returning a Buffer -- would free the
 * allocation before the receiver takes its own reference, and the receiver
 * would get -ESTALE. Instead the sender keeps its reference until the
 * receiver has taken one:
 *
 *  - pickling writes a fresh id into a free word of an acknowledgement
 *    page (one page of the pool, allocated by the sender's slot while
 *    transfers are in flight) and puts the page's handle, the word's index
 *    and the id into the pickle;
 *  - the receiver, once it holds its reference, takes one on the page too
 *    (so it never writes into a page that was freed and reused), sets the
 *    word's ACKED bit if the word still holds that id, wakes the sender if
 *    it sleeps on the word (a futex on the word's low half), and drops the
 *    page;
 *  - the sender's reference is dropped when its Buffer is released and
 *    every transfer of it was acknowledged; releasing it earlier leaves an
 *    orphan hold that a later reap drops. A client with transfers in
 *    flight stays open, whether or not a Pool or Buffer still uses it.
 *  - at exit the process waits for its transfers to be acknowledged
 *    (scavpy_transfer_drain), as multiprocessing waits for its queues to be
 *    flushed: a worker that returns a Buffer and exits is the common case.
 *
 * Every reference involved is an ordinary per-slot one: a sender that dies
 * loses them with its slot (its receivers then get -ESTALE if nobody else
 * holds the allocation), a receiver that dies before acknowledging leaves
 * the sender's reference until the sender exits. Nothing ever outlives
 * every process. Reaping has no thread and no timer: it runs when the
 * process allocates, releases, pickles or unpickles, and at exit.
 */

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "scavpy.h"

static int page_add(ScavClient *c) {
        struct scavpy_ack_page *pages, *pg;
        struct scav_handle h;
        uint64_t off;
        int r;

        r = scav_alloc(c->p, c->page_size, SCAV_ALLOC_ZERO, &off);
        if (r < 0) {
                scavpy_error(r, "pool '%s': cannot allocate the page that acknowledges transfers", c->name);
                return -1;
        }
        r = scav_make_handle(c->p, off, &h);
        if (r < 0) {
                (void) scav_unref(c->p, off);
                scavpy_error(r, "pool '%s': cannot make a handle", c->name);
                return -1;
        }
        pages = realloc(c->acks.pages, (c->acks.npages + 1) * sizeof(*pages));
        if (!pages)
                goto oom;
        c->acks.pages = pages;
        pg = &pages[c->acks.npages];
        *pg = (struct scavpy_ack_page) {
                .off = off,
                .words = scav_ptr(c->p, off),
                .nwords = (uint32_t) (c->page_size / sizeof(uint64_t)),
                .handle = h,
        };
        pg->uses = calloc(pg->nwords, sizeof(*pg->uses));
        if (!pg->uses)
                goto oom;
        c->acks.npages++;
        return 0;
oom:
        (void) scav_unref(c->p, off);
        PyErr_NoMemory();
        return -1;
}

int scavpy_transfer_start(ScavBuffer *b, uint32_t *page, uint32_t *word, uint64_t *id) {
        ScavClient *c = b->client;
        struct scavpy_ack_page *pg = NULL;
        uint32_t pi, w;

        if (c->acks.ninflight == c->acks.cap) {
                size_t cap = c->acks.cap ? c->acks.cap * 2 : 16;
                void *n = realloc(c->acks.inflight, cap * sizeof(*c->acks.inflight));
                if (!n) {
                        PyErr_NoMemory();
                        return -1;
                }
                c->acks.inflight = n;
                c->acks.cap = cap;
        }
        for (pi = 0; pi < c->acks.npages; pi++)
                if (c->acks.pages[pi].used < c->acks.pages[pi].nwords)
                        break;
        if (pi == c->acks.npages && page_add(c) < 0)
                return -1;
        pg = &c->acks.pages[pi];
        for (w = 0; pg->uses[w].hold; w++)
                ;
        if (!b->hold) {
                b->hold = calloc(1, sizeof(*b->hold));
                if (!b->hold) {
                        PyErr_NoMemory();
                        return -1;
                }
                b->hold->off = b->off;
        }
        if (c->acks.next_id == 0 || c->acks.next_id > SCAVPY_ID_MAX)
                c->acks.next_id = 1;
        *id = c->acks.next_id++;
        pg->uses[w] = (struct scavpy_ack_use) { .hold = b->hold, .id = *id };
        pg->used++;
        b->hold->unacked++;
        c->acks.inflight[c->acks.ninflight].page = pi;
        c->acks.inflight[c->acks.ninflight].word = w;
        if (c->acks.ninflight++ == 0)
                Py_INCREF(c); /* open while transfers are in flight */
        /* Before the pickle exists: a receiver must find the id there. */
        __atomic_store_n(&pg->words[w], SCAVPY_PENDING(*id), __ATOMIC_RELEASE);
        *page = pi;
        *word = w;
        return 0;
}

static long futex(uint64_t *word, int op, uint32_t val, const struct timespec *timeout) {
        /* The word's low half: what an acknowledgement changes (little-endian). */
        return syscall(SYS_futex, (uint32_t *) word, op, val, timeout, NULL, 0);
}

void scavpy_transfer_ack(ScavClient *c, const struct scav_handle *page, uint64_t word, uint64_t id) {
        uint64_t off, v;
        size_t size;
        uint64_t *p;

        if (id == 0 || id > SCAVPY_ID_MAX)
                return;
        /* Our reference on the page keeps it from being freed and reused
         * under the write; -ESTALE means the sender is gone, and with it the
         * reference it kept for us: nothing to tell. */
        if (scav_ref_handle(c->p, page, &off) < 0)
                return;
        if (scav_size(c->p, off, &size) >= 0 && word < size / sizeof(uint64_t)) {
                p = (uint64_t *) scav_ptr(c->p, off) + word;
                v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
                /* Another id there: the word was reused, this transfer is
                 * long settled (a pickle loaded twice). */
                while ((v & ~(SCAVPY_ACKED | SCAVPY_WAITER)) == SCAVPY_PENDING(id) && !(v & SCAVPY_ACKED))
                        if (__atomic_compare_exchange_n(p, &v, v | SCAVPY_ACKED, false, __ATOMIC_SEQ_CST,
                                                        __ATOMIC_ACQUIRE)) {
                                if (v & SCAVPY_WAITER)
                                        (void) futex(p, FUTEX_WAKE, INT_MAX, NULL);
                                break;
                        }
        }
        (void) scav_unref(c->p, off);
}

static void hold_done(ScavClient *c, struct scavpy_hold *h, bool unref) {
        if (--h->unacked > 0 || !h->orphan)
                return;
        if (unref)
                (void) scav_unref(c->p, h->off);
        free(h);
}

/* How many transfers a reap looks at on the allocation path: with many in
 * flight, each call settles a share of them in turn (a rotating window)
 * instead of costing time in proportion to all of them. */
#define SCAVPY_REAP_BATCH 64

/* Called with a reference to c held: the last acknowledgement drops the
 * client's own. */
static void reap(ScavClient *c, bool all) {
        struct scavpy_acks *a = &c->acks;
        size_t n, i;

        if (a->ninflight == 0 || !c->p || scavpy_client_forked(c))
                return;
        n = all || a->ninflight <= SCAVPY_REAP_BATCH ? a->ninflight : SCAVPY_REAP_BATCH;
        i = n == a->ninflight ? 0 : a->cursor % a->ninflight;
        for (size_t k = 0; k < n && a->ninflight > 0; k++) {
                if (i >= a->ninflight)
                        i = 0;
                struct scavpy_ack_page *pg = &a->pages[a->inflight[i].page];
                uint32_t w = a->inflight[i].word;
                struct scavpy_ack_use *u = &pg->uses[w];
                uint64_t v = __atomic_load_n(&pg->words[w], __ATOMIC_ACQUIRE);

                if (!(v & SCAVPY_ACKED) || (v & ~(SCAVPY_ACKED | SCAVPY_WAITER)) != SCAVPY_PENDING(u->id)) {
                        i++;
                        continue;
                }
                __atomic_store_n(&pg->words[w], 0, __ATOMIC_RELAXED);
                hold_done(c, u->hold, true);
                *u = (struct scavpy_ack_use) {};
                pg->used--;
                a->inflight[i] = a->inflight[--a->ninflight]; /* i again: the moved one */
        }
        a->cursor = i;
        if (a->ninflight > 0)
                return;
        /* Nothing in flight: the pages go too, so that the pool's in-use
         * figure comes back to what the process's Buffers hold. A late
         * receiver of an old pickle finds its page gone (-ESTALE) and has
         * nothing to acknowledge anyway. */
        for (size_t pi = 0; pi < a->npages; pi++) {
                (void) scav_unref(c->p, a->pages[pi].off);
                free(a->pages[pi].uses);
        }
        free(a->pages);
        a->pages = NULL;
        a->npages = 0;
        a->cursor = 0;
        Py_DECREF(c);
}

void scavpy_transfer_reap(ScavClient *c) {
        reap(c, false);
}

void scavpy_transfer_reap_all(ScavClient *c) {
        reap(c, true);
}

bool scavpy_transfer_forget(ScavClient *c) {
        struct scavpy_acks *a = &c->acks;
        bool pinned = a->ninflight > 0;

        for (size_t i = 0; i < a->ninflight; i++)
                hold_done(c, a->pages[a->inflight[i].page].uses[a->inflight[i].word].hold, false);
        for (ScavBuffer *b = c->buffers; b; b = b->next) {
                free(b->hold);
                b->hold = NULL;
        }
        for (size_t i = 0; i < a->npages; i++)
                free(a->pages[i].uses);
        free(a->pages);
        free(a->inflight);
        *a = (struct scavpy_acks) { .next_id = 1 };
        return pinned;
}

size_t scavpy_transfer_pending(ScavClient *c) {
        return c->acks.ninflight;
}

/* How long exit waits for a receiver while nobody else has the pool open. */
#define SCAVPY_DRAIN_ALONE_S 2.0

/* Whether another client might still acknowledge: someone else has a slot. */
static bool others_attached(ScavClient *c) {
        struct scav_stats st;
        scav_pool *p = c->p;
        int r;

        Py_BEGIN_ALLOW_THREADS
        r = scav_stats(p, &st);
        Py_END_ALLOW_THREADS
        return r < 0 || st.clients > 1;
}

static double monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/*
 * Waits for c's transfers until deadline. While no other process has the
 * pool open, only until alone_deadline: a receiver may not have opened it
 * yet (a parent about to unpickle a dying worker's result), or may never
 * come (its workers were terminated), and only the first is worth a wait.
 * Called with a reference to c held.
 */
static void drain_client(ScavClient *c, double deadline, double alone_deadline) {
        struct scavpy_acks *a = &c->acks;

        for (;;) {
                reap(c, true);
                if (a->ninflight == 0 || !c->p || scavpy_client_forked(c))
                        return;
                double now = monotonic(), left = deadline - now;
                if (left <= 0 || (now >= alone_deadline && !others_attached(c)))
                        return;
                /* A receiver's acknowledgement wakes us once we say we
                 * sleep; the slice bounds how late we notice that the
                 * receivers are gone. */
                struct scavpy_ack_page *pg = &a->pages[a->inflight[0].page];
                uint64_t *word = &pg->words[a->inflight[0].word];
                uint64_t v = SCAVPY_PENDING(pg->uses[a->inflight[0].word].id);
                double slice = left < 0.1 ? left : 0.1;
                struct timespec ts = { .tv_sec = 0, .tv_nsec = (long) (slice * 1e9) };

                if (!__atomic_compare_exchange_n(word, &v, v | SCAVPY_WAITER, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST) &&
                    (v & SCAVPY_ACKED))
                        continue; /* received meanwhile */
                Py_BEGIN_ALLOW_THREADS
                (void) futex(word, FUTEX_WAIT, (uint32_t) (v | SCAVPY_WAITER), &ts);
                Py_END_ALLOW_THREADS
        }
}

PyObject *scavpy_transfer_drain(PyObject *mod, PyObject *unused) {
        PyObject *clients, *t;
        double timeout = 0, deadline, alone_deadline;

        t = PyObject_GetAttrString(mod, "exit_timeout");
        if (t) {
                timeout = PyFloat_AsDouble(t);
                Py_DECREF(t);
        }
        if (PyErr_Occurred() || isnan(timeout) || timeout < 0) {
                PyErr_Clear();
                timeout = 0;
        }
        deadline = monotonic() + timeout;
        alone_deadline = monotonic() + (timeout < SCAVPY_DRAIN_ALONE_S ? timeout : SCAVPY_DRAIN_ALONE_S);
        /* A list: draining drops pins, which may close clients. */
        clients = PyList_New(0);
        if (!clients)
                return NULL;
        for (ScavClient *c = scavpy_clients; c; c = c->next)
                if (c->acks.ninflight > 0 && PyList_Append(clients, (PyObject *) c) < 0) {
                        Py_DECREF(clients);
                        return NULL;
                }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(clients); i++) {
                ScavClient *c = (ScavClient *) PyList_GET_ITEM(clients, i);
                drain_client(c, deadline, alone_deadline);
                if (c->acks.ninflight > 0 && c->p && !scavpy_client_forked(c) &&
                    PyErr_WarnFormat(PyExc_RuntimeWarning, 1,
                                     "scav: %zu pickled Buffer(s) of pool '%s' were not received before this process "
                                     "exited (their receivers get StaleError)", c->acks.ninflight, c->name) < 0) {
                        Py_DECREF(clients);
                        return NULL;
                }
        }
        Py_DECREF(clients);
        Py_RETURN_NONE;
}

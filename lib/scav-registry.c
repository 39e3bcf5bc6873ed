/* SPDX-License-Identifier: MIT */
/*
 * The process's open pools, and the one thread that watches their sessions.
 *
 * The registry is what thread-exit destructors, fork and the reconnect
 * thread agree on: a pool is alive while it is listed, and scav_close()
 * unlists it before tearing it down.
 *
 * The reconnect thread sleeps in poll() on the session sockets (hang-up
 * only: nothing is ever read there) and an eventfd that says the list
 * changed. When the daemon goes away it retries HELLO with the old slot and
 * token, backing off from 10 ms to 1 s while the daemon is missing; with
 * every session up it has no timeout at all, so an idle process never wakes.
 *
 * fork(): the child keeps the handles (the mappings are shared) but not the
 * slot. It closes its copies of the session sockets, so that a parent that
 * dies is seen hanging up even while the child lives, and bumps
 * scav_fork_gen so that inherited handles refuse to allocate (-ECHILD).
 */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "scav-internal.h"

#define BACKOFF_MIN_MS 10u
#define BACKOFF_MAX_MS 1000u

_Atomic unsigned scav_fork_gen;

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static scav_pool *registry;
static uint64_t next_id = 1;
static bool watcher_started;
static int wake_fd = -1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

void scav_registry_lock(void) {
        pthread_mutex_lock(&registry_mutex);
}

void scav_registry_unlock(void) {
        pthread_mutex_unlock(&registry_mutex);
}

/* Called with the registry lock held. */
scav_pool *scav_registry_find_locked(uint64_t id) {
        for (scav_pool *p = registry; p; p = p->next)
                if (p->id == id)
                        return p;
        return NULL;
}

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void wake_watcher(void) {
        uint64_t one = 1;

        if (wake_fd >= 0)
                (void) !write(wake_fd, &one, sizeof(one));
}

static void atfork_prepare(void) {
        pthread_mutex_lock(&registry_mutex);
}

static void atfork_parent(void) {
        pthread_mutex_unlock(&registry_mutex);
}

static void atfork_child(void) {
        atomic_fetch_add(&scav_fork_gen, 1);
        /* The parent's caches are not ours: the allocation fast path finds no entry. */
        scav_thread_caches_forget();
        for (scav_pool *p = registry; p; p = p->next) {
                if (p->sock >= 0)
                        close(p->sock);
                p->sock = -1;
                p->disconnected = false;
        }
        if (wake_fd >= 0)
                close(wake_fd);
        wake_fd = -1;
        watcher_started = false;
        pthread_mutex_unlock(&registry_mutex);
}

static void atfork_init(void) {
        (void) pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Called with the registry lock held. Marks the pools whose session hung up. */
static void note_hangups(const struct pollfd *pfds, const uint64_t *ids, size_t n, uint64_t now) {
        for (size_t i = 1; i < n; i++) {
                scav_pool *p;

                if (!(pfds[i].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
                        continue;
                p = scav_registry_find_locked(ids[i]);
                if (!p || p->sock != pfds[i].fd)
                        continue;
                close(p->sock);
                p->sock = -1;
                p->disconnected = true;
                p->backoff_ms = BACKOFF_MIN_MS;
                /* A restarting daemon needs a moment; don't knock at once. */
                p->retry_at_ms = now + BACKOFF_MIN_MS;
        }
}

/* Under the registry lock: room for n entries in the watcher's arrays. */
static int watcher_reserve_locked(struct pollfd **pfds, uint64_t **ids, size_t *cap, size_t n) {
        struct pollfd *np;
        uint64_t *ni;

        if (n <= *cap)
                return 0;
        n = MAX(n, 2 * *cap);
        np = realloc(*pfds, n * sizeof(**pfds));
        if (!np)
                return -ENOMEM;
        *pfds = np;
        ni = realloc(*ids, n * sizeof(**ids));
        if (!ni)
                return -ENOMEM;
        *ids = ni;
        *cap = n;
        return 0;
}

/*
 * The arrays live as long as the thread and grow under the registry lock,
 * which pthread_atfork takes around fork(): so the watcher never holds an
 * allocator lock of its own making when the application forks. (A child
 * forked from a threaded process inherits every lock another thread held;
 * glibc's malloc takes its own around fork. Under GCC 12's
 * AddressSanitizer, test-client-kill's child hung in its allocator, on a
 * lock it had inherited held.)
 */
static void *watcher(void *unused) {
        struct pollfd *pfds = NULL;
        uint64_t *ids = NULL;
        size_t cap = 0;

        for (;;) {
                scav_pool *target = NULL;
                struct scav_reconnect rc = {};
                struct scav_session s;
                uint64_t id = 0;
                size_t n = 1, max = 1;
                int timeout = -1, r;
                uint64_t now;

                scav_registry_lock();
                for (scav_pool *p = registry; p; p = p->next)
                        max++;
                if (watcher_reserve_locked(&pfds, &ids, &cap, max) < 0) {
                        scav_registry_unlock();
                        sleep(1);
                        continue;
                }
                pfds[0] = (struct pollfd) { .fd = wake_fd, .events = POLLIN };
                now = now_ms();
                for (scav_pool *p = registry; p; p = p->next) {
                        if (scav_pool_forked(p) || atomic_load(&p->lost))
                                continue;
                        if (p->sock >= 0) {
                                pfds[n] = (struct pollfd) { .fd = p->sock, .events = POLLRDHUP };
                                ids[n++] = p->id;
                        } else if (p->disconnected) {
                                int t = p->retry_at_ms > now ? (int) (p->retry_at_ms - now) : 0;
                                if (timeout < 0 || t < timeout)
                                        timeout = t;
                        }
                }
                scav_registry_unlock();

                r = poll(pfds, n, timeout);
                if (r < 0 && errno != EINTR) {
                        sleep(1);
                        continue;
                }
                if (r > 0 && (pfds[0].revents & POLLIN)) {
                        uint64_t v;
                        (void) !read(wake_fd, &v, sizeof(v));
                }

                scav_registry_lock();
                now = now_ms();
                if (r > 0)
                        note_hangups(pfds, ids, n, now);
                for (scav_pool *p = registry; p; p = p->next)
                        if (p->disconnected && p->sock < 0 && !scav_pool_forked(p) &&
                            !atomic_load(&p->lost) && p->retry_at_ms <= now) {
                                target = p;
                                break;
                        }
                if (target) {
                        snprintf(rc.name, sizeof(rc.name), "%s", target->name);
                        snprintf(rc.socket, sizeof(rc.socket), "%s", target->socket);
                        rc.slot = atomic_load(&target->slot);
                        rc.token = target->token;
                        rc.heap_dev = target->heap_dev;
                        rc.heap_ino = target->heap_ino;
                        rc.meta_size = target->meta_size;
                        rc.capacity = target->capacity;
                        rc.base = target->base;
                        id = target->id;
                }
                scav_registry_unlock();

                if (!target)
                        continue;
                /* Without the lock: scav_close() need not wait for a daemon
                 * that takes its time to come back. */
                r = scav_session_reconnect(&rc, &s);

                scav_registry_lock();
                target = scav_registry_find_locked(id);
                if (!target) {
                        /* Closed meanwhile: hanging up gives the slot back. */
                        if (r >= 0)
                                scav_session_close(&s);
                } else if (r >= 0) {
                        atomic_store(&target->slot, s.slot);
                        /* After the slot: a thread that sees the new key
                         * arms its cache for the new slot (scav_thread_cache_arm). */
                        atomic_store_explicit(&target->fast_key, next_id++, memory_order_release);
                        target->token = s.token;
                        target->sock = s.sock;
                        target->disconnected = false;
                } else if (r == -ESTALE) {
                        atomic_store(&target->lost, true);
                        atomic_store_explicit(&target->fast_key, next_id++, memory_order_release);
                        target->disconnected = false;
                } else {
                        target->retry_at_ms = now_ms() + target->backoff_ms;
                        target->backoff_ms = MIN(target->backoff_ms * 2, BACKOFF_MAX_MS);
                }
                scav_registry_unlock();
        }
        return NULL;
}

/* Called with the registry lock held. Without the thread, pools still work;
 * they only stay disconnected after a daemon restart. */
static void watcher_start_locked(void) {
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_t t;

        if (watcher_started)
                return;
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0)
                return;
        /* Signals are the application's: keep them off our thread. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        if (pthread_create(&t, &attr, watcher, NULL) == 0)
                watcher_started = true;
        else {
                close(wake_fd);
                wake_fd = -1;
        }
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int scav_registry_add(scav_pool *p) {
        pthread_once(&atfork_once, atfork_init);
        scav_registry_lock();
        p->id = next_id++;
        atomic_store_explicit(&p->fast_key, next_id++, memory_order_release);
        p->fork_gen = atomic_load(&scav_fork_gen);
        p->next = registry;
        registry = p;
        watcher_start_locked();
        wake_watcher();
        scav_registry_unlock();
        return 0;
}

void scav_registry_remove(scav_pool *p) {
        scav_registry_lock();
        for (scav_pool **pp = &registry; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        p->next = NULL;
        scav_registry_unlock();
}

/*
 * A daemon whose pool went quiet has no timer armed for it; this is how it
 * learns that there may be memory to give back. At most one WAKE per pool
 * per SCAV_WAKE_INTERVAL_MS: the coarse clock (no system call) and a
 * compare-and-swap pick the one thread that sends it. The session socket
 * changes only under the registry lock, so the send takes it (a few times a
 * second at most); a daemon that is away simply misses the WAKE, and a
 * reconnect wakes the pool anyway.
 */
void scav_wake_daemon(scav_pool *p) {
        struct scav_msg_hdr h;
        struct timespec ts;
        int64_t now, last;

        if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) < 0)
                return;
        now = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        last = atomic_load_explicit(&p->wake_sent_ms, memory_order_relaxed);
        if (now - last < SCAV_WAKE_INTERVAL_MS)
                return;
        if (!atomic_compare_exchange_strong(&p->wake_sent_ms, &last, now))
                return;

        scav_msg_init(&h, SCAV_MSG_WAKE, sizeof(h));
        scav_registry_lock();
        if (p->sock >= 0)
                (void) send(p->sock, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL);
        scav_registry_unlock();
}

void scav_registry_changed(void) {
        scav_registry_lock();
        wake_watcher();
        scav_registry_unlock();
}

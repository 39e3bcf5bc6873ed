/* SPDX-License-Identifier: MIT */
/*
 * The two robust process-shared locks. A process that dies holding the heap
 * lock leaves EOWNERDEAD to the next locker, which rolls the intent record
 * forward and verifies the heap before marking the mutex consistent; a heap
 * that fails verification is marked corrupt and every later operation gets
 * -EUCLEAN. The scav lock guards only hints, so its state is validated and
 * reset if needed.
 *
 * Clients lock with pthread_mutex_lock. A handle made untrusted
 * (heap_set_untrusted: the daemon's) speaks the same protocol on the lock
 * word alone; see "untrusted locks" below for why.
 */

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "heap/layout.h"

/*
 * Spins briefly before sleeping: the heap lock's critical sections are
 * hundreds of nanoseconds, while a process put to sleep on the futex and
 * woken again costs tens of microseconds (and its holder the wake-up). A
 * robust mutex gets no adaptive spinning from glibc, so spin here: watch
 * the lock word (read-only, no cache-line ping-pong) and try when it looks
 * free. Results as pthread_mutex_lock's (EOWNERDEAD included).
 */
#define HEAP_LOCK_SPINS 100u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        __asm__ __volatile__("" ::: "memory");
#endif
}

static int mutex_lock_spin(pthread_mutex_t *m) {
        for (unsigned i = 0; i < HEAP_LOCK_SPINS; i++) {
                int r = pthread_mutex_trylock(m);
                if (r != EBUSY)
                        return r;
#ifdef __GLIBC__
                for (unsigned j = 0; j < 16 && __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) != 0; j++)
#else
                for (unsigned j = 0; j < 16; j++)
#endif
                        cpu_relax();
        }
        return pthread_mutex_lock(m);
}

/*
 * ---- untrusted locks ----
 *
 * glibc keeps a robust mutex on a per-thread list whose links live inside
 * the mutex (__data.__list), and pthread_mutex_unlock writes through them
 * to unlink it. In shared memory any client can overwrite those links while
 * the daemon holds the lock: the daemon's unlock would then write where the
 * client chose. So an untrusted handle never calls pthread_mutex_*: it
 * speaks glibc's robust-mutex protocol (nptl's pthread_mutex_lock.c, the
 * kernel's robust-futex ABI) on the lock word alone:
 *
 *   lock word: 0 = free, else holder's tid | FUTEX_WAITERS | FUTEX_OWNER_DIED
 *   lock:   CAS 0 -> tid; FUTEX_OWNER_DIED set (the holder died) -> take it,
 *           EOWNERDEAD; else set FUTEX_WAITERS and FUTEX_WAIT on the word
 *   unlock: exchange with 0; FUTEX_WAKE one waiter if FUTEX_WAITERS was set
 *
 * and keeps __owner as glibc does (its tid; INT_MAX while inconsistent,
 * INT_MAX - 1 when not recoverable), so that clients' glibc sees a mutex
 * it knows. The kernel's record of what the thread holds (its robust list,
 * walked at its death to set FUTEX_OWNER_DIED) is registered with
 * set_robust_list and kept in this thread's own memory: entry + futex_offset
 * is the lock word, and the two entries (heap lock, scav lock) sit as far
 * apart as the two locks do in the header, so one futex_offset serves both.
 * A thread holds the locks of one heap at a time.
 *
 * What the lock word says is only ever compared and stored, never followed.
 */

#define MUTEX_INCONSISTENT INT_MAX
#define MUTEX_NOTRECOVERABLE (INT_MAX - 1)
#define GUARD_SPAN (offsetof(struct heap_hdr, scav_lock) - offsetof(struct heap_hdr, heap_lock))

#ifdef __GLIBC__
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "the lock word opens the mutex");
#endif

struct guard_thread {
        struct robust_list_head head; /* registered with the kernel: this thread's robust list */
        pid_t tid;
        const struct heap_hdr *hdr;   /* the heap whose locks the entries stand for */
        unsigned held;                /* HEAP_LOCK_HEAP | HEAP_LOCK_SCAV */
};
static __thread struct guard_thread guard;
static __thread struct robust_list guard_entries[GUARD_SPAN / sizeof(struct robust_list) + 1];

static int *lock_word(pthread_mutex_t *m) {
        return (int *) m;
}

static struct robust_list *guard_entry(heap *h, pthread_mutex_t *m) {
        return (struct robust_list *) ((char *) guard_entries + ((char *) m - (char *) &h->hdr->heap_lock));
}

static long futex(int *word, int op, int val) {
        return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static int64_t monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A forked child starts with glibc's robust list registered again and
 * another thread id: what the forking thread knew does not hold for it. */
static void guard_forked(void) {
        memset(&guard, 0, sizeof(guard));
}

static void guard_atfork(void) {
        (void) pthread_atfork(NULL, NULL, guard_forked);
}

static int guard_register(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        if (guard.tid)
                return 0;
        (void) pthread_once(&once, guard_atfork);
        guard.head.list.next = &guard.head.list;
        guard.head.futex_offset = 0;
        guard.head.list_op_pending = NULL;
        if (syscall(SYS_set_robust_list, &guard.head, sizeof(guard.head)) < 0)
                return negative_errno();
        guard.tid = (pid_t) syscall(SYS_gettid);
        return 0;
}

static void guard_link(struct robust_list *e) {
        e->next = guard.head.list.next;
        atomic_signal_fence(memory_order_seq_cst);
        guard.head.list.next = e;
}

static void guard_unlink(struct robust_list *e) {
        for (struct robust_list **p = &guard.head.list.next; *p != &guard.head.list; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        return;
                }
}

/* Results as pthread_mutex_lock's: 0, EOWNERDEAD, ENOTRECOVERABLE, or another error. */
static int guarded_lock(heap *h, pthread_mutex_t *m, unsigned which) {
        int *word = lock_word(m);
        struct robust_list *e = guard_entry(h, m);
        struct heap_lock_wait *w = h->untrusted;
        unsigned waiters = 0, spins = 0;
        bool waited = false, died = false;
        int old, r;

        if ((guard.held && guard.hdr != h->hdr) || (guard.held & which))
                return EDEADLK; /* a programming error: one heap at a time, no recursion */
        r = guard_register();
        if (r < 0)
                return -r;
        if (!guard.held) {
                guard.hdr = h->hdr;
                guard.head.futex_offset = (char *) &h->hdr->heap_lock - (char *) guard_entries;
        }

        /* Named before the word can name us: a death in between is still cleaned up. */
        guard.head.list_op_pending = e;
        atomic_signal_fence(memory_order_seq_cst);
        old = __atomic_load_n(word, __ATOMIC_RELAXED);
        for (;;) {
                if (old == 0) {
                        int want = 0;
                        if (__atomic_compare_exchange_n(word, &want, (int) ((unsigned) guard.tid | waiters), false,
                                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                                break;
                        old = want;
                        continue;
                }
                if ((unsigned) old & FUTEX_OWNER_DIED) {
                        int want = old;
                        if (!__atomic_compare_exchange_n(word, &want, (int) ((unsigned) guard.tid | FUTEX_WAITERS),
                                                         false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                                old = want;
                                continue;
                        }
                        died = true;
                        break;
                }
                if (spins < HEAP_LOCK_SPINS) {
                        spins++;
                        cpu_relax();
                        old = __atomic_load_n(word, __ATOMIC_RELAXED);
                        continue;
                }
                if (!((unsigned) old & FUTEX_WAITERS)) {
                        int want = old;
                        if (!__atomic_compare_exchange_n(word, &want, (int) ((unsigned) old | FUTEX_WAITERS), false,
                                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                                old = want;
                                continue;
                        }
                        old = (int) ((unsigned) old | FUTEX_WAITERS);
                }
                /* We may share FUTEX_WAITERS with others now: keep it when we take the lock. */
                waiters = FUTEX_WAITERS;
                if (!waited && w) {
                        atomic_store_explicit(&w->lock, which, memory_order_relaxed);
                        atomic_store_explicit(&w->holder, (unsigned) old & FUTEX_TID_MASK, memory_order_relaxed);
                        atomic_store_explicit(&w->since_ns, monotonic_ns(), memory_order_release);
                }
                waited = true;
                (void) futex(word, FUTEX_WAIT, old);
                old = __atomic_load_n(word, __ATOMIC_RELAXED);
        }
        guard_link(e);
        atomic_signal_fence(memory_order_seq_cst);
        guard.head.list_op_pending = NULL;
        guard.held |= which;
        if (waited && w)
                atomic_store_explicit(&w->since_ns, 0, memory_order_release);

        if (died) {
                __atomic_store_n(&m->__data.__owner, MUTEX_INCONSISTENT, __ATOMIC_RELAXED);
                return EOWNERDEAD;
        }
        if (__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == MUTEX_NOTRECOVERABLE)
                return ENOTRECOVERABLE; /* still held: the caller unlocks */
        __atomic_store_n(&m->__data.__owner, guard.tid, __ATOMIC_RELAXED);
        return 0;
}

static void guarded_consistent(pthread_mutex_t *m) {
        __atomic_store_n(&m->__data.__owner, guard.tid, __ATOMIC_RELAXED);
}

/* keep_owner: leave __owner alone (a mutex found not recoverable stays so). */
static void guarded_unlock(heap *h, pthread_mutex_t *m, unsigned which, bool keep_owner) {
        int *word = lock_word(m);
        struct robust_list *e = guard_entry(h, m);

        if (!(guard.held & which) || guard.hdr != h->hdr)
                return;
        guard.head.list_op_pending = e;
        atomic_signal_fence(memory_order_seq_cst);
        guard_unlink(e);
        /* glibc's unlock: a mutex left inconsistent cannot be recovered. */
        if (keep_owner)
                ;
        else if (__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == MUTEX_INCONSISTENT)
                __atomic_store_n(&m->__data.__owner, MUTEX_NOTRECOVERABLE, __ATOMIC_RELAXED);
        else
                __atomic_store_n(&m->__data.__owner, 0, __ATOMIC_RELAXED);
        if ((unsigned) __atomic_exchange_n(word, 0, __ATOMIC_RELEASE) & FUTEX_WAITERS)
                (void) futex(word, FUTEX_WAKE, 1);
        atomic_signal_fence(memory_order_seq_cst);
        guard.head.list_op_pending = NULL;
        guard.held &= ~which;
}

const char *heap_recover_problem(heap *h) {
        return h->recover_problem;
}

void heap_set_untrusted(heap *h, struct heap_lock_wait *wait) {
        static struct heap_lock_wait unwatched;
        h->untrusted = wait ?: &unwatched;
}

static int lock_raw(heap *h, pthread_mutex_t *m, unsigned which) {
        return h->untrusted ? guarded_lock(h, m, which) : mutex_lock_spin(m);
}

static void consistent_raw(heap *h, pthread_mutex_t *m) {
        if (h->untrusted)
                guarded_consistent(m);
        else
                pthread_mutex_consistent(m);
}

static void unlock_raw(heap *h, pthread_mutex_t *m, unsigned which) {
        if (h->untrusted)
                guarded_unlock(h, m, which, false);
        else
                pthread_mutex_unlock(m);
}

/*
 * Every locked operation refuses a heap marked corrupt (heap_lock), and a
 * thread cache's owner, whose operations take no lock, refuses a cache
 * that is not HEAP_TC_ACTIVE (tcache.h): one test on its path instead of
 * two. So marking the heap makes every cache HEAP_TC_CORRUPT too. Called
 * with the lock held, or with the lock unusable (ENOTRECOVERABLE), so that
 * no cache is activated in between (heap_tc_settle locks). A flag set
 * without it, by a client, takes effect for the caches at the next
 * heap_lock, which repeats this: the daemon's generation work locks once a
 * generation while the pool is not parked; a parked pool waits for any
 * client's next locked operation or the daemon's next wake-up.
 */
void heap_mark_corrupt(heap *h) {
        atomic_store(&h->hdr->corrupt, 1);
        for (uint32_t s = 0; s < h->max_slots; s++)
                for (uint32_t c = 0; c < HEAP_SLOT_CACHES; c++)
                        atomic_store(&h->slots[s].tc[c].state, HEAP_TC_CORRUPT);
}

int heap_lock(heap *h) {
        int r = lock_raw(h, &h->hdr->heap_lock, HEAP_LOCK_HEAP);
        if (r == EOWNERDEAD) {
                r = heap_recover_locked(h);
                if (r < 0) {
                        heap_mark_corrupt(h);
                        consistent_raw(h, &h->hdr->heap_lock);
                        unlock_raw(h, &h->hdr->heap_lock, HEAP_LOCK_HEAP);
                        return -EUCLEAN;
                }
                consistent_raw(h, &h->hdr->heap_lock);
        } else if (r == ENOTRECOVERABLE) {
                heap_mark_corrupt(h);
                if (h->untrusted) /* glibc gives the word back itself */
                        guarded_unlock(h, &h->hdr->heap_lock, HEAP_LOCK_HEAP, true);
                return -EUCLEAN;
        } else if (r != 0)
                return -r;
        if (heap_checked(h) < 0) {
                heap_mark_corrupt(h); /* the flag may have come alone, from a client */
                unlock_raw(h, &h->hdr->heap_lock, HEAP_LOCK_HEAP);
                return -EUCLEAN;
        }
        return 0;
}

void heap_unlock(heap *h) {
        unlock_raw(h, &h->hdr->heap_lock, HEAP_LOCK_HEAP);
}

int heap_scav_lock(heap *h) {
        int r = lock_raw(h, &h->hdr->scav_lock, HEAP_LOCK_SCAV);
        if (r == EOWNERDEAD) {
                heap_scav_state_validate(h);
                consistent_raw(h, &h->hdr->scav_lock);
        } else if (r == ENOTRECOVERABLE) {
                if (h->untrusted)
                        guarded_unlock(h, &h->hdr->scav_lock, HEAP_LOCK_SCAV, true);
                return -EUCLEAN;
        } else if (r != 0)
                return -r;
        return 0;
}

void heap_scav_unlock(heap *h) {
        unlock_raw(h, &h->hdr->scav_lock, HEAP_LOCK_SCAV);
}

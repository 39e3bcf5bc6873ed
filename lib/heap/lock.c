/* SPDX-License-Identifier: MIT */
/*
 * The two robust process-shared locks. A process that dies holding the heap
 * lock leaves EOWNERDEAD to the next locker, which rolls the intent record
 * forward and verifies the heap before marking the mutex consistent; a heap
 * that fails verification is marked corrupt and every later operation gets
 * -EUCLEAN. The scav lock guards only hints, so its state is validated and
 * reset if needed.
 */

#include <errno.h>

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
#if defined(__x86_64__) || defined(__i386__)
                        __builtin_ia32_pause();
#else
                        __asm__ __volatile__("" ::: "memory");
#endif
        }
        return pthread_mutex_lock(m);
}

int heap_lock(heap *h) {
        int r = mutex_lock_spin(&h->hdr->heap_lock);
        if (r == EOWNERDEAD) {
                r = heap_recover_locked(h);
                if (r < 0) {
                        atomic_store(&h->hdr->corrupt, 1);
                        pthread_mutex_consistent(&h->hdr->heap_lock);
                        pthread_mutex_unlock(&h->hdr->heap_lock);
                        return -EUCLEAN;
                }
                pthread_mutex_consistent(&h->hdr->heap_lock);
        } else if (r == ENOTRECOVERABLE) {
                atomic_store(&h->hdr->corrupt, 1);
                return -EUCLEAN;
        } else if (r != 0)
                return -r;
        if (heap_checked(h) < 0) {
                pthread_mutex_unlock(&h->hdr->heap_lock);
                return -EUCLEAN;
        }
        return 0;
}

void heap_unlock(heap *h) {
        pthread_mutex_unlock(&h->hdr->heap_lock);
}

int heap_scav_lock(heap *h) {
        int r = pthread_mutex_lock(&h->hdr->scav_lock);
        if (r == EOWNERDEAD) {
                heap_scav_state_validate(h);
                pthread_mutex_consistent(&h->hdr->scav_lock);
        } else if (r == ENOTRECOVERABLE)
                return -EUCLEAN;
        else if (r != 0)
                return -r;
        return 0;
}

void heap_scav_unlock(heap *h) {
        pthread_mutex_unlock(&h->hdr->scav_lock);
}

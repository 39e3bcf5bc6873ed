/* SPDX-License-Identifier: MIT */
/*
 * A process's client of one pool: the libscav handle (one slot), shared by
 * every scav.Pool of that name in the process and by the Buffers made from
 * it, and closed when the last of them goes. A process needs no second slot
 * of a pool (libscav gives each thread its own page cache in the one slot),
 * and slots are few (max_clients).
 *
 * The clients are listed (scavpy_clients) for Pool(name), unpickling and
 * fork; the list holds no reference. Opening waits for the daemon, so it
 * releases the GIL, under a lock that keeps two threads from opening the
 * same pool twice.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scavpy.h"

ScavClient *scavpy_clients;
static PyThread_type_lock open_lock;

int scavpy_client_init(void) {
        open_lock = PyThread_allocate_lock();
        if (!open_lock) {
                PyErr_NoMemory();
                return -1;
        }
        return 0;
}

void scavpy_client_after_fork_child(void) {
        /* The parent's lock may be held by a thread the child does not have. */
        open_lock = PyThread_allocate_lock();
}

static void open_lock_acquire(void) {
        if (PyThread_acquire_lock(open_lock, NOWAIT_LOCK))
                return;
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(open_lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
}

/* Opens the pool and reads its geometry (scav_stats may ask the daemon for
 * its kernel counters: also without the GIL). */
static int open_pool(const char *name, scav_pool **out, struct scav_stats *st) {
        int r;

        Py_BEGIN_ALLOW_THREADS
        r = scav_open(name, out);
        if (r >= 0) {
                r = scav_stats(*out, st);
                if (r < 0)
                        scav_close(*out);
        }
        Py_END_ALLOW_THREADS
        if (r >= 0)
                return 0;
        switch (-r) {
        case ENOENT:
                scavpy_error(r, "no pool named '%s' (scavd at %s)", name, scavpy_socket_path());
                break;
        case ECONNREFUSED:
                scavpy_error(r, "cannot reach scavd at %s", scavpy_socket_path());
                break;
        case EACCES:
        case EPERM:
                scavpy_error(r, "pool '%s' does not allow this user", name);
                break;
        case EUSERS:
                scavpy_error(r, "pool '%s' has no free client slot (max_clients)", name);
                break;
        default:
                scavpy_error(r, "cannot open pool '%s'", name);
        }
        return -1;
}

/* What scav_open accepts, checked first so that a bad name is a ValueError. */
static bool pool_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= SCAV_POOL_NAME_SIZE)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '.' || ch == '-'))
                        return false;
        }
        return true;
}

static ScavClient *find(const char *name) {
        for (ScavClient *c = scavpy_clients; c; c = c->next)
                if (strcmp(c->name, name) == 0)
                        return c;
        return NULL;
}

/* Called with the open lock held. */
static int ensure_locked(ScavClient *c) {
        struct scav_stats st;
        scav_pool *p;

        if (scavpy_client_forked(c))
                scavpy_fork_unhooked_child(c);
        if (c->p)
                return 0;
        if (open_pool(c->name, &p, &st) < 0)
                return -1;
        if (st.page_size != c->page_size || st.capacity != c->capacity) {
                /* Another pool of that name now (recreated with another
                 * size): inherited pointers and offsets would not mix. */
                scav_close(p);
                PyErr_Format(PyExc_OSError, "pool '%s' changed (page size or capacity) since it was opened",
                             c->name);
                return -1;
        }
        c->p = p;
        c->gen = scavpy_fork_gen;
        return 0;
}

int scavpy_client_ensure(ScavClient *c) {
        int r;

        if (c->p && !scavpy_client_forked(c))
                return 0;
        open_lock_acquire();
        r = ensure_locked(c);
        PyThread_release_lock(open_lock);
        return r;
}

ScavClient *scavpy_client_get(const char *name, bool pin) {
        struct scav_stats st;
        ScavClient *c;
        scav_pool *p;

        if (!pool_name_valid(name)) {
                PyErr_Format(PyExc_ValueError,
                             "bad pool name '%s': 1 to %d letters, digits, '_', '.' or '-'", name,
                             SCAV_POOL_NAME_SIZE - 1);
                return NULL;
        }
        open_lock_acquire();
        c = find(name);
        if (c) {
                Py_INCREF(c);
                if (ensure_locked(c) < 0) {
                        PyThread_release_lock(open_lock);
                        Py_DECREF(c);
                        return NULL;
                }
        } else {
                if (open_pool(name, &p, &st) < 0) {
                        PyThread_release_lock(open_lock);
                        return NULL;
                }
                c = PyObject_New(ScavClient, &ScavClient_Type);
                if (!c) {
                        scav_close(p);
                        PyThread_release_lock(open_lock);
                        return NULL;
                }
                memset((char *) c + sizeof(PyObject), 0, sizeof(*c) - sizeof(PyObject));
                snprintf(c->name, sizeof(c->name), "%s", name);
                c->p = p;
                c->gen = scavpy_fork_gen;
                c->page_size = st.page_size;
                c->capacity = st.capacity;
                c->acks.next_id = 1;
                c->next = scavpy_clients;
                scavpy_clients = c;
        }
        if (pin && !c->pinned) {
                c->pinned = true;
                Py_INCREF(c);
        }
        PyThread_release_lock(open_lock);
        return c;
}

void scavpy_client_unpin(ScavClient *c) {
        if (!c->pinned)
                return;
        c->pinned = false;
        Py_DECREF(c);
}

static void client_dealloc(ScavClient *c) {
        for (ScavClient **pp = &scavpy_clients; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        /* No Buffer is left (each holds the client). Closing the slot drops
         * the references still kept for transfers, and the daemon would
         * drop them anyway when the process goes. */
        (void) scavpy_transfer_forget(c); /* nothing in flight: that would hold c */
        if (c->p)
                scav_close(c->p);
        /* Ancestors' handles: scav_close only unmaps them in a child. */
        for (size_t i = 0; i < c->n_inherited; i++)
                scav_close(c->inherited[i]);
        free(c->inherited);
        free(c->fork_handles);
        PyObject_Free(c);
}

PyTypeObject ScavClient_Type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "scav._Client",
        .tp_basicsize = sizeof(ScavClient),
        .tp_dealloc = (destructor) client_dealloc,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "A process's client slot of one pool (internal).",
};

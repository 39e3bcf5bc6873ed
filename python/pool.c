/* SPDX-License-Identifier: MIT */
/*
 * scav.Pool: the process's client of a pool, as the user holds it. Every
 * Pool of one name in a process shares one client slot; close() (or the
 * end of a with block) ends this object's use of it, and the slot is given
 * back once no Pool, no Buffer and no unpickled Buffer's pool needs it.
 */

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scavpy.h"

typedef struct {
        PyObject_HEAD
        ScavClient *client; /* NULL once closed */
        char name[SCAV_POOL_NAME_SIZE];
        PyObject *weakreflist;
} ScavPool;

/* A new reference to the client of an open Pool, ready in this process;
 * NULL with an error. The caller's own reference: another thread may close
 * the Pool while this one waits without the GIL. */
static ScavClient *ready(ScavPool *self) {
        ScavClient *c = self->client;

        if (!c) {
                PyErr_Format(PyExc_ValueError, "operation on a closed scav.Pool ('%s')", self->name);
                return NULL;
        }
        Py_INCREF(c);
        if (scavpy_client_ensure(c) < 0) {
                Py_DECREF(c);
                return NULL;
        }
        return c;
}

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "name", NULL };
        const char *name = "default";
        ScavPool *self;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|s:Pool", kwlist, &name))
                return NULL;
        self = (ScavPool *) type->tp_alloc(type, 0);
        if (!self)
                return NULL;
        snprintf(self->name, sizeof(self->name), "%s", name);
        self->client = scavpy_client_get(name, false);
        if (!self->client) {
                Py_DECREF(self);
                return NULL;
        }
        return (PyObject *) self;
}

static void pool_close_client(ScavPool *self) {
        ScavClient *c = self->client;

        if (!c)
                return;
        self->client = NULL;
        /* An explicit close gives the slot back, also if unpickling had kept
         * it: the next unpickled Buffer opens the pool again. */
        scavpy_client_unpin(c);
        Py_DECREF(c);
}

static void pool_dealloc(ScavPool *self) {
        if (self->weakreflist)
                PyObject_ClearWeakRefs((PyObject *) self);
        Py_CLEAR(self->client);
        Py_TYPE(self)->tp_free((PyObject *) self);
}

static PyObject *pool_alloc(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "nbytes", "zero", NULL };
        Py_ssize_t nbytes;
        ScavClient *c;
        ScavBuffer *b;
        int zero = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "n|p:alloc", kwlist, &nbytes, &zero))
                return NULL;
        if (nbytes <= 0) {
                PyErr_Format(PyExc_ValueError, "alloc: nbytes must be positive, not %zd", nbytes);
                return NULL;
        }
        c = ready(self);
        if (!c)
                return NULL;
        b = scavpy_buffer_alloc(c, nbytes, zero);
        Py_DECREF(c);
        return (PyObject *) b;
}

static PyObject *pool_ndarray(ScavPool *self, PyObject *args, PyObject *kw) {
        ScavClient *c = ready(self);
        PyObject *a;

        if (!c)
                return NULL;
        a = scavpy_pool_ndarray(c, args, kw);
        Py_DECREF(c);
        return a;
}

/* Names as libscav takes them: 1 to SCAV_NAME_MAX - 1 bytes of printable
 * ASCII without spaces. */
static int name_arg(PyObject *o, const char **out) {
        Py_ssize_t n;
        const char *s;

        if (!PyUnicode_Check(o)) {
                PyErr_Format(PyExc_TypeError, "a name is a str, not %.100s", Py_TYPE(o)->tp_name);
                return -1;
        }
        s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s)
                return -1;
        if (n == 0 || n >= SCAV_NAME_MAX)
                goto bad;
        for (Py_ssize_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] > '~')
                        goto bad;
        *out = s;
        return 0;
bad:
        PyErr_Format(PyExc_ValueError, "bad name %R: 1 to %d printable ASCII characters without spaces", o,
                     SCAV_NAME_MAX - 1);
        return -1;
}

static PyObject *pool_publish(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "name", "buffer", NULL };
        PyObject *nameo;
        ScavBuffer *b;
        const char *name;
        ScavClient *c;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "UO!:publish", kwlist, &nameo, &ScavBuffer_Type, &b))
                return NULL;
        if (name_arg(nameo, &name) < 0)
                return NULL;
        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        c = ready(self);
        if (!c)
                return NULL;
        if (b->client != c) {
                PyErr_Format(PyExc_ValueError, "a Buffer of pool '%s' published in pool '%s'", b->client->name,
                             c->name);
                Py_DECREF(c);
                return NULL;
        }
        r = scav_publish(c->p, name, b->off);
        if (r == -EEXIST)
                scavpy_error(r, "pool '%s': the name '%s' is published already", c->name, name);
        else if (r == -ENOSPC)
                scavpy_error(r, "pool '%s': its directory of names is full", c->name);
        else if (r < 0)
                scavpy_error(r, "pool '%s': cannot publish '%s'", c->name, name);
        Py_DECREF(c);
        if (r < 0)
                return NULL;
        Py_RETURN_NONE;
}

static PyObject *pool_unpublish(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "name", NULL };
        PyObject *nameo;
        const char *name;
        ScavClient *c;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "U:unpublish", kwlist, &nameo))
                return NULL;
        if (name_arg(nameo, &name) < 0)
                return NULL;
        c = ready(self);
        if (!c)
                return NULL;
        r = scav_unpublish(c->p, name);
        if (r == -ENOENT)
                scavpy_error(r, "pool '%s': no name '%s' is published", c->name, name);
        else if (r < 0)
                scavpy_error(r, "pool '%s': cannot unpublish '%s'", c->name, name);
        Py_DECREF(c);
        if (r < 0)
                return NULL;
        Py_RETURN_NONE;
}

/* timeout: None or 0 asks once; a number of seconds waits up to that long;
 * math.inf waits without limit. */
static int timeout_arg(PyObject *o, double *secs) {
        if (o == Py_None) {
                *secs = 0;
                return 0;
        }
        *secs = PyFloat_AsDouble(o);
        if (*secs == -1.0 && PyErr_Occurred())
                return -1;
        if (isnan(*secs) || *secs < 0) {
                PyErr_SetString(PyExc_ValueError, "timeout must be None, 0, a positive number of seconds or math.inf");
                return -1;
        }
        return 0;
}

static double monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/*
 * Waits for the name without the GIL. The wait is a futex in shared memory
 * that scav_lookup_wait restarts when a signal interrupts it, so in the
 * main thread -- where Python runs signal handlers, and Ctrl-C must raise
 * KeyboardInterrupt -- it waits in slices of LOOKUP_SLICE_MS and runs the
 * handlers between them. Other threads wait the whole time in one call.
 */
#define LOOKUP_SLICE_MS 500

static int lookup_wait(scav_pool *p, const char *name, double secs, uint64_t *off) {
        double deadline = isinf(secs) ? INFINITY : monotonic() + secs;
        bool main_thread = _PyOS_IsMainThread();
        int r;

        for (;;) {
                double left = deadline - monotonic();
                int ms = isinf(left) ? -1 : left <= 0 ? 0 : left * 1000 >= INT_MAX ? INT_MAX : (int) ceil(left * 1000);
                bool sliced = main_thread && (ms < 0 || ms > LOOKUP_SLICE_MS);

                Py_BEGIN_ALLOW_THREADS
                r = scav_lookup_wait(p, name, sliced ? LOOKUP_SLICE_MS : ms, off);
                Py_END_ALLOW_THREADS
                if (r != -EINTR && !(sliced && r == -ETIMEDOUT))
                        return r;
                if (PyErr_CheckSignals() < 0)
                        return -EINTR;
        }
}

static PyObject *pool_lookup(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "name", "timeout", "nbytes", NULL };
        PyObject *nameo, *timeo = Py_None, *nbyteso = Py_None;
        ScavBuffer *b = NULL;
        Py_ssize_t nbytes = -1;
        const char *name;
        ScavClient *c;
        uint64_t off;
        size_t size;
        double secs;
        int r;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "U|OO:lookup", kwlist, &nameo, &timeo, &nbyteso))
                return NULL;
        if (name_arg(nameo, &name) < 0 || timeout_arg(timeo, &secs) < 0)
                return NULL;
        if (nbyteso != Py_None) {
                nbytes = PyNumber_AsSsize_t(nbyteso, PyExc_OverflowError);
                if (nbytes == -1 && PyErr_Occurred())
                        return NULL;
                if (nbytes <= 0) {
                        PyErr_SetString(PyExc_ValueError, "lookup: nbytes must be positive");
                        return NULL;
                }
        }
        c = ready(self);
        if (!c)
                return NULL;
        scavpy_transfer_reap(c);
        r = secs == 0 ? scav_lookup(c->p, name, &off) : lookup_wait(c->p, name, secs, &off);
        if (r == -EINTR && PyErr_Occurred())
                goto out;
        if (r == -ENOENT) {
                scavpy_error(r, "pool '%s': no name '%s' is published", c->name, name);
                goto out;
        }
        if (r == -ETIMEDOUT) {
                scavpy_error(r, "pool '%s': no name '%s' was published within %g s", c->name, name, secs);
                goto out;
        }
        if (r < 0) {
                scavpy_error(r, "pool '%s': cannot look up '%s'", c->name, name);
                goto out;
        }
        r = scav_size(c->p, off, &size);
        if (r < 0 || (nbytes > 0 && (size_t) nbytes > size)) {
                (void) scav_unref(c->p, off);
                if (r < 0)
                        scavpy_error(r, "pool '%s': cannot read the size of '%s'", c->name, name);
                else
                        PyErr_Format(PyExc_ValueError, "lookup: %zd bytes asked of '%s', which has %zu", nbytes,
                                     name, size);
                goto out;
        }
        b = scavpy_buffer_new(c, off, nbytes > 0 ? nbytes : (Py_ssize_t) size);
        if (!b)
                (void) scav_unref(c->p, off);
out:
        Py_DECREF(c);
        return (PyObject *) b;
}

static PyObject *pool_from_handle(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "handle", "nbytes", NULL };
        PyObject *h, *nbyteso = Py_None, *b;
        Py_ssize_t nbytes = -1;
        ScavClient *c;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:from_handle", kwlist, &h, &nbyteso))
                return NULL;
        if (nbyteso != Py_None) {
                nbytes = PyNumber_AsSsize_t(nbyteso, PyExc_OverflowError);
                if (nbytes == -1 && PyErr_Occurred())
                        return NULL;
                if (nbytes <= 0) {
                        PyErr_SetString(PyExc_ValueError, "from_handle: nbytes must be positive");
                        return NULL;
                }
        }
        c = ready(self);
        if (!c)
                return NULL;
        b = scavpy_buffer_from_handle_bytes(c, h, nbytes);
        Py_DECREF(c);
        return b;
}

#define STAT(f) { #f, offsetof(struct scav_stats, f) }
static const struct {
        const char *name;
        size_t off;
} stat_fields[] = {
        STAT(capacity), STAT(page_size), STAT(heap_sys), STAT(inuse), STAT(released), STAT(retained),
        STAT(retained_goal), STAT(gen), STAT(released_total), STAT(clients), STAT(memory_limit),
        STAT(peak_inuse), STAT(growth_scavenged), STAT(faults), STAT(refaults), STAT(pressure_events),
        STAT(shared), STAT(refs), STAT(names),
};

static PyObject *pool_stats(ScavPool *self, PyObject *unused) {
        struct scav_stats st;
        ScavClient *c = ready(self);
        scav_pool *p;
        PyObject *d;
        int r;

        if (!c)
                return NULL;
        scavpy_transfer_reap(c);
        p = c->p;
        Py_BEGIN_ALLOW_THREADS /* it may ask the daemon for the kernel counters */
        r = scav_stats(p, &st);
        Py_END_ALLOW_THREADS
        Py_DECREF(c);
        if (r < 0)
                return scavpy_error(r, "pool '%s': cannot read its statistics", self->name);
        d = PyDict_New();
        if (!d)
                return NULL;
        for (size_t i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
                uint64_t v;
                PyObject *o;

                memcpy(&v, (const char *) &st + stat_fields[i].off, sizeof(v));
                /* retained_goal: UINT64_MAX while the scavenger is idle. */
                o = v == UINT64_MAX && strcmp(stat_fields[i].name, "retained_goal") == 0
                            ? Py_NewRef(Py_None)
                            : PyLong_FromUnsignedLongLong(v);
                if (!o || PyDict_SetItemString(d, stat_fields[i].name, o) < 0) {
                        Py_XDECREF(o);
                        Py_DECREF(d);
                        return NULL;
                }
                Py_DECREF(o);
        }
        return d;
}

static PyObject *pool_scavenge(ScavPool *self, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "nbytes", NULL };
        Py_ssize_t nbytes = 0;
        ScavClient *c;
        scav_pool *p;
        int64_t r;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "|n:scavenge", kwlist, &nbytes))
                return NULL;
        if (nbytes < 0) {
                PyErr_SetString(PyExc_ValueError, "scavenge: nbytes must be 0 (everything) or positive");
                return NULL;
        }
        c = ready(self);
        if (!c)
                return NULL;
        scavpy_transfer_reap(c);
        p = c->p;
        Py_BEGIN_ALLOW_THREADS
        r = scav_scavenge(p, (size_t) nbytes);
        Py_END_ALLOW_THREADS
        Py_DECREF(c);
        if (r < 0)
                return scavpy_error((int) r, "pool '%s': cannot scavenge", self->name);
        return PyLong_FromLongLong(r);
}

static PyObject *pool_close(ScavPool *self, PyObject *unused) {
        pool_close_client(self);
        Py_RETURN_NONE;
}

static PyObject *pool_enter(ScavPool *self, PyObject *unused) {
        ScavClient *c = ready(self);

        if (!c)
                return NULL;
        Py_DECREF(c);
        return Py_NewRef(self);
}

static PyObject *pool_exit(ScavPool *self, PyObject *args) {
        pool_close_client(self);
        Py_RETURN_FALSE;
}

static PyObject *get_name(ScavPool *self, void *unused) {
        return PyUnicode_FromString(self->name);
}

static PyObject *get_closed(ScavPool *self, void *unused) {
        return PyBool_FromLong(self->client == NULL);
}

static PyObject *get_page_size(ScavPool *self, void *unused) {
        ScavClient *c = ready(self);
        PyObject *o;

        if (!c)
                return NULL;
        o = PyLong_FromUnsignedLongLong(c->page_size);
        Py_DECREF(c);
        return o;
}

static PyObject *get_capacity(ScavPool *self, void *unused) {
        ScavClient *c = ready(self);
        PyObject *o;

        if (!c)
                return NULL;
        o = PyLong_FromUnsignedLongLong(c->capacity);
        Py_DECREF(c);
        return o;
}

static PyObject *get_pending(ScavPool *self, void *unused) {
        ScavClient *c = ready(self);
        PyObject *o;

        if (!c)
                return NULL;
        scavpy_transfer_reap_all(c);
        o = PyLong_FromSize_t(scavpy_transfer_pending(c));
        Py_DECREF(c);
        return o;
}

static PyObject *pool_repr(ScavPool *self) {
        return PyUnicode_FromFormat("<scav.Pool '%s'%s>", self->name, self->client ? "" : " closed");
}

static PyMethodDef pool_methods[] = {
        { "alloc", (PyCFunction) (void (*)(void)) pool_alloc, METH_VARARGS | METH_KEYWORDS,
          "alloc(nbytes, zero=False)\n--\n\nA new Buffer of nbytes (rounded up to whole pages in the pool); "
          "zero=True: it reads as zero. PoolFullError (a MemoryError) when the pool is full." },
        { "ndarray", (PyCFunction) (void (*)(void)) pool_ndarray, METH_VARARGS | METH_KEYWORDS,
          "ndarray(shape, dtype=float, order='C', zero=False)\n--\n\nA NumPy array in a new Buffer of the "
          "pool (its base); needs NumPy." },
        { "publish", (PyCFunction) (void (*)(void)) pool_publish, METH_VARARGS | METH_KEYWORDS,
          "publish(name, buffer)\n--\n\nBinds name to the buffer's allocation in the pool's directory; the "
          "name holds a reference of its own until unpublish(). FileExistsError if the name is taken." },
        { "unpublish", (PyCFunction) (void (*)(void)) pool_unpublish, METH_VARARGS | METH_KEYWORDS,
          "unpublish(name)\n--\n\nRemoves the name and drops its reference." },
        { "lookup", (PyCFunction) (void (*)(void)) pool_lookup, METH_VARARGS | METH_KEYWORDS,
          "lookup(name, timeout=None, nbytes=None)\n--\n\nA new Buffer (a reference of this process) of the "
          "allocation published as name. timeout None or 0: FileNotFoundError at once if it is not "
          "published; seconds: wait up to that long for it (TimeoutError); math.inf: wait without limit. "
          "nbytes: the Buffer's length (default: the whole allocation, in pages)." },
        { "from_handle", (PyCFunction) (void (*)(void)) pool_from_handle, METH_VARARGS | METH_KEYWORDS,
          "from_handle(handle, nbytes=None)\n--\n\nA new Buffer from the bytes of Buffer.handle(): takes a "
          "reference, or raises StaleError if the allocation was freed meanwhile." },
        { "stats", (PyCFunction) pool_stats, METH_NOARGS,
          "stats()\n--\n\nThe pool's statistics (struct scav_stats) as a dict of ints; retained_goal is "
          "None while the background scavenger is idle." },
        { "scavenge", (PyCFunction) (void (*)(void)) pool_scavenge, METH_VARARGS | METH_KEYWORDS,
          "scavenge(nbytes=0)\n--\n\nReleases up to nbytes (0: all) of the pool's free memory to the kernel "
          "now; returns the bytes released." },
        { "close", (PyCFunction) pool_close, METH_NOARGS,
          "close()\n--\n\nEnds this Pool's use of the pool. Buffers keep working; the client slot is given "
          "back when the last of them is released." },
        { "__enter__", (PyCFunction) pool_enter, METH_NOARGS, NULL },
        { "__exit__", (PyCFunction) pool_exit, METH_VARARGS, NULL },
        {},
};

static PyGetSetDef pool_getset[] = {
        { "name", (getter) get_name, NULL, "The pool's name.", NULL },
        { "closed", (getter) get_closed, NULL, "True after close().", NULL },
        { "page_size", (getter) get_page_size, NULL, "The pool's page size.", NULL },
        { "capacity", (getter) get_capacity, NULL, "The pool's capacity in bytes.", NULL },
        { "pending_transfers", (getter) get_pending, NULL,
          "Pickled Buffers of this process no receiver has taken yet (their memory is kept for them).", NULL },
        {},
};

PyTypeObject ScavPool_Type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "scav.Pool",
        .tp_basicsize = sizeof(ScavPool),
        .tp_dealloc = (destructor) pool_dealloc,
        .tp_repr = (reprfunc) pool_repr,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "Pool(name='default')\n--\n\nA pool of scavd, opened through $SCAVD_SOCKET (default "
                  "/run/scavd/scavd.sock). A context manager.",
        .tp_weaklistoffset = offsetof(ScavPool, weakreflist),
        .tp_methods = pool_methods,
        .tp_getset = pool_getset,
        .tp_new = pool_new,
};

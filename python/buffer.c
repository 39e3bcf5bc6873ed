/* SPDX-License-Identifier: MIT */
/*
 * scav.Buffer: one reference to one allocation, exported through the buffer
 * protocol (memoryview, numpy.frombuffer, bytes(...) read the shared memory
 * itself). The reference goes with release(), the end of a with block, or
 * the Buffer's collection; every export keeps the Buffer alive, so no view
 * can outlive the reference, and release() refuses while one exists, as
 * memoryview.release() does. Pickling passes a handle, not the bytes
 * (transfer.c keeps the allocation alive until the receiver has it).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scavpy.h"

static PyObject *rebuild_fn; /* scav._rebuild_buffer, for __reduce__ */

ScavBuffer *scavpy_buffer_new(ScavClient *c, uint64_t off, Py_ssize_t nbytes) {
        ScavBuffer *b = PyObject_New(ScavBuffer, &ScavBuffer_Type);

        if (!b)
                return NULL;
        memset((char *) b + sizeof(PyObject), 0, sizeof(*b) - sizeof(PyObject));
        Py_INCREF(c);
        b->client = c;
        b->off = off;
        b->ptr = scav_ptr(c->p, off);
        b->nbytes = nbytes;
        b->next = c->buffers;
        if (c->buffers)
                c->buffers->prev = b;
        c->buffers = b;
        c->n_buffers++;
        scavpy_numpy_note();
        scavpy_drain_note(); /* it may be pickled: wait for that at exit */
        return b;
}

ScavBuffer *scavpy_buffer_alloc(ScavClient *c, Py_ssize_t nbytes, bool zero) {
        ScavBuffer *b;
        uint64_t off;
        int r;

        scavpy_transfer_reap(c);
        if (nbytes >= (1 << 20)) {
                /* Growing the heap may scavenge, zeroing writes every page:
                 * other threads run meanwhile (the caller holds c). */
                scav_pool *p = c->p;
                Py_BEGIN_ALLOW_THREADS
                r = scav_alloc(p, (size_t) nbytes, zero ? SCAV_ALLOC_ZERO : 0, &off);
                Py_END_ALLOW_THREADS
        } else
                r = scav_alloc(c->p, (size_t) nbytes, zero ? SCAV_ALLOC_ZERO : 0, &off);
        if (r == -ENOMEM)
                return (ScavBuffer *) scavpy_error(r, "pool '%s' has no room for %zd bytes", c->name, nbytes);
        if (r < 0)
                return (ScavBuffer *) scavpy_error(r, "pool '%s': cannot allocate %zd bytes", c->name, nbytes);
        b = scavpy_buffer_new(c, off, nbytes);
        if (!b)
                (void) scav_unref(c->p, off);
        return b;
}

/* Drops the reference: now, or once its transfers are acknowledged. */
static int drop(ScavBuffer *b) {
        ScavClient *c = b->client;
        int r = 0;

        if (b->prev)
                b->prev->next = b->next;
        else
                c->buffers = b->next;
        if (b->next)
                b->next->prev = b->prev;
        c->n_buffers--;
        b->prev = b->next = NULL;

        if (b->detached)
                ; /* a private copy: no reference of ours */
        else if (b->hold && b->hold->unacked > 0)
                b->hold->orphan = true; /* scavpy_transfer_reap drops it */
        else {
                free(b->hold);
                if (c->p && !scavpy_client_forked(c))
                        r = scav_unref(c->p, b->off);
        }
        b->hold = NULL;
        b->client = NULL;
        b->ptr = NULL;
        scavpy_transfer_reap(c);
        Py_DECREF(c); /* may close the client */
        return r;
}

int scavpy_buffer_release(ScavBuffer *b) {
        char name[SCAV_POOL_NAME_SIZE];
        uint64_t off = b->off;
        int r;

        if (!b->client)
                return 0;
        if (b->exports > 0) {
                PyErr_Format(PyExc_BufferError,
                             "cannot release a scav.Buffer while %zd export(s) (memoryview, array) use it",
                             b->exports);
                return -1;
        }
        snprintf(name, sizeof(name), "%s", b->client->name);
        r = drop(b);
        if (r < 0) {
                scavpy_error(r, "pool '%s': cannot drop the reference to offset 0x%llx", name,
                             (unsigned long long) off);
                return -1;
        }
        return 0;
}

int scavpy_buffer_check_usable(ScavBuffer *b) {
        if (!b->client) {
                PyErr_SetString(PyExc_ValueError, "operation on a released scav.Buffer");
                return -1;
        }
        if (scavpy_client_forked(b->client) && scavpy_client_ensure(b->client) < 0)
                return -1;
        if (b->detached) {
                scavpy_error(b->detached,
                             "scav.Buffer inherited across fork(): this process holds no reference of its "
                             "own to it");
                return -1;
        }
        return 0;
}

static void buffer_dealloc(ScavBuffer *b) {
        if (b->weakreflist)
                PyObject_ClearWeakRefs((PyObject *) b);
        /* No export is left: each holds the Buffer. An error here has no
         * one to go to; the slot's close or the process's exit drops the
         * reference at the latest. */
        if (b->client)
                (void) drop(b);
        PyObject_Free(b);
}

static int buffer_getbuffer(ScavBuffer *b, Py_buffer *view, int flags) {
        if (scavpy_buffer_check_usable(b) < 0) {
                view->obj = NULL;
                return -1;
        }
        if (PyBuffer_FillInfo(view, (PyObject *) b, b->ptr, b->nbytes, 0, flags) < 0)
                return -1;
        b->exports++;
        scavpy_numpy_note(); /* numpy.frombuffer(buf) of a Buffer older than NumPy's import */
        return 0;
}

static void buffer_releasebuffer(ScavBuffer *b, Py_buffer *view) {
        b->exports--;
}

static PyBufferProcs buffer_as_buffer = {
        .bf_getbuffer = (getbufferproc) buffer_getbuffer,
        .bf_releasebuffer = (releasebufferproc) buffer_releasebuffer,
};

static Py_ssize_t buffer_length(ScavBuffer *b) {
        if (scavpy_buffer_check_usable(b) < 0)
                return -1;
        return b->nbytes;
}

static PySequenceMethods buffer_as_sequence = {
        .sq_length = (lenfunc) buffer_length,
};

/*
 * Indexing as mmap.mmap does it: buf[i] is an int, buf[a:b] a bytes copy,
 * and assignment writes in place (an int, or as many bytes as the slice
 * covers). Done through a memoryview of the Buffer, which checks the index
 * and the value and is released before returning, so no export outlives
 * the call.
 */
static PyObject *buffer_subscript(ScavBuffer *b, PyObject *key) {
        PyObject *mv, *item, *r;

        mv = PyMemoryView_FromObject((PyObject *) b);
        if (!mv)
                return NULL;
        item = PyObject_GetItem(mv, key);
        Py_DECREF(mv);
        if (!item || !PyMemoryView_Check(item))
                return item;
        r = PyBytes_FromObject(item);
        Py_DECREF(item);
        return r;
}

static int buffer_ass_subscript(ScavBuffer *b, PyObject *key, PyObject *value) {
        PyObject *mv;
        int r;

        if (!value) {
                PyErr_SetString(PyExc_TypeError, "scav.Buffer has a fixed size: its bytes cannot be deleted");
                return -1;
        }
        mv = PyMemoryView_FromObject((PyObject *) b);
        if (!mv)
                return -1;
        r = PyObject_SetItem(mv, key, value);
        Py_DECREF(mv);
        return r;
}

static PyMappingMethods buffer_as_mapping = {
        .mp_length = (lenfunc) buffer_length,
        .mp_subscript = (binaryfunc) buffer_subscript,
        .mp_ass_subscript = (objobjargproc) buffer_ass_subscript,
};

static PyObject *buffer_release_method(ScavBuffer *b, PyObject *unused) {
        if (scavpy_buffer_release(b) < 0)
                return NULL;
        Py_RETURN_NONE;
}

static PyObject *buffer_enter(ScavBuffer *b, PyObject *unused) {
        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        Py_INCREF(b);
        return (PyObject *) b;
}

static PyObject *buffer_exit(ScavBuffer *b, PyObject *args) {
        if (scavpy_buffer_release(b) < 0)
                return NULL;
        Py_RETURN_FALSE;
}

PyObject *scavpy_buffer_transfer_state(ScavBuffer *b) {
        struct scav_handle h;
        uint32_t page, word;
        uint64_t id;
        ScavClient *c;
        int r;

        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        c = b->client;
        scavpy_transfer_reap(c);
        r = scav_make_handle(c->p, b->off, &h);
        if (r < 0)
                return scavpy_error(r, "pool '%s': cannot make a handle of offset 0x%llx", c->name,
                                    (unsigned long long) b->off);
        if (scavpy_transfer_start(b, &page, &word, &id) < 0)
                return NULL;
        scavpy_drain_note();
        return Py_BuildValue("(iy#ny#KK)", 1, (const char *) &h, (Py_ssize_t) sizeof(h), b->nbytes,
                             (const char *) &c->acks.pages[page].handle, (Py_ssize_t) sizeof(h),
                             (unsigned long long) word, (unsigned long long) id);
}

static PyObject *buffer_reduce(ScavBuffer *b, PyObject *unused) {
        PyObject *state = scavpy_buffer_transfer_state(b);

        if (!state)
                return NULL;
        return Py_BuildValue("(O(N))", rebuild_fn, state);
}

static PyObject *buffer_handle(ScavBuffer *b, PyObject *unused) {
        struct scav_handle h;
        int r;

        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        r = scav_make_handle(b->client->p, b->off, &h);
        if (r < 0)
                return scavpy_error(r, "pool '%s': cannot make a handle of offset 0x%llx", b->client->name,
                                    (unsigned long long) b->off);
        return PyBytes_FromStringAndSize((const char *) &h, sizeof(h));
}

static int parse_handle(const char *data, Py_ssize_t len, struct scav_handle *h) {
        if (len != (Py_ssize_t) sizeof(*h)) {
                PyErr_Format(PyExc_ValueError, "a scav handle is %zu bytes, not %zd", sizeof(*h), len);
                return -1;
        }
        memcpy(h, data, sizeof(*h));
        if (h->magic != SCAV_HANDLE_MAGIC || memchr(h->pool, 0, sizeof(h->pool)) == NULL) {
                PyErr_SetString(PyExc_ValueError, "not a scav handle");
                return -1;
        }
        return 0;
}

ScavBuffer *scavpy_buffer_from_handle(ScavClient *c, const struct scav_handle *h, Py_ssize_t nbytes) {
        ScavBuffer *b;
        uint64_t off;
        size_t size;
        int r;

        if (strncmp(h->pool, c->name, sizeof(h->pool)) != 0) {
                PyErr_Format(PyExc_ValueError, "a handle of pool '%.63s', not of '%s'", h->pool, c->name);
                return NULL;
        }
        if (scavpy_client_ensure(c) < 0)
                return NULL;
        scavpy_transfer_reap(c);
        r = scav_ref_handle(c->p, h, &off);
        if (r == -ESTALE) {
                scavpy_error(r, "pool '%s': the allocation at offset 0x%llx was freed before this process "
                             "took its reference (every holder had released it)", c->name,
                             (unsigned long long) h->off);
                return NULL;
        }
        if (r == -EINVAL) {
                PyErr_Format(PyExc_ValueError, "pool '%s': not a valid handle", c->name);
                return NULL;
        }
        if (r < 0)
                return (ScavBuffer *) scavpy_error(r, "pool '%s': cannot take a reference", c->name);
        r = scav_size(c->p, off, &size);
        if (r < 0) {
                (void) scav_unref(c->p, off);
                return (ScavBuffer *) scavpy_error(r, "pool '%s': cannot read the size of offset 0x%llx",
                                                   c->name, (unsigned long long) off);
        }
        if (nbytes < 0)
                nbytes = (Py_ssize_t) size;
        if (nbytes == 0 || (size_t) nbytes > size) {
                (void) scav_unref(c->p, off);
                PyErr_Format(PyExc_ValueError, "pool '%s': %zd bytes asked of an allocation of %zu", c->name,
                             nbytes, size);
                return NULL;
        }
        b = scavpy_buffer_new(c, off, nbytes);
        if (!b)
                (void) scav_unref(c->p, off);
        return b;
}

ScavBuffer *scavpy_buffer_from_state(PyObject *state) {
        const char *hdata, *adata;
        Py_ssize_t hlen, alen, nbytes;
        unsigned long long word, id;
        struct scav_handle h, ah;
        ScavClient *c;
        ScavBuffer *b;
        int version;

        if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) < 1) {
                PyErr_SetString(PyExc_ValueError, "not the state of a pickled scav.Buffer");
                return NULL;
        }
        if (!PyArg_ParseTuple(state, "iy#ny#KK", &version, &hdata, &hlen, &nbytes, &adata, &alen, &word, &id))
                return NULL;
        if (version != 1) {
                PyErr_Format(PyExc_ValueError, "a pickled scav.Buffer of version %d (this module reads 1)",
                             version);
                return NULL;
        }
        if (parse_handle(hdata, hlen, &h) < 0 || parse_handle(adata, alen, &ah) < 0)
                return NULL;
        if (nbytes <= 0) {
                PyErr_SetString(PyExc_ValueError, "a pickled scav.Buffer of no bytes");
                return NULL;
        }
        /* Unpickling opens the pool once per process and keeps it open: the
         * next Buffer from it will come the same way. */
        c = scavpy_client_get(h.pool, true);
        if (!c)
                return NULL;
        b = scavpy_buffer_from_handle(c, &h, nbytes);
        if (b)
                scavpy_transfer_ack(c, &ah, word, id);
        Py_DECREF(c);
        return b;
}

PyObject *scavpy_rebuild_buffer(PyObject *mod, PyObject *args) {
        PyObject *state;

        if (!PyArg_ParseTuple(args, "O!:_rebuild_buffer", &PyTuple_Type, &state))
                return NULL;
        return (PyObject *) scavpy_buffer_from_state(state);
}

/* pool.from_handle(): the bytes of buf.handle(), taken as they are. */
PyObject *scavpy_buffer_from_handle_bytes(ScavClient *c, PyObject *bytes, Py_ssize_t nbytes) {
        struct scav_handle h;
        Py_buffer view;
        int r;

        if (PyObject_GetBuffer(bytes, &view, PyBUF_SIMPLE) < 0)
                return NULL;
        r = parse_handle(view.buf, view.len, &h);
        PyBuffer_Release(&view);
        if (r < 0)
                return NULL;
        return (PyObject *) scavpy_buffer_from_handle(c, &h, nbytes);
}

static PyObject *get_nbytes(ScavBuffer *b, void *unused) {
        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        return PyLong_FromSsize_t(b->nbytes);
}

static PyObject *get_offset(ScavBuffer *b, void *unused) {
        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        return PyLong_FromUnsignedLongLong(b->off);
}

static PyObject *get_pool(ScavBuffer *b, void *unused) {
        if (scavpy_buffer_check_usable(b) < 0)
                return NULL;
        return PyUnicode_FromString(b->client->name);
}

static PyObject *get_released(ScavBuffer *b, void *unused) {
        return PyBool_FromLong(b->client == NULL);
}

static PyObject *buffer_repr(ScavBuffer *b) {
        char s[160];

        if (!b->client)
                return PyUnicode_FromString("<scav.Buffer released>");
        snprintf(s, sizeof(s), "<scav.Buffer pool='%s' offset=0x%llx nbytes=%zd%s>", b->client->name,
                 (unsigned long long) b->off, b->nbytes, b->detached ? " detached" : "");
        return PyUnicode_FromString(s);
}

static PyMethodDef buffer_methods[] = {
        { "release", (PyCFunction) buffer_release_method, METH_NOARGS,
          "release()\n--\n\nDrop this Buffer's reference to the allocation (it is freed when the last "
          "reference in any process goes). Raises BufferError while a memoryview or array uses it; "
          "a released Buffer raises ValueError when used. Releasing twice does nothing." },
        { "__enter__", (PyCFunction) buffer_enter, METH_NOARGS, NULL },
        { "__exit__", (PyCFunction) buffer_exit, METH_VARARGS, NULL },
        { "__reduce__", (PyCFunction) buffer_reduce, METH_NOARGS,
          "Pickles a handle, not the bytes: the receiver takes its own reference to the same memory." },
        { "handle", (PyCFunction) buffer_handle, METH_NOARGS,
          "handle()\n--\n\nThe allocation's struct scav_handle as bytes, for any channel. It holds no "
          "reference: Pool.from_handle() in the receiver takes one, or raises scav.StaleError if every "
          "holder released the allocation meanwhile." },
        {},
};

static PyGetSetDef buffer_getset[] = {
        { "nbytes", (getter) get_nbytes, NULL, "Bytes of the buffer (what was asked; the allocation is whole pages).", NULL },
        { "offset", (getter) get_offset, NULL, "Offset of the allocation in its pool.", NULL },
        { "pool", (getter) get_pool, NULL, "Name of the pool.", NULL },
        { "released", (getter) get_released, NULL, "True once the reference was dropped.", NULL },
        {},
};

PyTypeObject ScavBuffer_Type = {
        PyVarObject_HEAD_INIT(NULL, 0)
        .tp_name = "scav.Buffer",
        .tp_basicsize = sizeof(ScavBuffer),
        .tp_dealloc = (destructor) buffer_dealloc,
        .tp_repr = (reprfunc) buffer_repr,
        .tp_as_sequence = &buffer_as_sequence,
        .tp_as_mapping = &buffer_as_mapping,
        .tp_as_buffer = &buffer_as_buffer,
        .tp_flags = Py_TPFLAGS_DEFAULT,
        .tp_doc = "One reference to an allocation of a scavd pool; made by Pool.alloc(), Pool.lookup(), "
                  "Pool.from_handle() or unpickling. Exports a writable buffer; buf[i] and buf[a:b] read "
                  "and write it as mmap.mmap does.",
        .tp_weaklistoffset = offsetof(ScavBuffer, weakreflist),
        .tp_methods = buffer_methods,
        .tp_getset = buffer_getset,
};

int scavpy_buffer_init(PyObject *mod) {
        rebuild_fn = PyObject_GetAttrString(mod, "_rebuild_buffer");
        return rebuild_fn ? 0 : -1;
}

/* SPDX-License-Identifier: MIT */
/*
 * The scav module: Pool, Buffer, the exceptions, and the functions pickles
 * name (_rebuild_buffer, _rebuild_array). See docs/python.md.
 */

#include <limits.h>
#include <stdlib.h>

#include "scavpy.h"

static PyObject *module;
static PyObject *drain_fn, *after_mp_fork_fn;
static bool mp_hooked;
static unsigned finalizer_gen = UINT_MAX;

/*
 * Exit waits for the transfers in flight (transfer.c). atexit covers a
 * plain interpreter. multiprocessing's children end in os._exit() after
 * running its finalizers, and its queues are flushed by finalizers of
 * priority -5 that must come first: so also a finalizer of priority -100,
 * in place before that pass begins (one made during it would not run).
 * A child's registry starts empty (Process._bootstrap clears it, then runs
 * the after-fork hooks): an after-fork hook makes the child's own.
 */
void scavpy_drain_note(void) {
        PyObject *util, *cls = NULL, *args = NULL, *kw = NULL, *r = NULL;

        if (mp_hooked && finalizer_gen == scavpy_fork_gen)
                return;
        util = PyDict_GetItemString(PyImport_GetModuleDict(), "multiprocessing.util");
        if (!util)
                return; /* atexit will do; so will this, once multiprocessing is loaded */
        if (!mp_hooked) {
                r = PyObject_CallMethod(util, "register_after_fork", "OO", module, after_mp_fork_fn);
                if (!r)
                        goto fail;
                Py_CLEAR(r);
                mp_hooked = true;
        }
        if (finalizer_gen != scavpy_fork_gen) {
                cls = PyObject_GetAttrString(util, "Finalize");
                args = Py_BuildValue("(OO)", Py_None, drain_fn);
                kw = Py_BuildValue("{si}", "exitpriority", -100);
                if (!cls || !args || !kw || !(r = PyObject_Call(cls, args, kw)))
                        goto fail;
                finalizer_gen = scavpy_fork_gen;
        }
        goto out;
fail:
        PyErr_WriteUnraisable(drain_fn);
out:
        Py_XDECREF(cls);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(r);
}

static PyObject *after_mp_fork(PyObject *mod, PyObject *unused) {
        finalizer_gen = UINT_MAX;
        scavpy_drain_note();
        Py_RETURN_NONE;
}

static int drain_init(PyObject *m) {
        const char *e = getenv("SCAV_EXIT_TIMEOUT");
        double t = e && *e ? atof(e) : 10.0;
        PyObject *atexit, *r;

        if (PyModule_AddObject(m, "exit_timeout", PyFloat_FromDouble(t)) < 0)
                return -1;
        module = m;
        drain_fn = PyObject_GetAttrString(m, "_drain");
        after_mp_fork_fn = PyObject_GetAttrString(m, "_after_mp_fork");
        atexit = PyImport_ImportModule("atexit");
        if (!drain_fn || !after_mp_fork_fn || !atexit)
                return -1;
        r = PyObject_CallMethod(atexit, "register", "O", drain_fn);
        Py_DECREF(atexit);
        if (!r)
                return -1;
        Py_DECREF(r);
        scavpy_drain_note();
        return 0;
}

static PyMethodDef module_methods[] = {
        { "_rebuild_buffer", scavpy_rebuild_buffer, METH_VARARGS,
          "Unpickles a scav.Buffer: takes this process's reference to the same allocation." },
        { "_rebuild_array", scavpy_rebuild_array, METH_VARARGS,
          "Unpickles a NumPy array over a scav.Buffer (see _reduce_ndarray)." },
        { "_after_mp_fork", (PyCFunction) after_mp_fork, METH_O, "multiprocessing's after-fork hook." },
        { "_drain", scavpy_transfer_drain, METH_NOARGS,
          "At exit: waits up to scav.exit_timeout seconds for pickled Buffers to be received." },
        {},
};

static struct PyModuleDef module_def = {
        PyModuleDef_HEAD_INIT,
        .m_name = "scav",
        .m_doc = "Shared-memory pools of scavd: zero-copy buffers and NumPy arrays that pickle as references.\n\n"
                 "    pool = scav.Pool('default')\n"
                 "    a = pool.ndarray((1024, 1024), 'float32')   # in shared memory\n"
                 "    queue.put(a)                                # passes a reference, not the bytes\n\n"
                 "See docs/python.md.",
        .m_size = -1,
        .m_methods = module_methods,
};

static int add_type(PyObject *m, PyTypeObject *t, const char *name) {
        if (PyType_Ready(t) < 0)
                return -1;
        return name ? PyModule_AddObjectRef(m, name, (PyObject *) t) : 0;
}

PyMODINIT_FUNC PyInit_scav(void) {
        PyObject *m, *bases;

        m = PyModule_Create(&module_def);
        if (!m)
                return NULL;
        if (add_type(m, &ScavClient_Type, NULL) < 0 || add_type(m, &ScavBuffer_Type, "Buffer") < 0 ||
            add_type(m, &ScavPool_Type, "Pool") < 0)
                goto fail;

        /* A full pool is a MemoryError, as Python users catch it, and an
         * OSError with errno ENOMEM, as the rest of the module's errors. */
        bases = PyTuple_Pack(2, PyExc_OSError, PyExc_MemoryError);
        if (!bases)
                goto fail;
        scavpy_PoolFullError = PyErr_NewExceptionWithDoc(
                "scav.PoolFullError", "The pool has no room (errno ENOMEM): a MemoryError and an OSError.", bases, NULL);
        Py_DECREF(bases);
        scavpy_StaleError = PyErr_NewExceptionWithDoc(
                "scav.StaleError",
                "The allocation a handle or pickle names was freed before this process took its reference "
                "(errno ESTALE), or the daemon lost the pool.",
                PyExc_OSError, NULL);
        if (!scavpy_PoolFullError || !scavpy_StaleError ||
            PyModule_AddObjectRef(m, "PoolFullError", scavpy_PoolFullError) < 0 ||
            PyModule_AddObjectRef(m, "StaleError", scavpy_StaleError) < 0)
                goto fail;

        if (PyModule_AddStringConstant(m, "__version__", SCAVPY_VERSION) < 0 ||
            PyModule_AddIntConstant(m, "NAME_MAX", SCAV_NAME_MAX - 1) < 0 ||
            PyModule_AddIntConstant(m, "HANDLE_SIZE", sizeof(struct scav_handle)) < 0)
                goto fail;
        if (scavpy_client_init() < 0 || scavpy_buffer_init(m) < 0 || scavpy_numpy_init(m) < 0 ||
            scavpy_fork_register(m) < 0 || drain_init(m) < 0)
                goto fail;
        return m;
fail:
        Py_DECREF(m);
        return NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * The scav module: Pool, Buffer, the exceptions, and the functions pickles
 * name (_rebuild_buffer, _rebuild_array). See docs/python.md.
 */

#include "scavpy.h"

/* TEMPORARY: python/compat/share-stub.c defines it while libscav lacks the
 * sharing API; the tests of sharing skip then. */
extern const int scavpy_sharing_stub __attribute__((weak));

static PyMethodDef module_methods[] = {
        { "_rebuild_buffer", scavpy_rebuild_buffer, METH_VARARGS,
          "Unpickles a scav.Buffer: takes this process's reference to the same allocation." },
        { "_rebuild_array", scavpy_rebuild_array, METH_VARARGS,
          "Unpickles a NumPy array over a scav.Buffer (see _reduce_ndarray)." },
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
            PyModule_AddIntConstant(m, "HANDLE_SIZE", sizeof(struct scav_handle)) < 0 ||
            PyModule_AddIntConstant(m, "_sharing_stub", &scavpy_sharing_stub != NULL) < 0)
                goto fail;
        if (scavpy_client_init() < 0 || scavpy_buffer_init(m) < 0 || scavpy_numpy_init(m) < 0 ||
            scavpy_fork_register(m) < 0)
                goto fail;
        return m;
fail:
        Py_DECREF(m);
        return NULL;
}

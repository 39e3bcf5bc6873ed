/* SPDX-License-Identifier: MIT */
/*
 * NumPy, when it is there; the module imports and works without it.
 *
 * Pool.ndarray() makes an array whose base is a new Buffer. Arrays over a
 * Buffer -- that one, numpy.frombuffer(buf), their slices and views -- pass
 * through multiprocessing (Queue, Pipe, Pool.map, ProcessPoolExecutor) as a
 * transfer of the Buffer plus dtype, shape, strides and offset, not as
 * their bytes: once NumPy is loaded, a reducer for numpy.ndarray is
 * registered with multiprocessing's ForkingPickler (as torch.multiprocessing
 * does for tensors). It answers every other array with NumPy's own
 * reduction, and plain pickle.dumps() is left alone: a pickle meant for a
 * file still holds the bytes.
 */

#include <stdlib.h>
#include <string.h>

#include "scavpy.h"

static bool registered;
static PyObject *ndarray_type;   /* numpy.ndarray */
static PyObject *rebuild_fn;     /* scav._rebuild_array */
static PyObject *reducer_fn;     /* scav._reduce_ndarray */

static PyObject *numpy(void) {
        return PyImport_ImportModule("numpy");
}

static int register_reducer(void) {
        PyObject *np, *mr = NULL, *fp = NULL, *res = NULL;

        registered = true; /* once, whatever happens */
        np = numpy();
        if (!np)
                return -1;
        ndarray_type = PyObject_GetAttrString(np, "ndarray");
        Py_DECREF(np);
        if (!ndarray_type)
                return -1;
        mr = PyImport_ImportModule("multiprocessing.reduction");
        if (mr)
                fp = PyObject_GetAttrString(mr, "ForkingPickler");
        if (fp)
                res = PyObject_CallMethod(fp, "register", "OO", ndarray_type, reducer_fn);
        Py_XDECREF(mr);
        Py_XDECREF(fp);
        if (!res)
                return -1;
        Py_DECREF(res);
        return 0;
}

void scavpy_numpy_note(void) {
        PyObject *type, *value, *tb;

        if (registered || !PyDict_GetItemString(PyImport_GetModuleDict(), "numpy"))
                return;
        /* Without the reducer arrays are pickled by value: slower, not wrong. */
        PyErr_Fetch(&type, &value, &tb);
        if (register_reducer() < 0)
                PyErr_WriteUnraisable(reducer_fn);
        PyErr_Restore(type, value, tb);
}

static int shape_arg(PyObject *o, PyObject **shape, Py_ssize_t *count) {
        Py_ssize_t n = 1;
        PyObject *t;

        if (PyIndex_Check(o))
                t = PyTuple_Pack(1, o);
        else
                t = PySequence_Tuple(o);
        if (!t)
                return -1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
                Py_ssize_t d = PyNumber_AsSsize_t(PyTuple_GET_ITEM(t, i), PyExc_OverflowError);
                if (d == -1 && PyErr_Occurred())
                        goto fail;
                if (d < 0) {
                        PyErr_SetString(PyExc_ValueError, "ndarray: negative dimension");
                        goto fail;
                }
                if (d != 0 && n > PY_SSIZE_T_MAX / d) {
                        PyErr_SetString(PyExc_ValueError, "ndarray: shape too large");
                        goto fail;
                }
                n *= d;
        }
        *shape = t;
        *count = n;
        return 0;
fail:
        Py_DECREF(t);
        return -1;
}

PyObject *scavpy_pool_ndarray(ScavClient *c, PyObject *args, PyObject *kw) {
        static char *kwlist[] = { "shape", "dtype", "order", "zero", NULL };
        PyObject *shapeo, *dtypeo = Py_None, *np = NULL, *dt = NULL, *shape = NULL, *arr = NULL;
        PyObject *ndargs = NULL, *ndkw = NULL, *itemsizeo = NULL, *hasobj = NULL, *type = NULL;
        const char *order = "C";
        Py_ssize_t count, itemsize, nbytes;
        ScavBuffer *b = NULL;
        int zero = 0;

        if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Osp:ndarray", kwlist, &shapeo, &dtypeo, &order, &zero))
                return NULL;
        if (strcmp(order, "C") != 0 && strcmp(order, "F") != 0) {
                PyErr_Format(PyExc_ValueError, "ndarray: order must be 'C' or 'F', not '%s'", order);
                return NULL;
        }
        np = numpy();
        if (!np)
                return NULL;
        dt = PyObject_CallMethod(np, "dtype", "O", dtypeo);
        if (!dt)
                goto out;
        hasobj = PyObject_GetAttrString(dt, "hasobject");
        if (!hasobj)
                goto out;
        if (PyObject_IsTrue(hasobj)) {
                PyErr_SetString(PyExc_ValueError, "ndarray: a dtype with Python objects cannot live in shared memory");
                goto out;
        }
        itemsizeo = PyObject_GetAttrString(dt, "itemsize");
        if (!itemsizeo)
                goto out;
        itemsize = PyLong_AsSsize_t(itemsizeo);
        if (itemsize < 0 || shape_arg(shapeo, &shape, &count) < 0)
                goto out;
        if (itemsize > 0 && count > PY_SSIZE_T_MAX / itemsize) {
                PyErr_SetString(PyExc_ValueError, "ndarray: shape too large");
                goto out;
        }
        nbytes = count * itemsize;
        /* An empty array still gets a Buffer (of one page), so that it pickles
         * and releases like every other. */
        b = scavpy_buffer_alloc(c, nbytes > 0 ? nbytes : 1, zero);
        if (!b)
                goto out;
        type = PyObject_GetAttrString(np, "ndarray");
        ndargs = PyTuple_Pack(1, shape);
        ndkw = Py_BuildValue("{sOsOss}", "dtype", dt, "buffer", (PyObject *) b, "order", order);
        if (type && ndargs && ndkw)
                arr = PyObject_Call(type, ndargs, ndkw);
out:
        Py_XDECREF(type);
        Py_XDECREF(b); /* the array holds it */
        Py_XDECREF(ndargs);
        Py_XDECREF(ndkw);
        Py_XDECREF(itemsizeo);
        Py_XDECREF(hasobj);
        Py_XDECREF(shape);
        Py_XDECREF(dt);
        Py_XDECREF(np);
        scavpy_numpy_note();
        return arr;
}

/* The Buffer under an array (through its bases and memoryviews), or NULL. */
static ScavBuffer *array_buffer(PyObject *arr) {
        PyObject *o = Py_NewRef(arr);

        for (int depth = 0; depth < 64 && o && o != Py_None; depth++) {
                PyObject *next = NULL;

                if (ScavBuffer_Check(o))
                        return (ScavBuffer *) o;
                if (PyMemoryView_Check(o))
                        next = Py_XNewRef(PyMemoryView_GET_BUFFER(o)->obj);
                else if (ndarray_type && PyObject_TypeCheck(o, (PyTypeObject *) ndarray_type))
                        next = PyObject_GetAttrString(o, "base");
                Py_DECREF(o);
                o = next;
        }
        Py_XDECREF(o);
        PyErr_Clear();
        return NULL;
}

/* The array's (data address, shape, strides, itemsize, writeable). */
static int array_layout(PyObject *arr, uintptr_t *data, PyObject **shape, PyObject **strides, Py_ssize_t *itemsize,
                        int *writeable) {
        PyObject *iface = NULL, *d, *flags = NULL, *w = NULL, *is = NULL;
        int r = -1;

        *shape = *strides = NULL;
        iface = PyObject_GetAttrString(arr, "__array_interface__");
        if (!iface || !PyDict_Check(iface))
                goto out;
        d = PyDict_GetItemString(iface, "data");
        if (!d || !PyTuple_Check(d) || PyTuple_GET_SIZE(d) < 1)
                goto out;
        *data = (uintptr_t) PyLong_AsVoidPtr(PyTuple_GET_ITEM(d, 0));
        if (PyErr_Occurred())
                goto out;
        *shape = PyObject_GetAttrString(arr, "shape");
        *strides = PyObject_GetAttrString(arr, "strides");
        is = PyObject_GetAttrString(arr, "itemsize");
        flags = PyObject_GetAttrString(arr, "flags");
        w = flags ? PyObject_GetAttrString(flags, "writeable") : NULL;
        if (!*shape || !*strides || !is || !w || !PyTuple_Check(*shape) || !PyTuple_Check(*strides) ||
            PyTuple_GET_SIZE(*shape) != PyTuple_GET_SIZE(*strides))
                goto out;
        *itemsize = PyLong_AsSsize_t(is);
        *writeable = PyObject_IsTrue(w);
        if (*itemsize <= 0 || *writeable < 0)
                goto out;
        r = 0;
out:
        if (r < 0) {
                Py_CLEAR(*shape);
                Py_CLEAR(*strides);
        }
        Py_XDECREF(iface);
        Py_XDECREF(flags);
        Py_XDECREF(w);
        Py_XDECREF(is);
        return r;
}

/* The bytes [lo, hi) the array reads, relative to its data address; false
 * for an empty array. */
static bool array_extent(PyObject *shape, PyObject *strides, Py_ssize_t itemsize, Py_ssize_t *lo, Py_ssize_t *hi) {
        Py_ssize_t l = 0, h = itemsize;

        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++) {
                Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape, i));
                Py_ssize_t s = PyLong_AsSsize_t(PyTuple_GET_ITEM(strides, i));
                if (PyErr_Occurred() || n <= 0)
                        return false;
                /* Within a Buffer: no overflow for sizes that fit in memory. */
                if (s >= 0)
                        h += (n - 1) * s;
                else
                        l += (n - 1) * s;
        }
        *lo = l;
        *hi = h;
        return true;
}

static PyObject *by_value(PyObject *arr) {
        return PyObject_CallMethod(arr, "__reduce_ex__", "i", 4);
}

/* multiprocessing's reducer for numpy.ndarray. */
static PyObject *reduce_ndarray(PyObject *mod, PyObject *arr) {
        PyObject *shape = NULL, *strides = NULL, *dtype = NULL, *state = NULL, *res = NULL, *hasobj = NULL;
        Py_ssize_t itemsize, lo, hi;
        int writeable = 0;
        uintptr_t data, start;
        ScavBuffer *b;

        b = array_buffer(arr);
        if (!b)
                return by_value(arr);
        if (!b->client || b->detached || array_layout(arr, &data, &shape, &strides, &itemsize, &writeable) < 0 ||
            !array_extent(shape, strides, itemsize, &lo, &hi))
                goto value;
        dtype = PyObject_GetAttrString(arr, "dtype");
        hasobj = dtype ? PyObject_GetAttrString(dtype, "hasobject") : NULL;
        if (!hasobj || PyObject_IsTrue(hasobj))
                goto value;
        start = (uintptr_t) b->ptr;
        if ((Py_ssize_t) (data - start) + lo < 0 || (Py_ssize_t) (data - start) + hi > b->nbytes)
                goto value;
        state = scavpy_buffer_transfer_state(b);
        if (!state)
                goto out;
        res = Py_BuildValue("(O(NOOOnO))", rebuild_fn, state, dtype, shape, strides, (Py_ssize_t) (data - start),
                            writeable ? Py_True : Py_False);
        goto out;
value:
        PyErr_Clear();
        res = by_value(arr);
out:
        Py_DECREF(b);
        Py_XDECREF(shape);
        Py_XDECREF(strides);
        Py_XDECREF(dtype);
        Py_XDECREF(hasobj);
        return res;
}

PyObject *scavpy_rebuild_array(PyObject *mod, PyObject *args) {
        PyObject *state, *dtype, *shape, *strides, *writeable, *np = NULL, *arr = NULL, *kw = NULL, *ndargs = NULL;
        PyObject *flags = NULL, *type;
        Py_ssize_t offset;
        ScavBuffer *b;

        if (!PyArg_ParseTuple(args, "O!OOOnO:_rebuild_array", &PyTuple_Type, &state, &dtype, &shape, &strides,
                              &offset, &writeable))
                return NULL;
        b = scavpy_buffer_from_state(state);
        if (!b)
                return NULL;
        np = numpy();
        if (!np)
                goto out;
        scavpy_numpy_note();
        type = PyObject_GetAttrString(np, "ndarray");
        if (!type)
                goto out;
        ndargs = PyTuple_Pack(1, shape);
        kw = Py_BuildValue("{sOsOsnsO}", "dtype", dtype, "buffer", (PyObject *) b, "offset", offset, "strides",
                           strides);
        if (ndargs && kw)
                arr = PyObject_Call(type, ndargs, kw);
        Py_DECREF(type);
        if (arr && !PyObject_IsTrue(writeable)) {
                flags = PyObject_GetAttrString(arr, "flags");
                if (!flags || PyObject_SetAttrString(flags, "writeable", Py_False) < 0)
                        Py_CLEAR(arr);
        }
out:
        Py_DECREF(b); /* the array holds it */
        Py_XDECREF(np);
        Py_XDECREF(kw);
        Py_XDECREF(ndargs);
        Py_XDECREF(flags);
        return arr;
}

static PyMethodDef reducer_def = { "_reduce_ndarray", reduce_ndarray, METH_O,
                                   "multiprocessing's reducer of numpy.ndarray (see docs/python.md)." };

int scavpy_numpy_init(PyObject *mod) {
        rebuild_fn = PyObject_GetAttrString(mod, "_rebuild_array");
        if (!rebuild_fn)
                return -1;
        reducer_fn = PyCFunction_NewEx(&reducer_def, mod, NULL);
        if (!reducer_fn || PyModule_AddObjectRef(mod, "_reduce_ndarray", reducer_fn) < 0)
                return -1;
        return 0;
}

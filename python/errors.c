/* SPDX-License-Identifier: MIT */
/*
 * libscav's negative errnos as Python exceptions. OSError picks its own
 * subclass from the errno (FileNotFoundError for ENOENT, PermissionError for
 * EACCES, ConnectionRefusedError, TimeoutError, FileExistsError ...); a full
 * pool is scav.PoolFullError, both a MemoryError and an OSError with errno
 * ENOMEM, and a handle whose allocation is gone is scav.StaleError (ESTALE).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scavpy.h"

PyObject *scavpy_PoolFullError;
PyObject *scavpy_StaleError;

const char *scavpy_socket_path(void) {
        const char *e = getenv("SCAVD_SOCKET");

        return e && *e ? e : "/run/scavd/scavd.sock";
}

PyObject *scavpy_error(int r, const char *fmt, ...) {
        PyObject *type = PyExc_OSError, *args;
        int e = r < 0 ? -r : r;
        char what[512];
        int n;
        va_list ap;

        va_start(ap, fmt);
        n = vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t) n < sizeof(what))
                snprintf(what + n, sizeof(what) - (size_t) n, ": %s", strerror(e));
        if (e == ENOMEM)
                type = scavpy_PoolFullError;
        else if (e == ESTALE)
                type = scavpy_StaleError;
        /* "[Errno 2] no pool named 'x' (scavd at /run/...): No such file or directory" */
        args = Py_BuildValue("(is)", e, what);
        if (!args)
                return NULL;
        PyErr_SetObject(type, args);
        Py_DECREF(args);
        return NULL;
}

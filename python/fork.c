/* SPDX-License-Identifier: MIT */
/*
 * fork(). A child does not inherit its parent's client slot (libscav(3)
 * FORK): an inherited handle refuses to allocate or free. Its Buffers,
 * though, and every memoryview and array made from them, are inherited too
 * and point into the parent's mapping, which the child keeps. They were the
 * parent's references: if the parent released one right after the fork,
 * the child would read memory that was freed and handed to someone else.
 *
 * So os.fork() (what multiprocessing and concurrent.futures call) does a
 * handover, through os.register_at_fork:
 *
 *  - before: for each client with live Buffers, make a handle of each (no
 *    reference; a handle cannot lead to other memory), and a pipe;
 *  - child: for those clients, open the pool again (a slot of its own) and
 *    take a reference to each Buffer through its handle, then say so on the
 *    pipe. Clients without Buffers open again when first used.
 *  - parent: wait, holding the GIL, until the child has said so (or exited):
 *    no thread of the parent can release a Buffer meanwhile, so every
 *    handle is still good and the child's references succeed.
 *
 * The parent's wait is the child's scav_open (a round trip to the daemon)
 * plus one scav_ref_handle per Buffer, and only when it has Buffers. If the
 * child cannot open the pool (no free slot, no daemon), it copies each
 * inherited Buffer's pages to private memory in place -- the parent is
 * still waiting, so they are intact -- and marks the Buffer detached: old
 * views keep reading what they read at the fork, never reused memory, and
 * new uses raise OSError with the reason.
 *
 * A fork that bypasses os.fork's hooks (a C library calling fork()) is
 * seen later, through a pthread_atfork counter: the child's inherited
 * Buffers are then marked unusable (ECHILD); nothing can vouch for what
 * their old views read.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scavpy.h"

volatile unsigned scavpy_fork_gen;
static int fork_pipe[2] = { -1, -1 };

static void atfork_child(void) {
        scavpy_fork_gen++;
}

static void closefd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void inherit(ScavClient *c) {
        scav_pool **n;

        if (!c->p)
                return;
        n = realloc(c->inherited, (c->n_inherited + 1) * sizeof(*n));
        if (n) {
                c->inherited = n;
                c->inherited[c->n_inherited++] = c->p;
        }
        /* else the mapping is left in place, unlisted: never unmapped. */
        c->p = NULL;
}

/* The Buffer's pages become a private copy, in place: views of it keep
 * reading the same bytes, which nobody can free under them any more. */
static void detach(ScavBuffer *b, int err) {
        size_t ps = (size_t) sysconf(_SC_PAGESIZE);
        size_t len = ((size_t) b->nbytes + ps - 1) & ~(ps - 1);
        void *tmp;

        b->detached = err < 0 ? -err : err ? err : ESTALE;
        tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (tmp == MAP_FAILED)
                return;
        memcpy(tmp, b->ptr, len);
        if (mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, b->ptr) == MAP_FAILED)
                munmap(tmp, len);
}

/* Called with a reference to c held. */
void scavpy_fork_unhooked_child(ScavClient *c) {
        inherit(c);
        if (scavpy_transfer_forget(c))
                Py_DECREF(c);
        for (ScavBuffer *b = c->buffers; b; b = b->next)
                if (!b->detached)
                        b->detached = ECHILD;
}

static PyObject *fork_before(PyObject *mod, PyObject *unused) {
        bool any = false;

        for (ScavClient *c = scavpy_clients; c; c = c->next) {
                size_t i = 0;

                free(c->fork_handles);
                c->fork_handles = NULL;
                if (!c->p || scavpy_client_forked(c) || c->n_buffers == 0)
                        continue;
                any = true;
                /* Without memory for them, the child detaches every Buffer. */
                c->fork_handles = calloc(c->n_buffers, sizeof(*c->fork_handles));
                if (!c->fork_handles)
                        continue;
                for (ScavBuffer *b = c->buffers; b; b = b->next, i++)
                        if (b->detached || scav_make_handle(c->p, b->off, &c->fork_handles[i]) < 0)
                                c->fork_handles[i].magic = 0;
        }
        closefd(&fork_pipe[0]);
        closefd(&fork_pipe[1]);
        if (any && pipe2(fork_pipe, O_CLOEXEC) < 0)
                fork_pipe[0] = fork_pipe[1] = -1;
        Py_RETURN_NONE;
}

static PyObject *fork_after_parent(PyObject *mod, PyObject *unused) {
        char ch;

        closefd(&fork_pipe[1]);
        if (fork_pipe[0] >= 0) {
                /* One byte: done; EOF: the child is gone, or fork failed. */
                while (read(fork_pipe[0], &ch, 1) < 0 && errno == EINTR)
                        ;
                closefd(&fork_pipe[0]);
        }
        for (ScavClient *c = scavpy_clients; c; c = c->next) {
                free(c->fork_handles);
                c->fork_handles = NULL;
        }
        Py_RETURN_NONE;
}

/* Called with a reference to c held. */
static void child_client(ScavClient *c) {
        struct scav_handle *hs = c->fork_handles;
        scav_pool *p = NULL;
        size_t i = 0;
        int r;

        c->fork_handles = NULL;
        inherit(c);
        /* The parent's transfers stay the parent's. */
        if (scavpy_transfer_forget(c))
                Py_DECREF(c);
        if (c->n_buffers == 0) {
                free(hs);
                return; /* opened again when first used */
        }
        r = scav_open(c->name, &p);
        if (r >= 0) {
                c->p = p;
                c->gen = scavpy_fork_gen;
        }
        for (ScavBuffer *b = c->buffers; b; b = b->next, i++) {
                uint64_t off;
                int rr = r;

                if (b->detached)
                        continue;
                if (p) {
                        rr = hs && hs[i].magic == SCAV_HANDLE_MAGIC ? scav_ref_handle(p, &hs[i], &off) : -ENOMEM;
                        if (rr >= 0 && off == b->off)
                                continue;
                        if (rr >= 0) {
                                (void) scav_unref(p, off);
                                rr = -ESTALE;
                        }
                }
                detach(b, rr);
        }
        free(hs);
}

static PyObject *fork_after_child(PyObject *mod, PyObject *unused) {
        PyObject *clients = PyList_New(0);
        char ch = 1;

        closefd(&fork_pipe[0]);
        scavpy_client_after_fork_child();
        /* Held in a list: forgetting the parent's transfers may drop the
         * last reference to a client. Without memory for it, the inherited
         * Buffers stay the parent's references (the unhooked case). */
        for (ScavClient *c = scavpy_clients; c && clients; c = c->next)
                if (PyList_Append(clients, (PyObject *) c) < 0)
                        Py_CLEAR(clients);
        for (Py_ssize_t i = 0; clients && i < PyList_GET_SIZE(clients); i++)
                child_client((ScavClient *) PyList_GET_ITEM(clients, i));
        Py_XDECREF(clients);
        PyErr_Clear();
        if (fork_pipe[1] >= 0)
                (void) !write(fork_pipe[1], &ch, 1);
        closefd(&fork_pipe[1]);
        Py_RETURN_NONE;
}

static PyMethodDef fork_defs[] = {
        { "_fork_before", fork_before, METH_NOARGS, NULL },
        { "_fork_after_parent", fork_after_parent, METH_NOARGS, NULL },
        { "_fork_after_child", fork_after_child, METH_NOARGS, NULL },
};

int scavpy_fork_register(PyObject *mod) {
        PyObject *os = NULL, *reg = NULL, *kw = NULL, *args = NULL, *res = NULL;
        PyObject *fns[3] = {};
        int r = -1;

        if (pthread_atfork(NULL, NULL, atfork_child) != 0) {
                PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
                return -1;
        }
        for (int i = 0; i < 3; i++) {
                fns[i] = PyCFunction_NewEx(&fork_defs[i], mod, NULL);
                if (!fns[i])
                        goto out;
        }
        os = PyImport_ImportModule("os");
        if (!os)
                goto out;
        reg = PyObject_GetAttrString(os, "register_at_fork");
        args = PyTuple_New(0);
        kw = Py_BuildValue("{sOsOsO}", "before", fns[0], "after_in_parent", fns[1], "after_in_child", fns[2]);
        if (!reg || !args || !kw)
                goto out;
        res = PyObject_Call(reg, args, kw);
        if (res)
                r = 0;
out:
        for (int i = 0; i < 3; i++)
                Py_XDECREF(fns[i]);
        Py_XDECREF(os);
        Py_XDECREF(reg);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_XDECREF(res);
        return r;
}

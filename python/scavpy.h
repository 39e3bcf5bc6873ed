/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The scav extension module: pools of scavd from Python (docs/python.md).
 *
 * One ScavClient per pool and process holds the process's libscav handle
 * (one client slot, whatever number of scav.Pool objects use it); each
 * scav.Buffer holds one reference to one allocation through it. Everything
 * here runs with the GIL held, except the libscav calls that may wait for
 * the daemon or for a name (open, stats, scavenge, lookup with a timeout),
 * which release it around the call and nothing else.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <scav.h>

typedef struct ScavClient ScavClient;
typedef struct ScavBuffer ScavBuffer;

/*
 * Transfers (transfer.c). A pickled Buffer carries a handle, which holds no
 * reference; the sender keeps its own reference until the receiver has
 * taken one. The receiver says so in an acknowledgement word the pickle
 * names, in a page of the pool the sender allocated for them: the sender
 * writes the transfer's id there, the receiver swaps it for id | ACKED.
 */
struct scavpy_hold {
        uint64_t off;
        uint32_t unacked;   /* transfers of this reference not yet acknowledged */
        bool orphan;        /* its Buffer was released: the last acknowledgement unrefs */
};

struct scavpy_ack_use {
        struct scavpy_hold *hold; /* NULL: the word is free */
        uint64_t id;
};

struct scavpy_ack_page {
        uint64_t off;
        uint64_t *words;
        uint32_t nwords, used;
        struct scav_handle handle;
        struct scavpy_ack_use *uses;
};

struct scavpy_acks {
        struct scavpy_ack_page *pages;
        size_t npages;
        struct { uint32_t page, word; } *inflight;
        size_t ninflight, cap, cursor;
        uint64_t next_id;
};

/* An acknowledgement word: 0 free, else id << 2, | SCAVPY_ACKED once the
 * receiver has its reference, | SCAVPY_WAITER while the sender sleeps on
 * the word (only then does the receiver pay a futex wake). */
#define SCAVPY_ID_MAX (UINT64_MAX >> 2)
#define SCAVPY_PENDING(id) ((uint64_t) (id) << 2)
#define SCAVPY_ACKED UINT64_C(1)
#define SCAVPY_WAITER UINT64_C(2)
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the futex is the low half of a word");

struct ScavClient {
        PyObject_HEAD
        char name[SCAV_POOL_NAME_SIZE];
        scav_pool *p;              /* this process's slot; NULL in a child until it opens its own */
        unsigned gen;              /* scavpy_fork_gen when p was opened: another value means a child */
        scav_pool **inherited;     /* ancestors' handles, kept mapped: inherited pointers point there */
        size_t n_inherited;
        uint64_t page_size, capacity;
        ScavBuffer *buffers;       /* live buffers, through ScavBuffer.prev/next */
        size_t n_buffers;
        bool pinned;               /* opened for unpickling: holds a reference to itself */
        struct scavpy_acks acks;
        struct scav_handle *fork_handles; /* made before fork(), one per live buffer, for the child */
        ScavClient *next;          /* the process's clients */
};

struct ScavBuffer {
        PyObject_HEAD
        ScavClient *client;        /* NULL once released */
        uint8_t *ptr;
        uint64_t off;
        Py_ssize_t nbytes;
        Py_ssize_t exports;        /* memoryviews, arrays: they keep the Buffer alive */
        ScavBuffer *prev, *next;
        struct scavpy_hold *hold;  /* this reference's transfers, or NULL */
        int detached;              /* errno: inherited across fork without a reference (private copy) */
        PyObject *weakreflist;
};

extern PyTypeObject ScavClient_Type;
extern PyTypeObject ScavBuffer_Type;
extern PyTypeObject ScavPool_Type;
extern PyObject *scavpy_PoolFullError;
extern PyObject *scavpy_StaleError;

#define ScavBuffer_Check(o) PyObject_TypeCheck((o), &ScavBuffer_Type)

/* errors.c: a negative errno of libscav as the Python exception for it
 * (always returns NULL); fmt (printf's) says what failed. */
PyObject *scavpy_error(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *scavpy_socket_path(void);

/* client.c */
extern ScavClient *scavpy_clients;
int scavpy_client_init(void);
/* A new reference to this process's client of the pool, opened if need
 * be; pin keeps it open until a Pool of it is closed (unpickling). NULL
 * with an exception set. */
ScavClient *scavpy_client_get(const char *name, bool pin);
/* Makes sure the client has a slot of this process (after fork). -1 with
 * an exception set. */
int scavpy_client_ensure(ScavClient *c);
void scavpy_client_unpin(ScavClient *c);
/* The open lock after fork: the child's copy may be held by a thread that
 * does not exist there. */
void scavpy_client_after_fork_child(void);

/* buffer.c */
ScavBuffer *scavpy_buffer_new(ScavClient *c, uint64_t off, Py_ssize_t nbytes);
/* A new allocation of a ready client (the caller holds c). */
ScavBuffer *scavpy_buffer_alloc(ScavClient *c, Py_ssize_t nbytes, bool zero);
/* Drops the Buffer's reference. -1 with an exception set on an error of
 * libscav (the Buffer is released anyway) or while it is exported. */
int scavpy_buffer_release(ScavBuffer *b);
/* A Buffer usable for its memory, or -1 with ValueError/OSError set. */
int scavpy_buffer_check_usable(ScavBuffer *b);
PyObject *scavpy_rebuild_buffer(PyObject *mod, PyObject *args);
PyObject *scavpy_buffer_from_handle_bytes(ScavClient *c, PyObject *bytes, Py_ssize_t nbytes);
int scavpy_buffer_init(PyObject *mod);
/* The pickle state of a transfer of b (a tuple), or NULL. */
PyObject *scavpy_buffer_transfer_state(ScavBuffer *b);
ScavBuffer *scavpy_buffer_from_state(PyObject *state);
ScavBuffer *scavpy_buffer_from_handle(ScavClient *c, const struct scav_handle *h, Py_ssize_t nbytes);

/* transfer.c */
/* Starts a transfer of b's reference: *page and *word name the
 * acknowledgement word, *id the value to acknowledge. */
int scavpy_transfer_start(ScavBuffer *b, uint32_t *page, uint32_t *word, uint64_t *id);
/* Acknowledges a transfer in the sender's page (best effort). */
void scavpy_transfer_ack(ScavClient *c, const struct scav_handle *page, uint64_t word, uint64_t id);
/* Drops the references whose transfers were all acknowledged: a bounded
 * share of them (the allocation path), or all. Called with a reference to
 * c held. */
void scavpy_transfer_reap(ScavClient *c);
void scavpy_transfer_reap_all(ScavClient *c);
/* Forgets every transfer (the child of a fork): the references kept for
 * them are the parent's. True if the client's own reference, kept while
 * transfers are in flight, is the caller's to drop. */
bool scavpy_transfer_forget(ScavClient *c);
/* scav._drain(): at exit, waits up to scav.exit_timeout seconds for the
 * transfers in flight to be received. */
PyObject *scavpy_transfer_drain(PyObject *mod, PyObject *unused);
size_t scavpy_transfer_pending(ScavClient *c);

/* fork.c */
/* Counts fork()s (a pthread_atfork child handler: also forks that bypass
 * os.fork's hooks), so that a client knows a slot that is not its own. */
extern volatile unsigned scavpy_fork_gen;
static inline bool scavpy_client_forked(const ScavClient *c) {
        return c->p && c->gen != scavpy_fork_gen;
}
int scavpy_fork_register(PyObject *mod);
/* A child forked without os.fork()'s hooks (a C library's fork()). */
void scavpy_fork_unhooked_child(ScavClient *c);

/* numpy.c */
int scavpy_numpy_init(PyObject *mod);
PyObject *scavpy_pool_ndarray(ScavClient *c, PyObject *args, PyObject *kw);
PyObject *scavpy_rebuild_array(PyObject *mod, PyObject *args);
/* Registers the ndarray reducer with multiprocessing once NumPy is loaded. */
void scavpy_numpy_note(void);

/* module.c */
PyMODINIT_FUNC PyInit_scav(void);
/* A transfer starts: make sure this process waits for it at exit. */
void scavpy_drain_note(void);

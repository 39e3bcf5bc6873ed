/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The scavd wire protocol: SOCK_SEQPACKET, one message per packet, fixed
 * little-endian layouts (both ends run on one machine), versioned. Every
 * request but WAKE is answered by exactly one reply of the matching type
 * with `error` set (0 or a negative errno). The daemon validates every field of
 * every message with scav_msg_parse(); a malformed message closes the
 * connection with a logged reason.
 *
 * A client session: HELLO (pool name) -> HELLO_REPLY with the meta and heap
 * memfds in SCM_RIGHTS and the client slot. The connection stays open for
 * the whole session: hang-up means the client is gone and its slot is
 * reclaimed. Control requests (scavctl) use the same socket without HELLO.
 */

#include <stddef.h>
#include <stdint.h>

#define SCAV_PROTO_MAGIC 0x56414353u /* "SCAV" */
#define SCAV_PROTO_VERSION 2u /* 2: NAMES; sharing figures in STATUS and CLIENTS */
#define SCAV_POOL_NAME_MAX 64u       /* including the NUL */
#define SCAV_MSG_MAX 4096u           /* largest packet either side sends */

enum scav_msg_type {
        SCAV_MSG_HELLO = 1,        /* client -> daemon: join a pool */
        SCAV_MSG_HELLO_REPLY,      /* + SCM_RIGHTS { meta_fd, heap_fd } */
        SCAV_MSG_MAPPED,           /* client -> daemon: where it mapped the heap (for BPF) */
        SCAV_MSG_MAPPED_REPLY,
        SCAV_MSG_SCAVENGE,         /* force a scavenge of a pool */
        SCAV_MSG_SCAVENGE_REPLY,
        SCAV_MSG_POOLS,            /* list pools */
        SCAV_MSG_POOLS_REPLY,
        SCAV_MSG_STATUS,           /* one pool's statistics */
        SCAV_MSG_STATUS_REPLY,
        SCAV_MSG_CLIENTS,          /* one pool's client slots */
        SCAV_MSG_CLIENTS_REPLY,
        SCAV_MSG_CHECK,            /* heap_check() of one pool */
        SCAV_MSG_CHECK_REPLY,
        SCAV_MSG_RELOAD,           /* reload the configuration */
        SCAV_MSG_RELOAD_REPLY,
        SCAV_MSG_WAKE,             /* client -> daemon, on its session: it freed memory; no reply */
        SCAV_MSG_WAKE_REPLY_NONE,  /* (never sent: keeps requests odd and replies even) */
        SCAV_MSG_NAMES,            /* one pool's published names, from an index on */
        SCAV_MSG_NAMES_REPLY,
        _SCAV_MSG_MAX,
};

struct scav_msg_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t type;
        uint32_t len;   /* whole message, header included */
        int32_t error;  /* replies: 0 or -errno */
};

/* HELLO: join `pool`. To re-claim a slot after a daemon restart, pass the
 * slot and token of the earlier HELLO_REPLY (else slot = UINT32_MAX).
 * The token is random per session and kept only in the daemon's memory: a
 * daemon that restarted cannot know it, so it accepts a slot that the heap
 * still marks live for the connecting pid and uid; a daemon that knows the
 * token (the same daemon, after a lost connection) requires it. A slot
 * already reclaimed answers -ESTALE: the client starts a new session. */
struct scav_msg_hello {
        struct scav_msg_hdr hdr;
        char pool[SCAV_POOL_NAME_MAX];
        uint32_t slot;
        uint32_t flags;
        uint64_t token;
};

struct scav_msg_hello_reply {
        struct scav_msg_hdr hdr;
        uint32_t slot;
        uint32_t page_size;
        uint64_t token;
        uint64_t meta_size;
        uint64_t capacity;
};

struct scav_msg_mapped {
        struct scav_msg_hdr hdr;
        uint64_t addr;  /* where this process mapped the heap */
        uint64_t len;
};

/* Requests naming a pool: SCAVENGE, STATUS, CLIENTS, CHECK, NAMES. */
struct scav_msg_pool_req {
        struct scav_msg_hdr hdr;
        char pool[SCAV_POOL_NAME_MAX];
        uint64_t bytes;  /* SCAVENGE: 0 = everything free; NAMES: the index to list from */
};

/* Replies whose payload is text (POOLS: one name a line; CHECK: the
 * first broken invariant; RELOAD: the error) or a fixed struct. */
struct scav_msg_reply {
        struct scav_msg_hdr hdr;
        uint64_t value;  /* SCAVENGE: bytes released */
        uint32_t count;  /* number of entries / text bytes following */
        uint32_t _pad;
        /* followed by payload */
};

/*
 * WAKE (a bare header, sent on the session socket): the process freed
 * memory. A daemon whose pool has gone quiet runs no generations for it
 * (no timer armed); WAKE starts them again. Never answered; ignored on a
 * connection without a session. A client sends at most one per pool per
 * SCAV_WAKE_INTERVAL_MS, and the daemon does not park a pool within that
 * long of a WAKE, so frees right after one are not missed.
 */
#define SCAV_WAKE_INTERVAL_MS 250

/* HELLO flags: none defined yet; a daemon refuses unknown bits (-EINVAL). */
#define SCAV_HELLO_FLAGS_KNOWN 0u
/* HELLO.slot when not re-claiming a slot. */
#define SCAV_SLOT_NONE UINT32_MAX

/*
 * Payloads of the replies (after struct scav_msg_reply), by type:
 *   POOLS_REPLY     text, one pool name a line ('\n' after each); count = bytes
 *   STATUS_REPLY    one struct scav_msg_pool_status; count = 1
 *   CLIENTS_REPLY   count x struct scav_msg_client (live slots, the daemon's excluded;
 *                   value = number of live slots, which may exceed count if truncated)
 *   CHECK_REPLY     error 0, or -EUCLEAN and text naming the broken invariant; count = bytes
 *   RELOAD_REPLY    error 0, or the error and text "file:line: reason"; count = bytes
 *   NAMES_REPLY     count x struct scav_msg_name; value = the index to ask for next,
 *                   0 when there are no more
 *   SCAVENGE_REPLY  value = bytes released; count = 0
 *   MAPPED_REPLY    count = 0
 * Pool name fields are zero-padded after their NUL (scav_msg_parse refuses
 * anything else). Text is not NUL-terminated. Errors: -ENOENT unknown pool, -EACCES peer not
 * allowed for that pool (or RELOAD by someone else than root or the daemon's user).
 */
enum {
        SCAV_POOL_QUARANTINED = 1u << 0, /* heap_check failed: served no more */
        SCAV_POOL_DRAINING = 1u << 1,    /* removed from configuration, clients remain */
        SCAV_POOL_STUCK = 1u << 2,       /* quarantined: a lock was held past lock_timeout */
};

struct scav_msg_pool_status {
        char name[SCAV_POOL_NAME_MAX];
        uint32_t flags;           /* SCAV_POOL_* */
        uint32_t page_size;
        uint64_t capacity;
        uint64_t heap_sys;
        uint64_t inuse;
        uint64_t released;
        uint64_t retained;
        uint64_t retained_goal;   /* UINT64_MAX: background scavenger idle */
        uint64_t memory_limit;
        uint64_t peak_inuse;
        uint64_t gen;
        uint64_t gen_released;
        uint64_t released_total;
        uint64_t growth_scavenged;
        uint64_t clients;         /* live client slots */
        uint64_t connections;     /* connected sessions */
        uint64_t max_clients;
        uint64_t recoveries;
        uint64_t faults;          /* 0 when unknown */
        uint64_t pressure_events;
        uint64_t refaults;        /* faults beyond the heap's growth, per generation (pages) */
        uint64_t shared;          /* allocations with references, handles or names */
        uint64_t refs;            /* references on them */
        uint64_t names;           /* names published */
        uint64_t max_shared;
        uint64_t max_names;
};

struct scav_msg_client {
        uint32_t slot;
        uint32_t pid;
        uint32_t uid;
        uint32_t connected;       /* 1: a session holds the slot now */
        uint64_t inuse_pages;
        uint64_t cached_pages;
        uint64_t faults;          /* 0 when unknown */
        uint64_t refs;            /* references it holds on shared allocations */
        uint64_t shared;          /* shared allocations it holds them on */
};

struct scav_msg_name {
        char name[64];            /* NUL-terminated, zero-padded */
        uint64_t off;
        uint64_t bytes;
        uint64_t refs;            /* every reference of the allocation, the name's included */
};

/* Fills in a header for sending. */
void scav_msg_init(struct scav_msg_hdr *h, enum scav_msg_type type, size_t len);

/*
 * Validates a received packet of n bytes: magic, version (-EPROTO on a
 * mismatch), a known type, a length that matches the type's layout, pool
 * names NUL-terminated within bounds and made of [A-Za-z0-9_.-]. Returns
 * the type, or a negative errno with a reason for the log in *reason.
 */
int scav_msg_parse(const void *buf, size_t n, const char **reason);

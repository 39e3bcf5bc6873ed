/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The listening socket and the connections: accepting (with caps per uid
 * and in all), receiving (every packet validated with scav_msg_parse()
 * before anyone reads a field), sending. What a message means belongs to
 * session.c (HELLO, MAPPED, WAKE, hang-up) and control.c (the control
 * requests).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

struct manager;
struct pool;
typedef struct server server;

/*
 * One connection: a session once HELLO claimed a slot, else a control
 * client. A request answered by a worker's job holds a reference (conn_ref)
 * and pauses the connection (conn_pause): nothing more is read from it until
 * the answer went out (conn_resume), so replies keep the order of requests.
 * A connection that went away stays valid for its holders, dead.
 */
struct conn {
        server *server;
        struct manager *m;
        int fd;
        sd_event_source *source;
        struct ucred cred;
        struct pool *pool;       /* after HELLO */
        uint32_t slot;
        bool has_slot;
        struct pool *claiming;   /* its HELLO's claim is on this pool's worker */
        bool dead;               /* closed: replies go nowhere */
        bool paused;             /* a request waits for a worker */
        bool throttled;          /* over its message budget until throttle fires */
        bool warned;             /* the throttling was logged */
        unsigned n_ref;
        int64_t window_start;    /* CLOCK_MONOTONIC ns: this second of its message budget */
        unsigned window_msgs;
        sd_event_source *throttle;
        struct conn *prev, *next;
};

/* Listens on listen_fd when >= 0 (socket activation), else binds path. */
int server_new(struct manager *m, int listen_fd, const char *path, server **ret);
/* Ends every connection as the daemon stops (sessions keep their slots for the next daemon). */
server *server_free(server *s);

unsigned server_connections(server *s);
/* The first connection, for walking the list with ->next. */
struct conn *server_conns(server *s);

struct conn *conn_ref(struct conn *c);
void conn_unref(struct conn *c);
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
/* Ends the connection as a hang-up would (session.c reclaims its slot). */
void conn_close(struct conn *c);

/* Sends one packet, with descriptors if nfds > 0. A peer that does not read
 * its replies loses them (logged at debug level); a dead connection -ENOTCONN. */
int conn_send(struct conn *c, const void *buf, size_t len, const int *fds, unsigned nfds);
/* A struct scav_msg_reply with no payload. */
int conn_reply(struct conn *c, unsigned type, int error, uint64_t value);
/* A struct scav_msg_reply followed by text (not NUL-terminated on the wire). */
int conn_reply_text(struct conn *c, unsigned type, int error, uint64_t value, const char *text);

/* SPDX-License-Identifier: MIT */
/*
 * The scavd wire protocol: building headers and validating every field of a
 * received packet before anyone looks at it. Both ends use scav_msg_parse(),
 * so the daemon never trusts a client and a client never trusts a daemon.
 */

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "proto.h"

void scav_msg_init(struct scav_msg_hdr *h, enum scav_msg_type type, size_t len) {
        memset(h, 0, sizeof(*h));
        h->magic = SCAV_PROTO_MAGIC;
        h->version = SCAV_PROTO_VERSION;
        h->type = (uint16_t) type;
        h->len = (uint32_t) len;
        h->error = 0;
}

static bool pool_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
}

/* A pool name field: NUL-terminated inside its array, non-empty, only
 * [A-Za-z0-9_.-], and zero after the NUL (so two spellings of one name
 * cannot differ in their padding). */
static int check_pool_name(const char name[SCAV_POOL_NAME_MAX], const char **reason) {
        size_t n = strnlen(name, SCAV_POOL_NAME_MAX);

        if (n == SCAV_POOL_NAME_MAX) {
                *reason = "pool name not NUL-terminated";
                return -EBADMSG;
        }
        if (n == 0) {
                *reason = "empty pool name";
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++)
                if (!pool_char_ok(name[i])) {
                        *reason = "pool name has a character outside [A-Za-z0-9_.-]";
                        return -EBADMSG;
                }
        for (size_t i = n; i < SCAV_POOL_NAME_MAX; i++)
                if (name[i] != 0) {
                        *reason = "pool name padding not zero";
                        return -EBADMSG;
                }
        return 0;
}

static bool is_reply(unsigned type) {
        return type % 2 == 0;
}

static int parse_reply(unsigned type, const void *buf, size_t n, const char **reason) {
        struct scav_msg_reply r;
        size_t payload;

        if (n < sizeof(r)) {
                *reason = "reply shorter than its header";
                return -EBADMSG;
        }
        memcpy(&r, buf, sizeof(r));
        if (r._pad != 0) {
                *reason = "reply padding not zero";
                return -EBADMSG;
        }
        payload = n - sizeof(r);

        switch (type) {
        case SCAV_MSG_POOLS_REPLY:
        case SCAV_MSG_CHECK_REPLY:
        case SCAV_MSG_RELOAD_REPLY:
                if (r.count != payload) {
                        *reason = "text length does not match the packet";
                        return -EBADMSG;
                }
                break;
        case SCAV_MSG_STATUS_REPLY: {
                struct scav_msg_pool_status st;

                if (r.count > 1 || payload != r.count * sizeof(st)) {
                        *reason = "status payload does not match its count";
                        return -EBADMSG;
                }
                if (r.count == 1) {
                        memcpy(&st, (const uint8_t *) buf + sizeof(r), sizeof(st));
                        if (check_pool_name(st.name, reason) < 0)
                                return -EBADMSG;
                        if (r.hdr.error != 0) {
                                *reason = "status payload with an error";
                                return -EBADMSG;
                        }
                }
                break;
        }
        case SCAV_MSG_CLIENTS_REPLY:
                if (payload != (uint64_t) r.count * sizeof(struct scav_msg_client)) {
                        *reason = "clients payload does not match its count";
                        return -EBADMSG;
                }
                break;
        case SCAV_MSG_NAMES_REPLY:
                if (payload != (uint64_t) r.count * sizeof(struct scav_msg_name)) {
                        *reason = "names payload does not match its count";
                        return -EBADMSG;
                }
                for (uint32_t i = 0; i < r.count; i++) {
                        struct scav_msg_name nm;
                        memcpy(&nm, (const uint8_t *) buf + sizeof(r) + i * sizeof(nm), sizeof(nm));
                        if (!memchr(nm.name, 0, sizeof(nm.name))) {
                                *reason = "name not NUL-terminated";
                                return -EBADMSG;
                        }
                }
                break;
        case SCAV_MSG_SCAVENGE_REPLY:
        case SCAV_MSG_MAPPED_REPLY:
                if (r.count != 0 || payload != 0) {
                        *reason = "unexpected payload";
                        return -EBADMSG;
                }
                break;
        default:
                *reason = "unknown reply type";
                return -EBADMSG;
        }
        return 0;
}

int scav_msg_parse(const void *buf, size_t n, const char **reason) {
        static const char *dummy;
        struct scav_msg_hdr h;

        if (!reason)
                reason = &dummy;
        *reason = NULL;

        if (!buf || n < sizeof(h)) {
                *reason = "packet shorter than a header";
                return -EBADMSG;
        }
        if (n > SCAV_MSG_MAX) {
                *reason = "packet longer than SCAV_MSG_MAX";
                return -EMSGSIZE;
        }
        memcpy(&h, buf, sizeof(h));
        if (h.magic != SCAV_PROTO_MAGIC) {
                *reason = "bad magic";
                return -EBADMSG;
        }
        if (h.version != SCAV_PROTO_VERSION) {
                *reason = "protocol version mismatch";
                return -EPROTO;
        }
        if (h.len != n) {
                *reason = "length field does not match the packet";
                return -EBADMSG;
        }
        if (h.type < SCAV_MSG_HELLO || h.type >= _SCAV_MSG_MAX) {
                *reason = "unknown message type";
                return -EBADMSG;
        }

        if (is_reply(h.type)) {
                /* Replies carry 0 or a negative errno, nothing else. */
                if (h.error > 0 || h.error < -4095) {
                        *reason = "error field is not 0 or a negative errno";
                        return -EBADMSG;
                }
                if (h.type == SCAV_MSG_HELLO_REPLY) {
                        struct scav_msg_hello_reply r;

                        if (n != sizeof(r)) {
                                *reason = "HELLO_REPLY of the wrong size";
                                return -EBADMSG;
                        }
                        memcpy(&r, buf, sizeof(r));
                        if (r.hdr.error == 0 &&
                            (r.page_size < 4096 || (r.page_size & (r.page_size - 1)) != 0 ||
                             r.capacity == 0 || r.capacity % r.page_size != 0 ||
                             r.meta_size == 0 || r.slot == SCAV_SLOT_NONE)) {
                                *reason = "HELLO_REPLY with an impossible geometry";
                                return -EBADMSG;
                        }
                } else {
                        int r = parse_reply(h.type, buf, n, reason);
                        if (r < 0)
                                return r;
                }
                return h.type;
        }

        /* Requests: error must be 0. */
        if (h.error != 0) {
                *reason = "request with a non-zero error field";
                return -EBADMSG;
        }

        switch (h.type) {
        case SCAV_MSG_HELLO: {
                struct scav_msg_hello m;

                if (n != sizeof(m)) {
                        *reason = "HELLO of the wrong size";
                        return -EBADMSG;
                }
                memcpy(&m, buf, sizeof(m));
                if (check_pool_name(m.pool, reason) < 0)
                        return -EBADMSG;
                if (m.flags & ~SCAV_HELLO_FLAGS_KNOWN) {
                        *reason = "HELLO with unknown flags";
                        return -EBADMSG;
                }
                if (m.slot == SCAV_SLOT_NONE && m.token != 0) {
                        *reason = "HELLO with a token but no slot";
                        return -EBADMSG;
                }
                break;
        }
        case SCAV_MSG_MAPPED: {
                struct scav_msg_mapped m;

                if (n != sizeof(m)) {
                        *reason = "MAPPED of the wrong size";
                        return -EBADMSG;
                }
                memcpy(&m, buf, sizeof(m));
                if (m.len == 0 || m.addr == 0 || m.addr + m.len < m.addr || (m.addr & 4095) != 0) {
                        *reason = "MAPPED with an impossible range";
                        return -EBADMSG;
                }
                break;
        }
        case SCAV_MSG_SCAVENGE:
        case SCAV_MSG_STATUS:
        case SCAV_MSG_CLIENTS:
        case SCAV_MSG_CHECK:
        case SCAV_MSG_NAMES: {
                struct scav_msg_pool_req m;

                if (n != sizeof(m)) {
                        *reason = "pool request of the wrong size";
                        return -EBADMSG;
                }
                memcpy(&m, buf, sizeof(m));
                if (check_pool_name(m.pool, reason) < 0)
                        return -EBADMSG;
                if (h.type != SCAV_MSG_SCAVENGE && h.type != SCAV_MSG_NAMES && m.bytes != 0) {
                        *reason = "bytes set in a request that takes none";
                        return -EBADMSG;
                }
                break;
        }
        case SCAV_MSG_POOLS:
        case SCAV_MSG_RELOAD:
        case SCAV_MSG_WAKE:
                if (n != sizeof(h)) {
                        *reason = "request of the wrong size";
                        return -EBADMSG;
                }
                break;
        default:
                *reason = "unknown message type";
                return -EBADMSG;
        }
        return h.type;
}

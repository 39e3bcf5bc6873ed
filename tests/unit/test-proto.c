/* SPDX-License-Identifier: MIT */
/*
 * scav_msg_parse against every message type, valid and invalid: each case
 * builds one packet, mutates one field, and says what the parser must
 * answer.
 */

#include <errno.h>
#include <string.h>

#include "proto.h"
#include "../lib/test.h"

TEST_DEFINE_GLOBALS;

union packet {
        struct scav_msg_hdr hdr;
        struct scav_msg_hello hello;
        struct scav_msg_hello_reply hello_reply;
        struct scav_msg_mapped mapped;
        struct scav_msg_pool_req pool_req;
        struct scav_msg_reply reply;
        uint8_t raw[SCAV_MSG_MAX + 16];
};

/* Builds a valid message of `type`; returns its length. */
static size_t build(union packet *p, unsigned type) {
        size_t n;

        memset(p, 0, sizeof(*p));
        switch (type) {
        case SCAV_MSG_HELLO:
                n = sizeof(p->hello);
                strcpy(p->hello.pool, "default");
                p->hello.slot = SCAV_SLOT_NONE;
                break;
        case SCAV_MSG_HELLO_REPLY:
                n = sizeof(p->hello_reply);
                p->hello_reply.slot = 1;
                p->hello_reply.page_size = 4096;
                p->hello_reply.meta_size = 1 << 20;
                p->hello_reply.capacity = 1 << 30;
                p->hello_reply.token = 42;
                break;
        case SCAV_MSG_MAPPED:
                n = sizeof(p->mapped);
                p->mapped.addr = 0x7f0000000000;
                p->mapped.len = 1 << 30;
                break;
        case SCAV_MSG_SCAVENGE:
        case SCAV_MSG_STATUS:
        case SCAV_MSG_CLIENTS:
        case SCAV_MSG_CHECK:
                n = sizeof(p->pool_req);
                strcpy(p->pool_req.pool, "a-Pool_1.x");
                break;
        case SCAV_MSG_NAMES:
                n = sizeof(p->pool_req);
                strcpy(p->pool_req.pool, "default");
                p->pool_req.bytes = 46; /* the index to list from */
                break;
        case SCAV_MSG_NAMES_REPLY: {
                struct scav_msg_name nm[2] = { { .name = "frame/1", .off = 4096, .bytes = 8192, .refs = 2 },
                                               { .name = "x", .refs = 1 } };
                n = sizeof(p->reply) + sizeof(nm);
                p->reply.count = 2;
                p->reply.value = 7;
                memcpy(p->raw + sizeof(p->reply), nm, sizeof(nm));
                break;
        }
        case SCAV_MSG_POOLS:
        case SCAV_MSG_RELOAD:
        case SCAV_MSG_WAKE:
                n = sizeof(p->hdr);
                break;
        case SCAV_MSG_POOLS_REPLY:
        case SCAV_MSG_CHECK_REPLY:
        case SCAV_MSG_RELOAD_REPLY:
                n = sizeof(p->reply) + 8;
                p->reply.count = 8;
                memcpy(p->raw + sizeof(p->reply), "default\n", 8);
                break;
        case SCAV_MSG_STATUS_REPLY: {
                struct scav_msg_pool_status st = { .name = "default", .page_size = 4096 };
                n = sizeof(p->reply) + sizeof(st);
                p->reply.count = 1;
                memcpy(p->raw + sizeof(p->reply), &st, sizeof(st));
                break;
        }
        case SCAV_MSG_CLIENTS_REPLY:
                n = sizeof(p->reply) + 2 * sizeof(struct scav_msg_client);
                p->reply.count = 2;
                break;
        default: /* SCAVENGE_REPLY, MAPPED_REPLY */
                n = sizeof(p->reply);
                p->reply.value = 12345;
                break;
        }
        scav_msg_init(&p->hdr, type, n);
        return n;
}

static void test_valid(void) {
        for (unsigned t = SCAV_MSG_HELLO; t < _SCAV_MSG_MAX; t++) {
                union packet p;
                const char *reason = NULL;
                size_t n = build(&p, t);
                int r = scav_msg_parse(&p, n, &reason);

                if (t == SCAV_MSG_WAKE_REPLY_NONE) {
                        CHECKF(r == -EBADMSG, "the type no one sends: %d", r);
                        continue;
                }

                CHECKF(r == (int) t, "type %u: got %d (%s)", t, r, reason ? reason : "");

                /* Any truncation or extension of a valid packet is refused. */
                for (size_t k = 0; k < n; k++) {
                        p.hdr.len = (uint32_t) k;
                        r = scav_msg_parse(&p, k, &reason);
                        CHECKF(r < 0, "type %u truncated to %zu: accepted", t, k);
                }
                n = build(&p, t);
                p.hdr.len = (uint32_t) n + 1;
                r = scav_msg_parse(&p, n + 1, &reason);
                CHECKF(r < 0, "type %u extended by one byte: accepted", t);
                /* A length field that lies about the packet. */
                n = build(&p, t);
                p.hdr.len = (uint32_t) n + 8;
                CHECKF(scav_msg_parse(&p, n, &reason) == -EBADMSG, "type %u: len lies", t);
                /* Wrong magic, wrong version. */
                n = build(&p, t);
                p.hdr.magic ^= 1;
                CHECKF(scav_msg_parse(&p, n, &reason) == -EBADMSG, "type %u: bad magic", t);
                n = build(&p, t);
                p.hdr.version = SCAV_PROTO_VERSION + 1;
                CHECKF(scav_msg_parse(&p, n, &reason) == -EPROTO, "type %u: bad version", t);
                CHECK(reason && strstr(reason, "version"));
        }
}

struct bad_case {
        const char *name;
        unsigned type;
        void (*mutate)(union packet *p, size_t *n);
        int want;
};

static void m_type_zero(union packet *p, size_t *n) { p->hdr.type = 0; }
static void m_type_max(union packet *p, size_t *n) { p->hdr.type = _SCAV_MSG_MAX; }
static void m_type_huge(union packet *p, size_t *n) { p->hdr.type = 0xffff; }
static void m_req_error(union packet *p, size_t *n) { p->hdr.error = -5; }
static void m_reply_error_pos(union packet *p, size_t *n) { p->hdr.error = 5; }
static void m_reply_error_huge(union packet *p, size_t *n) { p->hdr.error = -100000; }
static void m_name_unterminated(union packet *p, size_t *n) {
        memset(p->hello.pool, 'a', SCAV_POOL_NAME_MAX);
}
static void m_name_empty(union packet *p, size_t *n) { memset(p->hello.pool, 0, SCAV_POOL_NAME_MAX); }
static void m_name_slash(union packet *p, size_t *n) { strcpy(p->hello.pool, "../etc"); }
static void m_name_space(union packet *p, size_t *n) { strcpy(p->hello.pool, "a b"); }
static void m_name_high(union packet *p, size_t *n) { p->hello.pool[0] = (char) 0xc3; }
static void m_name_padding(union packet *p, size_t *n) { p->hello.pool[40] = 'x'; }
static void m_name_max_ok(union packet *p, size_t *n) {
        memset(p->hello.pool, 'z', SCAV_POOL_NAME_MAX - 1);
        p->hello.pool[SCAV_POOL_NAME_MAX - 1] = 0;
}
static void m_hello_flags(union packet *p, size_t *n) { p->hello.flags = 1; }
static void m_hello_token_no_slot(union packet *p, size_t *n) { p->hello.token = 7; }
static void m_hello_reclaim_ok(union packet *p, size_t *n) {
        p->hello.slot = 3;
        p->hello.token = 7;
}
static void m_req_name_unterminated(union packet *p, size_t *n) {
        memset(p->pool_req.pool, 'a', SCAV_POOL_NAME_MAX);
}
static void m_req_name_bad(union packet *p, size_t *n) { strcpy(p->pool_req.pool, "x/y"); }
static void m_req_bytes(union packet *p, size_t *n) { p->pool_req.bytes = 4096; }
static void m_mapped_zero(union packet *p, size_t *n) { p->mapped.len = 0; }
static void m_mapped_wrap(union packet *p, size_t *n) { p->mapped.addr = UINT64_MAX - 4095; }
static void m_mapped_unaligned(union packet *p, size_t *n) { p->mapped.addr += 1; }
static void m_hreply_page(union packet *p, size_t *n) { p->hello_reply.page_size = 3000; }
static void m_hreply_cap(union packet *p, size_t *n) { p->hello_reply.capacity = 0; }
static void m_hreply_err_ok(union packet *p, size_t *n) {
        memset(&p->hello_reply.slot, 0, sizeof(*p) - sizeof(p->hdr));
        p->hdr.error = -EACCES;
}
static void m_reply_pad(union packet *p, size_t *n) { p->reply._pad = 1; }
static void m_text_count(union packet *p, size_t *n) { p->reply.count = 7; }
static void m_status_count(union packet *p, size_t *n) { p->reply.count = 2; }
static void m_status_name(union packet *p, size_t *n) {
        ((struct scav_msg_pool_status *) (p->raw + sizeof(p->reply)))->name[0] = '/';
}
static void m_status_error(union packet *p, size_t *n) { p->hdr.error = -ENOENT; }
static void m_status_empty_err(union packet *p, size_t *n) {
        p->hdr.error = -ENOENT;
        p->reply.count = 0;
        *n = sizeof(p->reply);
        p->hdr.len = (uint32_t) *n;
}
static void m_clients_count(union packet *p, size_t *n) { p->reply.count = 3; }
static void m_clients_huge(union packet *p, size_t *n) { p->reply.count = UINT32_MAX; }
static void m_scav_count(union packet *p, size_t *n) { p->reply.count = 1; }
static void m_req_bytes_none(union packet *p, size_t *n) {}
static void m_wake_payload(union packet *p, size_t *n) {
        *n += 8;
        p->hdr.len = (uint32_t) *n;
}
static void m_names_unterminated(union packet *p, size_t *n) {
        memset(p->raw + sizeof(p->reply) + sizeof(struct scav_msg_name), 'x', 64);
}
static void m_names_count(union packet *p, size_t *n) { p->reply.count = 1; }
static void m_oversize(union packet *p, size_t *n) {
        *n = SCAV_MSG_MAX + 1;
        p->hdr.len = (uint32_t) *n;
}

static const struct bad_case bad_cases[] = {
        { "type 0", SCAV_MSG_POOLS, m_type_zero, -EBADMSG },
        { "type max", SCAV_MSG_POOLS, m_type_max, -EBADMSG },
        { "type 0xffff", SCAV_MSG_POOLS, m_type_huge, -EBADMSG },
        { "request with error", SCAV_MSG_HELLO, m_req_error, -EBADMSG },
        { "reply error positive", SCAV_MSG_SCAVENGE_REPLY, m_reply_error_pos, -EBADMSG },
        { "reply error huge", SCAV_MSG_SCAVENGE_REPLY, m_reply_error_huge, -EBADMSG },
        { "name unterminated", SCAV_MSG_HELLO, m_name_unterminated, -EBADMSG },
        { "name empty", SCAV_MSG_HELLO, m_name_empty, -EBADMSG },
        { "name slash", SCAV_MSG_HELLO, m_name_slash, -EBADMSG },
        { "name space", SCAV_MSG_HELLO, m_name_space, -EBADMSG },
        { "name 8-bit", SCAV_MSG_HELLO, m_name_high, -EBADMSG },
        { "name padding", SCAV_MSG_HELLO, m_name_padding, -EBADMSG },
        { "name 63 chars", SCAV_MSG_HELLO, m_name_max_ok, SCAV_MSG_HELLO },
        { "hello flags", SCAV_MSG_HELLO, m_hello_flags, -EBADMSG },
        { "hello token without slot", SCAV_MSG_HELLO, m_hello_token_no_slot, -EBADMSG },
        { "hello reclaim", SCAV_MSG_HELLO, m_hello_reclaim_ok, SCAV_MSG_HELLO },
        { "status name unterminated", SCAV_MSG_STATUS, m_req_name_unterminated, -EBADMSG },
        { "check name bad", SCAV_MSG_CHECK, m_req_name_bad, -EBADMSG },
        { "clients name bad", SCAV_MSG_CLIENTS, m_req_name_bad, -EBADMSG },
        { "scavenge bytes ok", SCAV_MSG_SCAVENGE, m_req_bytes, SCAV_MSG_SCAVENGE },
        { "status bytes", SCAV_MSG_STATUS, m_req_bytes, -EBADMSG },
        { "mapped len 0", SCAV_MSG_MAPPED, m_mapped_zero, -EBADMSG },
        { "mapped wraps", SCAV_MSG_MAPPED, m_mapped_wrap, -EBADMSG },
        { "mapped unaligned", SCAV_MSG_MAPPED, m_mapped_unaligned, -EBADMSG },
        { "hello reply page size", SCAV_MSG_HELLO_REPLY, m_hreply_page, -EBADMSG },
        { "hello reply capacity", SCAV_MSG_HELLO_REPLY, m_hreply_cap, -EBADMSG },
        { "hello reply error", SCAV_MSG_HELLO_REPLY, m_hreply_err_ok, SCAV_MSG_HELLO_REPLY },
        { "reply padding", SCAV_MSG_POOLS_REPLY, m_reply_pad, -EBADMSG },
        { "pools text count", SCAV_MSG_POOLS_REPLY, m_text_count, -EBADMSG },
        { "check text count", SCAV_MSG_CHECK_REPLY, m_text_count, -EBADMSG },
        { "reload text count", SCAV_MSG_RELOAD_REPLY, m_text_count, -EBADMSG },
        { "status count 2", SCAV_MSG_STATUS_REPLY, m_status_count, -EBADMSG },
        { "status name", SCAV_MSG_STATUS_REPLY, m_status_name, -EBADMSG },
        { "status payload with error", SCAV_MSG_STATUS_REPLY, m_status_error, -EBADMSG },
        { "status error, no payload", SCAV_MSG_STATUS_REPLY, m_status_empty_err, SCAV_MSG_STATUS_REPLY },
        { "clients count", SCAV_MSG_CLIENTS_REPLY, m_clients_count, -EBADMSG },
        { "clients count huge", SCAV_MSG_CLIENTS_REPLY, m_clients_huge, -EBADMSG },
        { "scavenge reply count", SCAV_MSG_SCAVENGE_REPLY, m_scav_count, -EBADMSG },
        { "mapped reply count", SCAV_MSG_MAPPED_REPLY, m_scav_count, -EBADMSG },
        { "oversized", SCAV_MSG_POOLS_REPLY, m_oversize, -EMSGSIZE },
        { "wake", SCAV_MSG_WAKE, m_req_bytes_none, SCAV_MSG_WAKE },
        { "wake with error", SCAV_MSG_WAKE, m_req_error, -EBADMSG },
        { "wake with payload", SCAV_MSG_WAKE, m_wake_payload, -EBADMSG },
        { "names from an index", SCAV_MSG_NAMES, m_req_bytes, SCAV_MSG_NAMES },
        { "names name bad", SCAV_MSG_NAMES, m_req_name_bad, -EBADMSG },
        { "names reply name unterminated", SCAV_MSG_NAMES_REPLY, m_names_unterminated, -EBADMSG },
        { "names reply count", SCAV_MSG_NAMES_REPLY, m_names_count, -EBADMSG },
        { "names reply count huge", SCAV_MSG_NAMES_REPLY, m_clients_huge, -EBADMSG },
};

static void test_bad(void) {
        for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
                const struct bad_case *c = &bad_cases[i];
                union packet p;
                const char *reason = NULL;
                size_t n = build(&p, c->type);
                int r;

                c->mutate(&p, &n);
                r = scav_msg_parse(&p, n, &reason);
                CHECKF(r == c->want, "%s: got %d (%s), want %d", c->name, r,
                       reason ? reason : "no reason", c->want);
                if (r < 0)
                        CHECKF(reason != NULL, "%s: no reason given", c->name);
        }
}

static void test_edges(void) {
        const char *reason;
        uint8_t junk[8] = { 0 };

        CHECK(scav_msg_parse(NULL, 0, &reason) == -EBADMSG);
        CHECK(scav_msg_parse(junk, sizeof(junk), &reason) == -EBADMSG);
        CHECK(scav_msg_parse(junk, sizeof(junk), NULL) == -EBADMSG);

        /* Unaligned buffers are fine. */
        union packet p;
        static uint8_t buf[sizeof(p) + 1];
        size_t n = build(&p, SCAV_MSG_HELLO);
        memcpy(buf + 1, &p, n);
        CHECK(scav_msg_parse(buf + 1, n, &reason) == SCAV_MSG_HELLO);

        struct scav_msg_hdr h;
        scav_msg_init(&h, SCAV_MSG_POOLS, sizeof(h));
        CHECK(h.magic == SCAV_PROTO_MAGIC && h.version == SCAV_PROTO_VERSION &&
              h.type == SCAV_MSG_POOLS && h.len == sizeof(h) && h.error == 0);
}

int main(void) {
        test_valid();
        test_bad();
        test_edges();
        return TEST_END();
}

/* SPDX-License-Identifier: MIT */
/* libFuzzer target: scav_msg_parse must accept or refuse any packet without
 * reading outside it, and what it accepts must be self-consistent. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *reason = NULL;
        struct scav_msg_hdr h;
        uint8_t *copy;
        int r;

        /* An exact-size heap copy, so ASan sees any read past the end. */
        copy = malloc(size ? size : 1);
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        r = scav_msg_parse(copy, size, &reason);
        if (r < 0) {
                if (!reason)
                        abort();
        } else {
                memcpy(&h, copy, sizeof(h));
                if (h.type != r || h.len != size || h.magic != SCAV_PROTO_MAGIC || r >= _SCAV_MSG_MAX)
                        abort();
        }
        free(copy);
        return 0;
}

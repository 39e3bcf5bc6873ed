/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the configuration parser must answer any text with 0 or
 * a negative errno and a "file:line: ..." message, never crash or overrun. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct daemon_config c;
        char err[256];
        char *text;
        uint64_t v;
        int r;

        if (size > 64 * 1024)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;

        r = config_parse_string("fuzz.conf", text, &c, err, sizeof(err));
        if (r > 0)
                abort();
        if (r < 0 && strncmp(err, "fuzz.conf:", 10) != 0)
                abort();
        if (r == 0)
                for (unsigned i = 0; i < c.n_pools; i++)
                        if (c.pools[i].capacity == 0 || c.pools[i].name[0] == 0 ||
                            c.pools[i].capacity % ((uint64_t) 512 * c.pools[i].page_size) != 0)
                                abort();
        (void) config_parse_size(text, &v);
        free(text);
        return 0;
}

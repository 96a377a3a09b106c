/* Fuzz target: the engine's stdout/stderr framing, fed in random splits,
 * into small capped buffers. */
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/demux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out = BUF_INIT(4096), err = BUF_INIT(4096);
    struct demux d;
    size_t at = 0;

    demux_init(&d, &out, &err);
    while (at < size) {
        size_t n = 1 + (data[at] % 64);

        if (n > size - at)
            n = size - at;
        if (demux_feed(&d, (const char *)data + at, n) < 0)
            break;
        at += n;
    }
    buf_release(&out);
    buf_release(&err);
    return 0;
}

/*
 * Stream demultiplexer, see demux.h. Kept apart from the Docker client so
 * it can be fuzzed on its own.
 */
#include "nbcanvas/demux.h"

#include <string.h>

void demux_init(struct demux *d, struct buf *stdout_buf,
                struct buf *stderr_buf)
{
    memset(d, 0, sizeof(*d));
    d->out[1] = stdout_buf;
    d->out[2] = stderr_buf;
}

int demux_feed(struct demux *d, const char *data, size_t len)
{
    while (len > 0) {
        size_t n;

        if (d->remaining == 0) {
            n = sizeof(d->header) - d->header_len;
            if (n > len)
                n = len;
            memcpy(d->header + d->header_len, data, n);
            d->header_len += n;
            data += n;
            len -= n;
            if (d->header_len < sizeof(d->header))
                return 0;
            if (d->header[0] > 2 || d->header[1] || d->header[2] ||
                d->header[3])
                return -1;
            d->stream = d->header[0] == 0 ? 1 : d->header[0];
            d->remaining = (uint32_t)d->header[4] << 24 |
                           (uint32_t)d->header[5] << 16 |
                           (uint32_t)d->header[6] << 8 | d->header[7];
            d->header_len = 0;
            continue;
        }
        n = d->remaining < len ? d->remaining : len;
        buf_append(d->out[d->stream], data, n);
        d->remaining -= (uint32_t)n;
        data += n;
        len -= n;
    }
    return 0;
}

bool demux_at_boundary(const struct demux *d)
{
    return d->remaining == 0 && d->header_len == 0;
}

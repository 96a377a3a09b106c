#ifndef NBCANVAS_DEMUX_H
#define NBCANVAS_DEMUX_H

/*
 * The Engine's multiplexed stream format (attach and exec without a TTY):
 * frames of an 8-byte header [stream, 0, 0, 0, size as big-endian u32]
 * followed by size bytes. The parser is incremental (frames split across
 * reads are fine) and never allocates by a header's size: bytes go straight
 * into the caller's capped buffers, so a frame claiming 4 GiB costs nothing.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbcanvas/buf.h"

struct demux {
    unsigned char header[8];
    size_t header_len;
    uint32_t remaining; /* payload bytes left in the current frame */
    int stream;         /* 1 stdout, 2 stderr */
    struct buf *out[3]; /* [1] stdout, [2] stderr; [0] (stdin) unused */
};

/* Sets up a parser writing into stdout_buf and stderr_buf (borrowed). */
void demux_init(struct demux *d, struct buf *stdout_buf,
                struct buf *stderr_buf);

/* Feeds bytes; returns 0, or -1 on a frame header that is not one of the
 * three streams (a protocol error). Overflowing a buffer is not an error
 * here: check the buffers' overflow flags. */
int demux_feed(struct demux *d, const char *data, size_t len);

/* True when the input ended cleanly on a frame boundary. */
bool demux_at_boundary(const struct demux *d);

#endif

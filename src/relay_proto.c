/*
 * The relay's framing (include/nbcanvas/relay_proto.h), shared by the
 * service and the relay. It links against nothing but libc, so the relay
 * inside the sandbox stays one small program.
 */
#include "nbcanvas/relay_proto.h"

uint32_t relay_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

void relay_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void relay_frame_header(uint8_t out[RELAY_HEADER_LEN], uint8_t type,
                        uint8_t channel, uint32_t len)
{
    relay_put_u32(out, len);
    out[4] = type;
    out[5] = channel;
    out[6] = out[7] = 0;
}

int relay_frame_parse(const uint8_t *buf, size_t len, struct relay_frame *f,
                      size_t *used)
{
    uint32_t n;

    if (len < RELAY_HEADER_LEN)
        return 0;
    n = relay_get_u32(buf);
    if (n > RELAY_MAX_FRAME || buf[6] != 0 || buf[7] != 0 || buf[4] == 0)
        return -1;
    if (len - RELAY_HEADER_LEN < n)
        return 0;
    f->type = buf[4];
    f->channel = buf[5];
    f->payload = buf + RELAY_HEADER_LEN;
    f->len = n;
    *used = RELAY_HEADER_LEN + (size_t)n;
    return 1;
}

int relay_parts_parse(const uint8_t *payload, size_t len,
                      struct relay_part *parts, int max)
{
    size_t at = 4;
    uint32_t count, i;

    if (len < 4)
        return -1;
    count = relay_get_u32(payload);
    if (count > (uint32_t)max)
        return -1;
    for (i = 0; i < count; i++) {
        uint32_t n;

        if (len - at < 4)
            return -1;
        n = relay_get_u32(payload + at);
        at += 4;
        if (len - at < n)
            return -1;
        parts[i].data = payload + at;
        parts[i].len = n;
        at += n;
    }
    return at == len ? (int)count : -1;
}

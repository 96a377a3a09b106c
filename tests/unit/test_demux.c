#include "../check.h"
#include "nbcanvas/demux.h"

static size_t frame(char *out, int stream, const char *payload)
{
    size_t n = strlen(payload);

    out[0] = (char)stream;
    out[1] = out[2] = out[3] = 0;
    out[4] = (char)(n >> 24);
    out[5] = (char)(n >> 16);
    out[6] = (char)(n >> 8);
    out[7] = (char)n;
    memcpy(out + 8, payload, n);
    return n + 8;
}

TEST(demux__split_streams)
{
    struct buf o = BUF_INIT(1024), e = BUF_INIT(1024);
    struct demux d;
    char wire[256];
    size_t n = 0;

    n += frame(wire + n, 1, "out1 ");
    n += frame(wire + n, 2, "err1 ");
    n += frame(wire + n, 1, "out2");
    demux_init(&d, &o, &e);
    CHECK(demux_feed(&d, wire, n) == 0);
    CHECK_STREQ(o.data, "out1 out2");
    CHECK_STREQ(e.data, "err1 ");
    CHECK(demux_at_boundary(&d));
    buf_release(&o);
    buf_release(&e);
}

TEST(demux__byte_by_byte)
{
    struct buf o = BUF_INIT(1024), e = BUF_INIT(1024);
    struct demux d;
    char wire[256];
    size_t n = 0, i;

    n += frame(wire + n, 2, "abc");
    n += frame(wire + n, 1, "xyz");
    demux_init(&d, &o, &e);
    for (i = 0; i < n; i++)
        CHECK(demux_feed(&d, wire + i, 1) == 0);
    CHECK_STREQ(o.data, "xyz");
    CHECK_STREQ(e.data, "abc");
    buf_release(&o);
    buf_release(&e);
}

TEST(demux__bad_header)
{
    struct buf o = BUF_INIT(1024), e = BUF_INIT(1024);
    struct demux d;
    const char wire[8] = {7, 0, 0, 0, 0, 0, 0, 1};

    demux_init(&d, &o, &e);
    CHECK(demux_feed(&d, wire, sizeof(wire)) == -1);
    buf_release(&o);
    buf_release(&e);
}

TEST(demux__huge_frame_is_capped)
{
    struct buf o = BUF_INIT(4), e = BUF_INIT(4);
    struct demux d;
    const char hdr[8] = {1,          0,          0,          0,
                         (char)0xff, (char)0xff, (char)0xff, (char)0xff};

    demux_init(&d, &o, &e);
    CHECK(demux_feed(&d, hdr, sizeof(hdr)) == 0);
    CHECK(demux_feed(&d, "0123456789", 10) == 0);
    CHECK(o.len == 4);
    CHECK(o.overflow);
    CHECK(!demux_at_boundary(&d));
    buf_release(&o);
    buf_release(&e);
}

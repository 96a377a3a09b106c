/*
 * Server-Sent Events streams (sse.c) and the kept results of streamed
 * renders (kept_results.c), without an engine: what a reader gets, in
 * order, with pings in silences; a client that hangs up or stops reading
 * cancels the job; a kept result only for its tenant, until it expires or
 * is pushed out by the byte cap.
 */
#include "../check.h"
#include "nbcanvas/kept_results.h"
#include "nbcanvas/sse.h"
#include "nbcanvas/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads until the stream ends, into out (NUL-terminated). */
static void read_all(struct sse *s, char *out, size_t len)
{
    size_t n = 0;
    ssize_t got;

    while (n + 1 < len && (got = sse_read(s, out + n, len - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
}

TEST(sse__events_then_the_end)
{
    struct sse *s = sse_new(-1, 1 << 20, 60000);
    json_t *data = json_pack("{s:i, s:s}", "index", 2, "text", "a\nb");
    char got[512];

    sse_send(s, "output", data);
    sse_send(s, "result", data);
    sse_close(s);
    read_all(s, got, sizeof(got));
    /* the newline inside the text stays escaped: one data line per event */
    CHECK_STREQ(got,
                "event: output\ndata: {\"index\":2,\"text\":\"a\\nb\"}\n\n"
                "event: result\ndata: {\"index\":2,\"text\":\"a\\nb\"}\n\n");
    CHECK(!*sse_cancel(s));
    json_decref(data);
    sse_unref(s);
    sse_unref(s);
}

TEST(sse__a_silence_gets_a_ping)
{
    struct sse *s = sse_new(-1, 1 << 20, 300);
    long long t0 = util_now_ms();
    char got[64];
    ssize_t n = sse_read(s, got, sizeof(got) - 1);

    CHECK(n > 0);
    got[n > 0 ? n : 0] = '\0';
    CHECK_STREQ(got, ": ping\n\n");
    CHECK(util_now_ms() - t0 >= 250);
    sse_close(s);
    CHECK(sse_read(s, got, sizeof(got)) == -1);
    sse_unref(s);
    sse_unref(s);
}

TEST(sse__a_client_that_hangs_up_cancels)
{
    int fds[2];
    struct sse *s;
    char got[64];

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    s = sse_new(fds[0], 1 << 20, 60000);
    close(fds[1]);
    CHECK(sse_read(s, got, sizeof(got)) == -1);
    CHECK(*sse_cancel(s));
    close(fds[0]);
    sse_unref(s);
    sse_unref(s);
}

TEST(sse__a_reader_that_falls_behind_ends_the_stream)
{
    struct sse *s = sse_new(-1, 100, 60000);
    json_t *big = json_pack("{s:s}", "text",
                            "0123456789012345678901234567890123456789"
                            "0123456789012345678901234567890123456789");
    char got[512];

    sse_send(s, "output", big); /* over the cap: no half event, an end */
    CHECK(*sse_cancel(s));
    read_all(s, got, sizeof(got));
    CHECK_STREQ(got, "");
    json_decref(big);
    sse_unref(s);
    sse_unref(s);
}

static struct render_kept *kept(const char *id, size_t bytes)
{
    struct render_kept *k = xcalloc(1, sizeof(*k));
    char *page = xmalloc(bytes + 1);

    memset(page, 'x', bytes);
    page[bytes] = '\0';
    snprintf(k->id, sizeof(k->id), "%s", id);
    snprintf(k->result_id, sizeof(k->result_id), "%s", id);
    tarball_files_add(&k->results, xstrdup("index.html"), page, bytes);
    k->notebook = json_pack("{s:[]}", "cells");
    return k;
}

TEST(kept__only_for_its_tenant_until_it_expires)
{
    struct kept_results *kr = kept_results_new(1 << 20, 1);
    struct err err = ERR_INIT;
    struct payload got = PAYLOAD_INIT;

    kept_results_put(kr, "acme", kept("r1", 10));
    CHECK(kept_results_build(kr, "acme", "r1", FORMAT_HTML, &got, &err) == 0);
    CHECK(got.len == 10 && strncmp(got.content_type, "text/html", 9) == 0);
    payload_release(&got);
    CHECK(kept_results_build(kr, "beta", "r1", FORMAT_HTML, &got, &err) ==
          ERR_NOT_FOUND);
    CHECK(kept_results_build(kr, "acme", "r2", FORMAT_HTML, &got, &err) ==
          ERR_NOT_FOUND);
    usleep(1100 * 1000);
    CHECK(kept_results_build(kr, "acme", "r1", FORMAT_HTML, &got, &err) ==
          ERR_NOT_FOUND);
    kept_results_free(kr);
}

TEST(kept__the_oldest_go_past_the_cap)
{
    struct kept_results *kr = kept_results_new(250, 60);
    struct err err = ERR_INIT;
    struct payload got = PAYLOAD_INIT;

    kept_results_put(kr, "", kept("old", 100));
    kept_results_put(kr, "", kept("mid", 100));
    kept_results_put(kr, "", kept("new", 100));
    CHECK(kept_results_build(kr, "", "old", FORMAT_HTML, &got, &err) ==
          ERR_NOT_FOUND);
    CHECK(kept_results_build(kr, "", "new", FORMAT_HTML, &got, &err) == 0);
    payload_release(&got);
    CHECK(kept_results_build(kr, "", "mid", FORMAT_HTML, &got, &err) == 0);
    payload_release(&got);
    kept_results_free(kr);
}

/*
 * A gateway kernel's channels (kernel_channels.h) against a fake relay:
 * what a client sends reaches the kernel checked and signed with the
 * kernel's key, input() refused; what the kernel says reaches the clients
 * (IOPub to all, a reply to the one that asked), a forged message none;
 * jupyter_server's binary layout both ways; and the WebSocket handshake's
 * accept value (ws.h) as RFC 6455 computes it.
 */
#include "../check.h"
#include "nbcanvas/jmsg.h"
#include "nbcanvas/kernel_channels.h"
#include "nbcanvas/relay_link.h"
#include "nbcanvas/util.h"
#include "nbcanvas/ws.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KEY "0123456789abcdef"

/* The fake kernel: what reached it, and what it answers. */
struct kernel {
    pthread_mutex_t lock;
    struct jmsg got; /* the last message, checked with KEY */
    int received, bad;
    uint8_t channel;
    bool interrupted;
};

static void kernel_peer(void *ctx, struct relay_link *l,
                        const struct relay_frame *f)
{
    struct kernel *k = ctx;
    struct err err = ERR_INIT;
    struct jmsg m;

    (void)l;
    pthread_mutex_lock(&k->lock);
    if (f->type == RELAY_SIGNAL)
        k->interrupted = true;
    else if (f->type == RELAY_SEND &&
             jmsg_parse(&m, KEY, f->payload, f->len, &err) == 0) {
        jmsg_release(&k->got);
        k->got = m;
        k->channel = f->channel;
        k->received++;
    } else {
        k->bad++;
    }
    pthread_mutex_unlock(&k->lock);
}

/* A client: the frames delivered to it. */
struct client {
    pthread_mutex_t lock;
    char last[8192];
    size_t last_len;
    bool binary, closed;
    int frames;
};

static void deliver(void *ctx, const void *data, size_t len, bool binary)
{
    struct client *c = ctx;

    pthread_mutex_lock(&c->lock);
    if (!data) {
        c->closed = true;
    } else {
        c->frames++;
        c->binary = binary;
        c->last_len = len < sizeof(c->last) - 1 ? len : sizeof(c->last) - 1;
        memcpy(c->last, data, c->last_len);
        c->last[c->last_len] = '\0';
    }
    pthread_mutex_unlock(&c->lock);
}

static bool wait_for(int *counter, int want, pthread_mutex_t *lock)
{
    for (int i = 0; i < 2000; i++) {
        int now;

        pthread_mutex_lock(lock);
        now = *counter;
        pthread_mutex_unlock(lock);
        if (now >= want)
            return true;
        usleep(1000);
    }
    return false;
}

/* A frame the kernel sends: a RECV of msg on channel, signed with key
 * (content taken over). */
static void kernel_says(struct relay_link *l, uint8_t channel, const char *key,
                        const char *msg_type, const char *parent_session,
                        json_t *content)
{
    struct buf payload = BUF_INIT((size_t)-1);
    uint8_t head[RELAY_HEADER_LEN];
    json_t *parent = json_pack("{s:s, s:s}", "msg_id", "p1", "session",
                               parent_session);

    jmsg_pack(&payload, key, "kernel-session", "k1", msg_type, parent,
              content);
    relay_frame_header(head, RELAY_RECV, channel, (uint32_t)payload.len);
    relay_link_feed(l, head, sizeof(head));
    relay_link_feed(l, payload.data, payload.len);
    buf_release(&payload);
    json_decref(parent);
    json_decref(content);
}

static const char *EXECUTE =
    "{\"channel\": \"shell\", \"header\": {\"msg_id\": \"m1\", \"msg_type\": "
    "\"execute_request\", \"session\": \"client-a\", \"username\": \"u\", "
    "\"version\": \"5.3\", \"date\": \"\"}, \"parent_header\": {}, "
    "\"metadata\": {}, \"content\": {\"code\": \"1 + 1\", \"allow_stdin\": "
    "true}}";

TEST(channels__a_message_reaches_the_kernel_checked_and_signed)
{
    struct kernel k = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct client a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kernel_channels *ch = kernel_channels_new(4, 1 << 20);
    struct sandbox sb = {0};
    struct err err = ERR_INIT;
    struct relay_link link;
    struct channels_client *ca;

    relay_link_fake(&link, &sb, kernel_peer, &k, &err);
    CHECK(kernel_channels_start(ch, &link, KEY, &err) == 0);
    CHECK(kernel_channels_attach(ch, deliver, &a, &ca, &err) == 0);
    CHECK(kernel_channels_send(ch, ca, EXECUTE, strlen(EXECUTE), false,
                               &err) == 0);
    CHECK(wait_for(&k.received, 1, &k.lock));
    pthread_mutex_lock(&k.lock);
    CHECK(k.bad == 0 && k.channel == RELAY_SHELL);
    CHECK_STREQ(k.got.msg_type, "execute_request");
    /* input() is not offered, whatever the client asked */
    CHECK(json_is_false(json_object_get(k.got.content, "allow_stdin")));
    pthread_mutex_unlock(&k.lock);
    /* refused: another channel, no msg_id, not JSON, not an object */
    CHECK(kernel_channels_send(ch, ca, "{\"channel\": \"iopub\"}", 20, false,
                               &err) == ERR_INVALID);
    CHECK(kernel_channels_send(ch, ca,
                               "{\"channel\": \"shell\", \"header\": "
                               "{\"msg_type\": \"x\"}}",
                               47, false, &err) == ERR_INVALID);
    CHECK(kernel_channels_send(ch, ca, "nope", 4, false, &err) == ERR_INVALID);
    CHECK(kernel_channels_send(ch, ca, "\x00\x00\x00\x09", 4, true, &err) ==
          ERR_INVALID);
    kernel_channels_interrupt(ch);
    for (int i = 0; i < 2000 && !k.interrupted; i++)
        usleep(1000);
    CHECK(k.interrupted);
    kernel_channels_detach(ch, ca);
    kernel_channels_stop(ch, true);
    kernel_channels_unref(ch);
    relay_link_close(&link);
    jmsg_release(&k.got);
}

TEST(channels__iopub_to_all_a_reply_to_its_asker_a_forgery_to_none)
{
    struct kernel k = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct client a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct client b = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kernel_channels *ch = kernel_channels_new(4, 1 << 20);
    struct sandbox sb = {0};
    struct err err = ERR_INIT;
    struct relay_link link;
    struct channels_client *ca, *cb, *late;
    struct channels_state st;

    relay_link_fake(&link, &sb, kernel_peer, &k, &err);
    CHECK(kernel_channels_attach(ch, deliver, &a, &ca, &err) == 0);
    CHECK(kernel_channels_attach(ch, deliver, &b, &cb, &err) == 0);
    /* a's session is known once it sent something */
    CHECK(kernel_channels_start(ch, &link, KEY, &err) == 0);
    CHECK(kernel_channels_send(ch, ca, EXECUTE, strlen(EXECUTE), false,
                               &err) == 0);
    CHECK(wait_for(&k.received, 1, &k.lock));
    kernel_channels_stop(ch, false); /* fed frames are read on a restart */
    kernel_says(&link, RELAY_IOPUB, KEY, "status", "client-a",
                json_pack("{s:s}", "execution_state", "busy"));
    kernel_says(&link, RELAY_SHELL, KEY, "execute_reply", "client-a",
                json_pack("{s:s}", "status", "ok"));
    kernel_says(&link, RELAY_IOPUB, "not-the-key", "stream", "client-a",
                json_pack("{s:s, s:s}", "name", "stdout", "text", "forged"));
    CHECK(kernel_channels_start(ch, &link, KEY, &err) == 0);
    CHECK(wait_for(&a.frames, 2, &a.lock));
    CHECK(wait_for(&b.frames, 1, &b.lock));
    usleep(50 * 1000);
    pthread_mutex_lock(&a.lock);
    pthread_mutex_lock(&b.lock);
    CHECK(a.frames == 2 && b.frames == 1); /* the reply was a's alone */
    CHECK(strstr(a.last, "\"channel\":\"shell\"") &&
          strstr(a.last, "execute_reply"));
    CHECK(strstr(b.last, "\"channel\":\"iopub\"") && strstr(b.last, "busy"));
    CHECK(!strstr(a.last, "forged") && !strstr(b.last, "forged"));
    pthread_mutex_unlock(&b.lock);
    pthread_mutex_unlock(&a.lock);
    kernel_channels_state(ch, &st);
    CHECK_STREQ(st.execution_state, "busy");
    CHECK(st.connections == 2);
    kernel_channels_stop(ch, true);
    pthread_mutex_lock(&a.lock);
    CHECK(a.closed); /* the kernel ended: told to close */
    pthread_mutex_unlock(&a.lock);
    CHECK(kernel_channels_attach(ch, deliver, &a, &late, &err) ==
          ERR_NOT_FOUND);
    kernel_channels_detach(ch, ca);
    kernel_channels_detach(ch, cb);
    kernel_channels_unref(ch);
    relay_link_close(&link);
    jmsg_release(&k.got);
}

TEST(channels__the_connection_cap)
{
    struct client a = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct kernel_channels *ch = kernel_channels_new(2, 1 << 20);
    struct channels_client *c[3];
    struct err err = ERR_INIT;

    CHECK(kernel_channels_attach(ch, deliver, &a, &c[0], &err) == 0);
    CHECK(kernel_channels_attach(ch, deliver, &a, &c[1], &err) == 0);
    CHECK(kernel_channels_attach(ch, deliver, &a, &c[2], &err) == ERR_BUSY);
    kernel_channels_detach(ch, c[0]);
    CHECK(kernel_channels_attach(ch, deliver, &a, &c[2], &err) == 0);
    kernel_channels_detach(ch, c[1]);
    kernel_channels_detach(ch, c[2]);
    kernel_channels_unref(ch);
}

TEST(channels__binary_layout_both_ways)
{
    /* count 2 (the JSON, one buffer); offsets 12 and 12 + 2 */
    static const unsigned char frame[] = {0, 0, 0,  2,   0,   0,   0,   12, 0,
                                          0, 0, 14, '{', '}', 'A', 'B', 'C'};
    struct relay_part json, buffers[4];
    size_t n = 0;
    unsigned char bad[sizeof(frame)];

    CHECK(channels_parse_binary(frame, sizeof(frame), &json, buffers, 4, &n) ==
          0);
    CHECK(n == 1 && json.len == 2 && memcmp(json.data, "{}", 2) == 0);
    CHECK(buffers[0].len == 3 && memcmp(buffers[0].data, "ABC", 3) == 0);
    memcpy(bad, frame, sizeof(frame));
    bad[11] = 200; /* an offset past the end */
    CHECK(channels_parse_binary(bad, sizeof(bad), &json, buffers, 4, &n) < 0);
    memcpy(bad, frame, sizeof(frame));
    bad[11] = 11; /* offsets going back */
    CHECK(channels_parse_binary(bad, sizeof(bad), &json, buffers, 4, &n) < 0);
    memcpy(bad, frame, sizeof(frame));
    bad[3] = 0; /* no parts at all */
    CHECK(channels_parse_binary(bad, sizeof(bad), &json, buffers, 4, &n) < 0);
    bad[0] = 0xff; /* a count that would overflow */
    CHECK(channels_parse_binary(bad, sizeof(bad), &json, buffers, 4, &n) < 0);
    CHECK(channels_parse_binary(frame, sizeof(frame), &json, buffers, 0, &n) <
          0); /* more buffers than the caller takes */
}

TEST(ws__the_accept_value_as_rfc_6455_computes_it)
{
    char out[29];

    /* RFC 6455, section 1.3 */
    CHECK(ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==", out) == 0);
    CHECK_STREQ(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(ws_accept_value("short", out) < 0);
    CHECK(ws_accept_value(NULL, out) < 0);
    CHECK(ws_accept_value("dGhlIHNhbXBsZSBub25jZQxx", out) < 0);
}

/*
 * A job's conversation with a sandbox's relay (include/nbcanvas/relay_link.h).
 * Everything read here was written next to the user's code: frames are
 * bounded by relay_proto.h before any allocation follows a length, raw
 * output is capped, and a broken stream ends this job's conversation only.
 */
#include "nbcanvas/relay_link.h"

#include <string.h>

#include "nbcanvas/util.h"

#define READY_WAIT_MS 120000
#define CANCEL_SLICE_MS 200

int relay_link_open(struct relay_link *l, struct sandbox *sb,
                    size_t errout_cap, long long deadline_ms,
                    const atomic_bool *cancel, struct err *err)
{
    struct relay_frame f;
    long long ready_by = util_now_ms() + READY_WAIT_MS;
    int rc;

    memset(l, 0, sizeof(*l));
    l->sb = sb;
    l->err = err;
    l->cancel = cancel;
    buf_init(&l->out, RELAY_MAX_FRAME + RELAY_HEADER_LEN + (1 << 20));
    buf_init(&l->errout, errout_cap);
    demux_init(&l->demux, &l->out, &l->errout);
    rc = sandbox_connect(sb, &l->conn, deadline_ms, err);
    if (rc < 0 || sb->kernel_key[0])
        return rc;
    if (ready_by > deadline_ms)
        ready_by = deadline_ms;
    rc = relay_link_next(l, &f, ready_by);
    if (rc == 1)
        return err_set(err, ERR_INTERNAL,
                       "the sandbox ended before its "
                       "kernel was ready");
    if (rc < 0)
        return rc;
    if (f.type != RELAY_READY)
        return err_set(err, ERR_INTERNAL,
                       "the sandbox's relay said %d "
                       "before READY",
                       f.type);
    {
        json_t *hello = json_loadb((const char *)f.payload, f.len, 0, NULL);
        const char *key = json_string_value(json_object_get(hello, "key"));

        if (!key || strlen(key) >= sizeof(sb->kernel_key) || !key[0])
            rc = err_set(err, ERR_INTERNAL, "the relay's READY has no key");
        else
            snprintf(sb->kernel_key, sizeof(sb->kernel_key), "%s", key);
        json_decref(hello);
    }
    return rc;
}

void relay_link_bind(struct relay_link *l, struct err *err,
                     const atomic_bool *cancel, const atomic_bool *cancel_too)
{
    l->err = err;
    l->cancel = cancel;
    l->cancel_too = cancel_too;
    buf_reset(&l->errout);
    l->errout.overflow = false;
    if (l->conn)
        docker_conn_bind(l->conn, err);
}

void relay_link_fake(struct relay_link *l, struct sandbox *sb,
                     relay_peer_fn peer, void *ctx, struct err *err)
{
    memset(l, 0, sizeof(*l));
    l->sb = sb;
    l->err = err;
    l->peer = peer;
    l->peer_ctx = ctx;
    buf_init(&l->out, RELAY_MAX_FRAME + RELAY_HEADER_LEN + (1 << 20));
    buf_init(&l->errout, 1 << 16);
}

void relay_link_feed(struct relay_link *l, const void *data, size_t len)
{
    buf_append(&l->out, data, len);
}

void relay_link_close(struct relay_link *l)
{
    docker_conn_close(l->conn);
    l->conn = NULL;
    buf_release(&l->out);
    buf_release(&l->errout);
}

int relay_link_send(struct relay_link *l, uint8_t type, uint8_t channel,
                    const void *payload, size_t len, long long deadline_ms)
{
    uint8_t head[RELAY_HEADER_LEN];
    int rc;

    if (len > RELAY_MAX_FRAME)
        return err_set(l->err, ERR_TOO_LARGE,
                       "a frame of %zu bytes is over the "
                       "relay's limit",
                       len);
    if (l->peer) {
        struct relay_frame f = {type, channel, payload, len};

        l->peer(l->peer_ctx, l, &f);
        return 0;
    }
    relay_frame_header(head, type, channel, (uint32_t)len);
    rc = docker_conn_send(l->conn, head, sizeof(head), deadline_ms, l->cancel);
    if (rc == 0 && len)
        rc = docker_conn_send(l->conn, payload, len, deadline_ms, l->cancel);
    return rc;
}

int relay_link_next(struct relay_link *l, struct relay_frame *f,
                    long long deadline_ms)
{
    char more[65536];

    /* What was handed on before is dropped now: f was borrowed until
     * this call. */
    if (l->read_to) {
        memmove(l->out.data, l->out.data + l->read_to,
                l->out.len - l->read_to + 1);
        l->out.len -= l->read_to;
        l->read_to = 0;
    }
    for (;;) {
        size_t used = 0, got = 0, before;
        long long slice;
        int rc = relay_frame_parse((const uint8_t *)l->out.data, l->out.len, f,
                                   &used);

        if (rc == 1) {
            l->read_to = used;
            return 0;
        }
        if (rc < 0)
            return err_set(l->err, ERR_INTERNAL,
                           "the sandbox's channel broke its framing (the "
                           "code may have written into it)");
        if (l->ended)
            return 1;
        if (l->peer)
            return err_set(l->err, ERR_TIMEOUT, "the peer has said all");
        if (l->cancel_too && *l->cancel_too)
            return err_set(l->err, ERR_CANCELLED, "cancelled");
        /* in slices, so that a second reason to stop (cancel_too) is seen
         * while the sandbox is silent */
        slice = util_now_ms() + CANCEL_SLICE_MS;
        rc = docker_conn_recv(l->conn, more, sizeof(more), &got,
                              slice < deadline_ms ? slice : deadline_ms,
                              l->cancel);
        if (rc == ERR_TIMEOUT && slice < deadline_ms)
            continue;
        if (rc == DOCKER_WOKEN)
            return RELAY_LINK_WOKEN;
        if (rc == 1) {
            l->ended = true;
            continue;
        }
        if (rc < 0)
            return rc;
        before = l->out.len;
        if (demux_feed(&l->demux, more, got) < 0)
            return err_set(l->err, ERR_INTERNAL, "engine: bad stream frame");
        if (l->tap)
            buf_append(l->tap, l->out.data + before, l->out.len - before);
        if (l->out.overflow)
            return err_set(l->err, ERR_INTERNAL,
                           "the sandbox's channel broke its framing");
        if (l->errout.overflow)
            return err_set(l->err, ERR_OUTPUT,
                           "the notebook wrote more than %zu bytes to its "
                           "raw stdout and stderr (outside the cells' "
                           "outputs)",
                           l->errout.cap);
    }
}

void relay_link_set_wake(struct relay_link *l, int fd)
{
    if (l->conn)
        docker_conn_set_wake(l->conn, fd);
}

const char *relay_link_stderr_tail(const struct relay_link *l, char *out,
                                   size_t out_len)
{
    const char *s = l->errout.data;
    size_t n = l->errout.len, start;

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    start = n;
    while (start > 0 && s[start - 1] != '\n')
        start--;
    util_escape(out, out_len, s + start, n - start);
    return out;
}

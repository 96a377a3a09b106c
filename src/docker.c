/*
 * Docker Engine API client over libcurl.
 *
 * Every call opens its own easy handle: a unix-socket connect costs
 * microseconds, and a handle per call keeps the client free of locks so any
 * worker thread may use it. Plain calls use curl_easy_perform with a total
 * timeout; streams (attach, exec start) use a multi handle so the caller's
 * deadline and cancel flag are checked while bytes flow.
 *
 * Attaching with stdin needs the connection both ways after the HTTP
 * exchange ("hijacking"), which libcurl does not model as a transfer: for
 * that one call the client lets libcurl connect (CONNECT_ONLY), then speaks
 * HTTP/1.1 itself with curl_easy_send/recv over the same socket.
 *
 * The API version is negotiated once (GET /version) and pinned into every
 * path as /v<version>/..., capped at the newest version this client knows.
 */
#include "nbcanvas/docker.h"

#include <curl/curl.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/util.h"

/* The newest API version whose fields this client relies on. */
#define DOCKER_API_MAX_MAJOR 1
#define DOCKER_API_MAX_MINOR 43
#define DOCKER_ERROR_BODY_CAP (64 * 1024)

struct docker {
    char *socket_path; /* NULL for tcp */
    char *base_url;    /* "http://localhost" or "http://host:port" */
    char version[16];
    long connect_timeout_ms;
    long call_timeout_ms;
};

static bool stream_cancelled(const struct docker_stream_cb *cb)
{
    return (cb->cancel && *cb->cancel) || (cb->cancel_too && *cb->cancel_too);
}
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int docker_new(struct docker **out, const struct docker_opts *opts,
               struct err *err)
{
    struct docker *d;
    const char *host = opts->host;

    pthread_once(&curl_once, curl_global);
    d = xcalloc(1, sizeof(*d));
    if (strncmp(host, "unix://", 7) == 0) {
        d->socket_path = xstrdup(host + 7);
        d->base_url = xstrdup("http://localhost");
    } else if (strncmp(host, "tcp://", 6) == 0) {
        d->base_url = xasprintf("http://%s", host + 6);
    } else {
        free(d);
        return err_set(err, ERR_INVALID,
                       "docker host '%s' must start with unix:// or tcp://",
                       host);
    }
    snprintf(d->version, sizeof(d->version), "1.41");
    d->connect_timeout_ms = opts->connect_timeout_ms;
    d->call_timeout_ms = opts->call_timeout_ms;
    *out = d;
    return 0;
}

void docker_free(struct docker *d)
{
    if (!d)
        return;
    free(d->socket_path);
    free(d->base_url);
    free(d);
}

const char *docker_api_version(const struct docker *d)
{
    return d->version;
}

static size_t write_to_buf(char *data, size_t size, size_t n, void *ctx)
{
    struct buf *b = ctx;

    if (buf_append(b, data, size * n) < 0)
        return 0; /* over the cap: abort the transfer */
    return size * n;
}

static CURL *new_handle(struct docker *d, const char *method, const char *path,
                        long timeout_ms)
{
    CURL *c = curl_easy_init();
    char *url;

    if (!c)
        return NULL;
    if (path[0] == '/' && path[1] == '_')
        url = xasprintf("%s%s", d->base_url, path); /* /_ping: unversioned */
    else
        url = xasprintf("%s/v%s%s", d->base_url, d->version, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    free(url); /* libcurl copies string options */
    if (d->socket_path)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->connect_timeout_ms);
    if (timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    return c;
}

static int curl_failure(struct docker *d, CURLcode cc, const char *method,
                        const char *path, struct err *err)
{
    if (cc == CURLE_WRITE_ERROR)
        return err_set(err, ERR_OUTPUT, "engine reply to %s %s over the cap",
                       method, path);
    return err_set(err, ERR_ENGINE, "docker engine at %s: %s %s: %s",
                   d->socket_path ? d->socket_path : d->base_url, method, path,
                   curl_easy_strerror(cc));
}

int docker_request(struct docker *d, const char *method, const char *path,
                   const void *body, size_t body_len, const char *content_type,
                   struct buf *resp, long *status, long timeout_ms,
                   struct err *err)
{
    struct curl_slist *headers = NULL;
    char ctype[128];
    CURL *c;
    CURLcode cc;
    int rc = 0;

    c = new_handle(d, method, path,
                   timeout_ms ? timeout_ms : d->call_timeout_ms);
    if (!c)
        return err_set(err, ERR_INTERNAL, "curl_easy_init");
    snprintf(ctype, sizeof(ctype), "Content-Type: %s",
             content_type ? content_type : "application/json");
    headers = curl_slist_append(headers, ctype);
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_to_buf);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = curl_failure(d, cc, method, path, err);
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
done:
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}

/* Turns an engine error reply into an err, keeping its own message. */
static int status_error(long status, const struct buf *resp,
                        const char *method, const char *path, struct err *err)
{
    json_t *j = json_loadb(resp->data, resp->len, 0, NULL);
    const char *msg = NULL;
    int rc;

    if (j)
        msg = json_string_value(json_object_get(j, "message"));
    rc = err_set(err, status == 404 ? ERR_NOT_FOUND : ERR_INTERNAL,
                 "engine: %s %s: HTTP %ld: %s", method, path, status,
                 msg ? msg : resp->data);
    json_decref(j);
    return rc;
}

int docker_call_json(struct docker *d, const char *method, const char *path,
                     json_t *body, json_t **out, long timeout_ms,
                     struct err *err)
{
    struct buf resp = BUF_INIT(8 << 20);
    char *text = NULL;
    long status = 0;
    json_error_t jerr;
    int rc;

    if (out)
        *out = NULL;
    if (body)
        text = json_dumps(body, JSON_COMPACT);
    rc = docker_request(d, method, path, text, text ? strlen(text) : 0, NULL,
                        &resp, &status, timeout_ms, err);
    if (rc < 0)
        goto done;
    if (status >= 400) {
        rc = status_error(status, &resp, method, path, err);
        goto done;
    }
    if (out && resp.len > 0) {
        *out = json_loadb(resp.data, resp.len, 0, &jerr);
        if (!*out)
            rc = err_set(err, ERR_INTERNAL, "engine: %s %s: bad JSON: %s",
                         method, path, jerr.text);
    }
done:
    free(text);
    buf_release(&resp);
    return rc;
}

static bool version_newer(int major, int minor)
{
    return major > DOCKER_API_MAX_MAJOR ||
           (major == DOCKER_API_MAX_MAJOR && minor > DOCKER_API_MAX_MINOR);
}

int docker_negotiate(struct docker *d, struct err *err)
{
    json_t *v = NULL;
    const char *server;
    int major = 0, minor = 0, rc;

    rc = docker_call_json(d, "GET", "/_ping", NULL, NULL, 0, err);
    if (rc < 0)
        return rc;
    /* /version is valid under any version prefix the engine accepts. */
    rc = docker_call_json(d, "GET", "/version", NULL, &v, 0, err);
    if (rc < 0)
        return rc;
    server = json_string_value(json_object_get(v, "ApiVersion"));
    if (!server || sscanf(server, "%d.%d", &major, &minor) != 2) {
        rc = err_set(err, ERR_INTERNAL, "engine: /version has no ApiVersion");
        goto done;
    }
    if (version_newer(major, minor))
        snprintf(d->version, sizeof(d->version), "%d.%d", DOCKER_API_MAX_MAJOR,
                 DOCKER_API_MAX_MINOR);
    else
        snprintf(d->version, sizeof(d->version), "%d.%d", major, minor);
done:
    json_decref(v);
    return rc;
}

/* State shared between a stream's curl callbacks and its poll loop. */
struct stream_state {
    const struct docker_stream_cb *cb;
    struct buf error_body; /* the reply body when the status is an error */
    long status;
    bool headers_done;
    int stop; /* non-zero: a callback asked to end the stream */
};

/* Takes the status from the status line itself: output that arrives in
 * the same read as the headers reaches stream_write before the loop could
 * ask curl for the status, and must not be mistaken for an error body. */
static size_t stream_header(char *data, size_t size, size_t n, void *ctx)
{
    struct stream_state *s = ctx;
    size_t len = size * n;
    const char *sp;

    if (len <= 2 && (data[0] == '\r' || data[0] == '\n'))
        s->headers_done = true;
    else if (len > 5 && memcmp(data, "HTTP/", 5) == 0 &&
             (sp = memchr(data, ' ', len)) && sp + 4 <= data + len) {
        s->status = strtol(sp + 1, NULL, 10); /* after a 1xx, the next */
        s->headers_done = false;
    }
    return len;
}

static size_t stream_write(char *data, size_t size, size_t n, void *ctx)
{
    struct stream_state *s = ctx;

    if (s->status >= 400 || s->status < 200) {
        buf_append(&s->error_body, data, size * n);
        return size * n;
    }
    s->stop = s->cb->on_data(s->cb->ctx, data, size * n);
    return s->stop ? 0 : size * n;
}

/* Drives the multi handle until the transfer ends or the caller stops it. */
static int stream_loop(CURLM *m, CURL *c, struct stream_state *s,
                       long long deadline_ms, struct err *err)
{
    int running = 1;
    bool opened = false;

    while (running) {
        long long now;

        curl_multi_perform(m, &running);
        if (!s->status)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
        if (!opened && s->headers_done && s->status >= 200 &&
            s->status < 400) {
            opened = true;
            if (s->cb->on_open)
                s->stop = s->cb->on_open(s->cb->ctx);
        }
        if (s->stop)
            return s->stop;
        if (stream_cancelled(s->cb))
            return err_set(err, ERR_CANCELLED, "cancelled by the client");
        now = util_now_ms();
        if (now >= deadline_ms)
            return err_set(err, ERR_TIMEOUT, "deadline passed");
        if (running)
            curl_multi_poll(
                m, NULL, 0,
                (int)(deadline_ms - now < 100 ? deadline_ms - now : 100),
                NULL);
    }
    return 0;
}

int docker_stream(struct docker *d, const char *method, const char *path,
                  const char *json_body, const struct docker_stream_cb *cb,
                  long long deadline_ms, struct err *err)
{
    struct stream_state s = {cb, BUF_INIT(DOCKER_ERROR_BODY_CAP), 0, false, 0};
    struct curl_slist *headers = NULL;
    CURLM *m = NULL;
    CURL *c;
    CURLMsg *msg;
    int left, rc;

    c = new_handle(d, method, path, 0);
    if (!c)
        return err_set(err, ERR_INTERNAL, "curl_easy_init");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body ? json_body : "");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, stream_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    m = curl_multi_init();
    curl_multi_add_handle(m, c);

    rc = stream_loop(m, c, &s, deadline_ms, err);
    if (rc != 0)
        goto done;
    msg = curl_multi_info_read(m, &left);
    if (msg && msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK) {
        rc = curl_failure(d, msg->data.result, method, path, err);
        goto done;
    }
    if (s.status >= 400)
        rc = status_error(s.status, &s.error_body, method, path, err);
done:
    curl_multi_remove_handle(m, c);
    curl_multi_cleanup(m);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    buf_release(&s.error_body);
    return rc;
}

/* duplex_recv's value at end of stream, apart from any callback's value. */
#define DUPLEX_EOF (1 << 20)

/* State of a hijacked exchange: what is left to send, the socket. */
struct duplex {
    CURL *c;
    curl_socket_t fd;
    const char *input;
    size_t input_left;
    const struct docker_stream_cb *cb;
    struct err *err;
    int wake_fd; /* -1, or readable: a wait for input ends (DOCKER_WOKEN) */
};

/* Sends as much pending input as the socket takes now. */
static int duplex_send(struct duplex *x)
{
    while (x->input_left > 0) {
        size_t sent = 0;
        CURLcode cc = curl_easy_send(x->c, x->input, x->input_left, &sent);

        if (cc == CURLE_AGAIN)
            return 0;
        if (cc != CURLE_OK)
            return err_set(x->err, ERR_ENGINE, "engine: send: %s",
                           curl_easy_strerror(cc));
        x->input += sent;
        x->input_left -= sent;
    }
    return 0;
}

/* Reads what is there; returns 0 to go on, DUPLEX_EOF at the end, a
 * callback's stop value, or an error. */
static int duplex_recv(struct duplex *x)
{
    char chunk[65536];

    for (;;) {
        size_t got = 0;
        CURLcode cc = curl_easy_recv(x->c, chunk, sizeof(chunk), &got);
        int stop;

        if (cc == CURLE_AGAIN)
            return 0;
        if (cc != CURLE_OK)
            return err_set(x->err, ERR_ENGINE, "engine: recv: %s",
                           curl_easy_strerror(cc));
        if (got == 0)
            return DUPLEX_EOF;
        stop = x->cb->on_data(x->cb->ctx, chunk, got);
        if (stop)
            return stop;
    }
}

/* Waits up to the deadline (in slices, for the cancel flag) until the
 * socket can be read or, while input is pending, written. */
static int duplex_wait(struct duplex *x, long long deadline_ms)
{
    for (;;) {
        /* a send waits for the socket alone: it must finish */
        struct pollfd p[2] = {{x->fd, POLLIN, 0},
                              {x->input_left ? -1 : x->wake_fd, POLLIN, 0}};
        long long left = deadline_ms - util_now_ms();
        int n;

        if (x->input_left)
            p[0].events |= POLLOUT;
        if (stream_cancelled(x->cb))
            return err_set(x->err, ERR_CANCELLED, "cancelled by the client");
        if (left <= 0)
            return err_set(x->err, ERR_TIMEOUT, "deadline passed");
        n = poll(p, 2, (int)(left < 100 ? left : 100));
        if (n > 0 && p[0].revents)
            return 0;
        if (n > 0 && p[1].revents)
            return DOCKER_WOKEN;
    }
}

/* Sends the request line and reads the engine's answer up to the blank
 * line; bytes after it are already stream data and go to on_data. */
static int duplex_handshake(struct duplex *x, struct docker *d,
                            const char *path, long long deadline_ms)
{
    struct buf head = BUF_INIT(16 << 10);
    char *req = xasprintf("POST /v%s%s HTTP/1.1\r\nHost: docker\r\n"
                          "Content-Type: text/plain\r\nConnection: Upgrade"
                          "\r\nUpgrade: tcp\r\n\r\n",
                          d->version, path);
    const char *end = NULL;
    int rc, status = 0;

    x->input = req;
    x->input_left = strlen(req);
    while ((rc = duplex_send(x)) == 0 && x->input_left)
        if ((rc = duplex_wait(x, deadline_ms)) < 0)
            break;
    while (rc == 0 && !(end = strstr(head.data, "\r\n\r\n"))) {
        char chunk[4096];
        size_t got = 0;
        CURLcode cc = curl_easy_recv(x->c, chunk, sizeof(chunk), &got);

        if (cc == CURLE_AGAIN) {
            rc = duplex_wait(x, deadline_ms);
            continue;
        }
        if (cc != CURLE_OK || got == 0 || buf_append(&head, chunk, got) < 0)
            rc = err_set(x->err, ERR_ENGINE, "engine: attach: bad answer");
    }
    if (rc == 0 && sscanf(head.data, "HTTP/1.%*d %d", &status) != 1)
        rc = err_set(x->err, ERR_ENGINE, "engine: attach: bad status line");
    if (rc == 0 && status != 101 && status != 200)
        rc = err_set(x->err, status == 404 ? ERR_NOT_FOUND : ERR_INTERNAL,
                     "engine: attach: HTTP %d: %.200s", status, end + 4);
    if (rc == 0 && head.data + head.len > end + 4)
        rc = x->cb->on_data(x->cb->ctx, end + 4,
                            (size_t)(head.data + head.len - (end + 4)));
    free(req);
    buf_release(&head);
    return rc;
}

int docker_stream_duplex(struct docker *d, const char *path, const char *input,
                         size_t input_len, const struct docker_stream_cb *cb,
                         long long deadline_ms, struct err *err)
{
    struct duplex x = {NULL, CURL_SOCKET_BAD, NULL, 0, cb, err, -1};
    CURLcode cc;
    int rc;

    x.c = new_handle(d, "POST", path, 0);
    if (!x.c)
        return err_set(err, ERR_INTERNAL, "curl_easy_init");
    curl_easy_setopt(x.c, CURLOPT_CONNECT_ONLY, 1L);
    cc = curl_easy_perform(x.c);
    if (cc == CURLE_OK)
        cc = curl_easy_getinfo(x.c, CURLINFO_ACTIVESOCKET, &x.fd);
    if (cc != CURLE_OK) {
        rc = curl_failure(d, cc, "POST", path, err);
        goto done;
    }
    rc = duplex_handshake(&x, d, path, deadline_ms);
    if (rc == 0 && cb->on_open)
        rc = cb->on_open(cb->ctx);
    x.input = input;
    x.input_left = input_len;
    while (rc == 0) {
        rc = duplex_send(&x);
        if (rc == 0)
            rc = duplex_recv(&x);
        if (rc == DUPLEX_EOF) {
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = duplex_wait(&x, deadline_ms);
    }
done:
    curl_easy_cleanup(x.c);
    return rc;
}

/* ------------------------------------------------- a connection kept open */

struct docker_conn {
    struct duplex x;
    struct docker_stream_cb cb;
    struct buf early; /* stream bytes that came with the handshake */
    struct buf inbox; /* stream bytes read while a send waited */
    struct err *err;
};

static int conn_keep_early(void *ctx, const char *data, size_t len)
{
    struct docker_conn *c = ctx;

    return buf_append(&c->early, data, len) < 0
               ? err_set(c->err, ERR_ENGINE,
                         "engine: attach: too much at once")
               : 0;
}

int docker_conn_open(struct docker *d, const char *path,
                     struct docker_conn **out, int (*on_open)(void *ctx),
                     void *ctx, long long deadline_ms, struct err *err)
{
    struct docker_conn *c = xcalloc(1, sizeof(*c));
    CURLcode cc;
    int rc;

    c->err = err;
    c->cb = (struct docker_stream_cb){NULL, conn_keep_early, c, NULL, NULL};
    buf_init(&c->early, 1 << 20);
    buf_init(&c->inbox, DOCKER_CONN_INBOX_MAX);
    c->x = (struct duplex){NULL, CURL_SOCKET_BAD, NULL, 0, &c->cb, err, -1};
    c->x.c = new_handle(d, "POST", path, 0);
    if (!c->x.c) {
        rc = err_set(err, ERR_INTERNAL, "curl_easy_init");
        goto fail;
    }
    curl_easy_setopt(c->x.c, CURLOPT_CONNECT_ONLY, 1L);
    cc = curl_easy_perform(c->x.c);
    if (cc == CURLE_OK)
        cc = curl_easy_getinfo(c->x.c, CURLINFO_ACTIVESOCKET, &c->x.fd);
    if (cc != CURLE_OK) {
        rc = curl_failure(d, cc, "POST", path, err);
        goto fail;
    }
    rc = duplex_handshake(&c->x, d, path, deadline_ms);
    if (rc == 0 && on_open)
        rc = on_open(ctx);
    if (rc < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    docker_conn_close(c);
    return rc;
}

void docker_conn_bind(struct docker_conn *c, struct err *err)
{
    c->err = err;
    c->x.err = err;
}

void docker_conn_close(struct docker_conn *c)
{
    if (!c)
        return;
    if (c->x.c)
        curl_easy_cleanup(c->x.c);
    buf_release(&c->early);
    buf_release(&c->inbox);
    free(c);
}

/* Reads what the socket has into the inbox (a send must not wait on a
 * peer that waits for us to read). */
static int conn_fill_inbox(struct docker_conn *c)
{
    for (;;) {
        char chunk[65536];
        size_t got = 0;
        CURLcode cc = curl_easy_recv(c->x.c, chunk, sizeof(chunk), &got);

        if (cc == CURLE_AGAIN || (cc == CURLE_OK && got == 0))
            return 0;
        if (cc != CURLE_OK)
            return err_set(c->err, ERR_ENGINE, "engine: recv: %s",
                           curl_easy_strerror(cc));
        if (buf_append(&c->inbox, chunk, got) < 0)
            return err_set(c->err, ERR_OUTPUT,
                           "the sandbox wrote more than %zu bytes while "
                           "its input was sent",
                           c->inbox.cap);
    }
}

int docker_conn_send(struct docker_conn *c, const void *data, size_t len,
                     long long deadline_ms, const atomic_bool *cancel)
{
    struct docker_stream_cb cb = {NULL, NULL, NULL, cancel, NULL};
    int rc = 0;

    c->x.cb = &cb;
    c->x.input = data;
    c->x.input_left = len;
    while (rc == 0 && c->x.input_left > 0) {
        rc = duplex_send(&c->x);
        if (rc == 0 && c->x.input_left > 0)
            rc = conn_fill_inbox(c);
        if (rc == 0 && c->x.input_left > 0)
            rc = duplex_wait(&c->x, deadline_ms);
    }
    c->x.cb = &c->cb;
    c->x.input_left = 0;
    return rc;
}

int docker_conn_recv(struct docker_conn *c, char *out, size_t cap, size_t *got,
                     long long deadline_ms, const atomic_bool *cancel)
{
    struct docker_stream_cb cb = {NULL, NULL, NULL, cancel, NULL};
    struct buf *held = c->early.len ? &c->early : &c->inbox;
    int rc;

    *got = 0;
    if (held->len) {
        size_t n = held->len < cap ? held->len : cap;

        memcpy(out, held->data, n);
        memmove(held->data, held->data + n, held->len - n + 1);
        held->len -= n;
        *got = n;
        return 0;
    }
    c->x.cb = &cb;
    for (;;) {
        CURLcode cc = curl_easy_recv(c->x.c, out, cap, got);

        if (cc == CURLE_OK) {
            rc = *got == 0 ? 1 : 0;
            break;
        }
        if (cc != CURLE_AGAIN) {
            rc = err_set(c->err, ERR_ENGINE, "engine: recv: %s",
                         curl_easy_strerror(cc));
            break;
        }
        rc = duplex_wait(&c->x, deadline_ms);
        if (rc < 0 || rc == DOCKER_WOKEN)
            break;
    }
    c->x.cb = &c->cb;
    return rc;
}

void docker_conn_set_wake(struct docker_conn *c, int fd)
{
    c->x.wake_fd = fd;
}

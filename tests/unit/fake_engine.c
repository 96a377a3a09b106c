/*
 * A fake Docker engine for unit tests (see fake_engine.h for what it
 * speaks and who owns what).
 *
 * Why it exists: the engine client, the sandbox and everything built on
 * them (janitor, pool, renders) are driven by the engine's answers; the
 * real engine is slow, needs root and cannot be made to fail on cue. This
 * fake keeps the same wire protocol (HTTP/1.1 over a unix socket, hijacked
 * streams with Docker's 8-byte frames) over a small in-memory model of
 * containers and execs, so tests run the real client code and can check
 * what it sent.
 *
 * Threads: one acceptor thread, and one thread per connection (libcurl
 * opens a connection per call, several at once from several threads). All
 * state sits under one mutex; a condition variable announces changes (a
 * request logged, a container started). A connection's socket is shut
 * down, never closed, by anyone but the acceptor or fake_engine_stop, which
 * close it only once its thread has ended: an fd number is never reused
 * under a thread that still holds it.
 *
 * File layout: bytes and HTTP parsing; the request log; the model
 * (containers, execs, images, scripts, faults); plain routes; streams;
 * threads and the public API.
 */
#include "fake_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbcanvas/docker.h"
#include "nbcanvas/util.h"

#define HEAD_CAP (64 << 10) /* request line and headers */
#define BODY_CAP (64 << 20) /* a request body or a stream's input */
#define POLL_SLICE_MS 50    /* how often waits look at the flags */
#define OUTPUT_PAUSE_MS 20  /* between a stream's headers and output */

/* ---- bytes ------------------------------------------------------------ */

/* A growable, always NUL-terminated byte string. */
struct bytes {
    char *data;
    size_t len, alloc;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->alloc) {
        b->alloc = (b->len + n + 1) * 2;
        b->data = xrealloc(b->data, b->alloc);
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Removes the first n bytes. */
static void bytes_drop(struct bytes *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

static void bytes_free(struct bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static char *memdup0(const void *p, size_t n)
{
    char *d = xmalloc(n + 1);

    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

/* ---- the model -------------------------------------------------------- */

struct container {
    char id[65];
    char name[32];
    json_t *body; /* the create body */
    bool running, started, oom;
    int exit_code;
    struct container *next;
};

struct exec {
    char id[65];
    char container[65];
    json_t *body;
    bool running;
    int exit_code;
    struct exec *next;
};

/* A script set for one container id, or ("" id) for every container. */
struct keyed_script {
    char id[65];
    enum fake_stream_kind kind;
    struct fake_script *script;
    struct keyed_script *next;
};

/* A rule matching requests: by method (NULL any) and path prefix. */
struct rule {
    char *method;
    char *prefix;
};

struct fault {
    struct rule rule;
    int left, status;
    char *message;
    struct fault *next;
};

struct name {
    char *name;
    struct name *next;
};

struct conn {
    struct fake_engine_state *st;
    int fd;
    pthread_t thread;
    atomic_bool done;
    struct bytes in; /* received, not yet consumed */
    struct conn *next;
};

struct fake_engine_state {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* the log or the model changed */
    char path[108];
    char host[128];
    char api_version[16];
    int listen_fd;
    int wake[2]; /* a byte here stops the acceptor */
    pthread_t acceptor;
    atomic_bool stopping, down;
    unsigned long serial;
    struct fake_request *log;
    size_t nlog, log_alloc;
    struct container *containers;
    struct exec *execs;
    struct fault *faults;
    struct name *missing_images;
    struct keyed_script *scripts;
    bool holding;
    struct rule hold;
    size_t held;
    struct conn *conns;
};

static bool closing(struct fake_engine_state *st)
{
    return atomic_load(&st->stopping) || atomic_load(&st->down);
}

static bool rule_matches(const char *method, const char *prefix,
                         const char *req_method, const char *req_path)
{
    return (!method || strcmp(method, req_method) == 0) &&
           (!prefix || strncmp(req_path, prefix, strlen(prefix)) == 0);
}

static void rule_set(struct rule *r, const char *method, const char *prefix)
{
    free(r->method);
    free(r->prefix);
    r->method = method ? xstrdup(method) : NULL;
    r->prefix = prefix ? xstrdup(prefix) : NULL;
}

/* A 64-hex id like the engine's (under the lock: uses the serial). */
static void new_id(struct fake_engine_state *st, const char *kind,
                   char out[65])
{
    char seed[200];
    int n = snprintf(seed, sizeof(seed), "%s-%lu-%s", kind, ++st->serial,
                     st->path);

    util_sha256_hex(out, seed, (size_t)n);
}

/* Exact id, or a prefix of at least 12 characters (a short id). */
static struct container *container_find(struct fake_engine_state *st,
                                        const char *id)
{
    struct container *c;
    size_t n = strlen(id);

    for (c = st->containers; c; c = c->next)
        if (strcmp(c->id, id) == 0 || (n >= 12 && strncmp(c->id, id, n) == 0))
            return c;
    return NULL;
}

static struct container *container_new(struct fake_engine_state *st,
                                       json_t *body)
{
    struct container *c = xcalloc(1, sizeof(*c));

    new_id(st, "container", c->id);
    snprintf(c->name, sizeof(c->name), "/fake-%lu", st->serial);
    c->body = body;
    c->next = st->containers;
    st->containers = c;
    pthread_cond_broadcast(&st->changed);
    return c;
}

static void container_remove(struct fake_engine_state *st,
                             struct container *gone)
{
    struct container **p;

    for (p = &st->containers; *p; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            json_decref(gone->body);
            free(gone);
            break;
        }
    }
    pthread_cond_broadcast(&st->changed);
}

static struct exec *exec_find(struct fake_engine_state *st, const char *id)
{
    struct exec *e;

    for (e = st->execs; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static bool image_missing(struct fake_engine_state *st, const char *image)
{
    struct name *n;

    for (n = st->missing_images; n; n = n->next)
        if (strcmp(n->name, image) == 0)
            return true;
    return false;
}

static struct fake_script *script_copy(const struct fake_script *s)
{
    struct fake_script *c = xcalloc(1, sizeof(*c));
    struct fake_chunk *chunks = xcalloc(s->nchunks, sizeof(*chunks));
    size_t i;

    *c = *s;
    for (i = 0; i < s->nchunks; i++) {
        const struct fake_chunk *k = &s->chunks[i];
        size_t n = k->len ? k->len : strlen(k->data);

        chunks[i] = (struct fake_chunk){k->stream, memdup0(k->data, n), n};
    }
    c->chunks = chunks;
    return c;
}

static void script_free(struct fake_script *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->nchunks; i++)
        free((void *)s->chunks[i].data);
    free((void *)s->chunks);
    free(s);
}

static struct keyed_script **script_slot(struct fake_engine_state *st,
                                         enum fake_stream_kind kind,
                                         const char *id)
{
    struct keyed_script **p;

    for (p = &st->scripts; *p; p = &(*p)->next)
        if ((*p)->kind == kind && strcmp((*p)->id, id) == 0)
            break;
    return p;
}

/* A copy of the script a stream of container id runs (the caller frees
 * it); an empty script when none is set. */
static struct fake_script *script_for(struct fake_engine_state *st,
                                      enum fake_stream_kind kind,
                                      const char *id)
{
    static const struct fake_script none;
    struct keyed_script *k = *script_slot(st, kind, id);

    if (!k)
        k = *script_slot(st, kind, "");
    return script_copy(k ? k->script : &none);
}

/* ---- the request log -------------------------------------------------- */

/* A parsed request. */
struct http_req {
    char method[16];
    char version[16];
    char *path; /* without the version prefix, with the query */
    struct bytes body;
    bool upgrade, close, expect;
};

static size_t log_append(struct fake_engine_state *st,
                         const struct http_req *r, int status)
{
    struct fake_request *e;
    size_t idx;

    pthread_mutex_lock(&st->lock);
    if (st->nlog == st->log_alloc) {
        st->log_alloc = st->log_alloc ? st->log_alloc * 2 : 64;
        st->log = xrealloc(st->log, st->log_alloc * sizeof(*st->log));
    }
    idx = st->nlog++;
    e = &st->log[idx];
    memset(e, 0, sizeof(*e));
    e->method = xstrdup(r->method);
    e->path = xstrdup(r->path);
    e->version = xstrdup(r->version);
    e->body = memdup0(r->body.data, r->body.len);
    e->body_len = r->body.len;
    e->input = memdup0("", 0);
    e->upgrade = r->upgrade;
    e->status = status;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
    return idx;
}

static void log_add_input(struct fake_engine_state *st, size_t idx,
                          const char *data, size_t n)
{
    struct fake_request *e;

    pthread_mutex_lock(&st->lock);
    e = &st->log[idx];
    e->input = xrealloc(e->input, e->input_len + n + 1);
    memcpy(e->input + e->input_len, data, n);
    e->input_len += n;
    e->input[e->input_len] = '\0';
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

static void request_copy(struct fake_request *out,
                         const struct fake_request *e)
{
    *out = *e;
    out->method = xstrdup(e->method);
    out->path = xstrdup(e->path);
    out->version = xstrdup(e->version);
    out->body = memdup0(e->body, e->body_len);
    out->input = memdup0(e->input, e->input_len);
}

static void request_free_fields(struct fake_request *r)
{
    free(r->method);
    free(r->path);
    free(r->version);
    free(r->body);
    free(r->input);
    memset(r, 0, sizeof(*r));
}

/* Under the lock. */
static size_t log_count(struct fake_engine_state *st, const char *method,
                        const char *prefix)
{
    size_t i, n = 0;

    for (i = 0; i < st->nlog; i++)
        if (rule_matches(method, prefix, st->log[i].method, st->log[i].path))
            n++;
    return n;
}

/* ---- socket I/O ------------------------------------------------------- */

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Waits up to timeout_ms for bytes from the client and appends them to
 * into. 1: got some; 0: none yet; -1: the client is gone or the fake is
 * closing. */
static int conn_fill(struct conn *c, struct bytes *into, int timeout_ms)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    char chunk[65536];
    ssize_t got;
    int n;

    if (closing(c->st))
        return -1;
    n = poll(&p, 1, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    if (n == 0)
        return closing(c->st) ? -1 : 0;
    got = recv(c->fd, chunk, sizeof(chunk), 0);
    if (got < 0 && errno == EINTR)
        return 0;
    if (got <= 0 || into->len + (size_t)got > BODY_CAP)
        return -1;
    bytes_add(into, chunk, (size_t)got);
    return 1;
}

/* Waits until the client has read everything sent so far (the unix
 * socket's send queue is empty), for at most timeout_ms. */
static void wait_peer_read(struct conn *c, long timeout_ms)
{
    int64_t until = util_now_ms() + timeout_ms;
    int queued = 0;

    while (!closing(c->st) && util_now_ms() < until &&
           ioctl(c->fd, SIOCOUTQ, &queued) == 0 && queued > 0)
        poll(NULL, 0, 2);
}

/* ---- HTTP parsing ----------------------------------------------------- */

/* "/v1.41/containers/create" -> version "1.41", path "/containers/create";
 * "/_ping" -> version "", path "/_ping". */
static void split_version(struct http_req *r, const char *target, size_t n)
{
    size_t i = 2;

    r->version[0] = '\0';
    if (n > 2 && target[0] == '/' && target[1] == 'v') {
        while (i < n &&
               (target[i] == '.' || (target[i] >= '0' && target[i] <= '9')))
            i++;
        if (i > 2 && i < n && target[i] == '/' && i - 2 < sizeof(r->version)) {
            snprintf(r->version, sizeof(r->version), "%.*s", (int)(i - 2),
                     target + 2);
            r->path = xstrndup(target + i, n - i);
            return;
        }
    }
    r->path = xstrndup(target, n);
}

static bool header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);

    return n > k && strncasecmp(line, name, k) == 0 && line[k] == ':';
}

/* The value of a header line, without leading blanks, as a new string. */
static char *header_value(const char *line, size_t n)
{
    const char *v = (const char *)memchr(line, ':', n) + 1;

    while (v < line + n && (*v == ' ' || *v == '\t'))
        v++;
    return xstrndup(v, (size_t)(line + n - v));
}

/* Parses the request line and the headers in head[0..len). Returns the
 * Content-Length, or -1 if the request is malformed. */
static long parse_head(struct http_req *r, const char *head, size_t len)
{
    const char *end = head + len, *line = head, *sp1, *sp2, *eol;
    long content_length = 0;

    eol = memmem(line, len, "\r\n", 2);
    sp1 = memchr(line, ' ', (size_t)(eol - line));
    sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || (size_t)(sp1 - line) >= sizeof(r->method))
        return -1;
    snprintf(r->method, sizeof(r->method), "%.*s", (int)(sp1 - line), line);
    split_version(r, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    for (line = eol + 2; line < end; line = eol + 2) {
        size_t n;
        char *v;

        eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol || eol == line)
            break;
        n = (size_t)(eol - line);
        if (!memchr(line, ':', n))
            continue;
        v = header_value(line, n);
        if (header_is(line, n, "Content-Length"))
            content_length = strtol(v, NULL, 10);
        else if (header_is(line, n, "Upgrade"))
            r->upgrade = strcasestr(v, "tcp") != NULL;
        else if (header_is(line, n, "Connection"))
            r->close = strcasecmp(v, "close") == 0;
        else if (header_is(line, n, "Expect"))
            r->expect = strcasecmp(v, "100-continue") == 0;
        free(v);
    }
    return content_length >= 0 && content_length <= BODY_CAP ? content_length
                                                             : -1;
}

static void req_free(struct http_req *r)
{
    free(r->path);
    bytes_free(&r->body);
    memset(r, 0, sizeof(*r));
}

/* Reads one request (head and Content-Length body) from the connection.
 * Returns 0, or -1 at the end of the connection or on a malformed one. */
static int read_request(struct conn *c, struct http_req *r)
{
    char *end;
    size_t head_len;
    long body_len;

    memset(r, 0, sizeof(*r));
    while (!(
        end = memmem(c->in.data ? c->in.data : "", c->in.len, "\r\n\r\n", 4)))
        if (c->in.len > HEAD_CAP || conn_fill(c, &c->in, POLL_SLICE_MS) < 0)
            return -1;
    head_len = (size_t)(end + 4 - c->in.data);
    body_len = parse_head(r, c->in.data, head_len);
    if (body_len < 0)
        return -1;
    if (r->expect && c->in.len < head_len + (size_t)body_len &&
        send_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return -1;
    while (c->in.len < head_len + (size_t)body_len)
        if (conn_fill(c, &c->in, POLL_SLICE_MS) < 0)
            return -1;
    bytes_add(&r->body, c->in.data + head_len, (size_t)body_len);
    bytes_drop(&c->in, head_len + (size_t)body_len);
    return 0;
}

/* The value of key in the request's query, URL-decoded (new string), or
 * NULL. */
static char *query_get(const char *path, const char *key)
{
    const char *q = strchr(path, '?');
    size_t k = strlen(key);

    while (q) {
        const char *name = q + 1, *amp = strchr(name, '&');
        size_t n = amp ? (size_t)(amp - name) : strlen(name);

        if (n > k && strncmp(name, key, k) == 0 && name[k] == '=') {
            struct bytes out = {0};
            const char *v = name + k + 1, *vend = name + n;

            bytes_add(&out, "", 0);
            while (v < vend) {
                char ch = *v++;
                unsigned hex;

                if (ch == '+')
                    ch = ' ';
                else if (ch == '%' && vend - v >= 2 &&
                         sscanf(v, "%2x", &hex) == 1) {
                    ch = (char)hex;
                    v += 2;
                }
                bytes_add(&out, &ch, 1);
            }
            return out.data;
        }
        q = amp;
    }
    return NULL;
}

static bool query_true(const char *path, const char *key)
{
    char *v = query_get(path, key);
    bool yes = v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0);

    free(v);
    return yes;
}

/* Matches the request's path (query aside) against pattern, which holds
 * one '*' standing for a non-empty segment (with slashes if slash_ok); the
 * segment goes into cap. */
static bool route_is(const struct http_req *r, const char *method,
                     const char *pattern, char *cap, size_t cap_len,
                     bool slash_ok)
{
    const char *star = strchr(pattern, '*');
    size_t path_len = strcspn(r->path, "?");
    size_t pre, post, mid;

    if (strcmp(r->method, method) != 0)
        return false;
    if (!star)
        return strlen(pattern) == path_len &&
               strncmp(r->path, pattern, path_len) == 0;
    pre = (size_t)(star - pattern);
    post = strlen(star + 1);
    if (path_len <= pre + post || strncmp(r->path, pattern, pre) != 0 ||
        strncmp(r->path + path_len - post, star + 1, post) != 0)
        return false;
    mid = path_len - pre - post;
    if ((!slash_ok && memchr(r->path + pre, '/', mid)) || mid >= cap_len)
        return false;
    snprintf(cap, cap_len, "%.*s", (int)mid, r->path + pre);
    return true;
}

/* ---- replies ---------------------------------------------------------- */

struct reply {
    int status;
    const char *type;
    char *body; /* malloc'd, or NULL */
};

static const char *reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "UPGRADED";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    default:
        return status >= 500 ? "Internal Server Error" : "Status";
    }
}

/* Takes j. */
static void reply_json(struct reply *rep, int status, json_t *j)
{
    rep->status = status;
    rep->type = "application/json";
    rep->body = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
}

static void reply_error(struct reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(struct reply *rep, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(rep, status, json_pack("{s:s}", "message", msg));
}

static void reply_empty(struct reply *rep, int status)
{
    rep->status = status;
    rep->type = NULL;
    rep->body = NULL;
}

static int send_reply(struct conn *c, const struct reply *rep, bool close)
{
    size_t len = rep->body ? strlen(rep->body) : 0;
    char *head;
    int rc;

    head = xasprintf("HTTP/1.1 %d %s\r\nApi-Version: %s\r\n"
                     "Server: nbcanvas-fake-engine\r\n%s%s%s"
                     "Content-Length: %zu\r\n%s\r\n",
                     rep->status, reason(rep->status), c->st->api_version,
                     rep->type ? "Content-Type: " : "",
                     rep->type ? rep->type : "", rep->type ? "\r\n" : "", len,
                     close ? "Connection: close\r\n" : "");
    rc = send_all(c->fd, head, strlen(head));
    if (rc == 0 && len)
        rc = send_all(c->fd, rep->body, len);
    free(head);
    return rc;
}

/* ---- plain routes ----------------------------------------------------- */

static void on_version(struct fake_engine_state *st, struct reply *rep)
{
    reply_json(rep, 200,
               json_pack("{s:s, s:s, s:s, s:s, s:s}", "ApiVersion",
                         st->api_version, "MinAPIVersion", "1.24", "Version",
                         "0.0.0-fake", "Os", "linux", "Arch", "amd64"));
}

static void on_create(struct fake_engine_state *st, const struct http_req *r,
                      struct reply *rep)
{
    json_t *body = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0,
                              NULL);
    const char *image = json_string_value(json_object_get(body, "Image"));
    struct container *c;

    if (!json_is_object(body) || !image) {
        reply_error(rep, 400, "create: the body needs an Image");
        json_decref(body);
        return;
    }
    pthread_mutex_lock(&st->lock);
    if (image_missing(st, image)) {
        reply_error(rep, 404, "No such image: %s", image);
        json_decref(body);
    } else {
        c = container_new(st, body);
        reply_json(rep, 201,
                   json_pack("{s:s, s:[]}", "Id", c->id, "Warnings"));
    }
    pthread_mutex_unlock(&st->lock);
}

static const char *container_status(const struct container *c)
{
    return c->running ? "running" : c->started ? "exited" : "created";
}

static json_t *container_inspect(const struct container *c)
{
    json_t *labels = json_object_get(c->body, "Labels");

    return json_pack("{s:s, s:s, s:{s:s, s:b, s:b, s:b, s:i},"
                     " s:{s:O?, s:O?}}",
                     "Id", c->id, "Name", c->name, "State", "Status",
                     container_status(c), "Running", c->running, "OOMKilled",
                     c->oom, "Dead", 0, "ExitCode", c->exit_code, "Config",
                     "Image", json_object_get(c->body, "Image"), "Labels",
                     labels);
}

/* True when the container's labels satisfy a "label" filter: an array of
 * "key" or "key=value" strings, or the older object form with them as
 * keys. */
static bool labels_match(const struct container *c, json_t *filter)
{
    json_t *labels = json_object_get(c->body, "Labels"), *v;
    const char *spec;
    size_t i;
    void *iter = json_is_object(filter) ? json_object_iter(filter) : NULL;

    for (i = 0;; i++) {
        const char *eq, *have;
        char *key;
        bool ok;

        if (json_is_array(filter)) {
            v = json_array_get(filter, i);
            spec = json_string_value(v);
            if (!v)
                return true;
        } else if (iter) {
            spec = json_object_iter_key(iter);
            iter = json_object_iter_next(filter, iter);
        } else {
            return true;
        }
        if (!spec)
            return false;
        eq = strchr(spec, '=');
        key = eq ? xstrndup(spec, (size_t)(eq - spec)) : xstrdup(spec);
        have = json_string_value(json_object_get(labels, key));
        ok = have && (!eq || strcmp(have, eq + 1) == 0);
        free(key);
        if (!ok)
            return false;
    }
}

static void on_list(struct fake_engine_state *st, const struct http_req *r,
                    struct reply *rep)
{
    bool all = query_true(r->path, "all");
    char *filters = query_get(r->path, "filters");
    json_t *f = filters ? json_loads(filters, 0, NULL) : NULL;
    json_t *out;
    struct container *c;

    if (filters && !json_is_object(f)) {
        reply_error(rep, 400, "invalid filter '%s'", filters);
        goto done;
    }
    out = json_array();
    pthread_mutex_lock(&st->lock);
    for (c = st->containers; c; c = c->next) {
        if ((!all && !c->running) ||
            !labels_match(c, json_object_get(f, "label")))
            continue;
        json_array_append_new(
            out,
            json_pack("{s:s, s:[s], s:O?, s:O?, s:s}", "Id", c->id, "Names",
                      c->name, "Image", json_object_get(c->body, "Image"),
                      "Labels", json_object_get(c->body, "Labels"), "State",
                      container_status(c)));
    }
    pthread_mutex_unlock(&st->lock);
    reply_json(rep, 200, out);
done:
    json_decref(f);
    free(filters);
}

static void on_start(struct fake_engine_state *st, const char *id,
                     struct reply *rep)
{
    struct container *c;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (!c) {
        reply_error(rep, 404, "No such container: %s", id);
    } else if (c->running) {
        reply_empty(rep, 304);
    } else {
        c->running = c->started = true;
        c->exit_code = 0;
        pthread_cond_broadcast(&st->changed);
        reply_empty(rep, 204);
    }
    pthread_mutex_unlock(&st->lock);
}

/* POST /containers/<id>/update (a CPU weight, say): accepted, not kept. */
static void on_update(struct fake_engine_state *st, const char *id,
                      struct reply *rep)
{
    pthread_mutex_lock(&st->lock);
    if (!container_find(st, id))
        reply_error(rep, 404, "No such container: %s", id);
    else
        reply_json(rep, 200, json_pack("{s:[]}", "Warnings"));
    pthread_mutex_unlock(&st->lock);
}

static void on_inspect(struct fake_engine_state *st, const char *id,
                       struct reply *rep)
{
    struct container *c;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (c)
        reply_json(rep, 200, container_inspect(c));
    else
        reply_error(rep, 404, "No such container: %s", id);
    pthread_mutex_unlock(&st->lock);
}

static void on_delete(struct fake_engine_state *st, const struct http_req *r,
                      const char *id, struct reply *rep)
{
    bool force = query_true(r->path, "force");
    struct container *c;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (!c)
        reply_error(rep, 404, "No such container: %s", id);
    else if (c->running && !force)
        reply_error(rep, 409,
                    "You cannot remove a running container %s. Stop the "
                    "container before attempting removal or force remove",
                    c->id);
    else {
        container_remove(st, c);
        reply_empty(rep, 204);
    }
    pthread_mutex_unlock(&st->lock);
}

static void on_exec_create(struct fake_engine_state *st,
                           const struct http_req *r, const char *id,
                           struct reply *rep)
{
    json_t *body = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0,
                              NULL);
    struct container *c;
    struct exec *e;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (!json_is_array(json_object_get(body, "Cmd"))) {
        reply_error(rep, 400, "exec: the body needs a Cmd");
    } else if (!c) {
        reply_error(rep, 404, "No such container: %s", id);
    } else if (!c->running) {
        reply_error(rep, 409, "Container %s is not running", c->id);
    } else {
        e = xcalloc(1, sizeof(*e));
        new_id(st, "exec", e->id);
        snprintf(e->container, sizeof(e->container), "%s", c->id);
        e->body = json_incref(body);
        e->next = st->execs;
        st->execs = e;
        reply_json(rep, 201, json_pack("{s:s}", "Id", e->id));
    }
    pthread_mutex_unlock(&st->lock);
    json_decref(body);
}

static void on_exec_inspect(struct fake_engine_state *st, const char *id,
                            struct reply *rep)
{
    struct exec *e;

    pthread_mutex_lock(&st->lock);
    e = exec_find(st, id);
    if (e)
        reply_json(rep, 200,
                   json_pack("{s:s, s:b, s:i, s:s, s:i}", "ID", e->id,
                             "Running", e->running, "ExitCode", e->exit_code,
                             "ContainerID", e->container, "Pid", 0));
    else
        reply_error(rep, 404, "No such exec instance: %s", id);
    pthread_mutex_unlock(&st->lock);
}

static void on_image(struct fake_engine_state *st, const char *name,
                     struct reply *rep)
{
    char digest[65], id[80];
    bool missing;

    pthread_mutex_lock(&st->lock);
    missing = image_missing(st, name);
    pthread_mutex_unlock(&st->lock);
    if (missing) {
        reply_error(rep, 404, "No such image: %s", name);
        return;
    }
    util_sha256_hex(digest, name, strlen(name));
    snprintf(id, sizeof(id), "sha256:%s", digest);
    reply_json(rep, 200,
               json_pack("{s:s, s:[s]}", "Id", id, "RepoTags", name));
}

/* Every route but the streams. */
static void route_plain(struct fake_engine_state *st, const struct http_req *r,
                        struct reply *rep)
{
    char id[512];

    if (route_is(r, "GET", "/_ping", NULL, 0, false) ||
        route_is(r, "HEAD", "/_ping", NULL, 0, false)) {
        rep->status = 200;
        rep->type = "text/plain; charset=utf-8";
        rep->body = xstrdup("OK");
    } else if (route_is(r, "GET", "/version", NULL, 0, false)) {
        on_version(st, rep);
    } else if (route_is(r, "POST", "/containers/create", NULL, 0, false)) {
        on_create(st, r, rep);
    } else if (route_is(r, "GET", "/containers/json", NULL, 0, false)) {
        on_list(st, r, rep);
    } else if (route_is(r, "POST", "/containers/*/start", id, sizeof(id),
                        false)) {
        on_start(st, id, rep);
    } else if (route_is(r, "GET", "/containers/*/json", id, sizeof(id),
                        false)) {
        on_inspect(st, id, rep);
    } else if (route_is(r, "POST", "/containers/*/update", id, sizeof(id),
                        false)) {
        on_update(st, id, rep);
    } else if (route_is(r, "DELETE", "/containers/*", id, sizeof(id), false)) {
        on_delete(st, r, id, rep);
    } else if (route_is(r, "POST", "/containers/*/exec", id, sizeof(id),
                        false)) {
        on_exec_create(st, r, id, rep);
    } else if (route_is(r, "GET", "/exec/*/json", id, sizeof(id), false)) {
        on_exec_inspect(st, id, rep);
    } else if (route_is(r, "GET", "/images/*/json", id, sizeof(id), true)) {
        on_image(st, id, rep);
    } else {
        reply_error(rep, 404, "page not found");
    }
}

/* ---- faults and holds ------------------------------------------------- */

/* If a fault matches r, uses one of its turns and fills rep. */
static bool take_fault(struct fake_engine_state *st, const struct http_req *r,
                       struct reply *rep)
{
    struct fault **p, *f;
    bool hit = false;

    pthread_mutex_lock(&st->lock);
    for (p = &st->faults; (f = *p); p = &f->next) {
        if (!rule_matches(f->rule.method, f->rule.prefix, r->method, r->path))
            continue;
        reply_error(rep, f->status, "%s", f->message);
        hit = true;
        if (--f->left <= 0) {
            *p = f->next;
            rule_set(&f->rule, NULL, NULL);
            free(f->message);
            free(f);
        }
        break;
    }
    pthread_mutex_unlock(&st->lock);
    return hit;
}

/* Waits while a hold matches r. False if the fake closes meanwhile. */
static bool wait_hold(struct fake_engine_state *st, const struct http_req *r)
{
    bool counted = false;

    pthread_mutex_lock(&st->lock);
    while (
        st->holding && !closing(st) &&
        rule_matches(st->hold.method, st->hold.prefix, r->method, r->path)) {
        struct timespec ts = util_monotonic_in(POLL_SLICE_MS);

        if (!counted) {
            st->held++;
            counted = true;
            pthread_cond_broadcast(&st->changed);
        }
        pthread_cond_timedwait(&st->changed, &st->lock, &ts);
    }
    if (counted)
        st->held--;
    pthread_mutex_unlock(&st->lock);
    return !closing(st);
}

/* ---- streams ---------------------------------------------------------- */

struct fake_output {
    struct bytes frames;
    bool has_exit;
    int exit_code;
    size_t need_input; /* fake_output_need_input; 0: none asked */
    size_t consumed;   /* fake_output_consume (interactive scripts) */
};

void fake_output_write(struct fake_output *out, int stream, const void *data,
                       size_t len)
{
    unsigned char h[8] = {(unsigned char)stream,
                          0,
                          0,
                          0,
                          (unsigned char)(len >> 24),
                          (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8),
                          (unsigned char)len};

    if (len == 0)
        return;
    bytes_add(&out->frames, h, sizeof(h));
    bytes_add(&out->frames, data, len);
}

void fake_output_exit_code(struct fake_output *out, int code)
{
    out->has_exit = true;
    out->exit_code = code;
}

void fake_output_need_input(struct fake_output *out, size_t n)
{
    out->need_input = n;
}

void fake_output_consume(struct fake_output *out, size_t n)
{
    out->consumed += n;
}

/* One attach or exec stream on its connection. */
struct stream {
    struct conn *c;
    enum fake_stream_kind kind;
    size_t log_idx;
    char container[65];
    char exec[65]; /* "" for an attach */
    json_t *exec_body;
    struct fake_script *script;
    struct bytes input;
};

/* Looks the target up and takes its script; fills rep (an error) and
 * returns false if the stream cannot start. */
static bool stream_setup(struct stream *s, const char *id, struct reply *rep)
{
    struct fake_engine_state *st = s->c->st;
    struct container *c = NULL;
    struct exec *e = NULL;

    pthread_mutex_lock(&st->lock);
    if (s->kind == FAKE_EXEC) {
        e = exec_find(st, id);
        c = e ? container_find(st, e->container) : NULL;
        if (!e)
            reply_error(rep, 404, "No such exec instance: %s", id);
        else if (!c || !c->running)
            reply_error(rep, 409, "Container %s is not running", e->container);
    } else if (!(c = container_find(st, id))) {
        reply_error(rep, 404, "No such container: %s", id);
    }
    if (rep->status == 0) {
        snprintf(s->container, sizeof(s->container), "%s", c->id);
        if (e) {
            snprintf(s->exec, sizeof(s->exec), "%s", e->id);
            s->exec_body = json_incref(e->body);
            e->running = true;
        }
        s->script = script_for(st, s->kind, c->id);
    }
    pthread_mutex_unlock(&st->lock);
    return rep->status == 0;
}

/* Reads what the client sends for up to timeout_ms into the stream's input
 * (and the log). Returns conn_fill's value. */
static int stream_pump(struct stream *s, int timeout_ms)
{
    size_t before = s->input.len;
    int rc = conn_fill(s->c, &s->input, timeout_ms);

    if (rc > 0)
        log_add_input(s->c->st, s->log_idx, s->input.data + before,
                      s->input.len - before);
    return rc;
}

/* 1: the container runs; 0: not yet; -1: it is gone. */
static int container_runs(struct fake_engine_state *st, const char *id)
{
    struct container *c;
    int rc;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    rc = !c ? -1 : c->running ? 1 : 0;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Waits for the container to be started, reading input meanwhile. */
static bool wait_started(struct stream *s)
{
    int runs;

    while ((runs = container_runs(s->c->st, s->container)) == 0)
        if (stream_pump(s, POLL_SLICE_MS) < 0)
            return false;
    return runs > 0;
}

static bool wait_input(struct stream *s, size_t n)
{
    while (s->input.len < n)
        if (stream_pump(s, POLL_SLICE_MS) < 0)
            return false;
    return true;
}

static void build_output(struct stream *s, struct fake_output *out)
{
    const struct fake_script *sc = s->script;
    size_t i;

    for (i = 0; i < sc->nchunks; i++)
        fake_output_write(out, sc->chunks[i].stream, sc->chunks[i].data,
                          sc->chunks[i].len);
    if (sc->fn) {
        struct fake_stream_info info = {
            s->container, s->kind == FAKE_EXEC ? s->exec : NULL, s->exec_body,
            s->input.data ? s->input.data : "", s->input.len};

        sc->fn(sc->ctx, &info, out);
    }
}

/* The stream's process ended with code: the exec stops running, an
 * attached container exits. */
static void stream_finish(struct stream *s, int code)
{
    struct fake_engine_state *st = s->c->st;

    pthread_mutex_lock(&st->lock);
    if (s->kind == FAKE_EXEC) {
        struct exec *e = exec_find(st, s->exec);

        if (e) {
            e->running = false;
            e->exit_code = code;
        }
    } else {
        struct container *c = container_find(st, s->container);

        if (c) {
            c->running = false;
            c->exit_code = code;
        }
    }
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

/* Keeps the stream open, reading input, until the client goes away, the
 * fake closes or the container is removed. */
static void stream_hang(struct stream *s)
{
    while (stream_pump(s, POLL_SLICE_MS) >= 0)
        if (container_runs(s->c->st, s->container) < 0)
            break;
}

/* An interactive script: called at the start and again whenever stdin
 * brings more, with what it has not consumed yet; its output goes out at
 * once. Ends when the client goes away, the container is removed or the
 * script sets an exit code. */
static void stream_interact(struct stream *s)
{
    const struct fake_script *sc = s->script;
    size_t consumed = 0;

    for (;;) {
        struct fake_output out = {{0}, false, 0, 0, 0};
        struct fake_stream_info info = {
            s->container, s->kind == FAKE_EXEC ? s->exec : NULL, s->exec_body,
            s->input.data ? s->input.data + consumed : "",
            s->input.len - consumed};
        size_t before;
        int sent = 0;

        sc->fn(sc->ctx, &info, &out);
        consumed += out.consumed;
        if (out.frames.len)
            sent = send_all(s->c->fd, out.frames.data, out.frames.len);
        bytes_free(&out.frames);
        if (sent < 0)
            return;
        if (out.has_exit) {
            stream_finish(s, out.exit_code);
            return;
        }
        before = s->input.len;
        while (s->input.len == before)
            if (stream_pump(s, POLL_SLICE_MS) < 0 ||
                container_runs(s->c->st, s->container) < 0)
                return;
    }
}

static void stream_run(struct stream *s, const struct http_req *r)
{
    const char *head =
        r->upgrade ? "HTTP/1.1 101 UPGRADED\r\n"
                     "Content-Type: application/vnd.docker.raw-stream\r\n"
                     "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                   : "HTTP/1.1 200 OK\r\n"
                     "Content-Type: application/vnd.docker.raw-stream\r\n\r\n";
    struct fake_output out = {{0}, false, 0, 0, 0};
    size_t need;
    bool head_sent = false;
    int fd = s->c->fd;

    /* Input the client sent right behind the request is the stream's. */
    if (s->c->in.len) {
        bytes_add(&s->input, s->c->in.data, s->c->in.len);
        log_add_input(s->c->st, s->log_idx, s->c->in.data, s->c->in.len);
        bytes_drop(&s->c->in, s->c->in.len);
    }
    if (!s->script->coalesce || (s->kind == FAKE_ATTACH &&
                                 container_runs(s->c->st, s->container) < 1)) {
        if (send_all(fd, head, strlen(head)) < 0)
            return;
        head_sent = true;
    }
    if (s->kind == FAKE_ATTACH && !wait_started(s))
        return;
    if (s->script->interactive) {
        stream_interact(s);
        return;
    }
    /* The callback may ask for more input (fake_output_need_input): its
     * output is then dropped and it runs again once the input is there. */
    for (need = s->script->after_input;;) {
        if (!wait_input(s, need))
            return;
        build_output(s, &out);
        if (out.need_input <= s->input.len)
            break;
        need = out.need_input;
        bytes_free(&out.frames);
        out = (struct fake_output){{0}, false, 0, 0, 0};
    }
    if (head_sent && !s->script->coalesce) {
        wait_peer_read(s->c, 2000);
        poll(NULL, 0, OUTPUT_PAUSE_MS);
    }
    if (!head_sent) {
        struct bytes all = {0};

        bytes_add(&all, head, strlen(head));
        bytes_add(&all, out.frames.data, out.frames.len);
        bytes_free(&out.frames);
        out.frames = all;
    }
    if (send_all(fd, out.frames.data ? out.frames.data : "", out.frames.len) ==
        0) {
        if (s->script->hang)
            stream_hang(s);
        else
            stream_finish(s,
                          out.has_exit ? out.exit_code : s->script->exit_code);
    }
    bytes_free(&out.frames);
}

/* Serves an attach or exec start; the connection ends with the stream. */
static void serve_stream(struct conn *c, const struct http_req *r,
                         enum fake_stream_kind kind, const char *id)
{
    struct stream s = {.c = c, .kind = kind};
    struct reply rep = {0};

    if (!stream_setup(&s, id, &rep)) {
        log_append(c->st, r, rep.status);
        send_reply(c, &rep, true);
        free(rep.body);
        return;
    }
    s.log_idx = log_append(c->st, r, r->upgrade ? 101 : 200);
    stream_run(&s, r);
    script_free(s.script);
    json_decref(s.exec_body);
    bytes_free(&s.input);
}

/* ---- connections ------------------------------------------------------ */

/* Answers one request; false when the connection must end. */
static bool handle(struct conn *c, const struct http_req *r)
{
    struct fake_engine_state *st = c->st;
    struct reply rep = {0};
    char id[512];
    bool ok;

    if (!wait_hold(st, r))
        return false;
    if (take_fault(st, r, &rep)) {
        /* rep holds the fault's answer */
    } else if (route_is(r, "POST", "/containers/*/attach", id, sizeof(id),
                        false)) {
        serve_stream(c, r, FAKE_ATTACH, id);
        return false;
    } else if (route_is(r, "POST", "/exec/*/start", id, sizeof(id), false)) {
        serve_stream(c, r, FAKE_EXEC, id);
        return false;
    } else {
        route_plain(st, r, &rep);
    }
    log_append(st, r, rep.status);
    ok = send_reply(c, &rep, r->close) == 0;
    free(rep.body);
    return ok && !r->close;
}

static void *serve_conn(void *arg)
{
    struct conn *c = arg;
    struct http_req r;

    while (read_request(c, &r) == 0) {
        bool keep = handle(c, &r);

        req_free(&r);
        if (!keep)
            break;
    }
    req_free(&r);
    shutdown(c->fd, SHUT_RDWR);
    atomic_store(&c->done, true);
    return NULL;
}

static void conn_free(struct conn *c)
{
    pthread_join(c->thread, NULL);
    close(c->fd);
    bytes_free(&c->in);
    free(c);
}

/* Joins and frees the connections whose threads have ended. */
static void reap_conns(struct fake_engine_state *st)
{
    struct conn **p, *c, *done = NULL;

    pthread_mutex_lock(&st->lock);
    for (p = &st->conns; (c = *p);) {
        if (atomic_load(&c->done)) {
            *p = c->next;
            c->next = done;
            done = c;
        } else {
            p = &c->next;
        }
    }
    pthread_mutex_unlock(&st->lock);
    while ((c = done)) {
        done = c->next;
        conn_free(c);
    }
}

static void add_conn(struct fake_engine_state *st, int fd)
{
    struct conn *c = xcalloc(1, sizeof(*c));

    c->st = st;
    c->fd = fd;
    pthread_mutex_lock(&st->lock);
    if (atomic_load(&st->down) ||
        pthread_create(&c->thread, NULL, serve_conn, c) != 0) {
        pthread_mutex_unlock(&st->lock);
        close(fd);
        free(c);
        return;
    }
    c->next = st->conns;
    st->conns = c;
    pthread_mutex_unlock(&st->lock);
}

static void *accept_loop(void *arg)
{
    struct fake_engine_state *st = arg;

    while (!atomic_load(&st->stopping)) {
        struct pollfd p[2] = {{st->listen_fd, POLLIN, 0},
                              {st->wake[0], POLLIN, 0}};
        int fd;

        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents || atomic_load(&st->stopping))
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        fd = accept4(st->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        reap_conns(st);
        add_conn(st, fd);
    }
    return NULL;
}

/* ---- start and stop --------------------------------------------------- */

static void state_free(struct fake_engine_state *st)
{
    size_t i;

    for (i = 0; i < st->nlog; i++)
        request_free_fields(&st->log[i]);
    free(st->log);
    while (st->containers)
        container_remove(st, st->containers);
    while (st->execs) {
        struct exec *e = st->execs;

        st->execs = e->next;
        json_decref(e->body);
        free(e);
    }
    while (st->faults) {
        struct fault *f = st->faults;

        st->faults = f->next;
        rule_set(&f->rule, NULL, NULL);
        free(f->message);
        free(f);
    }
    while (st->missing_images) {
        struct name *n = st->missing_images;

        st->missing_images = n->next;
        free(n->name);
        free(n);
    }
    while (st->scripts) {
        struct keyed_script *k = st->scripts;

        st->scripts = k->next;
        script_free(k->script);
        free(k);
    }
    rule_set(&st->hold, NULL, NULL);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->changed);
    free(st);
}

static int listen_on(struct fake_engine_state *st)
{
    static atomic_uint serial;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(st->path, sizeof(st->path),
             "/tmp/nbcanvas-fake-engine-%d-%u.sock", (int)getpid(),
             atomic_fetch_add(&serial, 1));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", st->path);
    snprintf(st->host, sizeof(st->host), "unix://%s", st->path);
    unlink(st->path);
    st->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (st->listen_fd < 0)
        return -1;
    if (bind(st->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(st->listen_fd, 128) < 0) {
        close(st->listen_fd);
        unlink(st->path);
        return -1;
    }
    return 0;
}

int fake_engine_start(struct fake_engine *f)
{
    struct fake_engine_state *st = xcalloc(1, sizeof(*st));
    pthread_condattr_t attr;

    pthread_mutex_init(&st->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&st->changed, &attr);
    pthread_condattr_destroy(&attr);
    snprintf(st->api_version, sizeof(st->api_version), "%s",
             f->api_version ? f->api_version : "1.43");
    st->wake[0] = st->wake[1] = -1;
    if (listen_on(st) < 0) {
        perror("fake engine: listen");
        state_free(st);
        return -1;
    }
    if (pipe2(st->wake, O_CLOEXEC) < 0 ||
        pthread_create(&st->acceptor, NULL, accept_loop, st) != 0) {
        perror("fake engine: start");
        close(st->listen_fd);
        unlink(st->path);
        if (st->wake[0] >= 0) {
            close(st->wake[0]);
            close(st->wake[1]);
        }
        state_free(st);
        return -1;
    }
    f->state = st;
    return 0;
}

void fake_engine_stop(struct fake_engine *f)
{
    struct fake_engine_state *st = f->state;
    struct conn *c;

    if (!st)
        return;
    atomic_store(&st->stopping, true);
    if (write(st->wake[1], "x", 1) < 0)
        perror("fake engine: wake");
    pthread_join(st->acceptor, NULL);
    pthread_mutex_lock(&st->lock);
    pthread_cond_broadcast(&st->changed);
    for (c = st->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR);
    c = st->conns;
    st->conns = NULL;
    pthread_mutex_unlock(&st->lock);
    while (c) {
        struct conn *next = c->next;

        conn_free(c);
        c = next;
    }
    close(st->listen_fd);
    close(st->wake[0]);
    close(st->wake[1]);
    unlink(st->path);
    state_free(st);
    f->state = NULL;
}

const char *fake_engine_host(const struct fake_engine *f)
{
    return f->state ? f->state->host : "unix:///nonexistent";
}

struct docker *fake_engine_docker(const struct fake_engine *f)
{
    struct docker_opts o = {fake_engine_host(f), 2000, 5000};
    struct docker *d = NULL;

    if (docker_new(&d, &o, NULL) < 0)
        return NULL;
    return d;
}

/* ---- the log, for tests ----------------------------------------------- */

size_t fake_engine_count(struct fake_engine *f, const char *method,
                         const char *prefix)
{
    struct fake_engine_state *st = f->state;
    size_t n;

    pthread_mutex_lock(&st->lock);
    n = log_count(st, method, prefix);
    pthread_mutex_unlock(&st->lock);
    return n;
}

size_t fake_engine_nrequests(struct fake_engine *f)
{
    return fake_engine_count(f, NULL, NULL);
}

bool fake_engine_find(struct fake_engine *f, const char *method,
                      const char *prefix, size_t n, struct fake_request *out)
{
    struct fake_engine_state *st = f->state;
    size_t i;
    bool found = false;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->lock);
    for (i = 0; i < st->nlog; i++) {
        if (!rule_matches(method, prefix, st->log[i].method, st->log[i].path))
            continue;
        if (n-- == 0) {
            request_copy(out, &st->log[i]);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return found;
}

bool fake_engine_request(struct fake_engine *f, size_t n,
                         struct fake_request *out)
{
    return fake_engine_find(f, NULL, NULL, n, out);
}

void fake_request_release(struct fake_request *r)
{
    request_free_fields(r);
}

size_t fake_engine_wait(struct fake_engine *f, const char *method,
                        const char *prefix, size_t n, long timeout_ms)
{
    struct fake_engine_state *st = f->state;
    int64_t until = util_now_ms() + timeout_ms;
    size_t have;

    pthread_mutex_lock(&st->lock);
    while ((have = log_count(st, method, prefix)) < n &&
           util_now_ms() < until) {
        struct timespec ts = util_monotonic_in(POLL_SLICE_MS);

        pthread_cond_timedwait(&st->changed, &st->lock, &ts);
    }
    pthread_mutex_unlock(&st->lock);
    return have;
}

/* ---- the model, for tests --------------------------------------------- */

size_t fake_engine_containers(struct fake_engine *f)
{
    struct fake_engine_state *st = f->state;
    struct container *c;
    size_t n = 0;

    pthread_mutex_lock(&st->lock);
    for (c = st->containers; c; c = c->next)
        n++;
    pthread_mutex_unlock(&st->lock);
    return n;
}

bool fake_engine_has_container(struct fake_engine *f, const char *id)
{
    return container_runs(f->state, id) >= 0;
}

json_t *fake_engine_container_body(struct fake_engine *f, const char *id)
{
    struct fake_engine_state *st = f->state;
    struct container *c;
    json_t *body = NULL;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (c)
        body = json_incref(c->body);
    pthread_mutex_unlock(&st->lock);
    return body;
}

int fake_engine_add_container(struct fake_engine *f, json_t *body,
                              bool running, char id_out[65])
{
    struct fake_engine_state *st = f->state;
    struct container *c;

    if (!st)
        return -1;
    pthread_mutex_lock(&st->lock);
    c = container_new(st, json_deep_copy(body));
    c->running = c->started = running;
    snprintf(id_out, 65, "%s", c->id);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

/* Sets one flag of a container, if it exists. */
static void set_flag(struct fake_engine *f, const char *id, bool oom,
                     bool value)
{
    struct fake_engine_state *st = f->state;
    struct container *c;

    pthread_mutex_lock(&st->lock);
    c = container_find(st, id);
    if (c && oom) {
        c->oom = value;
    } else if (c) {
        c->running = value;
        c->started = c->started || value;
    }
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

void fake_engine_set_oom(struct fake_engine *f, const char *id, bool oom)
{
    set_flag(f, id, true, oom);
}

void fake_engine_set_running(struct fake_engine *f, const char *id,
                             bool running)
{
    set_flag(f, id, false, running);
}

void fake_engine_image_missing(struct fake_engine *f, const char *name,
                               bool missing)
{
    struct fake_engine_state *st = f->state;
    struct name **p, *n;

    pthread_mutex_lock(&st->lock);
    for (p = &st->missing_images; (n = *p); p = &n->next)
        if (strcmp(n->name, name) == 0)
            break;
    if (missing && !n) {
        n = xcalloc(1, sizeof(*n));
        n->name = xstrdup(name);
        *p = n;
    } else if (!missing && n) {
        *p = n->next;
        free(n->name);
        free(n);
    }
    pthread_mutex_unlock(&st->lock);
}

void fake_engine_script(struct fake_engine *f, enum fake_stream_kind kind,
                        const char *id, const struct fake_script *script)
{
    struct fake_engine_state *st = f->state;
    struct keyed_script **p, *k;

    pthread_mutex_lock(&st->lock);
    p = script_slot(st, kind, id ? id : "");
    k = *p;
    if (k && !script) {
        *p = k->next;
        script_free(k->script);
        free(k);
    } else if (script) {
        if (!k) {
            k = xcalloc(1, sizeof(*k));
            snprintf(k->id, sizeof(k->id), "%s", id ? id : "");
            k->kind = kind;
            *p = k;
        }
        script_free(k->script);
        k->script = script_copy(script);
    }
    pthread_mutex_unlock(&st->lock);
}

/* ---- faults, for tests ------------------------------------------------ */

void fake_engine_fail(struct fake_engine *f, const char *method,
                      const char *prefix, int count, int status,
                      const char *message)
{
    struct fake_engine_state *st = f->state;
    struct fault *fault = xcalloc(1, sizeof(*fault)), **p;

    if (count <= 0) {
        free(fault);
        return;
    }
    rule_set(&fault->rule, method, prefix);
    fault->left = count;
    fault->status = status ? status : 500;
    fault->message = xstrdup(message ? message : "fake engine fault");
    pthread_mutex_lock(&st->lock);
    for (p = &st->faults; *p; p = &(*p)->next)
        ;
    *p = fault;
    pthread_mutex_unlock(&st->lock);
}

void fake_engine_set_down(struct fake_engine *f, bool down)
{
    struct fake_engine_state *st = f->state;
    struct conn *c;

    pthread_mutex_lock(&st->lock);
    atomic_store(&st->down, down);
    if (down)
        for (c = st->conns; c; c = c->next)
            shutdown(c->fd, SHUT_RDWR);
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

void fake_engine_hold(struct fake_engine *f, const char *method,
                      const char *prefix, bool on)
{
    struct fake_engine_state *st = f->state;

    pthread_mutex_lock(&st->lock);
    rule_set(&st->hold, method, prefix);
    st->holding = on;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

size_t fake_engine_held(struct fake_engine *f)
{
    struct fake_engine_state *st = f->state;
    size_t n;

    pthread_mutex_lock(&st->lock);
    n = st->held;
    pthread_mutex_unlock(&st->lock);
    return n;
}

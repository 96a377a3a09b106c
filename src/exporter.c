/*
 * The warm exporters (include/nbcanvas/exporter.h). Each worker is a
 * container running nbcanvas_export.py with one attach kept open: a
 * conversion writes "nbcanvas:export <n>" and the request on its stdin
 * and reads "nbcanvas:page <n>" (or "failed") and the bytes back. The
 * worker never sees user code, but it reads notebooks that user code
 * wrote: its answer is bounded like any sandbox's, and a worker that
 * breaks the protocol, dies or passes its time is removed, never reused.
 *
 * A refill thread keeps every slot filled; a request waits for an idle
 * worker up to its own deadline.
 */
#include "nbcanvas/exporter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/util.h"

#define EXPORTER_SCRIPT "/opt/nbcanvas/nbcanvas_export.py"
#define READY_LINE "nbcanvas:ready\n"
#define READY_TIMEOUT_MS 120000
/* One conversion's own bound, inside the caller's deadline: a wedged
 * worker is given up on in time for a retry. */
#define CONVERT_TIMEOUT_MS 60000
#define LIFETIME_S (7 * 24 * 3600)
#define RETRY_PAUSE_MS 1000

enum worker_state { W_EMPTY, W_STARTING, W_IDLE, W_BUSY };

struct worker {
    enum worker_state state;
    struct sandbox sb;
    struct docker_conn *conn;
    struct buf out, errout;
    struct demux demux;
    struct err err; /* where the conn describes its failures */
    long uses;
};

struct exporters {
    struct docker *docker;
    const struct config *cfg;
    const char *owner;
    struct sandbox_set *live;
    long size;
    struct worker workers[EXPORTER_MAX];
    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_t refill;
    bool stopping;
    /* The last start failed (the engine is down, the image missing):
     * conversions that find no idle worker fail at once, rather than
     * wait for one that may never come. */
    bool starts_failing;
    long failed_starts; /* in all: a request waits for the next outcome */
    char start_error[256];
    struct exporter_stats stats;
};

static void worker_drop(struct worker *w)
{
    docker_conn_close(w->conn);
    w->conn = NULL;
    sandbox_destroy(&w->sb);
    buf_release(&w->out);
    buf_release(&w->errout);
    w->uses = 0;
}

/* Reads from the worker until `out` holds what done() wants; returns 1,
 * or ERR_*. */
static int read_until(struct worker *w, bool (*done)(struct worker *w),
                      long long deadline_ms, const atomic_bool *cancel)
{
    char chunk[65536];

    while (!done(w)) {
        size_t got = 0;
        int rc = docker_conn_recv(w->conn, chunk, sizeof(chunk), &got,
                                  deadline_ms, cancel);

        if (rc == 1)
            return err_set(&w->err, ERR_INTERNAL, "the exporter ended: %.200s",
                           w->errout.data);
        if (rc < 0)
            return rc;
        if (demux_feed(&w->demux, chunk, got) < 0 || w->out.overflow)
            return err_set(&w->err, ERR_OUTPUT,
                           "the page is larger than the service's cap");
        if (w->errout.overflow) /* a chatty nbconvert: keep the end only */
            buf_reset(&w->errout);
    }
    return 1;
}

static bool ready(struct worker *w)
{
    return w->out.len >= strlen(READY_LINE);
}

static int worker_start(struct exporters *x, struct worker *w, char *why,
                        size_t why_len)
{
    json_t *cmd = json_pack("[s, s]", "python3", EXPORTER_SCRIPT);
    struct sandbox_spec spec = {x->cfg->notebook_image,
                                cmd,
                                NULL,
                                &x->cfg->render_limits,
                                x->cfg->runtime,
                                "exporter",
                                x->owner,
                                x->live,
                                (long long)time(NULL) + LIFETIME_S,
                                false,
                                0};
    int rc;

    memset(&w->err, 0, sizeof(w->err));
    buf_init(&w->out, (size_t)x->cfg->max_html_bytes + (1 << 20));
    buf_init(&w->errout, 64 << 10);
    demux_init(&w->demux, &w->out, &w->errout);
    rc = sandbox_create(&w->sb, x->docker, &spec, &w->err);
    json_decref(cmd);
    if (rc == 0)
        rc = sandbox_connect(&w->sb, &w->conn,
                             util_now_ms() + READY_TIMEOUT_MS, &w->err);
    if (rc == 0)
        rc = read_until(w, ready, util_now_ms() + READY_TIMEOUT_MS, NULL);
    if (rc == 1 && strncmp(w->out.data, READY_LINE, strlen(READY_LINE)) != 0)
        rc = err_set(&w->err, ERR_INTERNAL, "the exporter said no ready");
    if (rc == 1) {
        buf_reset(&w->out);
        return 0;
    }
    fprintf(stderr, "nbcanvas: exporter: cannot start one: %s\n", w->err.msg);
    snprintf(why, why_len, "%s", w->err.msg);
    worker_drop(w);
    return -1;
}

/* Keeps every slot filled, one start at a time. */
static void *refill_loop(void *arg)
{
    struct exporters *x = arg;

    pthread_mutex_lock(&x->lock);
    while (!x->stopping) {
        struct worker *w = NULL;
        char why[256];
        int rc;

        for (long i = 0; i < x->size && !w; i++)
            if (x->workers[i].state == W_EMPTY)
                w = &x->workers[i];
        if (!w) {
            pthread_cond_wait(&x->changed, &x->lock);
            continue;
        }
        w->state = W_STARTING;
        pthread_mutex_unlock(&x->lock);
        rc = worker_start(x, w, why, sizeof(why));
        pthread_mutex_lock(&x->lock);
        x->starts_failing = rc < 0;
        x->failed_starts += rc < 0;
        if (rc < 0)
            snprintf(x->start_error, sizeof(x->start_error), "%s", why);
        w->state = rc == 0 ? W_IDLE : W_EMPTY;
        pthread_cond_broadcast(&x->changed);
        if (rc < 0) { /* a pause before the next try */
            struct timespec ts = util_monotonic_in(RETRY_PAUSE_MS);

            pthread_cond_timedwait(&x->changed, &x->lock, &ts);
        }
        pthread_cond_broadcast(&x->changed);
    }
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

struct exporters *exporters_new(struct docker *d, const struct config *cfg,
                                const char *owner, struct sandbox_set *live,
                                long size)
{
    struct exporters *x = xcalloc(1, sizeof(*x));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (size <= 0)
        size = cores > 1 ? cores / 2 : 1;
    x->size = size > EXPORTER_MAX ? EXPORTER_MAX : size;
    x->docker = d;
    x->cfg = cfg;
    x->owner = owner;
    x->live = live;
    x->stats.size = x->size;
    pthread_mutex_init(&x->lock, NULL);
    util_cond_init_monotonic(&x->changed);
    if (pthread_create(&x->refill, NULL, refill_loop, x) != 0) {
        pthread_mutex_destroy(&x->lock);
        pthread_cond_destroy(&x->changed);
        free(x);
        return NULL;
    }
    return x;
}

void exporters_free(struct exporters *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->lock);
    x->stopping = true;
    pthread_cond_broadcast(&x->changed);
    pthread_mutex_unlock(&x->lock);
    pthread_join(x->refill, NULL);
    for (long i = 0; i < x->size; i++)
        if (x->workers[i].state != W_EMPTY)
            worker_drop(&x->workers[i]);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->changed);
    free(x);
}

/* An idle worker, marked busy; or NULL with the error: at the deadline,
 * when cancelled, or as soon as a start fails while it waits (the engine
 * is down: a retry is made at once rather than after the pause). */
static struct worker *take(struct exporters *x, long long deadline_ms,
                           const atomic_bool *cancel, struct err *err)
{
    struct worker *w = NULL;
    long failed_before;

    pthread_mutex_lock(&x->lock);
    failed_before = x->failed_starts;
    if (x->starts_failing)
        pthread_cond_broadcast(&x->changed); /* ends the refill's pause */
    for (;;) {
        struct timespec ts = util_monotonic_in(100);

        for (long i = 0; i < x->size && !w; i++)
            if (x->workers[i].state == W_IDLE)
                w = &x->workers[i];
        if (w) {
            w->state = W_BUSY;
            break;
        }
        if (x->stopping) {
            err_set(err, ERR_BUSY, "the service is stopping");
            break;
        }
        if (x->failed_starts > failed_before) {
            err_set(err, ERR_ENGINE, "no exporter can be started: %s",
                    x->start_error);
            break;
        }
        if (cancel && *cancel) {
            err_set(err, ERR_CANCELLED, "cancelled");
            break;
        }
        if (util_now_ms() >= deadline_ms) {
            err_set(err, ERR_TIMEOUT,
                    "no exporter was free before the deadline");
            break;
        }
        pthread_cond_timedwait(&x->changed, &x->lock, &ts);
    }
    pthread_mutex_unlock(&x->lock);
    return w;
}

/* Back to the pool, or removed (failed, or its quota used) for the refill
 * thread to replace. */
static void give_back(struct exporters *x, struct worker *w, bool failed)
{
    bool recycle = failed || w->uses >= EXPORTER_RECYCLE_AFTER;

    if (recycle)
        worker_drop(w);
    pthread_mutex_lock(&x->lock);
    if (failed)
        x->stats.failures++;
    else if (recycle)
        x->stats.recycled++;
    if (!failed)
        x->stats.conversions++;
    w->state = recycle ? W_EMPTY : W_IDLE;
    pthread_cond_broadcast(&x->changed);
    pthread_mutex_unlock(&x->lock);
}

/* The answer's line and its bytes, once all are in. */
static bool answered(struct worker *w)
{
    const char *nl = memchr(w->out.data, '\n', w->out.len);
    unsigned long long n;

    if (!nl)
        return w->out.len > 64; /* no line that long: malformed, stop */
    if (sscanf(w->out.data, "nbcanvas:%*[a-z] %llu", &n) != 1)
        return true;
    return (size_t)(w->out.data + w->out.len - (nl + 1)) >= n;
}

static json_t *request_json(const struct conversion *req)
{
    return json_pack("{s:s, s:O, s:s, s:b, s:b}", "op",
                     req->op == EXPORT_VALIDATE ? "validate" : "html",
                     "notebook", req->notebook, "template",
                     req->template_name ? req->template_name : "lab",
                     "include_input", req->include_input, "sanitize_html",
                     req->sanitize_html);
}

/* One conversion on w. Returns 0, ERR_INVALID or ERR_INTERNAL for the
 * exporter's "failed" (the worker is fine), or another ERR_* (the worker
 * is not: *broken). */
static int convert_on(struct worker *w, const struct conversion *req,
                      const char *text, char **page, size_t *len,
                      long long deadline_ms, const atomic_bool *cancel,
                      bool *broken, struct err *err)
{
    char head[64];
    const char *nl;
    unsigned long long n = 0;
    char word[16] = "";
    int rc;

    *broken = true;
    buf_reset(&w->out);
    snprintf(head, sizeof(head), "nbcanvas:export %zu\n", strlen(text));
    rc = docker_conn_send(w->conn, head, strlen(head), deadline_ms, cancel);
    if (rc == 0)
        rc = docker_conn_send(w->conn, text, strlen(text), deadline_ms,
                              cancel);
    if (rc == 0)
        rc = read_until(w, answered, deadline_ms, cancel);
    if (rc < 0) {
        if (rc == ERR_OUTPUT)
            return err_set(err, ERR_OUTPUT,
                           "rendered page is larger than %lld bytes",
                           req->max_bytes);
        return err_set(err, rc, "%s", w->err.msg);
    }
    nl = memchr(w->out.data, '\n', w->out.len);
    if (!nl || sscanf(w->out.data, "nbcanvas:%15[a-z] %llu", word, &n) != 2)
        return err_set(err, ERR_INTERNAL, "the exporter broke its protocol");
    w->uses++;
    *broken = false;
    if (strcmp(word, "failed") == 0)
        return err_set(err,
                       req->op == EXPORT_VALIDATE ? ERR_INVALID : ERR_INTERNAL,
                       "%.*s", (int)(n < 500 ? n : 500), nl + 1);
    if (strcmp(word, "page") != 0) {
        *broken = true;
        return err_set(err, ERR_INTERNAL, "the exporter broke its protocol");
    }
    if ((long long)n > req->max_bytes)
        return err_set(err, ERR_OUTPUT, "rendered page is %llu bytes", n);
    if (page) {
        *page = xmalloc(n + 1);
        memcpy(*page, nl + 1, n);
        (*page)[n] = '\0';
        *len = n;
    }
    return 0;
}

int exporters_convert(struct exporters *x, const struct conversion *req,
                      char **page, size_t *len, long long deadline_ms,
                      const atomic_bool *cancel, struct err *err)
{
    json_t *body = request_json(req);
    char *text = json_dumps(body, JSON_COMPACT | JSON_ALLOW_NUL);
    int rc = ERR_INTERNAL;

    json_decref(body);
    if (!text)
        return err_set(err, ERR_INTERNAL, "the notebook cannot be encoded");
    for (int attempt = 0; attempt < 2; attempt++) {
        long long until = util_now_ms() + CONVERT_TIMEOUT_MS;
        struct worker *w;
        bool broken;

        if (until > deadline_ms)
            until = deadline_ms;
        w = take(x, deadline_ms, cancel, err);
        if (!w) {
            rc = err->code;
            break;
        }
        rc = convert_on(w, req, text, page, len, until, cancel, &broken, err);
        if (broken && rc != ERR_OUTPUT && rc != ERR_CANCELLED)
            fprintf(stderr, "nbcanvas: exporter: replaced after: %s\n",
                    err->msg);
        give_back(x, w, broken);
        /* A worker that broke is retried once on a fresh one; nbconvert's
         * own verdict, a page too large or a client gone are answers. */
        if (!broken || rc == ERR_OUTPUT || rc == ERR_CANCELLED)
            break;
    }
    free(text);
    return rc;
}

void exporters_stats(struct exporters *x, struct exporter_stats *out)
{
    pthread_mutex_lock(&x->lock);
    *out = x->stats;
    out->idle = out->busy = 0;
    for (long i = 0; i < x->size; i++) {
        out->idle += x->workers[i].state == W_IDLE;
        out->busy += x->workers[i].state == W_BUSY;
    }
    pthread_mutex_unlock(&x->lock);
}

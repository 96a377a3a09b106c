/*
 * Streamed answers (Accept: text/event-stream) for POST /v1/render and a
 * session's execute (and, through http_stream_call, for any work that
 * sends events of its own: an MCP tool call with progress): 200 at once, then "cell" and "output" events as the
 * executor reports them, then one "result" or "error" event (the error object
 * the plain request would have answered), with a ": ping" comment in any
 * silence of 15 s, or of half the connection's inactivity timeout if that
 * is shorter (sse.c).
 *
 * libmicrohttpd sends a response only once the access handler has
 * returned, so the job runs in a thread of its own that owns the parsed
 * request; the connection's thread reads the stream (sse_read) and ends
 * it when the job has closed it. A client that hangs up sets the stream's
 * cancel flag, which the job watches like a plain request's.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "nbcanvas/formats.h"
#include "nbcanvas/kept_results.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/render.h"
#include "nbcanvas/results.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/sse.h"
#include "nbcanvas/util.h"

#define STREAM_BLOCK 16384

bool http_wants_stream(struct MHD_Connection *c)
{
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     "Accept");

    return accept && strcasestr(accept, "text/event-stream") != NULL;
}

/* One streamed job: what its thread needs, all owned. */
struct stream_job {
    struct list_node link; /* in the server's running jobs */
    struct http_server *server;
    struct service *svc;
    struct sse *sse;
    char id[37];
    struct tenant tenant;
    char session[HTTP_PARAM_MAX]; /* "" for a render */
    struct render_request render;
    struct execute_request execute;
    /* Or any other work (http_stream_call): fn sends its events. */
    void (*fn)(void *ctx, struct sse *sse);
    void (*drop)(void *ctx);
    void *ctx;
};

/* An executor's event as the API's: "cell" as it is, "output" with the output
 * cleaned as the json format has it. */
static void forward_event(void *ctx, json_t *event)
{
    struct stream_job *job = ctx;
    const char *kind = json_string_value(json_object_get(event, "event"));
    json_t *index = json_object_get(event, "index");
    json_t *data;

    if (!json_is_integer(index))
        return;
    if (strcmp(kind, "cell") == 0) {
        data = json_deep_copy(event);
        json_object_del(data, "event");
        sse_send(job->sse, "cell", data);
    } else if (strcmp(kind, "output") == 0 &&
               json_is_object(json_object_get(event, "output"))) {
        data = json_pack(
            "{s:O, s:o}", "index", index, "output",
            results_output_json(json_object_get(event, "output")));
        sse_send(job->sse, "output", data);
    } else {
        return;
    }
    json_decref(data);
}

static void send_error_event(struct stream_job *job, int code,
                             const char *message, json_t *details)
{
    json_t *e = http_error_json(code, message, details);

    sse_send(job->sse, "error", e);
    json_decref(e);
}

static void run_render(struct stream_job *job)
{
    struct render_result res;
    json_t *result;

    job->render.on_event = forward_event;
    job->render.event_ctx = job;
    job->render.keep = true;
    render_run(&res, &job->svc->pipe, &job->render, job->id,
               sse_cancel(job->sse));
    if (res.code < 0) {
        send_error_event(job, res.code, res.message, res.details);
    } else {
        struct formats_input in = {res.kept->id, &res.kept->results,
                                   res.kept->notebook, res.kept->timing};

        result = formats_result_json(&in);
        json_object_set_new(
            result, "result_url",
            json_sprintf("/v1/results/%s", res.kept->result_id));
        json_object_set_new(result, "cache",
                            json_string(res.cache_hit ? "hit" : "miss"));
        /* kept before the client hears of it: it may ask at once */
        kept_results_put(job->svc->kept, job->tenant.name, res.kept);
        res.kept = NULL;
        sse_send(job->sse, "result", result);
        json_decref(result);
    }
    render_result_release(&res);
    request_render_release(&job->render);
}

static void run_execute(struct stream_job *job)
{
    struct err err = ERR_INIT;
    json_t *out = NULL, *details = NULL;
    int rc;

    rc = sessions_execute(job->svc->sessions, job->tenant.name, job->session,
                          &job->execute, forward_event, job,
                          sse_cancel(job->sse), &out, &details, &err);
    if (rc == 0 && !out)
        rc = err_set(&err, ERR_INTERNAL, "no answer was made");
    if (rc < 0)
        send_error_event(job, rc, err.msg, details);
    else
        sse_send(job->sse, "result", out);
    json_decref(out);
    json_decref(details);
    request_execute_release(&job->execute);
}

static void *run_job(void *arg)
{
    struct stream_job *job = arg;
    struct http_server *s = job->server;

    if (job->fn)
        job->fn(job->ctx, job->sse);
    else if (job->session[0])
        run_execute(job);
    else
        run_render(job);
    sse_close(job->sse);
    pthread_mutex_lock(&s->lock);
    list_remove(&job->link);
    s->streams--;
    pthread_cond_broadcast(&s->idle); /* http_stop waits for these too */
    pthread_mutex_unlock(&s->lock);
    sse_unref(job->sse);
    free(job);
    return NULL;
}

void http_stop_streams(struct http_server *s)
{
    struct list_node *n;

    list_for_each(n, &s->running) {
        sse_stop(list_entry(n, struct stream_job, link)->sse);
    }
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    ssize_t n = sse_read(cls, buf, max);

    (void)pos;
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

/* MHD is done with the response: the client read it all, went away, or
 * the connection was closed (a timeout, an error): the job stops. */
static void end_stream(void *cls)
{
    sse_stop(cls);
    sse_unref(cls);
}

/* Starts job's thread and answers with its stream. */
static int start(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x, struct stream_job *job)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct answer a = {.status = 200,
                       .payload.content_type = "text/event-stream"};
    struct MHD_Response *r;
    pthread_attr_t attr;
    pthread_t thread;
    int rc;

    job->server = s;
    job->svc = s->svc;
    snprintf(job->id, sizeof(job->id), "%s", x->id);
    job->tenant = x->tenant;
    /* Events are small next to the results, which have their own cap. */
    job->sse = sse_new(info ? info->connect_fd : -1,
                       (size_t)s->svc->cfg.max_result_bytes,
                       s->svc->cfg.connection_timeout_s * 1000 / 2);
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                          read_stream, job->sse, end_stream);
    http_common_headers(r, x, &a);
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&s->lock);
    list_push_front(&s->running, &job->link);
    s->streams++;
    pthread_mutex_unlock(&s->lock);
    if (pthread_create(&thread, &attr, run_job, job) != 0) {
        /* nothing runs: the stream says so and ends */
        pthread_mutex_lock(&s->lock);
        list_remove(&job->link);
        s->streams--;
        pthread_mutex_unlock(&s->lock);
        send_error_event(job, ERR_BUSY, "cannot start the job's thread", NULL);
        sse_close(job->sse);
        sse_unref(job->sse);
        request_render_release(&job->render);
        request_execute_release(&job->execute);
        if (job->drop)
            job->drop(job->ctx);
        free(job);
    }
    pthread_attr_destroy(&attr);
    x->status = 200;
    x->streaming = true;
    rc = MHD_queue_response(c, 200, r) == MHD_YES ? 0 : -1;
    MHD_destroy_response(r);
    return rc;
}

int http_stream_render(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, struct render_request *req)
{
    struct stream_job *job = xcalloc(1, sizeof(*job));

    job->render = *req;
    memset(req, 0, sizeof(*req));
    return start(s, c, x, job);
}

int http_stream_execute(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x, struct execute_request *req)
{
    struct stream_job *job = xcalloc(1, sizeof(*job));

    snprintf(job->session, sizeof(job->session), "%s", x->params[0]);
    job->execute = *req;
    memset(req, 0, sizeof(*req));
    return start(s, c, x, job);
}

int http_stream_call(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x,
                     void (*fn)(void *ctx, struct sse *sse),
                     void (*drop)(void *ctx), void *ctx)
{
    struct stream_job *job = xcalloc(1, sizeof(*job));

    job->fn = fn;
    job->drop = drop;
    job->ctx = ctx;
    return start(s, c, x, job);
}

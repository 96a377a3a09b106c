/*
 * One job through a sandbox's driver (include/nbcanvas/driver_call.h).
 *
 * Stdin, not the archive API, carries the job: an archive upload makes the
 * engine start a helper process and chroot (about 50 ms, a fifth of a warm
 * render), and the root is read-only anyway. The results come back on
 * stdout after the job's done line; progress events come before it on the
 * same channel, each on one line with the job's nonce. Event lines that
 * have been read are dropped from the front of the buffer, so a job that
 * streams its outputs never holds them twice against the results' cap.
 */
#include "nbcanvas/driver_call.h"

#include <string.h>

#include "nbcanvas/util.h"

void driver_call_init(struct driver_call *c, const struct config *cfg,
                      struct err *err)
{
    memset(c, 0, sizeof(*c));
    c->err = err;
    c->max_result_bytes = cfg->max_result_bytes;
    /* the request's files (base64 decoded) and the packages' wheels */
    buf_init(&c->upload, (size_t)cfg->max_body_bytes * 2 +
                             (size_t)cfg->package_max_bytes + (1 << 20));
    buf_init(&c->out, (size_t)cfg->max_result_bytes + (64 << 10));
    buf_init(&c->errout, (size_t)cfg->max_output_bytes);
    demux_init(&c->demux, &c->out, &c->errout);
}

void driver_call_release(struct driver_call *c)
{
    buf_release(&c->upload);
    buf_release(&c->out);
    buf_release(&c->errout);
    tarball_files_release(&c->results);
    json_decref(c->status);
    json_decref(c->notebook);
    c->status = c->notebook = NULL;
}

int driver_call_prepare(struct driver_call *c, const struct driver_job *job,
                        json_t *notebook, const struct tar_files *files)
{
    buf_reset(&c->upload);
    return driver_write_job(&c->upload, job, notebook, files, c->nonce,
                            c->err);
}

struct attach {
    struct driver_call *call;
    struct sandbox *sb;
};

/* The attach is live: start the container if it is not running yet; the
 * job goes out on stdin right after this returns. */
static int on_open(void *ctx)
{
    struct attach *a = ctx;
    int rc = a->sb->started ? 0 : sandbox_start(a->sb, a->call->err);

    a->call->uploaded = rc == 0;
    a->call->t_uploaded = util_now_ms();
    return rc;
}

/* Hands on every complete event line before the results, then drops what
 * has been read from the front of `out`. */
static void take_events(struct driver_call *c, bool results_found)
{
    size_t end = results_found ? c->results_at : c->out.len;
    size_t from = c->events > c->no_newline ? c->events : c->no_newline;
    size_t drop;
    json_t *event;

    /* A line still without its end is not searched again byte by byte
     * as more of it comes: only what is new. */
    if (from < end && !memchr(c->out.data + from, '\n', end - from)) {
        c->no_newline = end;
        return;
    }
    while (driver_next_event(c->out.data, end, c->nonce, &c->events, &event) ==
           1) {
        c->on_event(c->event_ctx, event);
        json_decref(event);
    }
    if (results_found)
        return;
    /* Everything before both cursors has been read for good. */
    drop = c->events < c->scan ? c->events : c->scan;
    if (drop == 0)
        return;
    memmove(c->out.data, c->out.data + drop, c->out.len - drop + 1);
    c->out.len -= drop;
    c->events -= drop;
    c->scan -= drop;
    c->no_newline = c->no_newline > drop ? c->no_newline - drop : 0;
}

static int on_data(void *ctx, const char *data, size_t len)
{
    struct attach *a = ctx;
    struct driver_call *c = a->call;
    int rc;

    if (demux_feed(&c->demux, data, len) < 0)
        return err_set(c->err, ERR_INTERNAL, "engine: bad stream frame");
    if (c->out.overflow)
        return err_set(c->err, ERR_OUTPUT,
                       "the results are larger than %lld bytes",
                       c->max_result_bytes);
    /* Output that bypasses the kernel (os.system("yes"), a C library
     * writing to fd 1 or 2) reaches the driver's stderr raw: past the cap
     * the copy stops and the sandbox is removed. */
    if (c->errout.overflow)
        return err_set(c->err, ERR_OUTPUT,
                       "the notebook wrote more than %zu bytes to its raw "
                       "stdout and stderr (outside the cells' outputs)",
                       c->errout.cap);
    rc = driver_find_results(c->out.data, c->out.len, c->nonce, &c->scan,
                             &c->results_at, &c->results_len, c->err);
    if (c->on_event && rc >= 0)
        take_events(c, rc == 1);
    return rc;
}

int driver_call_run(struct driver_call *c, struct sandbox *sb,
                    long long deadline_ms, const atomic_bool *cancel)
{
    struct attach a = {c, sb};
    struct docker_stream_cb cb = {on_open, on_data, &a, cancel, c->cancel_too};

    buf_reset(&c->out);
    buf_reset(&c->errout);
    c->out.overflow = c->errout.overflow = false;
    c->scan = c->events = c->no_newline = 0;
    c->uploaded = false;
    demux_init(&c->demux, &c->out, &c->errout);
    return sandbox_attach_stdin(sb, c->upload.data, c->upload.len, &cb,
                                deadline_ms, c->err);
}

int driver_call_read(struct driver_call *c)
{
    const struct tar_entry *e;
    char tail[256];
    int rc;

    rc = tarball_read(&c->results, c->out.data + c->results_at, c->results_len,
                      NULL, 10000, (size_t)c->max_result_bytes, c->err);
    if (rc < 0)
        return rc;
    /* Outputs may hold NUL (as \u0000); it is made safe when cleaned. */
    e = tarball_find(&c->results, DRIVER_RESULT_STATUS);
    if (e)
        c->status = json_loadb(e->data, e->len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(c->status))
        return err_set(c->err, ERR_INTERNAL, "the sandbox wrote no status: %s",
                       driver_call_stderr_tail(c, tail, sizeof(tail)));
    e = tarball_find(&c->results, DRIVER_RESULT_NOTEBOOK);
    if (e) {
        c->notebook = json_loadb(e->data, e->len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(c->notebook))
            return err_set(c->err, ERR_INTERNAL,
                           "the executed notebook is not valid JSON");
    }
    return 0;
}

const char *driver_call_stderr_tail(const struct driver_call *c, char *out,
                                    size_t out_len)
{
    const char *s = c->errout.data;
    size_t n = c->errout.len, start;

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    start = n;
    while (start > 0 && s[start - 1] != '\n')
        start--;
    util_escape(out, out_len, s + start, n - start);
    return out;
}

long driver_call_last_cell(const struct driver_call *c)
{
    return driver_last_cell(c->errout.data, c->errout.len);
}

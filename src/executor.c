/*
 * The notebook executor (include/nbcanvas/executor.h): nbclient 0.7's
 * execute loop, written against the relay instead of ZeroMQ. One cell at
 * a time: the execute_request goes out on shell, then every frame that
 * comes back is read until the cell's reply and its IOPub idle are both
 * in. Messages for other requests (a session's background thread, a
 * forged message) are dropped, as nbclient drops them.
 */
#include "nbcanvas/executor.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "nbcanvas/jmsg.h"
#include "nbcanvas/util.h"

/* How long an interrupted cell has to answer before its kernel is taken
 * for gone (a session's). */
#define INTERRUPT_GRACE_MS 5000
#define SKIP_TAG "skip-execution"
#define RAISES_TAG "raises-exception"

/* How a cell's conversation ended. */
enum cell_end {
    CELL_DONE,
    CELL_TIMEOUT,
    CELL_OVER_BUDGET,
    CELL_KERNEL_DIED,  /* the relay said the kernel exited */
    CELL_SANDBOX_ENDED /* the whole container's output ended */
};

/* The cell being executed. */
struct running {
    json_t *cell; /* borrowed */
    size_t index;
    char msg_id[JMSG_ID_LEN + 1];
    json_t *reply; /* the execute_reply's content, once it came */
    bool idle;
    bool clear_pending;
    bool stopped;   /* interrupted: what it still writes is not kept */
    bool killed;    /* the kernel ended by SIGKILL (the OOM killer, a
                       removal of the container, or the code itself) */
    long long left; /* of the output budget */
};

void executor_init(struct executor *ex, struct relay_link *link, long *counter)
{
    memset(ex, 0, sizeof(*ex));
    ex->link = link;
    ex->counter = counter;
    util_uuid(ex->session);
    ex->widgets = json_object();
    ex->displays = json_object();
}

void executor_release(struct executor *ex)
{
    json_decref(ex->widgets);
    json_decref(ex->displays);
    ex->widgets = ex->displays = NULL;
}

static int send_request(struct executor *ex, uint8_t channel,
                        const char *msg_type, json_t *content,
                        char msg_id[JMSG_ID_LEN + 1], struct err *err)
{
    struct buf payload = BUF_INIT(RELAY_MAX_FRAME);
    int rc;

    /* as jupyter_client numbers them: the session, then a count */
    snprintf(msg_id, JMSG_ID_LEN + 1, "%.24s_%ld", ex->session, ++ex->sent);
    rc = jmsg_pack(&payload, ex->link->sb->kernel_key, ex->session, msg_id,
                   msg_type, NULL, content);
    json_decref(content);
    if (rc < 0)
        rc = err_set(err, ERR_TOO_LARGE, "the cell is too large to send");
    else
        rc = relay_link_send(ex->link, RELAY_SEND, channel, payload.data,
                             payload.len, ex->deadline_ms);
    buf_release(&payload);
    return rc;
}

/* Waits for the shell reply to msg_id (its content into *reply); other
 * messages are dropped. */
static int await_shell_reply(struct executor *ex, const char *msg_id,
                             long long until, json_t **reply, struct err *err)
{
    for (;;) {
        struct relay_frame f;
        struct jmsg m;
        int rc = relay_link_next(ex->link, &f, until);

        if (rc == 1 || (rc == 0 && f.type == RELAY_EXIT))
            return err_set(err, ERR_INTERNAL, "the kernel died");
        if (rc < 0)
            return rc;
        if (f.type != RELAY_RECV || f.channel != RELAY_SHELL)
            continue;
        rc = jmsg_parse(&m, ex->link->sb->kernel_key, f.payload, f.len, err);
        if (rc < 0)
            return rc;
        if (strcmp(m.parent_id, msg_id) == 0) {
            *reply = json_incref(m.content);
            jmsg_release(&m);
            return 0;
        }
        jmsg_release(&m);
    }
}

int executor_kernel_info(struct executor *ex, json_t *nb, struct err *err)
{
    char msg_id[JMSG_ID_LEN + 1];
    json_t *reply = NULL, *info, *meta;
    int rc = send_request(ex, RELAY_SHELL, "kernel_info_request",
                          json_object(), msg_id, err);

    if (rc == 0)
        rc = await_shell_reply(ex, msg_id, ex->deadline_ms, &reply, err);
    if (rc < 0)
        return rc;
    info = json_object_get(reply, "language_info");
    meta = json_object_get(nb, "metadata");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(nb, "metadata", meta);
    }
    if (json_is_object(info))
        json_object_set(meta, "language_info", info);
    json_decref(reply);
    return json_is_object(info) ? 0
                                : err_set(err, ERR_INTERNAL,
                                          "the kernel sent no language_info");
}

int executor_silent(struct executor *ex, const char *code, long timeout_ms,
                    struct err *err)
{
    char msg_id[JMSG_ID_LEN + 1];
    json_t *reply = NULL;
    long long until = util_now_ms() + timeout_ms;
    int rc = send_request(ex, RELAY_SHELL, "execute_request",
                          json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code",
                                    code, "silent", 1, "store_history", 0,
                                    "user_expressions", "allow_stdin", 0,
                                    "stop_on_error", 0),
                          msg_id, err);

    if (rc == 0)
        rc = await_shell_reply(ex, msg_id, until, &reply, err);
    if (rc == 0 &&
        strcmp(json_string_value(json_object_get(reply, "status"))
                   ? json_string_value(json_object_get(reply, "status"))
                   : "",
               "ok") != 0)
        rc = err_set(err, ERR_INTERNAL, "the kernel's set-up failed: %s: %s",
                     json_string_value(json_object_get(reply, "ename")),
                     json_string_value(json_object_get(reply, "evalue")));
    json_decref(reply);
    return rc;
}

/* ------------------------------------------------------------- a cell */

static bool has_tag(json_t *cell, const char *tag)
{
    json_t *tags = json_object_get(json_object_get(cell, "metadata"), "tags"),
           *t;
    size_t i;

    json_array_foreach(tags, i, t) {
        if (json_is_string(t) && strcmp(json_string_value(t), tag) == 0)
            return true;
    }
    return false;
}

/* The cell's source as one string (new), whether a string or lines. */
static char *source_of(json_t *cell)
{
    json_t *src = json_object_get(cell, "source"), *line;
    struct buf b = BUF_INIT((size_t)-1 / 2);
    size_t i;

    if (json_is_string(src))
        return strdup(json_string_value(src));
    json_array_foreach(src, i, line) {
        if (json_is_string(line))
            buf_puts(&b, json_string_value(line));
    }
    return buf_detach(&b, NULL);
}

static bool is_blank(const char *s)
{
    for (; *s; s++)
        if (!strchr(" \t\r\n\f\v", *s))
            return false;
    return true;
}

/* Roughly the bytes an output message adds to the notebook. */
static long long output_size(json_t *content)
{
    json_t *text = json_object_get(content, "text"), *v;
    const char *key;
    long long size = 0;
    size_t i;

    if (json_is_string(text))
        return (long long)json_string_length(text);
    json_array_foreach(json_object_get(content, "traceback"), i, v) {
        size += (long long)json_string_length(v);
    }
    json_object_foreach(json_object_get(content, "data"), key, v) {
        if (json_is_string(v)) {
            size += (long long)json_string_length(v);
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

            size += s ? (long long)strlen(s) : 0;
            free(s);
        }
    }
    return size;
}

static json_t *object_or_empty(json_t *v)
{
    return json_is_object(v) ? json_incref(v) : json_object();
}

/* nbformat's output_from_msg: the output a message makes (new). */
static json_t *output_from(const char *type, json_t *content)
{
    json_t *out = json_pack("{s:s}", "output_type", type);

    if (strcmp(type, "stream") == 0) {
        json_object_set(out, "name", json_object_get(content, "name"));
        json_object_set(out, "text", json_object_get(content, "text"));
    } else if (strcmp(type, "error") == 0) {
        json_object_set(out, "ename", json_object_get(content, "ename"));
        json_object_set(out, "evalue", json_object_get(content, "evalue"));
        json_object_set(out, "traceback",
                        json_object_get(content, "traceback"));
    } else {
        json_object_set_new(out, "data",
                            object_or_empty(json_object_get(content, "data")));
        json_object_set_new(
            out, "metadata",
            object_or_empty(json_object_get(content, "metadata")));
        if (strcmp(type, "execute_result") == 0)
            json_object_set(out, "execution_count",
                            json_object_get(content, "execution_count"));
    }
    /* A field the message lacked is null, not absent: nbformat's own
     * would refuse the message; a null is still visibly wrong. */
    return out;
}

static json_t *cell_outputs(json_t *cell)
{
    json_t *outs = json_object_get(cell, "outputs");

    if (!json_is_array(outs)) {
        outs = json_array();
        json_object_set_new(cell, "outputs", outs);
    }
    return outs;
}

/* Empties the cell's outputs and forgets its places under every
 * display id. */
static void clear_now(struct executor *ex, struct running *r)
{
    const char *id;
    json_t *places;

    json_object_set_new(r->cell, "outputs", json_array());
    json_object_foreach(ex->displays, id, places) {
        for (size_t i = json_array_size(places); i-- > 0;)
            if ((size_t)json_integer_value(
                    json_array_get(json_array_get(places, i), 0)) == r->index)
                json_array_remove(places, i);
    }
}

/* Every earlier output shown with this display id takes the new data and
 * metadata, in whichever cell it is. */
static void update_display(struct executor *ex, json_t *nb, const char *id,
                           json_t *content)
{
    json_t *places = json_object_get(ex->displays, id), *place;
    json_t *cells = json_object_get(nb, "cells");
    size_t i;

    json_array_foreach(places, i, place) {
        json_t *cell = json_array_get(
            cells, (size_t)json_integer_value(json_array_get(place, 0)));
        json_t *out = json_array_get(
            json_object_get(cell, "outputs"),
            (size_t)json_integer_value(json_array_get(place, 1)));

        if (!json_is_object(out))
            continue;
        json_object_set_new(out, "data",
                            object_or_empty(json_object_get(content, "data")));
        json_object_set_new(
            out, "metadata",
            object_or_empty(json_object_get(content, "metadata")));
    }
}

static void record_place(struct executor *ex, const char *id, size_t cell,
                         size_t output)
{
    json_t *places = json_object_get(ex->displays, id);

    if (!places) {
        places = json_array();
        json_object_set_new(ex->displays, id, places);
    }
    json_array_append_new(
        places, json_pack("[I, I]", (json_int_t)cell, (json_int_t)output));
}

/* A widget's state as its comm messages carry it, merged per comm. */
static void keep_widget_state(struct executor *ex, json_t *content)
{
    json_t *data = json_object_get(content, "data");
    json_t *state = json_object_get(data, "state");
    const char *comm = json_string_value(json_object_get(content, "comm_id"));
    json_t *kept;

    if (!comm || !json_is_object(state))
        return;
    kept = json_object_get(ex->widgets, comm);
    if (!kept) {
        kept = json_object();
        json_object_set_new(ex->widgets, comm, kept);
    }
    json_object_update(kept, state);
}

static void emit(struct executor *ex, json_t *event)
{
    if (ex->on_event)
        ex->on_event(ex->event_ctx, event);
    json_decref(event);
}

static void set_timing(json_t *cell, const char *key, const char *date)
{
    json_t *meta = json_object_get(cell, "metadata");
    json_t *timing = json_object_get(meta, "execution");

    if (json_is_object(timing) && date[0])
        json_object_set_new(timing, key, json_string(date));
}

static bool is_output_type(const char *t)
{
    return !strcmp(t, "stream") || !strcmp(t, "display_data") ||
           !strcmp(t, "execute_result") || !strcmp(t, "error");
}

/* One IOPub message of the running cell. Returns false when the output
 * budget is spent. */
static bool on_iopub(struct executor *ex, json_t *nb, struct running *r,
                     struct jmsg *m)
{
    const char *t = m->msg_type;
    json_t *content = m->content;
    const char *display = json_string_value(
        json_object_get(json_object_get(content, "transient"), "display_id"));
    json_t *count = json_object_get(content, "execution_count");

    if (display &&
        (!strcmp(t, "execute_result") || !strcmp(t, "display_data") ||
         !strcmp(t, "update_display_data")))
        update_display(ex, nb, display, content);
    if (json_is_integer(count))
        json_object_set(r->cell, "execution_count", count);
    if (!strcmp(t, "status")) {
        const char *state = json_string_value(
            json_object_get(content, "execution_state"));

        if (state && !strcmp(state, "busy"))
            set_timing(r->cell, "iopub.status.busy", m->date);
        if (state && !strcmp(state, "idle")) {
            set_timing(r->cell, "iopub.status.idle", m->date);
            r->idle = true;
        }
    } else if (!strcmp(t, "execute_input")) {
        set_timing(r->cell, "iopub.execute_input", m->date);
    } else if (!strcmp(t, "clear_output")) {
        if (json_is_true(json_object_get(content, "wait")))
            r->clear_pending = true;
        else
            clear_now(ex, r);
    } else if (!strncmp(t, "comm_", 5)) {
        keep_widget_state(ex, content);
    } else if (is_output_type(t) && !r->stopped) {
        json_t *outs, *out;

        r->left -= output_size(content);
        if (r->left < 0)
            return false;
        if (r->clear_pending) {
            clear_now(ex, r);
            r->clear_pending = false;
        }
        outs = cell_outputs(r->cell);
        out = output_from(t, content);
        json_array_append_new(outs, out);
        if (display)
            record_place(ex, display, r->index, json_array_size(outs) - 1);
        if (ex->on_event)
            emit(ex, json_pack("{s:s, s:I, s:O}", "event", "output", "index",
                               (json_int_t)r->index, "output", out));
    }
    return true;
}

/* Reads frames until the cell's reply and idle are in, the deadline
 * passes, the budget is spent or the kernel dies. Returns a cell_end, or
 * ERR_*.
 *
 * The idle is waited for until the cell's deadline, not nbclient's 4 s
 * after the reply: a kernel whose IOPub thread lags (a large output on a
 * slow runtime) sends its idle late too, and a cell ended at 4 s handed
 * the lag on to the next cell, whose output then came after it was over
 * and was lost. What a kernel sends after its idle is lost all the same,
 * so the Python kernel flushes its output before its reply however long
 * that takes (notebook-images/python/nbcanvas_kernel.py). */
static int converse(struct executor *ex, json_t *nb, struct running *r,
                    long long until, struct err *err)
{
    while (!(r->reply && r->idle)) {
        struct relay_frame f;
        struct jmsg m;
        int rc = relay_link_next(ex->link, &f, until);

        if (rc == ERR_TIMEOUT && r->reply)
            return CELL_DONE; /* answered; only the idle never came */
        if (rc == ERR_TIMEOUT)
            return CELL_TIMEOUT;
        if (rc == 1)
            return CELL_SANDBOX_ENDED;
        if (rc < 0)
            return rc;
        if (f.type == RELAY_EXIT) {
            uint32_t wstatus = f.len == 4 ? relay_get_u32(f.payload) : 0;

            r->killed = WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL;
            return CELL_KERNEL_DIED;
        }
        if (f.type == RELAY_FAILED)
            return err_set(err, ERR_INTERNAL, "the relay failed: %.*s",
                           (int)(f.len < 200 ? f.len : 200),
                           (const char *)f.payload);
        if (f.type != RELAY_RECV)
            continue;
        rc = jmsg_parse(&m, ex->link->sb->kernel_key, f.payload, f.len, err);
        if (rc < 0)
            return rc;
        if (strcmp(m.parent_id, r->msg_id) != 0) {
            jmsg_release(&m);
            continue;
        }
        if (f.channel == RELAY_SHELL && !strcmp(m.msg_type, "execute_reply") &&
            !r->reply) {
            r->reply = json_incref(m.content);
            set_timing(r->cell, "shell.execute_reply", m.date);
        } else if (f.channel == RELAY_IOPUB && !on_iopub(ex, nb, r, &m)) {
            jmsg_release(&m);
            return CELL_OVER_BUDGET;
        }
        jmsg_release(&m);
    }
    return CELL_DONE;
}

/* Stops a cell that overran: a render's code ends at once; a session's
 * kernel is interrupted and must answer within the grace. Returns true
 * when the kernel lives on. */
static bool stop_cell(struct executor *ex, json_t *nb, struct running *r,
                      struct err *err)
{
    uint8_t sig = ex->stop == EXECUTOR_KILL ? RELAY_SIG_STOP_ALL
                                            : RELAY_SIG_INTERRUPT;
    int rc;

    rc = relay_link_send(ex->link, RELAY_SIGNAL, 0, &sig, 1,
                         util_now_ms() + INTERRUPT_GRACE_MS);
    if (rc < 0 || ex->stop == EXECUTOR_KILL)
        return false;
    /* The interrupted cell's reply (and idle) say the kernel is back;
     * its outputs past the budget are not kept. */
    r->stopped = true;
    rc = converse(ex, nb, r, util_now_ms() + INTERRUPT_GRACE_MS, err);
    return rc == CELL_DONE;
}

static void set_error_status(json_t *status, struct running *r)
{
    json_t *outs = json_object_get(r->cell, "outputs"), *o, *from = r->reply;
    size_t i;

    json_array_foreach(outs, i, o) {
        const char *t = json_string_value(json_object_get(o, "output_type"));

        if (t && !strcmp(t, "error")) {
            from = o;
            break;
        }
    }
    json_object_set_new(status, "status", json_string("cell_error"));
    json_object_set(status, "ename", json_object_get(from, "ename"));
    json_object_set(status, "evalue", json_object_get(from, "evalue"));
    json_object_set(status, "traceback", json_object_get(from, "traceback"));
}

/* Executes one code cell; writes the outcome into status when it is not
 * plain success. Returns 1 to go on with the next cell, 0 to stop, or
 * ERR_*. */
static int execute_cell(struct executor *ex, json_t *nb, json_t *cell,
                        size_t index, long long *left, json_t *status,
                        struct err *err)
{
    struct running r = {.cell = cell, .index = index, .left = *left};
    bool allowed = ex->allow_errors || has_tag(cell, RAISES_TAG);
    char *code = source_of(cell), *rewritten;
    json_t *meta = json_object_get(cell, "metadata");
    const char *state;
    int rc, end;

    if (ex->rewrite && (rewritten = ex->rewrite(ex->rewrite_ctx, code))) {
        free(code);
        code = rewritten;
    }

    if (util_now_ms() >= ex->deadline_ms) {
        free(code);
        json_object_set_new(status, "status", json_string("timeout"));
        return 0;
    }
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(cell, "metadata", meta);
    }
    json_object_set_new(meta, "execution", json_object());
    if (ex->on_event)
        emit(ex, json_pack("{s:s, s:I, s:s}", "event", "cell", "index",
                           (json_int_t)index, "state", "running"));
    /* stop_on_error as nbclient sends it; not in a session, whose next
     * call comes as soon as this one is answered: ipykernel aborts what
     * arrives in the moment after an error (and cells go one at a time,
     * so there is never a queue to stop). */
    rc = send_request(
        ex, RELAY_SHELL, "execute_request",
        json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", code, "silent", 0,
                  "store_history", 1, "user_expressions", "allow_stdin", 0,
                  "stop_on_error", !allowed && ex->stop == EXECUTOR_KILL),
        r.msg_id, err);
    free(code);
    if (rc < 0)
        return rc;
    ++*ex->counter;
    json_object_set_new(cell, "outputs", json_array());
    end = converse(ex, nb, &r, ex->deadline_ms, err);
    *left = r.left;
    if (end < 0) {
        json_decref(r.reply);
        return end;
    }
    if (end == CELL_DONE) {
        json_object_set_new(cell, "execution_count",
                            json_integer(*ex->counter));
        if (ex->on_event)
            emit(ex, json_pack("{s:s, s:I, s:s, s:I}", "event", "cell",
                               "index", (json_int_t)index, "state", "done",
                               "execution_count", (json_int_t)*ex->counter));
        state = json_string_value(json_object_get(r.reply, "status"));
        rc = 1;
        if (state && !strcmp(state, "error") && !allowed) {
            set_error_status(status, &r);
            rc = 0;
        }
        json_decref(r.reply);
        return rc;
    }
    if (end == CELL_KERNEL_DIED || end == CELL_SANDBOX_ENDED) {
        json_object_set_new(status, "status", json_string("kernel_died"));
        if (end == CELL_SANDBOX_ENDED || r.killed)
            json_object_set_new(status, "sandbox_ended", json_true());
        json_object_set_new(status, "message", json_string("the kernel died"));
        json_object_set_new(status, "session_over", json_true());
    } else {
        json_object_set_new(
            status, "status",
            json_string(end == CELL_TIMEOUT ? "timeout" : "output_limit"));
        if (end == CELL_OVER_BUDGET)
            json_object_set_new(
                status, "message",
                json_sprintf("cell %zu wrote more than %lld bytes of output",
                             index, ex->output_budget));
        if (!stop_cell(ex, nb, &r, err))
            json_object_set_new(status, "session_over", json_true());
    }
    json_decref(r.reply);
    return 0;
}

/* nbclient's set_widgets_metadata: the widgets' state, when any. */
static void set_widgets_metadata(struct executor *ex, json_t *nb)
{
    json_t *state = json_object(), *s;
    const char *comm;

    json_object_foreach(ex->widgets, comm, s) {
        if (!json_object_get(s, "_model_name"))
            continue;
        json_object_set_new(
            state, comm,
            json_pack(
                "{s:O?, s:O?, s:O?, s:O}", "model_name",
                json_object_get(s, "_model_name"), "model_module",
                json_object_get(s, "_model_module"), "model_module_version",
                json_object_get(s, "_model_module_version"), "state", s));
    }
    if (json_object_size(state) == 0) {
        json_decref(state);
        return;
    }
    json_object_set_new(json_object_get(nb, "metadata"), "widgets",
                        json_pack("{s:{s:o, s:i, s:i}}",
                                  "application/vnd.jupyter.widget-state+json",
                                  "state", state, "version_major", 2,
                                  "version_minor", 0));
}

int executor_run(struct executor *ex, json_t *nb, size_t from, json_t *status,
                 struct err *err)
{
    json_t *cells = json_object_get(nb, "cells"), *cell;
    long long left = ex->output_budget;
    size_t i;

    json_object_set_new(status, "status", json_string("ok"));
    json_array_foreach(cells, i, cell) {
        const char *type = json_string_value(
            json_object_get(cell, "cell_type"));
        char *code;
        bool blank;
        int rc;

        if (i < from || !type || strcmp(type, "code") != 0 ||
            has_tag(cell, SKIP_TAG))
            continue;
        code = source_of(cell);
        blank = is_blank(code);
        free(code);
        if (blank)
            continue;
        rc = execute_cell(ex, nb, cell, i, &left, status, err);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            json_object_set_new(status, "cell", json_integer((json_int_t)i));
            break;
        }
    }
    set_widgets_metadata(ex, nb);
    return 0;
}

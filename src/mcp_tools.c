/*
 * The MCP tools (mcp_tools.h). Each builds the JSON body of the HTTP route
 * it stands for from its arguments and hands it to that route's parser in
 * request.c, so a tool call is checked exactly as the HTTP request is;
 * then it runs the same pipeline (render.c, runner.c, sessions.c) and
 * turns the route's answer into MCP content for a model to read: stream
 * text and text/plain as text, PNG figures as images (a link past
 * MCP_IMAGE_MAX), errors with their traceback. The route's JSON answer is
 * the structuredContent, which the tool's outputSchema describes.
 */
#include "nbcanvas/mcp_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/formats.h"
#include "nbcanvas/http.h"
#include "nbcanvas/kept_results.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/render.h"
#include "nbcanvas/request.h"
#include "nbcanvas/runner.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/sql_cells.h"
#include "nbcanvas/util.h"

/* Content items ------------------------------------------------------ */

static json_t *text_item(const char *text)
{
    return json_pack("{s:s, s:s}", "type", "text", "text", text);
}

static json_t *link_item(const char *uri, const char *name, const char *mime,
                         const char *description)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "resource_link",
                     "uri", uri, "name", name, "mimeType", mime, "description",
                     description);
}

/* A traceback's lines as one text (caller frees). */
static char *joined(json_t *lines)
{
    struct buf b = BUF_INIT((size_t)-1);
    json_t *l;
    size_t i;

    json_array_foreach(lines, i, l) {
        if (json_is_string(l)) {
            buf_puts(&b, json_string_value(l));
            buf_puts(&b, "\n");
        }
    }
    buf_puts(&b, "");
    return buf_detach(&b, &i);
}

static void add_error_text(json_t *content, json_t *e)
{
    char *tb = joined(json_object_get(e, "traceback"));
    char *text = xasprintf(
        "%s: %s\n%s", json_string_value(json_object_get(e, "ename")),
        json_string_value(json_object_get(e, "evalue")), tb);

    json_array_append_new(content, text_item(text));
    free(text);
    free(tb);
}

/* One output (as the json format has it) as content; big_images: where a
 * figure too big to inline can be had. */
static void add_output(json_t *content, json_t *o, const char *big_images)
{
    const char *type = json_string_value(json_object_get(o, "output_type"));
    json_t *data = json_object_get(o, "data");
    json_t *png = json_object_get(data, "image/png");
    json_t *plain = json_object_get(data, "text/plain");

    if (!type)
        return;
    if (strcmp(type, "stream") == 0) {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *text = json_string_value(json_object_get(o, "text"));
        char *s;

        if (!text)
            return;
        s = name && strcmp(name, "stderr") == 0
                ? xasprintf("[stderr] %s", text)
                : xstrdup(text);
        json_array_append_new(content, text_item(s));
        free(s);
    } else if (strcmp(type, "error") == 0) {
        add_error_text(content, o);
    } else if (json_is_string(png) &&
               json_string_length(png) <= MCP_IMAGE_MAX) {
        json_array_append_new(content,
                              json_pack("{s:s, s:O, s:s}", "type", "image",
                                        "data", png, "mimeType", "image/png"));
    } else if (json_is_string(png) && big_images) {
        json_array_append_new(
            content, link_item(big_images, "figures.zip", "application/zip",
                               "a figure too large to send inline: the zip "
                               "holds it under resources/"));
    } else if (json_is_string(plain)) {
        json_array_append_new(content, text_item(json_string_value(plain)));
    }
}

static void add_outputs(json_t *content, json_t *outputs,
                        const char *big_images)
{
    json_t *o;
    size_t i;

    json_array_foreach(outputs, i, o)
        add_output(content, o, big_images);
}

static json_t *tool_result(json_t *content, json_t *structured, bool error)
{
    json_t *r = json_pack("{s:o, s:b}", "content", content, "isError", error);

    if (structured)
        json_object_set_new(r, "structuredContent", structured);
    return r;
}

/* The service said no, or the code failed: an error result a model can
 * read (the API's error object as text, the traceback and the outputs so
 * far as content). */
static json_t *failure(int code, const char *message, json_t *details)
{
    json_t *content = json_array();
    json_t *e = http_error_json(code, message, details);
    char *text = json_dumps(json_object_get(e, "error"), JSON_COMPACT);
    json_t *cells = json_object_get(details, "cells");
    json_t *cell;
    size_t i;

    json_array_append_new(content, text_item(text));
    free(text);
    json_array_foreach(cells, i, cell)
        add_outputs(content, json_object_get(cell, "outputs"), NULL);
    add_outputs(content, json_object_get(details, "outputs"), NULL);
    if (json_is_array(json_object_get(details, "traceback")))
        add_error_text(content, details);
    json_decref(e);
    return tool_result(content, NULL, true);
}

/* Arguments ----------------------------------------------------------- */

/* Every argument must be one the schema names, and every required one
 * there: the same rule as the body's unknown fields. */
int mcp_tool_check_args(const char *tool, json_t *args, json_t *schema,
                        struct err *err)
{
    json_t *props = json_object_get(schema, "properties"), *v;
    const char *key;
    size_t i;

    json_object_foreach(args, key, v) {
        if (!json_object_get(props, key)) {
            char names[256] = "";
            const char *k;
            json_t *p;

            json_object_foreach(props, k, p) {
                snprintf(names + strlen(names), sizeof(names) - strlen(names),
                         "%s%s", names[0] ? ", " : "", k);
            }
            return err_set(err, ERR_INVALID,
                           "unknown argument '%.80s' (%s takes %s)", key, tool,
                           names[0] ? names : "none");
        }
    }
    json_array_foreach(json_object_get(schema, "required"), i, v) {
        if (!json_object_get(args, json_string_value(v)))
            return err_set(err, ERR_INVALID, "argument '%s' is required",
                           json_string_value(v));
    }
    return 0;
}

/* args less the session_id, as a route's body text (caller frees). */
static char *body_text(json_t *args, const char *drop, const char *format)
{
    json_t *body = json_deep_copy(args);
    char *text;

    if (drop)
        json_object_del(body, drop);
    if (format)
        json_object_set_new(body, "format", json_string(format));
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

static const char *session_id(json_t *args, struct err *err)
{
    const char *id = json_string_value(json_object_get(args, "session_id"));

    if (!id || !*id || strlen(id) > 64) {
        err_set(err, ERR_INVALID, "session_id must be a session's id");
        return NULL;
    }
    return id;
}

static bool sessions_on(struct service *svc)
{
    return svc->sessions && svc->cfg.max_sessions > 0;
}

/* Progress ------------------------------------------------------------ */

struct progress {
    const struct mcp_call *call;
    long done, total;
};

/* A cell's end as notifications/progress: cells done of the code cells
 * (so the value only grows, as the protocol asks). */
static void on_event(void *ctx, json_t *event)
{
    struct progress *p = ctx;
    const char *state = json_string_value(json_object_get(event, "state"));
    json_t *msg;
    char text[96];

    if (!p->call->notify || !p->call->progress_token || !state ||
        strcmp(state, "done") != 0)
        return;
    p->done++;
    snprintf(text, sizeof(text), "cell %lld done",
             (long long)json_integer_value(json_object_get(event, "index")));
    msg = json_pack("{s:s, s:s, s:{s:O, s:I, s:s}}", "jsonrpc", "2.0",
                    "method", "notifications/progress", "params",
                    "progressToken", p->call->progress_token, "progress",
                    (json_int_t)p->done, "message", text);
    if (p->total >= p->done)
        json_object_set_new(json_object_get(msg, "params"), "total",
                            json_integer(p->total));
    p->call->notify(p->call->notify_ctx, msg);
    json_decref(msg);
}

static long code_cells(json_t *nb)
{
    json_t *cell;
    size_t i;
    long n = 0;

    json_array_foreach(json_object_get(nb, "cells"), i, cell) {
        const char *t = json_string_value(json_object_get(cell, "cell_type"));

        n += t && strcmp(t, "code") == 0;
    }
    return n;
}

/* The tools ----------------------------------------------------------- */

static int render_notebook(const struct mcp_call *call, json_t *args,
                           json_t **out, struct err *err)
{
    struct service *svc = call->svc;
    char *body = body_text(args, NULL, "json");
    struct render_request req;
    struct render_result res;
    struct progress p = {call, 0, 0};
    json_t *structured, *content, *cell;
    char *page, *zip;
    size_t i;
    int rc;

    rc = request_parse_render(&req, body, strlen(body), &svc->cfg, err);
    free(body);
    if (rc < 0) {
        request_render_release(&req);
        return rc;
    }
    req.tenant = call->tenant;
    req.keep = true;
    req.on_event = on_event;
    req.event_ctx = &p;
    p.total = code_cells(req.notebook);
    render_run(&res, &svc->pipe, &req, call->request_id, call->cancel);
    request_render_release(&req);
    if (res.code < 0) {
        *out = failure(res.code, res.message, res.details);
        render_result_release(&res);
        return 0;
    }
    {
        struct formats_input in = {res.kept->id, &res.kept->results,
                                   res.kept->notebook, res.kept->timing};

        structured = formats_result_json(&in);
    }
    json_object_set_new(structured, "result_url",
                        json_sprintf("/v1/results/%s", res.kept->result_id));
    json_object_set_new(structured, "cache",
                        json_string(res.cache_hit ? "hit" : "miss"));
    page = xasprintf("%s/v1/results/%s?format=html", call->base_url,
                     res.kept->result_id);
    zip = xasprintf("%s/v1/results/%s?format=zip", call->base_url,
                    res.kept->result_id);
    kept_results_put(svc->kept, call->tenant.name, res.kept);
    res.kept = NULL;
    render_result_release(&res);
    content = json_array();
    json_array_foreach(json_object_get(structured, "cells"), i, cell)
        add_outputs(content, json_object_get(cell, "outputs"), zip);
    json_array_append_new(
        content, link_item(page, "notebook.html", "text/html",
                           "the rendered notebook (kept for a while, for "
                           "the same key)"));
    free(page);
    free(zip);
    *out = tool_result(content, structured, false);
    return 0;
}

static int run_code(const struct mcp_call *call, json_t *args, json_t **out,
                    struct err *err)
{
    char *body = body_text(args, NULL, NULL);
    struct run_request req;
    struct err fail = ERR_INIT;
    json_t *result = NULL, *content;
    const char *status, *o, *e;
    int rc;

    rc = request_parse_run(&req, body, strlen(body), &call->svc->cfg, err);
    free(body);
    if (rc == 0) {
        req.tenant = call->tenant;
        rc = runner_run(&result, &call->svc->pipe, &req, call->request_id,
                        call->cancel, &fail);
    } else {
        request_run_release(&req);
        return rc;
    }
    request_run_release(&req);
    if (rc == ERR_INVALID) /* an unknown language */
        return err_set(err, ERR_INVALID, "%s", fail.msg);
    if (rc < 0) {
        *out = failure(rc, fail.msg, NULL);
        return 0;
    }
    status = json_string_value(json_object_get(result, "status"));
    o = json_string_value(json_object_get(result, "stdout"));
    e = json_string_value(json_object_get(result, "stderr"));
    content = json_array();
    if (o && *o)
        json_array_append_new(content, text_item(o));
    if (e && *e) {
        char *s = xasprintf("[stderr] %s", e);

        json_array_append_new(content, text_item(s));
        free(s);
    }
    if (strcmp(status, "ok") != 0 || json_array_size(content) == 0) {
        char *s = xasprintf("status %s, exit code %lld", status,
                            (long long)json_integer_value(
                                json_object_get(result, "exit_code")));

        json_array_append_new(content, text_item(s));
        free(s);
    }
    *out = tool_result(content, result, strcmp(status, "ok") != 0);
    return 0;
}

static int create_session(const struct mcp_call *call, json_t *args,
                          json_t **out, struct err *err)
{
    char *body = body_text(args, NULL, NULL);
    struct session_request req;
    struct err fail = ERR_INIT;
    json_t *session = NULL;
    char *text;
    int rc;

    rc = request_parse_session(&req, body, strlen(body), &call->svc->cfg, err);
    free(body);
    if (rc < 0) {
        request_session_release(&req);
        return rc;
    }
    if (!sessions_on(call->svc)) {
        request_session_release(&req);
        *out = failure(ERR_INVALID,
                       "sessions are off here (max_sessions is 0)", NULL);
        return 0;
    }
    req.tenant = call->tenant;
    rc = sessions_create(call->svc->sessions, &req, call->request_id,
                         call->cancel, &session, &fail);
    request_session_release(&req);
    if (rc < 0) {
        *out = failure(rc, fail.msg, NULL);
        return 0;
    }
    text = xasprintf("session %s started (kernel %s); pass it as session_id "
                     "to execute, get_notebook and end_session",
                     json_string_value(json_object_get(session, "id")),
                     json_string_value(json_object_get(session, "kernel")));
    *out = tool_result(json_pack("[o]", text_item(text)), session, false);
    free(text);
    return 0;
}

static int execute(const struct mcp_call *call, json_t *args, json_t **out,
                   struct err *err)
{
    const char *id = session_id(args, err);
    const struct kernel_info *kernel = NULL;
    struct execute_request req;
    struct progress p = {call, 0, 1};
    struct err fail = ERR_INIT;
    json_t *answer = NULL, *details = NULL, *content;
    bool raised;
    char *body;
    int rc;

    if (!id)
        return ERR_INVALID;
    if (!sessions_on(call->svc) ||
        sessions_check(call->svc->sessions, call->tenant.name, id, &kernel,
                       NULL, &fail) < 0) {
        *out = failure(ERR_NOT_FOUND,
                       "no such session: it ended, or was never made "
                       "(create_session makes one)",
                       NULL);
        return 0;
    }
    body = body_text(args, "session_id", NULL);
    rc = request_parse_execute(&req, body, strlen(body), &call->svc->cfg,
                               kernel, err);
    free(body);
    if (rc < 0) {
        request_execute_release(&req);
        return rc;
    }
    rc = sql_cells_for_execute(call->svc->pipe.datasources, &call->tenant,
                               &req, call->cancel, &details, &fail);
    if (rc < 0) {
        request_execute_release(&req);
        *out = failure(rc, fail.msg, details);
        json_decref(details);
        return 0;
    }
    rc = sessions_execute(call->svc->sessions, call->tenant.name, id, &req,
                          on_event, &p, call->cancel, &answer, &details,
                          &fail);
    request_execute_release(&req);
    if (rc < 0 || !answer) {
        *out = failure(rc < 0 ? rc : ERR_INTERNAL, fail.msg, details);
        json_decref(details);
        json_decref(answer);
        return 0;
    }
    json_decref(details);
    content = json_array();
    add_outputs(content, json_object_get(answer, "outputs"), NULL);
    raised = strcmp(json_string_value(json_object_get(answer, "status")),
                    "ok") != 0;
    if (raised)
        add_error_text(content, json_object_get(answer, "error"));
    if (json_array_size(content) == 0)
        json_array_append_new(content, text_item("(no output)"));
    *out = tool_result(content, answer, raised);
    return 0;
}

static int get_notebook(const struct mcp_call *call, json_t *args,
                        json_t **out, struct err *err)
{
    static const char *const formats[] = {"html", "ipynb", "json"};
    static const enum render_format kinds[] = {FORMAT_HTML, FORMAT_IPYNB,
                                               FORMAT_JSON};
    const char *id = session_id(args, err);
    json_t *f = json_object_get(args, "format"), *structured, *doc, *content;
    struct err fail = ERR_INIT;
    struct export_request q = {.template_name = "lab"};
    struct payload doc_bytes = PAYLOAD_INIT;
    const char *format = "ipynb";
    char *uri;
    size_t i, which = 1;
    int rc;

    if (!id)
        return ERR_INVALID;
    for (i = 0; f && i < 3; i++)
        if (json_is_string(f) && strcmp(json_string_value(f), formats[i]) == 0)
            which = i;
    if (f && (!json_is_string(f) ||
              strcmp(json_string_value(f), formats[which]) != 0))
        return err_set(err, ERR_INVALID,
                       "format must be one of html, ipynb, json");
    format = formats[which];
    q.format = kinds[which];
    rc = !sessions_on(call->svc)
             ? err_set(&fail, ERR_NOT_FOUND, "sessions are off here")
             : sessions_export(call->svc->sessions, call->tenant.name, id, &q,
                               call->cancel, &doc_bytes, &fail);
    if (rc < 0) {
        *out = failure(rc, fail.msg, NULL);
        return 0;
    }
    structured = json_pack("{s:s, s:s}", "session_id", id, "format", format);
    uri = xasprintf("nbcanvas://sessions/%s/notebook.%s", id,
                    which == 0   ? "html"
                    : which == 1 ? "ipynb"
                                 : "json");
    if (which == 0) {
        json_object_set_new(structured, "html_bytes",
                            json_integer((json_int_t)doc_bytes.len));
    } else {
        doc = json_loadb(doc_bytes.body, doc_bytes.len, 0, NULL);
        json_object_set_new(structured, "notebook", doc ? doc : json_object());
    }
    content = json_pack("[{s:s, s:{s:s, s:s, s:s%}}]", "type", "resource",
                        "resource", "uri", uri, "mimeType",
                        doc_bytes.content_type, "text", doc_bytes.body,
                        doc_bytes.len);
    if (!content) /* not UTF-8: said, not sent */
        content = json_pack("[o]", text_item("the export is not UTF-8 text"));
    free(uri);
    payload_release(&doc_bytes);
    *out = tool_result(content, structured, false);
    return 0;
}

static int end_session(const struct mcp_call *call, json_t *args, json_t **out,
                       struct err *err)
{
    const char *id = session_id(args, err);
    struct err fail = ERR_INIT;
    char *text;
    int rc;

    if (!id)
        return ERR_INVALID;
    rc = sessions_on(call->svc)
             ? sessions_delete(call->svc->sessions, call->tenant.name, id,
                               &fail)
             : err_set(&fail, ERR_NOT_FOUND, "sessions are off here");
    if (rc < 0) {
        *out = failure(rc, fail.msg, NULL);
        return 0;
    }
    text = xasprintf("session %s ended", id);
    *out = tool_result(json_pack("[o]", text_item(text)),
                       json_pack("{s:s, s:b}", "session_id", id, "ended", 1),
                       false);
    free(text);
    return 0;
}

static int list_languages(const struct mcp_call *call, json_t *args,
                          json_t **out, struct err *err)
{
    json_t *langs = languages_json(call->svc->pipe.languages);
    json_t *kernels = notebook_kernels_json(), *l;
    char line[4096] = "languages (run_code):";
    size_t i;

    (void)args;
    (void)err;
    json_array_foreach(langs, i, l) {
        snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s",
                 json_string_value(json_object_get(l, "name")));
    }
    snprintf(line + strlen(line), sizeof(line) - strlen(line),
             "\nkernels (render_notebook, create_session):");
    json_array_foreach(kernels, i, l) {
        snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s",
                 json_string_value(json_object_get(l, "name")));
    }
    *out = tool_result(
        json_pack("[o]", text_item(line)),
        json_pack("{s:o, s:o}", "languages", langs, "kernels", kernels),
        false);
    return 0;
}

static int list_datasources(const struct mcp_call *call, json_t *args,
                            json_t **out, struct err *err)
{
    json_t *list = datasources_list(call->svc->pipe.datasources,
                                    call->tenant.datasources);
    char *text = json_dumps(list, JSON_COMPACT);
    char *said = xasprintf("datasources (%%%%sql <name> -> <variable>): %s",
                           text);

    (void)args;
    (void)err;
    *out = tool_result(json_pack("[o]", text_item(said)),
                       json_pack("{s:o}", "datasources", list), false);
    free(said);
    free(text);
    return 0;
}

static const struct {
    const char *name;
    int (*run)(const struct mcp_call *, json_t *, json_t **, struct err *);
} tools[] = {
    {"render_notebook", render_notebook},
    {"run_code", run_code},
    {"create_session", create_session},
    {"execute", execute},
    {"get_notebook", get_notebook},
    {"end_session", end_session},
    {"list_languages", list_languages},
    {"list_datasources", list_datasources},
};

int mcp_tool_run(const struct mcp_call *call, const char *name, json_t *args,
                 json_t *schema, json_t **out, struct err *err)
{
    size_t i;
    int rc;

    *out = NULL;
    rc = mcp_tool_check_args(name, args, schema, err);
    if (rc < 0)
        return rc;
    for (i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
        if (strcmp(tools[i].name, name) == 0) {
            rc = tools[i].run(call, args, out, err);
            return rc < 0 ? ERR_INVALID : 0;
        }
    }
    return err_set(err, ERR_INVALID, "tool '%s' has no implementation", name);
}

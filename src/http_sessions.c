/*
 * The session routes (/v1/sessions...) and the kept results of streamed
 * renders (/v1/results/{id}): parse, call sessions.c or kept_results.c,
 * answer. The session id and a file's path come from the route's "*"
 * parts (x->params); the tenant is the caller's, so another tenant's
 * session or result is simply not found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/kept_results.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/sql_cells.h"

/* A page, zip, notebook or JSON made by an export, with the headers of
 * its kind: the page's CSP, the zip as an attachment. */
static bool sessions_on(struct http_server *s, struct err *err)
{
    if (s->svc->sessions && s->svc->cfg.max_sessions > 0)
        return true;
    err_set(err, ERR_INVALID, "sessions are off here (max_sessions is 0)");
    return false;
}

int http_create_session(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x)
{
    struct session_request req;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    char location[16 + ID_MAX];
    struct answer a = {.status = 201,
                       .payload.content_type = "application/json",
                       .location = location};
    json_t *out = NULL;
    int rc;

    if (!sessions_on(s, &err))
        return http_send_error(c, x, err.code, err.msg, NULL);
    rc = request_parse_session(&req, x->body.data, x->body.len, &s->svc->cfg,
                               &err);
    if (rc == 0) {
        req.tenant = x->tenant;
        http_watch_start(&watch, c);
        rc = sessions_create(s->svc->sessions, &req, x->id, &watch.cancel,
                             &out, &err);
        http_watch_stop(&watch);
    }
    request_session_release(&req);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    snprintf(location, sizeof(location), "/v1/sessions/%s",
             json_string_value(json_object_get(out, "id")));
    a.payload.body = json_dumps(out, JSON_COMPACT);
    a.payload.len = strlen(a.payload.body);
    json_decref(out);
    return http_respond(c, x, &a);
}

int http_list_sessions(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x)
{
    if (!s->svc->sessions)
        return http_send_json(c, x, 200, json_array());
    return http_send_json(c, x, 200,
                          sessions_list(s->svc->sessions, x->tenant.name));
}

int http_delete_session(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x)
{
    struct answer a = {.status = 204,
                       .payload.content_type = "application/json",
                       .payload.body = "",
                       .is_static = true};
    struct err err = ERR_INIT;

    if (!sessions_on(s, &err))
        return http_send_error(c, x, err.code, err.msg, NULL);
    if (sessions_delete(s->svc->sessions, x->tenant.name, x->params[0], &err) <
        0)
        return http_send_error(c, x, err.code, err.msg, NULL);
    return http_respond(c, x, &a);
}

int http_get_session(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x)
{
    struct err err = ERR_INIT;
    json_t *info = NULL;

    if (!sessions_on(s, &err) ||
        sessions_check(s->svc->sessions, x->tenant.name, x->params[0], NULL,
                       &info, &err) < 0)
        return http_send_error(c, x, err.code, err.msg, NULL);
    return http_send_json(c, x, 200, info);
}

int http_execute(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x)
{
    const struct kernel_info *kernel = NULL;
    struct execute_request req;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    json_t *out = NULL, *details = NULL;
    int rc;

    if (!sessions_on(s, &err))
        return http_send_error(c, x, err.code, err.msg, NULL);
    rc = sessions_check(s->svc->sessions, x->tenant.name, x->params[0],
                        &kernel, NULL, &err);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    rc = request_parse_execute(&req, x->body.data, x->body.len, &s->svc->cfg,
                               kernel, &err);
    if (rc == 0) { /* the queries of a %%sql cell, watched for a hang-up */
        http_watch_start(&watch, c);
        rc = sql_cells_for_execute(s->svc->pipe.datasources, &x->tenant, &req,
                                   &watch.cancel, &details, &err);
        http_watch_stop(&watch);
    }
    if (rc < 0) {
        request_execute_release(&req);
        rc = http_send_error(c, x, rc, err.msg, details);
        json_decref(details);
        return rc;
    }
    if (http_wants_stream(c))
        return http_stream_execute(s, c, x, &req);
    http_watch_start(&watch, c);
    rc = sessions_execute(s->svc->sessions, x->tenant.name, x->params[0], &req,
                          NULL, NULL, &watch.cancel, &out, &details, &err);
    http_watch_stop(&watch);
    request_execute_release(&req);
    if (rc < 0) {
        rc = http_send_error(c, x, rc, err.msg, details);
        json_decref(details);
        return rc;
    }
    return http_send_json(c, x, 200, out);
}

static int parse_export_query(struct MHD_Connection *c,
                              struct export_request *r, struct err *err)
{
    return request_parse_export(
        r, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "template"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "include_input"),
        err);
}

int http_session_notebook(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x)
{
    struct export_request q;
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    struct answer a = {.status = 200};
    int rc;

    if (!sessions_on(s, &err) || parse_export_query(c, &q, &err) < 0)
        return http_send_error(c, x, err.code, err.msg, NULL);
    http_watch_start(&watch, c);
    rc = sessions_export(s->svc->sessions, x->tenant.name, x->params[0], &q,
                         &watch.cancel, &a.payload, &err);
    http_watch_stop(&watch);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    return http_send_document(s, c, x, &a);
}

/* A type a browser shows without running anything, by extension; the rest
 * is served as bytes to download. */
static const char *file_type(const char *path, bool *inline_ok)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".csv", "text/csv; charset=utf-8"},
        {".txt", "text/plain; charset=utf-8"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(path, '.');
    size_t i;

    *inline_ok = false;
    for (i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcasecmp(dot, types[i].ext) == 0) {
            *inline_ok = true;
            return types[i].type;
        }
    }
    return "application/octet-stream";
}

/* True when name can stand inside a quoted header value as it is. */
static bool quotable(const char *name)
{
    const unsigned char *p;

    for (p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            return false;
    return true;
}

int http_session_file(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x)
{
    const char *path = x->params[1];
    struct hangup_watch watch;
    struct err err = ERR_INIT;
    struct answer a = {.status = 200};
    char disposition[HTTP_PARAM_MAX + 64];
    const char *name;
    bool inline_ok;
    int rc;

    if (!sessions_on(s, &err))
        return http_send_error(c, x, err.code, err.msg, NULL);
    if (!request_file_name_ok(path, strlen(path)))
        return http_send_error(c, x, ERR_INVALID,
                               "the path must be a plain relative path in "
                               "the session's working directory",
                               NULL);
    http_watch_start(&watch, c);
    rc = sessions_file(s->svc->sessions, x->tenant.name, x->params[0], path,
                       &watch.cancel, &a.payload, &err);
    http_watch_stop(&watch);
    if (rc < 0)
        return http_send_error(c, x, rc, err.msg, NULL);
    a.payload.content_type = file_type(path, &inline_ok);
    /* Whatever the code wrote is shown inert: no script, no plug-in. */
    a.csp = "sandbox; default-src 'none'";
    name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(disposition, sizeof(disposition), "%s; filename=\"%s\"",
             inline_ok ? "inline" : "attachment", name);
    if (!quotable(name)) /* a name that would break the header: none */
        snprintf(disposition, sizeof(disposition), "%s",
                 inline_ok ? "inline" : "attachment");
    a.disposition = disposition;
    return http_respond(c, x, &a);
}

int http_kept_result(struct http_server *s, struct MHD_Connection *c,
                     struct exchange *x)
{
    struct export_request q;
    struct err err = ERR_INIT;
    struct answer a = {.status = 200};

    if (parse_export_query(c, &q, &err) < 0)
        return http_send_error(c, x, err.code, err.msg, NULL);
    if (!s->svc->kept ||
        kept_results_build(s->svc->kept, x->tenant.name, x->params[0],
                           q.format, &a.payload, &err) < 0)
        return http_send_error(c, x, ERR_NOT_FOUND,
                               err.msg[0] ? err.msg : "no such result", NULL);
    return http_send_document(s, c, x, &a);
}

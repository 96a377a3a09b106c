/*
 * POST and DELETE /mcp: the Model Context Protocol over Streamable HTTP
 * (mcp.c has the protocol). One JSON-RPC message a POST: a request is
 * answered with JSON, or with Server-Sent Events when it is a tools/call
 * with a progress token and the client takes them (each progress
 * notification, then the answer, as "message" events, with the stream's
 * pings in any silence so a long cell does not drop the client); a
 * notification or a response is answered 202 with no body. initialize
 * opens an MCP session and answers its Mcp-Session-Id, which every later
 * message carries (400 without it, 404 once it is gone: the client then
 * initializes again). GET /mcp, a stream the server would start on its
 * own, is not offered (405): nbcanvas sends nothing unasked.
 *
 * Besides the Host guard and the key every route has, an Origin that is
 * not this service's own or one of allowed_origins is refused (403), as
 * the MCP specification asks of a server on HTTP (DNS rebinding).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/mcp.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sse.h"
#include "nbcanvas/util.h"

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* A JSON-RPC answer (taken), with the session's id when it is new. */
static int send_rpc(struct MHD_Connection *c, struct exchange *x,
                    unsigned status, json_t *j, const char *new_session)
{
    struct answer a = {.status = status,
                       .payload.content_type = "application/json",
                       .mcp_session = new_session};

    a.payload.body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!a.payload
             .body) /* a bug upstream: never a crash, never an empty body */
        return http_send_error(c, x, ERR_INTERNAL, "no answer was made", NULL);
    a.payload.len = strlen(a.payload.body);
    return http_respond(c, x, &a);
}

static int send_accepted(struct MHD_Connection *c, struct exchange *x)
{
    struct answer a = {.status = 202,
                       .payload.content_type = "application/json",
                       .payload.body = "",
                       .is_static = true};

    return http_respond(c, x, &a);
}

static int check_origin(struct http_server *s, struct MHD_Connection *c,
                        struct exchange *x)
{
    if (http_origin_allowed(&s->svc->cfg, header(c, "Origin"),
                            header(c, "Host")))
        return 0;
    return http_send_error(c, x, ERR_ORIGIN,
                           "this Origin may not call /mcp (allowed_origins)",
                           NULL) == 0
               ? 1
               : -1;
}

static bool accepts(struct MHD_Connection *c, const char *type)
{
    const char *accept = header(c, "Accept");

    return !accept || strcasestr(accept, type) || strstr(accept, "*/*");
}

/* What every call of this request shares. */
static void call_init(struct mcp_call *call, struct http_server *s,
                      struct MHD_Connection *c, struct exchange *x,
                      const char *session, char *base_url, size_t len)
{
    const char *host = header(c, "Host");

    snprintf(base_url, len, "%s://%s",
             s->svc->cfg.tls_cert_file[0] ? "https" : "http",
             host ? host : s->svc->cfg.listen);
    memset(call, 0, sizeof(*call));
    call->svc = s->svc;
    call->tenant = x->tenant;
    call->session = session;
    call->request_id = x->id;
    call->base_url = base_url;
}

/* A tools/call answered as a stream: what its thread owns. */
struct streamed_call {
    struct mcp *mcp;
    struct mcp_call call;
    char session[MCP_SESSION_ID_LEN];
    char request_id[37];
    char base_url[320];
    json_t *msg;
};

static void send_message(void *ctx, json_t *message)
{
    sse_send(ctx, "message", message);
}

static void drop_streamed(void *ctx)
{
    struct streamed_call *sc = ctx;

    json_decref(sc->msg);
    free(sc);
}

static void run_streamed(void *ctx, struct sse *sse)
{
    struct streamed_call *sc = ctx;
    json_t *answer;

    sc->call.session = sc->session;
    sc->call.request_id = sc->request_id;
    sc->call.base_url = sc->base_url;
    sc->call.cancel = sse_cancel(sse);
    sc->call.sse = sse;
    sc->call.notify = send_message;
    sc->call.notify_ctx = sse;
    sc->call.progress_token = json_object_get(
        json_object_get(json_object_get(sc->msg, "params"), "_meta"),
        "progressToken");
    answer = mcp_answer(sc->mcp, &sc->call, sc->msg);
    sse_send(sse, "message", answer);
    json_decref(answer);
    drop_streamed(sc);
}

static int stream_call(struct http_server *s, struct MHD_Connection *c,
                       struct exchange *x, const char *session, json_t *msg)
{
    struct streamed_call *sc = xcalloc(1, sizeof(*sc));

    sc->mcp = s->svc->mcp;
    call_init(&sc->call, s, c, x, NULL, sc->base_url, sizeof(sc->base_url));
    snprintf(sc->session, sizeof(sc->session), "%s", session);
    snprintf(sc->request_id, sizeof(sc->request_id), "%s", x->id);
    sc->msg = msg;
    return http_stream_call(s, c, x, run_streamed, drop_streamed, sc);
}

static int answer_plainly(struct http_server *s, struct MHD_Connection *c,
                          struct exchange *x, const char *session, json_t *msg)
{
    struct hangup_watch watch;
    struct mcp_call call;
    char base_url[320];
    json_t *answer;

    call_init(&call, s, c, x, session, base_url, sizeof(base_url));
    http_watch_start(&watch, c);
    call.cancel = &watch.cancel;
    call.stop = &watch.cancel;
    answer = mcp_answer(s->svc->mcp, &call, msg);
    http_watch_stop(&watch);
    json_decref(msg);
    return send_rpc(c, x, 200, answer, NULL);
}

static int initialize(struct http_server *s, struct MHD_Connection *c,
                      struct exchange *x, json_t *msg)
{
    char session[MCP_SESSION_ID_LEN], base_url[320];
    struct err err = ERR_INIT;
    struct mcp_call call;
    json_t *answer;

    if (mcp_session_open(s->svc->mcp, x->tenant.name, session, &err) < 0) {
        answer = mcp_error(json_object_get(msg, "id"), MCP_INTERNAL_ERROR,
                           err.msg);
        json_decref(msg);
        return send_rpc(c, x, 503, answer, NULL);
    }
    call_init(&call, s, c, x, session, base_url, sizeof(base_url));
    answer = mcp_answer(s->svc->mcp, &call, msg);
    json_decref(msg);
    return send_rpc(c, x, 200, answer, session);
}

int http_mcp(struct http_server *s, struct MHD_Connection *c,
             struct exchange *x)
{
    const char *session = header(c, "Mcp-Session-Id");
    const char *version = header(c, "MCP-Protocol-Version");
    struct err err = ERR_INIT;
    json_error_t jerr;
    const char *method;
    enum mcp_kind kind;
    json_t *msg, *id;
    char text[300];
    int rc;

    rc = check_origin(s, c, x);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (!accepts(c, "application/json") && !accepts(c, "text/event-stream"))
        return send_rpc(c, x, 406,
                        mcp_error(NULL, MCP_INVALID_REQUEST,
                                  "Accept must allow application/json or "
                                  "text/event-stream"),
                        NULL);
    msg = json_loadb(x->body.data, x->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg) {
        snprintf(text, sizeof(text), "parse error: %s (at %d)", jerr.text,
                 jerr.position);
        return send_rpc(c, x, 400, mcp_error(NULL, MCP_PARSE_ERROR, text),
                        NULL);
    }
    kind = mcp_classify(msg, &err);
    id = json_object_get(msg, "id");
    if (kind == MCP_BAD) {
        json_t *answer = mcp_error(
            json_is_string(id) || json_is_integer(id) ? id : NULL, err.code,
            err.msg);

        json_decref(msg);
        return send_rpc(c, x, 400, answer, NULL);
    }
    if (version && !mcp_version_known(version)) {
        json_t *answer;

        snprintf(text, sizeof(text),
                 "MCP-Protocol-Version %.40s is not served (%s is the newest)",
                 version, mcp_versions[0]);
        answer = mcp_error(id, MCP_INVALID_REQUEST, text); /* id is msg's */
        json_decref(msg);
        return send_rpc(c, x, 400, answer, NULL);
    }
    method = json_string_value(json_object_get(msg, "method"));
    if (kind == MCP_REQUEST && strcmp(method, "initialize") == 0)
        return initialize(s, c, x, msg);
    if (!session) {
        json_t *answer = mcp_error(
            kind == MCP_REQUEST ? id : NULL, MCP_INVALID_REQUEST,
            "Mcp-Session-Id is required: initialize first");

        json_decref(msg);
        return send_rpc(c, x, 400, answer, NULL);
    }
    if (mcp_session_check(s->svc->mcp, x->tenant.name, session) < 0) {
        struct err why = ERR_INIT;
        json_t *answer;

        ids_not_found(&why, "MCP session", session,
                      "it ended, or the service restarted");
        answer = mcp_error(kind == MCP_REQUEST ? id : NULL,
                           MCP_SESSION_NOT_FOUND, why.msg);

        json_decref(msg);
        return send_rpc(c, x, 404, answer, NULL);
    }
    if (kind != MCP_REQUEST) {
        if (kind == MCP_NOTIFICATION) {
            struct mcp_call call;
            char base_url[320];

            call_init(&call, s, c, x, session, base_url, sizeof(base_url));
            mcp_notification(s->svc->mcp, &call, msg);
        }
        json_decref(msg);
        return send_accepted(c, x);
    }
    if (mcp_wants_progress(msg) && accepts(c, "text/event-stream"))
        return stream_call(s, c, x, session, msg);
    return answer_plainly(s, c, x, session, msg);
}

int http_mcp_end(struct http_server *s, struct MHD_Connection *c,
                 struct exchange *x)
{
    const char *session = header(c, "Mcp-Session-Id");
    struct answer a = {.status = 204,
                       .payload.content_type = "application/json",
                       .payload.body = "",
                       .is_static = true};
    int rc = check_origin(s, c, x);

    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (!session)
        return send_rpc(c, x, 400,
                        mcp_error(NULL, MCP_INVALID_REQUEST,
                                  "Mcp-Session-Id names the session to end"),
                        NULL);
    if (mcp_session_end(s->svc->mcp, x->tenant.name, session) < 0)
        return send_rpc(
            c, x, 404,
            mcp_error(NULL, MCP_SESSION_NOT_FOUND, "no such MCP session"),
            NULL);
    return http_respond(c, x, &a);
}

#ifndef NBCANVAS_MCP_H
#define NBCANVAS_MCP_H

/*
 * The Model Context Protocol server, without its transport: JSON-RPC 2.0
 * messages in, answers out (http_mcp.c carries them over Streamable
 * HTTP). It keeps the MCP sessions (the Mcp-Session-Id that initialize
 * hands out, owned by the tenant that asked, ended by DELETE or after an
 * hour unused) and the calls under way in each, so that
 * notifications/cancelled stops the work as a client hang-up does. The
 * tools themselves are in mcp_tools.c; their schemas come from the
 * OpenAPI document compiled into the binary (api_doc.h), so the tools and
 * GET /openapi.json describe the same requests and answers.
 *
 * Thread-safe.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/err.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/tenants.h"

struct service;
struct sse;
struct mcp;

/* JSON-RPC's own error codes, and the one MCP adds for a lost session. */
enum {
    MCP_PARSE_ERROR = -32700,
    MCP_INVALID_REQUEST = -32600,
    MCP_METHOD_NOT_FOUND = -32601,
    MCP_INVALID_PARAMS = -32602,
    MCP_INTERNAL_ERROR = -32603,
    MCP_SESSION_NOT_FOUND = -32001
};

#define MCP_SESSION_ID_LEN ID_MAX /* ids.h: names its replica */

/* The protocol versions served, newest first. */
extern const char *const mcp_versions[];
bool mcp_version_known(const char *version);

/* The tables for svc (borrowed; it must outlive them). */
struct mcp *mcp_new(struct service *svc);
void mcp_free(struct mcp *m);

/* What one message is, once it parsed as JSON. */
enum mcp_kind {
    MCP_REQUEST,      /* method and id: it gets an answer */
    MCP_NOTIFICATION, /* method, no id: nothing is answered */
    MCP_RESPONSE,     /* result or error with an id: taken, nothing to do */
    MCP_BAD           /* none of those: *err says why (MCP_INVALID_REQUEST) */
};
enum mcp_kind mcp_classify(json_t *msg, struct err *err);

/* A JSON-RPC error answer for id (borrowed, NULL for null). */
json_t *mcp_error(json_t *id, int code, const char *message);

/* Sessions. open: a new id for tenant (ERR_BUSY when the table is full);
 * check: the id is tenant's and alive (ERR_NOT_FOUND); end: gone, and its
 * calls under way are cancelled. */
int mcp_session_open(struct mcp *m, const char *tenant,
                     char id[MCP_SESSION_ID_LEN], struct err *err);
int mcp_session_check(struct mcp *m, const char *tenant, const char *id);
int mcp_session_end(struct mcp *m, const char *tenant, const char *id);
long mcp_session_count(struct mcp *m);

/*
 * One request's context. The answer's progress notifications go to
 * notify (NULL: none are sent); cancel is the flag the work watches, set
 * by a hang-up, or by notifications/cancelled for this request through
 * stop (a JSON answer's watch flag) or sse_stop (a streamed answer's).
 */
struct mcp_call {
    struct service *svc;
    struct tenant tenant;
    const char *session;    /* the Mcp-Session-Id */
    const char *request_id; /* X-Request-Id: a render's kept result id */
    const char *base_url;   /* "http://host" for links to results */
    const atomic_bool *cancel;
    atomic_bool *stop; /* a JSON answer's cancel flag, else NULL */
    struct sse *sse;   /* the answer's stream, or NULL for a JSON answer */
    json_t *progress_token; /* borrowed; NULL: no progress is sent */
    void (*notify)(void *ctx, json_t *message); /* message borrowed */
    void *notify_ctx;
};

/* Answers request msg (MCP_REQUEST): a JSON-RPC result or error. While
 * it runs, the call is registered under its session and id, so that
 * mcp_notification can cancel it. */
json_t *mcp_answer(struct mcp *m, const struct mcp_call *call, json_t *msg);

/* Takes notification msg: notifications/cancelled stops the named call
 * of the same session; the others need nothing. */
void mcp_notification(struct mcp *m, const struct mcp_call *call, json_t *msg);

/* Whether request msg should be answered as a stream: a tools/call that
 * carries a progress token. */
bool mcp_wants_progress(json_t *msg);

#endif

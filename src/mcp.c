/*
 * The Model Context Protocol's messages and state (mcp.h): what a JSON-RPC
 * message is, the answers to initialize, ping, tools/list and tools/call,
 * the MCP sessions, and the calls under way that notifications/cancelled
 * may stop. The tools' work is mcp_tools.c's; HTTP is http_mcp.c's.
 *
 * A session is only a name the client shows again (Mcp-Session-Id) and
 * the tenant it belongs to: no state of a call outlives the call, so a
 * session costs a few bytes. Kernels an agent starts are the API's own
 * sessions (create_session), with their own ids, limits and life.
 */
#include "nbcanvas/mcp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/api_doc.h"
#include "nbcanvas/list.h"
#include "nbcanvas/mcp_tools.h"
#include "nbcanvas/sse.h"
#include "nbcanvas/util.h"

#define MAX_SESSIONS 1024
#define MAX_SESSIONS_PER_TENANT 64 /* one tenant cannot fill the table */
#define SESSION_IDLE_MS (3600 * 1000LL)
#define CALL_ID_MAX 256 /* a request id's JSON text, at most */

const char *const mcp_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                    "2024-11-05", NULL};

struct session {
    struct list_node link;
    char id[MCP_SESSION_ID_LEN];
    char tenant[TENANT_NAME_MAX];
    long long last_used_ms;
};

/* A call under way, so that a cancellation can find it. */
struct running {
    struct list_node link;
    char session[MCP_SESSION_ID_LEN];
    char id[CALL_ID_MAX]; /* the request's id as JSON text */
    atomic_bool *stop;    /* a JSON answer's cancel flag */
    struct sse *sse;      /* a streamed answer: stopped on a cancellation */
};

struct mcp {
    struct service *svc;
    pthread_mutex_t lock;
    struct list_node sessions;
    long nsessions;
    struct list_node running;
    json_t *tools; /* tools/list's array, built once from the document */
};

bool mcp_version_known(const char *version)
{
    size_t i;

    for (i = 0; version && mcp_versions[i]; i++)
        if (strcmp(version, mcp_versions[i]) == 0)
            return true;
    return false;
}

/* The tools of the document's x-mcp-tools, with their schemas inlined.
 * A tool whose schema is missing is a build's bug: it is left out and
 * said, and the unit test of the document fails on it. */
static json_t *load_tools(void)
{
    json_t *doc = api_doc_load(), *tools = json_array(), *t;
    size_t i;

    json_array_foreach(json_object_get(doc, "x-mcp-tools"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        json_t *in = api_doc_schema(
            doc, json_string_value(json_object_get(t, "input")));
        json_t *out = api_doc_schema(
            doc, json_string_value(json_object_get(t, "output")));

        if (!name || !in || !out) {
            fprintf(stderr, "nbcanvas: MCP tool %zu has no schema\n", i);
            json_decref(in);
            json_decref(out);
            continue;
        }
        json_array_append_new(
            tools, json_pack("{s:s, s:O, s:O, s:o, s:o}", "name", name,
                             "title", json_object_get(t, "title"),
                             "description", json_object_get(t, "description"),
                             "inputSchema", in, "outputSchema", out));
    }
    json_decref(doc);
    return tools;
}

struct mcp *mcp_new(struct service *svc)
{
    struct mcp *m = xcalloc(1, sizeof(*m));

    m->svc = svc;
    pthread_mutex_init(&m->lock, NULL);
    list_init(&m->sessions);
    list_init(&m->running);
    m->tools = load_tools();
    return m;
}

void mcp_free(struct mcp *m)
{
    if (!m)
        return;
    while (!list_is_empty(&m->sessions)) {
        struct list_node *n = m->sessions.next;

        list_remove(n);
        free(list_entry(n, struct session, link));
    }
    json_decref(m->tools);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

enum mcp_kind mcp_classify(json_t *msg, struct err *err)
{
    json_t *id = json_object_get(msg, "id");
    json_t *method = json_object_get(msg, "method");
    json_t *params = json_object_get(msg, "params");
    const char *version = json_string_value(json_object_get(msg, "jsonrpc"));

    if (json_is_array(msg)) {
        err_set(err, MCP_INVALID_REQUEST,
                "batches are not supported: send one message a request");
        return MCP_BAD;
    }
    if (!json_is_object(msg) || !version || strcmp(version, "2.0") != 0) {
        err_set(err, MCP_INVALID_REQUEST,
                "not a JSON-RPC 2.0 message (jsonrpc must be \"2.0\")");
        return MCP_BAD;
    }
    if (id && !json_is_string(id) && !json_is_integer(id)) {
        err_set(err, MCP_INVALID_REQUEST, "id must be a string or an integer");
        return MCP_BAD;
    }
    if (!method) {
        if (id &&
            (json_object_get(msg, "result") || json_object_get(msg, "error")))
            return MCP_RESPONSE;
        err_set(err, MCP_INVALID_REQUEST, "a request needs a method");
        return MCP_BAD;
    }
    if (!json_is_string(method)) {
        err_set(err, MCP_INVALID_REQUEST, "method must be a string");
        return MCP_BAD;
    }
    if (params && !json_is_object(params)) {
        err_set(err, MCP_INVALID_REQUEST, "params must be an object");
        return MCP_BAD;
    }
    return id ? MCP_REQUEST : MCP_NOTIFICATION;
}

json_t *mcp_error(json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                     id ? id : json_null(), "error", "code", code, "message",
                     message);
}

static json_t *result(json_t *id, json_t *r)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result",
                     r);
}

/* Sessions ---------------------------------------------------------- */

/* Drops sessions unused for an hour (lock held). */
static void expire(struct mcp *m, long long now)
{
    struct list_node *n = m->sessions.next;

    while (n != &m->sessions) {
        struct session *s = list_entry(n, struct session, link);

        n = n->next;
        if (now - s->last_used_ms > SESSION_IDLE_MS) {
            list_remove(&s->link);
            free(s);
            m->nsessions--;
        }
    }
}

static struct session *find(struct mcp *m, const char *tenant, const char *id)
{
    struct list_node *n;

    list_for_each(n, &m->sessions) {
        struct session *s = list_entry(n, struct session, link);

        if (strcmp(s->id, id) == 0 && strcmp(s->tenant, tenant) == 0)
            return s;
    }
    return NULL;
}

int mcp_session_open(struct mcp *m, const char *tenant,
                     char id[MCP_SESSION_ID_LEN], struct err *err)
{
    long long now = util_now_ms();
    struct session *s;

    struct list_node *n;
    long mine = 0;

    pthread_mutex_lock(&m->lock);
    expire(m, now);
    list_for_each(n, &m->sessions) {
        mine += strcmp(list_entry(n, struct session, link)->tenant, tenant) ==
                0;
    }
    if (m->nsessions >= MAX_SESSIONS || mine >= MAX_SESSIONS_PER_TENANT) {
        pthread_mutex_unlock(&m->lock);
        return err_set(err, ERR_BUSY,
                       "too many MCP sessions (%ld of this key's, %d in all): "
                       "end one with DELETE /mcp",
                       mine, MAX_SESSIONS);
    }
    s = xcalloc(1, sizeof(*s));
    ids_new(s->id);
    snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
    s->last_used_ms = now;
    list_push_front(&m->sessions, &s->link);
    m->nsessions++;
    snprintf(id, MCP_SESSION_ID_LEN, "%s", s->id);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int mcp_session_check(struct mcp *m, const char *tenant, const char *id)
{
    long long now = util_now_ms();
    struct session *s;

    pthread_mutex_lock(&m->lock);
    expire(m, now);
    s = id ? find(m, tenant, id) : NULL;
    if (s)
        s->last_used_ms = now;
    pthread_mutex_unlock(&m->lock);
    return s ? 0 : ERR_NOT_FOUND;
}

/* Stops the calls of session whose id is call_id, or all of its calls
 * when call_id is NULL (lock held). */
static void cancel_calls(struct mcp *m, const char *session,
                         const char *call_id)
{
    struct list_node *n;

    list_for_each(n, &m->running) {
        struct running *r = list_entry(n, struct running, link);

        if (strcmp(r->session, session) != 0 ||
            (call_id && strcmp(r->id, call_id) != 0))
            continue;
        if (r->stop)
            atomic_store(r->stop, true);
        if (r->sse)
            sse_stop(r->sse);
    }
}

int mcp_session_end(struct mcp *m, const char *tenant, const char *id)
{
    struct session *s;

    pthread_mutex_lock(&m->lock);
    s = find(m, tenant, id);
    if (s) {
        cancel_calls(m, s->id, NULL);
        list_remove(&s->link);
        free(s);
        m->nsessions--;
    }
    pthread_mutex_unlock(&m->lock);
    return s ? 0 : ERR_NOT_FOUND;
}

long mcp_session_count(struct mcp *m)
{
    long n;

    pthread_mutex_lock(&m->lock);
    n = m->nsessions;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* Requests ---------------------------------------------------------- */

static json_t *initialize(json_t *params)
{
    const char *asked = json_string_value(
        json_object_get(params, "protocolVersion"));

    /* the client's version when it is one of ours, else our newest: the
     * client then decides whether it can go on */
    return json_pack(
        "{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion",
        mcp_version_known(asked) ? asked : mcp_versions[0], "capabilities",
        "tools", "listChanged", 0, "serverInfo", "name", "nbcanvas", "title",
        "nbcanvas: code into rendered Jupyter notebooks", "version",
        NBCANVAS_VERSION, "instructions",
        "Run Python in isolated sandboxes with no network. render_notebook "
        "runs cells once and returns their outputs and figures; "
        "create_session, execute and end_session keep a live kernel between "
        "calls; run_code runs a program in another language.");
}

/* The id's JSON text, the key of a call under way. */
static void id_text(char out[CALL_ID_MAX], json_t *id)
{
    char *s = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);

    snprintf(out, CALL_ID_MAX, "%s", s ? s : "");
    free(s);
}

static json_t *call_tool(struct mcp *m, const struct mcp_call *call,
                         json_t *id, json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    json_t *tool = NULL, *t, *out = NULL, *empty = NULL;
    struct running r = {0};
    struct err err = ERR_INIT;
    size_t i;
    int rc;

    if (!name)
        return mcp_error(id, MCP_INVALID_PARAMS,
                         "params.name must name a tool (tools/list)");
    json_array_foreach(m->tools, i, t) {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            tool = t;
    }
    if (!tool) {
        char msg[320];

        snprintf(msg, sizeof(msg), "unknown tool '%.200s' (tools/list)", name);
        return mcp_error(id, MCP_INVALID_PARAMS, msg);
    }
    if (args && !json_is_object(args))
        return mcp_error(id, MCP_INVALID_PARAMS,
                         "params.arguments must be an object");
    if (!args)
        args = empty = json_object();
    snprintf(r.session, sizeof(r.session), "%s", call->session);
    id_text(r.id, id);
    r.stop = call->stop;
    r.sse = call->sse;
    pthread_mutex_lock(&m->lock);
    list_push_front(&m->running, &r.link);
    pthread_mutex_unlock(&m->lock);
    rc = mcp_tool_run(call, name, args, json_object_get(tool, "inputSchema"),
                      &out, &err);
    pthread_mutex_lock(&m->lock);
    list_remove(&r.link);
    pthread_mutex_unlock(&m->lock);
    json_decref(empty);
    if (rc < 0)
        return mcp_error(id, MCP_INVALID_PARAMS, err.msg);
    return result(id, out);
}

json_t *mcp_answer(struct mcp *m, const struct mcp_call *call, json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    json_t *id = json_object_get(msg, "id");
    json_t *params = json_object_get(msg, "params");
    char text[200];

    if (strcmp(method, "initialize") == 0)
        return result(id, initialize(params));
    if (strcmp(method, "ping") == 0)
        return result(id, json_object());
    if (strcmp(method, "tools/list") == 0)
        return result(id, json_pack("{s:O}", "tools", m->tools));
    if (strcmp(method, "tools/call") == 0)
        return call_tool(m, call, id, params);
    snprintf(text, sizeof(text), "method '%.120s' is not served here", method);
    return mcp_error(id, MCP_METHOD_NOT_FOUND, text);
}

void mcp_notification(struct mcp *m, const struct mcp_call *call, json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    json_t *params = json_object_get(msg, "params");
    json_t *id = json_object_get(params, "requestId");
    char key[CALL_ID_MAX];

    if (strcmp(method, "notifications/cancelled") != 0 || !id)
        return;
    id_text(key, id);
    pthread_mutex_lock(&m->lock);
    cancel_calls(m, call->session, key);
    pthread_mutex_unlock(&m->lock);
}

bool mcp_wants_progress(json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    json_t *token = json_object_get(meta, "progressToken");

    return method && strcmp(method, "tools/call") == 0 &&
           (json_is_string(token) || json_is_integer(token));
}

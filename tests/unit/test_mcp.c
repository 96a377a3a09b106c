/*
 * The MCP protocol layer (mcp.c, mcp_tools.c's argument check) and the
 * OpenAPI document it takes its schemas from (api_doc.c), without an
 * engine: what a message is, the answers that need no sandbox, sessions
 * and their owners (a cancellation is tried end to end in
 * tests/mcp/mcp.test.mjs, with the SDK); and the
 * document holding the route table's paths, methods and query
 * parameters, with every tool's schema standing alone.
 */
#include "../check.h"
#include "nbcanvas/api_doc.h"
#include "nbcanvas/http.h"
#include "nbcanvas/mcp.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *parse(const char *text)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);

    if (!j)
        abort();
    return j;
}

static enum mcp_kind kind_of(const char *text)
{
    struct err err = ERR_INIT;
    json_t *j = parse(text);
    enum mcp_kind k = mcp_classify(j, &err);

    if (k == MCP_BAD && err.code != MCP_INVALID_REQUEST)
        k = (enum mcp_kind) - 1;
    json_decref(j);
    return k;
}

TEST(mcp__messages_are_told_apart)
{
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}") ==
          MCP_REQUEST);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"x\"}") ==
          MCP_REQUEST);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}") ==
          MCP_NOTIFICATION);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}") ==
          MCP_RESPONSE);
    CHECK(kind_of("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]") ==
          MCP_BAD);
    CHECK(kind_of("{\"id\":1,\"method\":\"ping\"}") == MCP_BAD);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"p\"}") ==
          MCP_BAD);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"p\"}") ==
          MCP_BAD);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}") == MCP_BAD);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\","
                  "\"params\":[]}") == MCP_BAD);
    CHECK(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1}") == MCP_BAD);
    CHECK(kind_of("\"2.0\"") == MCP_BAD);
}

/* The answer to text in a session of tenant "t". */
static json_t *answer(struct mcp *m, const char *text)
{
    atomic_bool cancel = false;
    struct mcp_call call = {.session = "s",
                            .request_id = "r",
                            .base_url = "http://x",
                            .cancel = &cancel,
                            .stop = &cancel};
    json_t *msg = parse(text), *a = mcp_answer(m, &call, msg);

    json_decref(msg);
    return a;
}

static long long error_code(json_t *a)
{
    return json_integer_value(
        json_object_get(json_object_get(a, "error"), "code"));
}

TEST(mcp__answers_that_need_no_sandbox)
{
    struct mcp *m = mcp_new(NULL);
    json_t *a;

    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\","
                  "\"params\":{\"protocolVersion\":\"2025-06-18\"}}");
    CHECK_STREQ(json_string_value(json_object_get(json_object_get(a, "result"),
                                                  "protocolVersion")),
                "2025-06-18");
    CHECK(json_integer_value(json_object_get(a, "id")) == 3);
    json_decref(a);
    /* a version not served: our newest, and the client decides */
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\","
                  "\"params\":{\"protocolVersion\":\"1999-01-01\"}}");
    CHECK_STREQ(json_string_value(json_object_get(json_object_get(a, "result"),
                                                  "protocolVersion")),
                mcp_versions[0]);
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    CHECK(json_object_size(json_object_get(a, "result")) == 0);
    CHECK_STREQ(json_string_value(json_object_get(a, "id")), "p");
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    CHECK(json_array_size(
              json_object_get(json_object_get(a, "result"), "tools")) == 8);
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"nope\"}");
    CHECK(error_code(a) == MCP_METHOD_NOT_FOUND);
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                  "\"params\":{\"name\":\"nope\"}}");
    CHECK(error_code(a) == MCP_INVALID_PARAMS);
    json_decref(a);
    /* arguments are checked by name before any work */
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                  "\"params\":{\"name\":\"run_code\",\"arguments\":"
                  "{\"langauge\":\"c\",\"code\":\"\"}}}");
    CHECK(error_code(a) == MCP_INVALID_PARAMS);
    CHECK(strstr(json_string_value(
                     json_object_get(json_object_get(a, "error"), "message")),
                 "'langauge'") != NULL);
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                  "\"params\":{\"name\":\"execute\",\"arguments\":"
                  "{\"code\":\"1\"}}}");
    CHECK(error_code(a) == MCP_INVALID_PARAMS);
    CHECK(strstr(json_string_value(
                     json_object_get(json_object_get(a, "error"), "message")),
                 "session_id") != NULL);
    json_decref(a);
    a = answer(m, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                  "\"params\":{\"name\":\"run_code\",\"arguments\":[]}}");
    CHECK(error_code(a) == MCP_INVALID_PARAMS);
    json_decref(a);
    mcp_free(m);
}

TEST(mcp__sessions_belong_to_their_tenant)
{
    struct mcp *m = mcp_new(NULL);
    char a[MCP_SESSION_ID_LEN], b[MCP_SESSION_ID_LEN];

    CHECK(mcp_session_open(m, "acme", a, NULL) == 0);
    CHECK(mcp_session_open(m, "other", b, NULL) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK(mcp_session_check(m, "acme", a) == 0);
    CHECK(mcp_session_check(m, "other", a) == ERR_NOT_FOUND);
    CHECK(mcp_session_check(m, "acme", "nope") == ERR_NOT_FOUND);
    CHECK(mcp_session_end(m, "other", a) == ERR_NOT_FOUND);
    CHECK(mcp_session_end(m, "acme", a) == 0);
    CHECK(mcp_session_check(m, "acme", a) == ERR_NOT_FOUND);
    CHECK(mcp_session_count(m) == 1);
    /* one key cannot fill the table for the others */
    for (int i = 0; i < 64; i++)
        CHECK(mcp_session_open(m, "greedy", a, NULL) == 0);
    CHECK(mcp_session_open(m, "greedy", a, NULL) == ERR_BUSY);
    CHECK(mcp_session_open(m, "acme", b, NULL) == 0);
    mcp_free(m);
}

/* The route table's path in the document's spelling: "*" is {id}, "**"
 * {path}. */
static void doc_path(char *out, size_t len, const char *route)
{
    size_t n = 0;

    for (; *route && n + 8 < len; route++) {
        if (route[0] == '*' && route[1] == '*') {
            n += (size_t)snprintf(out + n, len - n, "{path}");
            route++;
        } else if (*route == '*') {
            n += (size_t)snprintf(out + n, len - n, "{id}");
        } else {
            out[n++] = *route;
        }
    }
    out[n] = '\0';
}

static json_t *resolve_param(json_t *doc, json_t *p)
{
    const char *ref = json_string_value(json_object_get(p, "$ref"));

    if (!ref)
        return p;
    return json_object_get(
        json_object_get(json_object_get(doc, "components"), "parameters"),
        strrchr(ref, '/') + 1);
}

/* The query parameters the document gives method on path, comma-separated
 * in the order given. */
static void doc_query(json_t *doc, json_t *op, char *out, size_t len)
{
    json_t *p;
    size_t i;

    out[0] = '\0';
    json_array_foreach(json_object_get(op, "parameters"), i, p) {
        p = resolve_param(doc, p);
        if (strcmp(json_string_value(json_object_get(p, "in")), "query"))
            continue;
        snprintf(out + strlen(out), len - strlen(out), "%s%s",
                 out[0] ? "," : "",
                 json_string_value(json_object_get(p, "name")));
    }
}

TEST(api_doc__names_the_route_tables_routes_and_query_parameters)
{
    json_t *doc = api_doc_load(), *paths = json_object_get(doc, "paths");
    const char *method, *path, *query, *key;
    size_t i, routes = 0, documented = 0;
    json_t *item, *op;

    CHECK(doc != NULL);
    CHECK_STREQ(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    for (i = 0; http_route_at(i, &method, &path, &query); i++) {
        char p[256], m[16], q[256];
        size_t j;

        doc_path(p, sizeof(p), path);
        for (j = 0; method[j] && j + 1 < sizeof(m); j++)
            m[j] = (char)(method[j] - 'A' + 'a');
        m[j] = '\0';
        op = json_object_get(json_object_get(paths, p), m);
        if (!op)
            fprintf(stderr, "  not in the document: %s %s\n", method, p);
        CHECK(op != NULL);
        doc_query(doc, op, q, sizeof(q));
        if (strcmp(q, query ? query : "") != 0)
            fprintf(stderr, "  %s %s: query %s in the document, %s here\n",
                    method, p, q, query ? query : "");
        CHECK_STREQ(q, query ? query : "");
        routes++;
    }
    json_object_foreach(paths, key, item) {
        const char *k;

        json_object_foreach(item, k, op) {
            documented += strcmp(k, "parameters") != 0;
        }
    }
    CHECK(routes == documented); /* and nothing the service does not have */
    json_decref(doc);
}

static bool has_ref(json_t *v)
{
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_object(v)) {
        if (json_object_get(v, "$ref"))
            return true;
        json_object_foreach(v, key, item) {
            if (has_ref(item))
                return true;
        }
    }
    json_array_foreach(v, i, item) {
        if (has_ref(item))
            return true;
    }
    return false;
}

TEST(api_doc__every_tool_schema_stands_alone)
{
    json_t *doc = api_doc_load(), *t;
    size_t i;

    json_array_foreach(json_object_get(doc, "x-mcp-tools"), i, t) {
        json_t *in = api_doc_schema(
            doc, json_string_value(json_object_get(t, "input")));
        json_t *out = api_doc_schema(
            doc, json_string_value(json_object_get(t, "output")));

        CHECK(in && out);
        CHECK_STREQ(json_string_value(json_object_get(in, "type")), "object");
        CHECK_STREQ(json_string_value(json_object_get(out, "type")), "object");
        CHECK(!has_ref(in) && !has_ref(out));
        json_decref(in);
        json_decref(out);
    }
    CHECK(i == 8);
    CHECK(api_doc_schema(doc, "NoSuchSchema") == NULL);
    json_decref(doc);
}

/* Fuzz target: one POST /mcp body through the JSON-RPC layer, as
 * http_mcp.c takes it: parsed, classified, and answered when the answer
 * needs no sandbox (initialize, ping, tools/list, an unknown method, a
 * notification); a tools/call's arguments go through the tool's argument
 * check against its schema (what a tool does with them after that is the
 * request parser's, which fuzz_request covers). Nothing may crash, leak or
 * read out of bounds, whatever the bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nbcanvas/mcp.h"
#include "nbcanvas/mcp_tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *tool_schema(struct mcp *m, const char *name)
{
    atomic_bool cancel = false;
    struct mcp_call call = {.session = "s", .cancel = &cancel};
    json_t *msg = json_pack("{s:s, s:i, s:s}", "jsonrpc", "2.0", "id", 1,
                            "method", "tools/list");
    json_t *list = mcp_answer(m, &call, msg), *t, *found = NULL;
    size_t i;

    json_array_foreach(
        json_object_get(json_object_get(list, "result"), "tools"), i, t) {
        if (name &&
            strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            found = json_incref(json_object_get(t, "inputSchema"));
    }
    json_decref(list);
    json_decref(msg);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mcp *m;
    atomic_bool cancel = false;
    struct mcp_call call = {.session = "s",
                            .request_id = "r",
                            .base_url = "http://x",
                            .cancel = &cancel,
                            .stop = &cancel};
    struct err err = ERR_INIT;
    json_t *msg, *answer, *params;
    const char *method;

    if (!m)
        m = mcp_new(NULL); /* no service: nothing here may reach one */
    msg = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!msg)
        return 0;
    switch (mcp_classify(msg, &err)) {
    case MCP_REQUEST:
        method = json_string_value(json_object_get(msg, "method"));
        params = json_object_get(msg, "params");
        if (strcmp(method, "tools/call") != 0) {
            answer = mcp_answer(m, &call, msg);
            json_decref(answer);
        } else if (json_is_object(json_object_get(params, "arguments"))) {
            json_t *schema = tool_schema(
                m, json_string_value(json_object_get(params, "name")));

            if (schema)
                mcp_tool_check_args("t", json_object_get(params, "arguments"),
                                    schema, &err);
            json_decref(schema);
        }
        break;
    case MCP_NOTIFICATION:
        mcp_notification(m, &call, msg);
        break;
    default:
        break;
    }
    json_decref(msg);
    return 0;
}

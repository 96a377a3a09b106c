#ifndef NBCANVAS_MCP_TOOLS_H
#define NBCANVAS_MCP_TOOLS_H

/*
 * The MCP tools (render_notebook, run_code, create_session, execute,
 * get_notebook, end_session, list_languages): each turns its arguments
 * into the body of the HTTP route it stands for, so the request goes
 * through the same parser and checks as the HTTP API, runs the same
 * pipeline, and answers an MCP CallToolResult: text and images as
 * content, a link to the rendered page, the route's JSON answer as
 * structuredContent. The user's code failing, or the service saying no
 * (busy, not found, a timeout), is a result with isError; only arguments
 * that are malformed fail the call itself.
 */

#include <jansson.h>

#include "nbcanvas/err.h"
#include "nbcanvas/mcp.h"

/* An image past this many base64 bytes comes as a link, not inline. */
#define MCP_IMAGE_MAX (1 << 20)

/* Runs tool name with args (borrowed; schema: the tool's inputSchema, for
 * the argument names). 0: *out is the CallToolResult (new reference).
 * ERR_INVALID: the arguments are malformed, err says which. */
int mcp_tool_run(const struct mcp_call *call, const char *name, json_t *args,
                 json_t *schema, json_t **out, struct err *err);

/* The first step of mcp_tool_run: every argument one that schema names,
 * every required one there. 0, or ERR_INVALID naming the argument. */
int mcp_tool_check_args(const char *tool, json_t *args, json_t *schema,
                        struct err *err);

#endif

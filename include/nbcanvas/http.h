#ifndef NBCANVAS_HTTP_H
#define NBCANVAS_HTTP_H

/*
 * The HTTP front (libmicrohttpd): the route table, body limits, request
 * ids, the error format, and the mapping of ERR_* codes to statuses. The
 * handlers parse, call render/runner, and serialise; no business logic.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/service.h"

struct http_server;

/* Starts serving svc (borrowed, must outlive the server) on cfg.listen. */
int http_start(struct http_server **out, struct service *svc, struct err *err);
/* Stops accepting, waits up to drain_s for in-flight requests to finish,
 * then closes what is left and frees the server: 0. A positive count is of
 * the stream jobs that did not stop once cancelled: the server is left as
 * it is, and so must the service be, which they still use. */
long http_stop(struct http_server *srv, long drain_s);

/* A new error body {"error": {"code", "message", ...details}}; details
 * (borrowed, may be NULL) are merged into the error object. */
json_t *http_error_json(int code, const char *message, json_t *details);

/* The route table, for the test that holds it and the OpenAPI document
 * together: the i-th route's method, path ("*" a segment, "**" the rest)
 * and query parameters (comma-separated, NULL for none); false past the
 * last. */
bool http_route_at(size_t i, const char **method, const char **path,
                   const char **query);

#endif

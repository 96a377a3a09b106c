/*
 * The one table that ties internal error codes to the API's error names and
 * HTTP statuses, so the mapping lives in exactly one place.
 */
#include "nbcanvas/err.h"

#include <stdarg.h>
#include <stdio.h>

#include "nbcanvas/util.h"

static const struct {
    int code;
    const char *name;
    unsigned status;
} table[] = {
    {ERR_INTERNAL, "internal", 500},
    {ERR_INVALID, "invalid_request", 400},
    {ERR_TOO_LARGE, "payload_too_large", 413},
    {ERR_MEDIA_TYPE, "unsupported_media_type", 415},
    {ERR_CELL, "cell_error", 422},
    {ERR_TIMEOUT, "timeout", 422},
    {ERR_MEMORY, "memory_limit", 422},
    {ERR_OUTPUT, "output_limit", 422},
    {ERR_BUSY, "busy", 429},
    {ERR_ENGINE, "engine_unavailable", 503},
    {ERR_NOT_FOUND, "not_found", 404},
    {ERR_METHOD, "method_not_allowed", 405},
    {ERR_CANCELLED, "cancelled", 499},
    {ERR_UNAUTHENTICATED, "unauthenticated", 401},
    {ERR_HOST, "host_not_allowed", 403},
    {ERR_RATE_LIMITED, "rate_limited", 429},
    {ERR_SESSION_BUSY, "session_busy", 409},
    {ERR_PACKAGE, "package_unavailable", 422},
    {ERR_INDEX, "index_unavailable", 503},
    {ERR_ORIGIN, "origin_not_allowed", 403},
    {ERR_SQL, "sql_error", 422},
    {ERR_DATASOURCE, "datasource_unavailable", 503},
    {ERR_FORBIDDEN, "datasource_forbidden", 403},
};

int err_set(struct err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *err_name(int code)
{
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == code)
            return table[i].name;
    return "internal";
}

unsigned err_http_status(int code)
{
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].code == code)
            return table[i].status;
    return 500;
}

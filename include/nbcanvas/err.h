#ifndef NBCANVAS_ERR_H
#define NBCANVAS_ERR_H

/*
 * Errors: functions return 0 or a negative ERR_* code and describe the
 * failure in a caller-owned, fixed-size struct err (no allocation, safe
 * across threads). Only http.c turns a code into an HTTP status; the table
 * in err.c gives each code its API name (../API.md's error codes).
 */

enum err_code {
    ERR_OK = 0,
    ERR_INTERNAL = -1,         /* 500 internal: a bug or an unexpected reply */
    ERR_INVALID = -2,          /* 400 invalid_request */
    ERR_TOO_LARGE = -3,        /* 413 payload_too_large */
    ERR_MEDIA_TYPE = -4,       /* 415 unsupported_media_type */
    ERR_CELL = -5,             /* 422 cell_error */
    ERR_TIMEOUT = -6,          /* 422 timeout */
    ERR_MEMORY = -7,           /* 422 memory_limit */
    ERR_OUTPUT = -8,           /* 422 output_limit */
    ERR_BUSY = -9,             /* 429 busy */
    ERR_ENGINE = -10,          /* 503 engine_unavailable */
    ERR_NOT_FOUND = -11,       /* 404 not_found (routes; engine objects) */
    ERR_METHOD = -12,          /* 405 method_not_allowed */
    ERR_CANCELLED = -13,       /* the client went away; nobody to answer */
    ERR_UNAUTHENTICATED = -14, /* 401 unauthenticated */
    ERR_HOST = -15,            /* 403 host_not_allowed */
    ERR_RATE_LIMITED = -16,    /* 429 rate_limited */
    ERR_SESSION_BUSY = -17,    /* 409 session_busy */
    ERR_PACKAGE = -18,         /* 422 package_unavailable */
    ERR_INDEX = -19,           /* 503 index_unavailable */
    ERR_ORIGIN = -20,          /* 403 origin_not_allowed */
    ERR_SQL = -21,             /* 422 sql_error */
    ERR_DATASOURCE = -22,      /* 503 datasource_unavailable */
    ERR_FORBIDDEN = -23,       /* 403 datasource_forbidden */
};

struct err {
    int code;
    char msg[256];
};

#define ERR_INIT                                                              \
    {                                                                         \
        0, ""                                                                 \
    }

/* Records code and a one-line message in err (if non-NULL); returns code. */
int err_set(struct err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The API's name for a code, e.g. "invalid_request". */
const char *err_name(int code);
/* The HTTP status for a code. */
unsigned err_http_status(int code);

#endif

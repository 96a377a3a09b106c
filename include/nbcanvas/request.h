#ifndef NBCANVAS_REQUEST_H
#define NBCANVAS_REQUEST_H

/*
 * Parsing and validating request bodies (POST /v1/render, POST /v1/run,
 * POST /v1/sessions and its execute)
 * into plain structs. Everything a client can get wrong is caught here and
 * answered with ERR_INVALID and a message that names the field, before any
 * container exists.
 */

#include <jansson.h>
#include <stdbool.h>

#include "nbcanvas/config.h"
#include "nbcanvas/err.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/tarball.h"
#include "nbcanvas/tenants.h"

#define REQUEST_MAX_FILES 64
#define REQUEST_MAX_NAME 255

enum render_format { FORMAT_HTML, FORMAT_ZIP, FORMAT_IPYNB, FORMAT_JSON };

struct render_request {
    json_t *notebook; /* owned; the notebook to execute */
    json_t *source;   /* owned; cells or notebook as sent (the cache key) */
    bool uploaded;    /* a whole notebook came (not cells): validate it */
    const struct kernel_info *kernel;
    enum render_format format;
    bool include_input;
    char template_name[16];
    long timeout_s;
    bool allow_errors;
    bool cache;
    bool structured; /* chart/table data (default: json and zip) */
    bool force_cold; /* not from the body: skip the warm pool */
    bool gzip_ok;    /* not from the body: the client takes gzip */
    /* not from the body: keep the results (render_kept) */
    bool keep;
    struct tenant tenant;   /* not from the body: who asked */
    struct tar_files files; /* request files, decoded */
    json_t *packages;       /* owned; checked requirements, or NULL */
    /* Not from the body: a streaming client's progress, called with each
     * event (borrowed) as the executor reports it; NULL when not streaming. */
    void (*on_event)(void *ctx, json_t *event);
    void *event_ctx;
};

struct run_request {
    char language[64];
    char *code;
    size_t code_len;
    char *stdin_data;
    size_t stdin_len;
    long timeout_s;
    struct tar_files files;
    struct tenant tenant; /* not from the body: who asked */
};

/* POST /v1/sql. */
enum sql_format { SQL_HTML, SQL_JSON, SQL_CSV };

struct sql_request {
    char datasource[64];
    char *query; /* owned */
    size_t query_len;
    enum sql_format format;
    char template_name[16];
};

/* POST /v1/sessions. */
struct session_request {
    const struct kernel_info *kernel;
    long idle_timeout_s;
    json_t *notebook;       /* owned; no cells, the kernel's metadata */
    struct tar_files files; /* placed in the working directory */
    json_t *packages;       /* owned; checked requirements, or NULL */
    struct tenant tenant;   /* not from the body: who asked */
    bool gateway; /* not from the body: a gateway kernel (/api/kernels) */
};

/* POST /v1/sessions/{id}/execute. */
struct execute_request {
    json_t *notebook; /* owned; the code as the one cell of a notebook */
    long timeout_s;
    struct tar_files files;
    json_t *packages; /* owned; from %pip install lines, or NULL */
};

/* Parses a POST /v1/sql body; out is released with request_sql_release
 * even when parsing fails. */
int request_parse_sql(struct sql_request *out, const char *body, size_t len,
                      struct err *err);
void request_sql_release(struct sql_request *r);

/* Parses a render request body; out is released with
 * request_render_release even when parsing fails. */
int request_parse_render(struct render_request *out, const char *body,
                         size_t len, const struct config *cfg,
                         struct err *err);
void request_render_release(struct render_request *r);
/* "html", "zip", "ipynb" or "json". */
const char *request_format_name(enum render_format format);

/* Parses a run request body; out is released with request_run_release
 * even when parsing fails. */
int request_parse_run(struct run_request *out, const char *body, size_t len,
                      const struct config *cfg, struct err *err);
void request_run_release(struct run_request *r);

/* GET /v1/sessions/{id}/notebook and /v1/results/{id}: the query. */
struct export_request {
    enum render_format format;
    char template_name[16];
    bool include_input;
};

/* Reads the query's values (each NULL when absent: html, lab, false). */
int request_parse_export(struct export_request *out, const char *format,
                         const char *template_name, const char *include_input,
                         struct err *err);

/* Parse the session requests; out is released with its release function
 * even when parsing fails. kernel: the session's. */
int request_parse_session(struct session_request *out, const char *body,
                          size_t len, const struct config *cfg,
                          struct err *err);
void request_session_release(struct session_request *r);
int request_parse_execute(struct execute_request *out, const char *body,
                          size_t len, const struct config *cfg,
                          const struct kernel_info *kernel, struct err *err);
void request_execute_release(struct execute_request *r);

/* True when name is a safe relative path for a request file: not empty,
 * at most REQUEST_MAX_NAME bytes, no NUL or backslash, not absolute, no
 * empty, "." or ".." component, and not under the reserved ".nbcanvas". */
bool request_file_name_ok(const char *name, size_t len);

#endif

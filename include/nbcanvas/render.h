#ifndef NBCANVAS_RENDER_H
#define NBCANVAS_RENDER_H

/*
 * The render pipeline: a validated request in, the answer out (a page, a
 * zip, a notebook or JSON), or an error with its details. One fresh
 * sandbox per request; see docs/ARCHITECTURE.md for the walk through it.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/err.h"
#include "nbcanvas/payload.h"
#include "nbcanvas/request.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/pipeline.h"
#include "nbcanvas/tarball.h"

/* A render's results kept to build any format later: what a streamed
 * render leaves for GET /v1/results/{id}. */
struct render_kept {
    char id[37];              /* the request's: the json format's "id" */
    char result_id[ID_MAX];   /* what /v1/results/{id} names (ids.h) */
    struct tar_files results; /* the job's results, artifacts too */
    json_t *notebook;         /* the executed notebook */
    json_t *timing;           /* timing_ms */
};

void render_kept_free(struct render_kept *k);

struct render_result {
    int code;              /* 0, or the ERR_* of the failure */
    struct payload answer; /* owned: the answer on success; gzipped only
                              when req->gzip_ok */
    json_t *details; /* owned: extra fields of the error object, or NULL */
    char message[256];
    char server_timing[256];
    bool cache_hit;
    bool warm; /* ran in a sandbox from the warm pool */
    /* With req->keep, on success: the results (owned), and no body (a
     * cache hit too: the cached zip read back). */
    struct render_kept *kept;
};

/* Runs req and fills out (release with render_result_release). Returns
 * out->code. cancel, when set, ends the job early (client gone). The
 * queries of req's %%sql cells run first (sql_cells.h): their rows join
 * req->files, and req->cache is turned off unless every datasource they
 * use has a cache_ttl_s. */
int render_run(struct render_result *out, const struct pipeline *deps,
               struct render_request *req, const char *request_id,
               const atomic_bool *cancel);
void render_result_release(struct render_result *r);

#endif

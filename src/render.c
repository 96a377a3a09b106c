/*
 * The render pipeline, one fresh sandbox per request:
 *
 *   queue     wait for a job slot (jobs.c)
 *   sandbox   take a warm container from the pool, or create one
 *   execute   one kernel job (kernel_job.c): the request's files go in
 *             through the sandbox's relay, the service's own Jupyter
 *             client executes the notebook on the kernel (executor.c),
 *             sending progress events when the client streams, collects
 *             the files the notebook wrote (for a zip) and has a warm
 *             exporter make the page (exporter.c); then the container
 *             goes to the janitor, whatever happened
 *   answer    turn status.json, the executed notebook and the page into the
 *             requested format or into an error with details
 *
 * The notebook's deadline is the executor's; the job as a whole has
 * timeout_s plus a grace for kernel start and export.
 */
#include "nbcanvas/render.h"
#include "nbcanvas/sql_cells.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/bundle.h"
#include "nbcanvas/cache.h"
#include "nbcanvas/cache_key.h"
#include "nbcanvas/job_status.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/kernel_job.h"
#include "nbcanvas/formats.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/packages.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/results.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

#define RENDER_GRACE_S 30
#define LOG_TAIL_BYTES 512

struct render_job {
    const struct pipeline *deps;
    const struct render_request *req;
    const char *id;
    struct sandbox sb;
    bool warm; /* sb came from the pool, already started */
    struct job_spec spec;
    struct kernel_job kj;
    struct tar_files wheels; /* the packages' wheels, for the job */
    struct err err;
    json_t *details; /* error details found before the results */
    long long t_start, t_sql, t_packages, t_queued, t_sandbox, t_finished,
        t_fetched, t_done;
};

/* What the kernel job is asked to do (job_status.h's struct job_spec). */
static void build_spec(struct render_job *job)
{
    const struct render_request *r = job->req;
    const struct config *cfg = job->deps->cfg;

    job->spec = (struct job_spec){
        .kind = JOB_RENDER,
        .validate = r->uploaded,
        .events = r->on_event != NULL,
        .kernel = r->kernel->name,
        .timeout_s = r->timeout_s,
        .allow_errors = r->allow_errors,
        .include_input = r->include_input,
        .template_name = r->template_name,
        .max_html_bytes = cfg->max_html_bytes,
        .artifacts = r->format == FORMAT_ZIP || r->keep,
        .max_artifact_bytes = cfg->max_artifact_bytes,
        .max_result_bytes = cfg->max_result_bytes,
        .structured = r->structured,
        .table_rows = cfg->max_table_rows,
        .packages = r->packages,
        .wheels = &job->wheels,
    };
}

/* A kernel job ready to run (again, after a warm sandbox failed). */
static void reset_kernel_job(struct render_job *job)
{
    kernel_job_release(&job->kj);
    kernel_job_init(&job->kj, job->deps->cfg, job->deps->exporters, &job->err);
    job->kj.on_event = job->req->on_event;
    job->kj.event_ctx = job->req->event_ctx;
}

/* For the operator: the end of what the sandbox wrote on stderr when a
 * job failed for a reason other than the user's own error, escaped onto
 * one line (no terminal escapes, no forged log lines) and short. */
static void log_sandbox_stderr(struct render_job *job)
{
    char tail[LOG_TAIL_BYTES * 4 + 1];
    const struct buf *errout = &job->kj.link.errout;
    size_t n = errout->len;
    size_t from = n > LOG_TAIL_BYTES ? n - LOG_TAIL_BYTES : 0;

    util_escape(tail, sizeof(tail), errout->data + from, n - from);
    fprintf(stderr, "nbcanvas: job %s failed (%s); sandbox stderr: %s\n",
            job->id, job->err.msg, tail);
}

/* Runs the kernel job in the sandbox; a failure of the job itself (not
 * of the notebook, which its status says) is told apart here. */
static int run_kernel_job(struct render_job *job, const atomic_bool *cancel)
{
    const struct config *cfg = job->deps->cfg;
    long long deadline = util_now_ms() +
                         (job->req->timeout_s + RENDER_GRACE_S) * 1000LL;
    int rc;

    rc = kernel_job_render(&job->kj, &job->sb, &job->spec, job->req->notebook,
                           &job->req->files, deadline, cancel);
    if (rc == 0 || rc == ERR_CANCELLED)
        return rc;
    if (rc == ERR_TIMEOUT) {
        job->details = json_pack("{s:n}", "cell");
        return err_set(&job->err, ERR_TIMEOUT,
                       "the notebook ran past its %ld s deadline",
                       job->req->timeout_s);
    }
    if (rc == ERR_OUTPUT)
        return rc;
    if (sandbox_oom_killed(&job->sb))
        return err_set(&job->err, ERR_MEMORY,
                       "the sandbox ran out of memory (%lld MiB)",
                       cfg->render_limits.memory_bytes >> 20);
    /* Removed from outside: not the user's code's doing. */
    if (sandbox_lost(&job->sb))
        return sandbox_lost_error(&job->err);
    return rc;
}

/* Takes a warm sandbox if there is one, else makes a cold one; runs the
 * job. A warm sandbox that fails before it got the job (it died while
 * idle) is replaced by a cold one once. Ends with the container still
 * there (the caller destroys it) and its results written. */
static int execute(struct render_job *job, const atomic_bool *cancel)
{
    long long label = (long long)time(NULL) + job->req->timeout_s +
                      RENDER_GRACE_S * 2;
    int rc;

    build_spec(job);
    reset_kernel_job(job);
    rc = pool_sandbox(job->deps->pools[job->req->kernel->index],
                      job->deps->janitor, &job->sb, job->id, label,
                      job->req->force_cold, cancel, &job->warm, &job->err);
    job->t_sandbox = util_now_ms();
    if (rc < 0)
        return rc;
    rc = run_kernel_job(job, cancel);
    if (rc == 0 || !job->warm || job->kj.uploaded || rc == ERR_CANCELLED)
        return rc;
    /* A warm one that failed before it got the job: once more, cold. */
    sandbox_destroy(&job->sb);
    reset_kernel_job(job);
    rc = pool_sandbox(job->deps->pools[job->req->kernel->index],
                      job->deps->janitor, &job->sb, job->id, label, true,
                      cancel, &job->warm, &job->err);
    job->t_sandbox = util_now_ms();
    if (rc == 0)
        rc = run_kernel_job(job, cancel);
    return rc;
}

/* A failed notebook still answers with what it got done: the outputs of
 * the cells that ran, as the json format has them, so a canvas can show
 * the completed cells next to the error. */
static json_t *with_partial_cells(struct render_job *job, json_t *details)
{
    if (json_is_object(details) && json_is_object(job->kj.notebook))
        json_object_set_new(details, "cells",
                            results_cells_json(job->kj.notebook));
    return details;
}

/* Details that name only the cell, with the partial results. */
static json_t *cell_details(struct render_job *job, json_t *cell)
{
    return with_partial_cells(job, json_pack("{s:O}", "cell", cell));
}

/* Maps the job's status to an error (or 0 for ok). */
static int status_error(struct render_job *job, json_t **details)
{
    const struct config *cfg = job->deps->cfg;
    struct job_status st;
    char tail[256];
    json_t *cell;
    int rc = job_status_parse(&st, job->kj.status, &job->err);

    if (rc < 0)
        return rc;
    cell = st.cell >= 0 ? json_integer(st.cell) : json_null();
    switch (st.outcome) {
    case JOB_OK:
        break;
    case JOB_CELL_ERROR:
        *details = with_partial_cells(job, results_cell_error(job->kj.status));
        rc = err_set(&job->err, ERR_CELL, "cell %ld raised %s: %s", st.cell,
                     json_string_value(json_object_get(*details, "ename")),
                     json_string_value(json_object_get(*details, "evalue")));
        break;
    case JOB_TIMEOUT:
        *details = cell_details(job, cell);
        rc = err_set(&job->err, ERR_TIMEOUT,
                     "cell %ld was still running at the %ld s deadline",
                     st.cell, job->req->timeout_s);
        break;
    case JOB_KERNEL_DIED:
        rc = job_dead_kernel(&job->sb, job->kj.status, st.cell,
                             cfg->render_limits.memory_bytes, "", &job->err,
                             details);
        *details = with_partial_cells(job, *details);
        break;
    case JOB_OUTPUT_LIMIT:
        rc = err_set(&job->err, ERR_OUTPUT, "output too large: %s",
                     st.message);
        break;
    case JOB_INVALID_NOTEBOOK:
        rc = err_set(&job->err, ERR_INVALID, "not a valid notebook: %s",
                     st.message);
        break;
    case JOB_PACKAGE_FAILED:
        rc = err_set(&job->err, ERR_PACKAGE,
                     "the packages could not be installed: %s", st.message);
        break;
    case JOB_NOT_FOUND: /* a session's answer only */
    case JOB_FAILED:
        rc = err_set(&job->err, ERR_INTERNAL, "internal: %s",
                     st.message[0] ? st.message
                                   : kernel_job_stderr_tail(&job->kj, tail,
                                                            sizeof(tail)));
        break;
    }
    json_decref(cell);
    return rc;
}

static json_t *timing_json(struct render_job *job)
{
    json_t *t = json_deep_copy(json_object_get(job->kj.status, "timing_ms"));

    if (!json_is_object(t)) {
        json_decref(t);
        t = json_object();
    }
    json_object_set_new(t, "queue",
                        json_integer(job->t_queued - job->t_start));
    json_object_set_new(t, "total", json_integer(job->t_done - job->t_start));
    return t;
}

static int build_answer(struct render_job *job, struct render_result *out)
{
    json_t *timing = timing_json(job);
    struct formats_input in = {job->id, &job->kj.results, job->kj.notebook,
                               timing};
    int rc = formats_build(job->req->format, &in, &out->answer, &job->err);

    json_decref(timing);
    return rc;
}

/*
 * A streamed render is cached as the zip a plain zip request with the same
 * fields gets: it holds every part /v1/results builds from, so a repeated
 * stream is a hit too (its result event comes at once, with no progress
 * events before it).
 */
static void cache_key(const struct pipeline *deps,
                      const struct render_request *req, unsigned char key[32])
{
    struct render_request as_zip = *req; /* borrowed fields, not owned */

    if (req->keep)
        as_zip.format = FORMAT_ZIP;
    cache_keys_render(deps->cache_keys, &as_zip, key);
}

static void cache_put_kept(const struct pipeline *deps, struct render_kept *k,
                           const unsigned char key[32])
{
    struct formats_input in = {k->id, &k->results, k->notebook, k->timing};
    struct payload zip;

    if (formats_build(FORMAT_ZIP, &in, &zip, NULL) == 0)
        cache_put(deps->cache, key, &zip);
    payload_release(&zip);
}

/* Keeps a fresh answer in the cache, text compressed; a client that takes
 * gzip gets it as kept (answer->gzipped), so compressing costs it nothing
 * more. */
static void cache_answer(const struct pipeline *deps,
                         const unsigned char key[32], struct payload *answer,
                         bool gzip_ok)
{
    struct payload kept = *answer; /* borrowed */
    struct buf packed = BUF_INIT((size_t)-1);

    if (formats_compressible(answer->content_type, answer->len) &&
        tarball_gzip(&packed, answer->body, answer->len, NULL) == 0 &&
        packed.len < answer->len)
        kept = (struct payload){packed.data, packed.len, answer->content_type,
                                true};
    cache_put(deps->cache, key, &kept);
    if (kept.gzipped && gzip_ok) {
        free(answer->body);
        answer->body = buf_detach(&packed, &answer->len);
        answer->gzipped = true;
    }
    buf_release(&packed);
}

/* A cache hit (taken over) into *answer: as kept when the client takes
 * gzip (or it is not compressed), else unpacked, to at most `most` bytes
 * (the cache may be a Redis that others can write to: no gzip bomb).
 * False when it cannot be read. */
static bool answer_from_cache(struct payload *answer, struct payload *hit,
                              bool gzip_ok, size_t most)
{
    struct buf plain = BUF_INIT(most);
    const unsigned char *magic = (const unsigned char *)hit->body;

    if (hit->gzipped &&
        (hit->len < 18 || magic[0] != 0x1f || magic[1] != 0x8b)) {
        payload_release(hit); /* not a gzip stream */
        return false;
    }
    if (!hit->gzipped || gzip_ok) {
        *answer = *hit;
        return true;
    }
    if (tarball_gunzip(&plain, hit->body, hit->len, NULL) < 0) {
        buf_release(&plain);
        payload_release(hit);
        return false;
    }
    *answer = (struct payload){NULL, 0, hit->content_type, false};
    answer->body = buf_detach(&plain, &answer->len);
    payload_release(hit);
    return true;
}

/* Turns a cached zip (out->answer) into out->kept; false when it cannot. */
static bool kept_from_cache(struct render_result *out, const char *id)
{
    struct render_kept *k = xcalloc(1, sizeof(*k));
    const struct tar_entry *nb, *result;
    json_t *summary = NULL;

    snprintf(k->id, sizeof(k->id), "%s", id);
    ids_for_request(k->result_id, id);
    if (bundle_unzip(&k->results, out->answer.body, out->answer.len,
                     out->answer.len * 64 + (64 << 20), NULL) == 0 &&
        tarball_find(&k->results, JOB_RESULT_PAGE) &&
        (nb = tarball_find(&k->results, JOB_RESULT_NOTEBOOK)) &&
        (result = tarball_find(&k->results, "result.json"))) {
        k->notebook = json_loadb(nb->data, nb->len, JSON_ALLOW_NUL, NULL);
        summary = json_loadb(result->data, result->len, 0, NULL);
        k->timing = json_incref(json_object_get(summary, "timing_ms"));
    }
    json_decref(summary);
    payload_release(&out->answer);
    if (!json_is_object(k->notebook)) {
        render_kept_free(k);
        return false;
    }
    out->kept = k;
    return true;
}

/* Hands the job's results over to out->kept, to build any format
 * later (a streamed render's /v1/results). */
static void keep_results(struct render_job *job, struct render_result *out)
{
    struct render_kept *k = xcalloc(1, sizeof(*k));

    snprintf(k->id, sizeof(k->id), "%s", job->id);
    ids_for_request(k->result_id, job->id);
    k->results = job->kj.results;
    memset(&job->kj.results, 0, sizeof(job->kj.results));
    k->notebook = json_incref(job->kj.notebook);
    k->timing = timing_json(job);
    out->kept = k;
}

static void server_timing(struct render_job *job, struct render_result *out)
{
    json_t *t = json_object_get(job->kj.status, "timing_ms");
    long long exec = json_integer_value(json_object_get(t, "execute"));
    long long exp = json_integer_value(json_object_get(t, "export"));
    long long sandbox = job->t_sandbox ? job->t_sandbox - job->t_queued : 0;
    long long upload = json_integer_value(json_object_get(t, "kernel"));
    long long fetch = job->t_fetched ? job->t_fetched - job->t_finished : 0;
    long long install = json_integer_value(json_object_get(t, "install"));
    /* sql: %%sql cells' queries; packages: wheels resolved on the host;
     * install: pip in the sandbox */
    long long packages = job->t_packages ? job->t_packages - job->t_sql : 0;

    snprintf(out->server_timing, sizeof(out->server_timing),
             "sql;dur=%lld, packages;dur=%lld, queue;dur=%lld, "
             "sandbox;dur=%lld;desc=%s, upload;dur=%lld, install;dur=%lld, "
             "execute;dur=%lld, export;dur=%lld, fetch;dur=%lld, "
             "total;dur=%lld",
             job->t_sql - job->t_start, packages,
             job->t_queued - (job->t_packages ? job->t_packages : job->t_sql),
             sandbox, job->warm ? "warm" : "cold", upload, install, exec, exp,
             fetch, job->t_done - job->t_start);
}

/* The rows of req's %%sql cells, before anything else: they are part of
 * the request (and so of its cache key). */
static int run_sql_cells(struct render_result *out,
                         const struct pipeline *deps,
                         struct render_request *req, const atomic_bool *cancel)
{
    struct sql_cells_info info;
    struct err err = ERR_INIT;
    int rc = sql_cells_run(deps->datasources, &req->tenant, req->notebook,
                           &req->files, cancel, &info, &out->details, &err);

    if (rc < 0) {
        out->code = rc;
        snprintf(out->message, sizeof(out->message), "%s", err.msg);
        return rc;
    }
    if (info.cells > 0 && info.min_ttl == 0)
        req->cache = false;
    return 0;
}

int render_run(struct render_result *out, const struct pipeline *deps,
               struct render_request *req, const char *request_id,
               const atomic_bool *cancel)
{
    struct render_job job = {.deps = deps, .req = req, .id = request_id};
    enum cache_lookup lookup = CACHE_MISS;
    struct job_slot slot = JOB_SLOT_INIT;
    struct payload hit = PAYLOAD_INIT;
    unsigned char key[32];
    int rc;

    memset(out, 0, sizeof(*out));
    job.t_start = util_now_ms();
    if (deps->datasources && run_sql_cells(out, deps, req, cancel) < 0)
        return out->code;
    job.t_sql = util_now_ms();
    if (deps->cache)
        cache_key(deps, req, key);
    if (deps->cache && req->cache)
        lookup = cache_get_or_claim(deps->cache, key, &hit, cancel,
                                    (req->timeout_s + RENDER_GRACE_S * 2) *
                                        1000LL);
    if (lookup == CACHE_HIT &&
        (!answer_from_cache(&out->answer, &hit, req->gzip_ok && !req->keep,
                            (size_t)deps->cfg->max_result_bytes) ||
         (req->keep && !kept_from_cache(out, request_id))))
        lookup = CACHE_MISS; /* unreadable: run it */
    if (lookup == CACHE_HIT) {
        out->cache_hit = true;
        snprintf(out->server_timing, sizeof(out->server_timing),
                 "cache;desc=hit, total;dur=%lld",
                 util_now_ms() - job.t_start);
        return 0;
    }
    kernel_job_init(&job.kj, deps->cfg, deps->exporters, &job.err);

    /* wheels before a slot: a download must not hold one */
    rc = packages_fetch(deps->packages, req->packages, &job.wheels, &job.err);
    job.t_packages = util_now_ms();
    if (rc < 0) {
        job.t_queued = job.t_packages;
        goto done;
    }
    rc = jobs_acquire(deps->jobs, &req->tenant, cancel, &slot, &job.err);
    job.t_queued = util_now_ms();
    if (rc < 0)
        goto done;
    rc = execute(&job, cancel);
    job.t_finished = util_now_ms();
    job.t_fetched = util_now_ms();
    if (rc == 0) /* before disposal: an OOM check asks the container */
        rc = status_error(&job, &out->details);
    else if (job.details)
        out->details = json_incref(job.details);
    janitor_dispose(deps->janitor, &job.sb, &slot); /* the slot goes too */
    job.t_done = util_now_ms();
    if (rc == 0 && req->keep)
        keep_results(&job, out);
    else if (rc == 0)
        rc = build_answer(&job, out);
    if (rc == 0 && deps->cache && req->keep)
        cache_put_kept(deps, out->kept, key);
    else if (rc == 0 && deps->cache)
        cache_answer(deps, key, &out->answer, req->gzip_ok);
    out->warm = job.warm;
    if (rc < 0 && rc != ERR_CELL && job.kj.linked && job.kj.link.errout.len)
        log_sandbox_stderr(&job);
done:
    job.t_done = util_now_ms();
    server_timing(&job, out);
    out->code = rc;
    if (rc < 0)
        snprintf(out->message, sizeof(out->message), "%s", job.err.msg);
    kernel_job_release(&job.kj);
    tarball_files_release(&job.wheels);
    json_decref(job.details);
    if (lookup == CACHE_CLAIMED) /* after cache_put: waiters find it */
        cache_finish(deps->cache, key);
    return rc;
}

void render_kept_free(struct render_kept *k)
{
    if (!k)
        return;
    tarball_files_release(&k->results);
    json_decref(k->notebook);
    json_decref(k->timing);
    free(k);
}

void render_result_release(struct render_result *r)
{
    payload_release(&r->answer);
    render_kept_free(r->kept);
    r->kept = NULL;
    json_decref(r->details);
    r->details = NULL;
}

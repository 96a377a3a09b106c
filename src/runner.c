/*
 * The snippet runner. The container's main process unpacks the job (a tar
 * of the code, its stdin and the files, sent on the container's stdin and
 * cut to its exact length by head, so no end-of-file is needed), says
 * "nbcanvas:ready" and then only idles (sleep under the engine's init).
 * The compile command (if any) and the run command are started with exec, each with its own deadline and its own stream, so
 * stdout and stderr arrive apart (the engine's framing, demux.c) and the
 * compiler's failure is told from the program's. Output past the cap, or
 * the deadline, stops reading and the container is removed, which kills
 * whatever the program left running.
 */
#include "nbcanvas/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/ansi.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/util.h"

#define STOP_OUTPUT 2
#define DELIVER_TIMEOUT_MS 30000

struct run_job {
    const struct pipeline *deps;
    const struct run_request *req;
    const struct language *lang;
    struct sandbox sb;
    struct buf out, errout;
    struct demux demux;
    struct err *err;
};

static int on_data(void *ctx, const char *data, size_t len)
{
    struct run_job *job = ctx;

    if (demux_feed(&job->demux, data, len) < 0)
        return ERR_INTERNAL;
    if (job->out.overflow || job->errout.overflow)
        return STOP_OUTPUT;
    return 0;
}

/* The job as a tar: the request's files, code.<ext>, and the program's
 * stdin in the reserved folder. */
static int build_job_tar(struct run_job *job, struct buf *tar, struct err *err)
{
    char *code_name = xasprintf("code.%s", job->lang->extension);
    struct tar_entry own[] = {
        {code_name, job->req->code, job->req->code_len},
        {".nbcanvas/stdin", job->req->stdin_data, job->req->stdin_len}};
    int rc;

    rc = tarball_write_files(tar, &job->req->files, own, 2, SANDBOX_UID,
                             SANDBOX_UID, err);
    free(code_name);
    return rc;
}

/* The main process: unpack exactly n bytes of stdin, then idle. (Not
 * `sleep infinity`: gVisor refuses so long a nanosleep.) */
static json_t *unpack_command(size_t n)
{
    char script[256];

    snprintf(script, sizeof(script),
             "head -c %zu | tar -xf - -C " SANDBOX_WORKDIR
             " --no-same-owner -m && echo " RUNNER_READY " && "
             "while sleep 3600; do :; done",
             n);
    return json_pack("[s, s, s]", "sh", "-c", script);
}

static int start_on_open(void *ctx)
{
    struct run_job *job = ctx;

    return sandbox_start(&job->sb, job->err);
}

static int ready_on_data(void *ctx, const char *data, size_t len)
{
    struct run_job *job = ctx;

    if (demux_feed(&job->demux, data, len) < 0)
        return ERR_INTERNAL;
    const char *at = job->out.data;

    /* the line, at a line's start: the program's own output comes after */
    while ((at = strstr(at, RUNNER_READY_LINE)))
        if (at == job->out.data || at[-1] == '\n')
            return 1;
        else
            at++;
    return 0;
}

/* Starts the container and hands it the job on stdin; returns once the
 * files are in place. */
static int deliver(struct run_job *job, const struct buf *tar,
                   const atomic_bool *cancel)
{
    struct docker_stream_cb cb = {start_on_open, ready_on_data, job, cancel,
                                  NULL};
    int rc;

    rc = sandbox_attach_stdin(&job->sb, tar->data, tar->len, &cb,
                              util_now_ms() + DELIVER_TIMEOUT_MS, job->err);
    if (rc == 1)
        rc = 0;
    else if (rc == 0)
        rc = err_set(job->err, ERR_INTERNAL,
                     "the sandbox could not unpack the job: %.200s",
                     job->errout.data);
    buf_reset(&job->out);
    buf_reset(&job->errout);
    demux_init(&job->demux, &job->out, &job->errout);
    return rc;
}

/* Runs one shell command by exec; stores its exit code. Returns 0,
 * STOP_OUTPUT, ERR_TIMEOUT, or another error. */
static int run_step(struct run_job *job, const char *script, long timeout_s,
                    const atomic_bool *cancel, int *exit_code, struct err *err)
{
    json_t *cmd = json_pack("[s, s, s]", "sh", "-c", script);
    struct docker_stream_cb cb = {NULL, on_data, job, cancel, NULL};
    int rc;

    rc = sandbox_exec(&job->sb, cmd, &cb, util_now_ms() + timeout_s * 1000LL,
                      exit_code, err);
    json_decref(cmd);
    /* A step that ended with no exit code, or killed, because its
     * container was removed from outside is not the program's failure. */
    if (((rc < 0 && rc != ERR_TIMEOUT && rc != ERR_CANCELLED) ||
         (*exit_code == 137 && !sandbox_oom_killed(&job->sb))) &&
        sandbox_lost(&job->sb))
        rc = sandbox_lost_error(err);
    return rc;
}

static const char *classify(struct run_job *job, int rc, int exit_code,
                            bool compiling)
{
    if (rc == STOP_OUTPUT)
        return "output_limit";
    /* An OOM kill can look like a timeout: under gVisor it takes the whole
     * sandbox with it and the exec's stream never ends by itself. */
    if ((exit_code == 137 || rc == ERR_TIMEOUT) &&
        sandbox_oom_killed(&job->sb))
        return "memory_limit";
    if (rc == ERR_TIMEOUT)
        return "timeout";
    if (exit_code != 0)
        return compiling ? "compile_error" : "runtime_error";
    return "ok";
}

static json_t *result(struct run_job *job, const char *id, const char *status,
                      int exit_code, long long ms)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:b, s:b, s:I}", "id", id,
                     "language", job->lang->name, "status", status,
                     "exit_code", exit_code, "stdout",
                     ansi_clean_json(job->out.data, job->out.len), "stderr",
                     ansi_clean_json(job->errout.data, job->errout.len),
                     "stdout_truncated", job->out.overflow, "stderr_truncated",
                     job->errout.overflow, "duration_ms", (json_int_t)ms);
}

/* Compiles (if the language needs it) and runs; fills *status and
 * *exit_code. Returns 0 unless the infrastructure failed. */
static int compile_and_run(struct run_job *job, const atomic_bool *cancel,
                           const char **status, int *exit_code,
                           long long *run_ms, struct err *err)
{
    const struct config *cfg = job->deps->cfg;
    char *script;
    long long t0;
    int rc;

    if (job->lang->compile) {
        rc = run_step(job, job->lang->compile, cfg->compile_timeout_s, cancel,
                      exit_code, err);
        if (rc < 0 && rc != ERR_TIMEOUT)
            return rc;
        *status = classify(job, rc, *exit_code, true);
        if (strcmp(*status, "ok") != 0)
            return 0;
        buf_reset(&job->out);
        buf_reset(&job->errout);
    }
    script = xasprintf("exec %s < .nbcanvas/stdin", job->lang->command);
    t0 = util_now_ms();
    rc = run_step(job, script, job->req->timeout_s, cancel, exit_code, err);
    *run_ms = util_now_ms() - t0;
    free(script);
    if (rc < 0 && rc != ERR_TIMEOUT)
        return rc;
    *status = classify(job, rc, *exit_code, false);
    return 0;
}

int runner_run(json_t **out, const struct pipeline *deps,
               const struct run_request *req, const char *request_id,
               const atomic_bool *cancel, struct err *err)
{
    const struct config *cfg = deps->cfg;
    struct run_job job = {.deps = deps, .req = req};
    struct buf tar = BUF_INIT((size_t)-1);
    json_t *cmd = NULL;
    json_t *env = json_pack("[s, s]", "HOME=/home/sandbox", "LANG=C.UTF-8");
    struct job_slot slot = JOB_SLOT_INIT;
    const char *status = "ok";
    int exit_code = -1, rc;
    long long run_ms = 0;

    job.lang = languages_find(deps->languages, req->language);
    if (!job.lang) {
        rc = err_set(err, ERR_INVALID,
                     "unknown language '%s' (see GET /v1/languages)",
                     req->language);
        goto done;
    }
    buf_init(&job.out, (size_t)cfg->max_output_bytes);
    buf_init(&job.errout, (size_t)cfg->max_output_bytes);
    demux_init(&job.demux, &job.out, &job.errout);
    job.err = err;
    rc = build_job_tar(&job, &tar, err);
    if (rc < 0)
        goto done;
    cmd = unpack_command(tar.len);
    rc = jobs_acquire(deps->jobs, &req->tenant, cancel, &slot, err);
    if (rc < 0)
        goto done;
    {
        struct sandbox_spec spec = {job.lang->image,
                                    cmd,
                                    env,
                                    &cfg->run_limits,
                                    cfg->runtime,
                                    request_id,
                                    deps->owner,
                                    deps->live,
                                    (long long)time(NULL) +
                                        cfg->compile_timeout_s +
                                        req->timeout_s + 60,
                                    false,
                                    0};

        rc = sandbox_create(&job.sb, deps->docker, &spec, err);
        if (rc == 0)
            rc = deliver(&job, &tar, cancel);
        if (rc == 0)
            rc = compile_and_run(&job, cancel, &status, &exit_code, &run_ms,
                                 err);
        janitor_dispose(deps->janitor, &job.sb, &slot); /* the slot too */
    }
    if (rc == 0)
        *out = result(&job, request_id, status, exit_code, run_ms);
done:
    buf_release(&tar);
    buf_release(&job.out);
    buf_release(&job.errout);
    json_decref(cmd);
    json_decref(env);
    return rc;
}

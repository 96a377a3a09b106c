#ifndef NBCANVAS_KERNEL_JOB_H
#define NBCANVAS_KERNEL_JOB_H

/*
 * One job on a notebook sandbox's kernel, driven from the service: what
 * a Python driver inside the sandbox used to do, now in the service's
 * own process. A render places the request's files through the relay,
 * installs the job's wheels with pip, sets up the kernel (structured
 * outputs, %%sql rows), executes the notebook (executor.c), stops the
 * code, collects the files it wrote, and has a warm exporter make the page
 * (exporter.c). A session's sandbox takes one job after another on the
 * same kernel (open, execute, export, file).
 *
 * The outcome is a status (job_status.h's words and fields), with the
 * executed notebook and the results (index.html, notebook.ipynb,
 * artifacts/, file), so the pipelines read one shape whichever job ran.
 * A caller owns a struct kernel_job from kernel_job_init to
 * kernel_job_release.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/config.h"
#include "nbcanvas/job_status.h"
#include "nbcanvas/err.h"
#include "nbcanvas/executor.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/relay_link.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/tarball.h"

struct kernel_job {
    struct err *err;             /* borrowed */
    const struct config *cfg;    /* borrowed */
    struct exporters *exporters; /* borrowed */
    executor_event_fn on_event;  /* may be NULL */
    void *event_ctx;
    const atomic_bool *cancel_too; /* a second reason to stop, may be NULL */
    bool uploaded;                 /* the job reached the sandbox */
    struct relay_link link;        /* a render's own */
    bool linked;
    struct relay_link *lk; /* the one in use: &link, or a session's */
    /* After a run: */
    json_t *status;           /* as driver.h's status.json */
    json_t *notebook;         /* the executed notebook, or NULL */
    struct tar_files results; /* index.html, artifacts/..., file */
};

void kernel_job_init(struct kernel_job *j, const struct config *cfg,
                     struct exporters *exporters, struct err *err);
void kernel_job_release(struct kernel_job *j);

/* A render in sb (warm or not yet started): notebook and files are
 * borrowed. Returns 0 once a status is written (success or the notebook's
 * own failure), or ERR_* when the job could not be carried out
 * (ERR_TIMEOUT at deadline_ms, ERR_CANCELLED, ERR_ENGINE, ...). */
int kernel_job_render(struct kernel_job *j, struct sandbox *sb,
                      const struct job_spec *spec, json_t *notebook,
                      const struct tar_files *files, long long deadline_ms,
                      const atomic_bool *cancel);

/* A session's kernel between calls (owned by the session): the notebook
 * of everything executed so far, exported without running it again, and
 * the executor's count. */
struct kernel_session {
    json_t *notebook;
    long counter;
    struct relay_link link; /* kept open from the first call */
    bool linked;
};

void kernel_session_release(struct kernel_session *ks);

/* A session starts in sb: the request's files, its packages, the
 * structured formatters; the notebook's metadata (and the kernel's
 * language_info) kept in ks, no cell run. spec->timeout_s bounds pip. */
int kernel_job_open(struct kernel_job *j, struct sandbox *sb,
                    struct kernel_session *ks, const struct job_spec *spec,
                    json_t *notebook, const struct tar_files *files,
                    long long deadline_ms, const atomic_bool *cancel);

/* Runs notebook's cells after the session's, on its kernel: a cell past
 * spec->timeout_s (or the output budget) is interrupted, and the kernel
 * lives on if it answers. j->notebook: the cells of this call (up to the
 * one that stopped it), with the session's metadata. */
int kernel_job_execute(struct kernel_job *j, struct sandbox *sb,
                       struct kernel_session *ks, const struct job_spec *spec,
                       json_t *notebook, const struct tar_files *files,
                       long long deadline_ms, const atomic_bool *cancel);

/* The session's notebook so far as a page (and, with spec->artifacts,
 * the files its code wrote): index.html and notebook.ipynb. */
int kernel_job_export(struct kernel_job *j, struct sandbox *sb,
                      struct kernel_session *ks, const struct job_spec *spec,
                      long long deadline_ms, const atomic_bool *cancel);

/* One file the session's code wrote (spec->path): "file" in the results,
 * or the status "not_found". */
int kernel_job_file(struct kernel_job *j, struct sandbox *sb,
                    struct kernel_session *ks, const struct job_spec *spec,
                    long long deadline_ms, const atomic_bool *cancel);

/* The last line the sandbox wrote on stderr, escaped, into out. */
const char *kernel_job_stderr_tail(const struct kernel_job *j, char *out,
                                   size_t out_len);

#endif

#ifndef NBCANVAS_JOB_STATUS_H
#define NBCANVAS_JOB_STATUS_H

/*
 * What a job on a notebook sandbox's kernel is asked (struct job_spec)
 * and the status it ends with, in one place: kernel_job.c writes the
 * status, render.c and sessions.c map it to answers and errors, and the
 * results it names are what formats.c builds answers from.
 *
 * The status is a JSON object:
 *   "status"       one of the words below
 *   "cell"         the cell concerned (an index), when there is one
 *   "message"      why, for the operator or the client
 *   "ename", "evalue", "traceback"   a cell's error
 *   "timing_ms"    phase -> ms (kernel, install, execute, export)
 *   "session_over" a session's kernel is gone or does not answer
 *   "sandbox_ended" the kernel's death was the whole container's
 */

#include <jansson.h>
#include <stdbool.h>

#include "nbcanvas/err.h"
#include "nbcanvas/tarball.h"

/* Names inside a job's results (struct tar_files). */
#define JOB_RESULT_NOTEBOOK "notebook.ipynb"
#define JOB_RESULT_PAGE "index.html"
#define JOB_RESULT_ARTIFACTS "artifacts/"
#define JOB_RESULT_FILE "file"

/* What a job asks. A render is one job in a fresh sandbox; a session's
 * sandbox takes an "open" job, then any number of the others, and keeps
 * its kernel between them. */
enum job_kind {
    JOB_RENDER,  /* execute the notebook, export it, stop */
    JOB_OPEN,    /* a session starts: the files, nothing executed */
    JOB_EXECUTE, /* a session runs the notebook's cells after its own */
    JOB_EXPORT,  /* a session's notebook so far as a page */
    JOB_FILE     /* a file the session's code wrote */
};

struct job_spec {
    enum job_kind kind;
    bool validate;    /* nbformat's validator first (an uploaded notebook;
                         one built from cells is valid as made) */
    bool events;      /* send cell and output events as they come */
    const char *path; /* JOB_FILE: relative to the working directory */
    const char *kernel;
    long timeout_s;
    bool allow_errors;
    bool include_input;
    const char *template_name;
    long long max_html_bytes; /* the outputs' budget, and the page's cap */
    bool artifacts;           /* collect the files the notebook wrote */
    long long max_artifact_bytes;
    bool structured; /* chart and table data beside the figures, frames */
    long table_rows; /* rows of a table's data at most */
    long long max_result_bytes; /* all the results together */
    /* Requirements to install before the first cell (borrowed JSON array
     * of strings, may be NULL), and their wheels (borrowed, may be NULL),
     * placed under .nbcanvas/wheels/. */
    json_t *packages;
    const struct tar_files *wheels;
};

enum job_outcome {
    JOB_OK,
    JOB_CELL_ERROR,       /* a cell raised: ename, evalue, traceback */
    JOB_TIMEOUT,          /* the deadline passed while cell ran */
    JOB_KERNEL_DIED,      /* the kernel ended while cell ran */
    JOB_OUTPUT_LIMIT,     /* outputs or results over their caps */
    JOB_INVALID_NOTEBOOK, /* nbformat's validator refused it */
    JOB_NOT_FOUND,        /* JOB_FILE: no such regular file */
    JOB_PACKAGE_FAILED,   /* pip could not install the packages */
    JOB_FAILED            /* the job itself failed ("internal") */
};

/* A status, checked. Strings are borrowed from the JSON it came from. */
struct job_status {
    enum job_outcome outcome;
    long cell;           /* the cell concerned, or -1 */
    const char *message; /* "" when absent */
    bool session_over;   /* a session's kernel is gone or unresponsive */
    json_t *timing_ms;   /* borrowed object of phase -> ms, or NULL */
};

/* Reads status into out. A status that breaks the contract (an unknown
 * word, a field of the wrong type) is ERR_INTERNAL naming it. */
int job_status_parse(struct job_status *out, json_t *status, struct err *err);

struct sandbox;

/* A kernel that died while cell ran, as the API says it, in one place for
 * renders and sessions: ERR_MEMORY when the container's cgroup recorded an
 * OOM kill (memory_bytes: its limit, for the message); ERR_ENGINE when the
 * container was removed from outside (asked only when the status says the
 * death may have been the container's); else ERR_CELL, the cell's own
 * failure as nbclient names it (DeadKernelError). suffix ends the message
 * ("" or, say, "; the session has ended"). *details (new): {"cell"}, and
 * for ERR_CELL "ename", "evalue", "traceback" (empty). */
int job_dead_kernel(struct sandbox *sb, json_t *status, long cell,
                    long long memory_bytes, const char *suffix,
                    struct err *err, json_t **details);

#endif

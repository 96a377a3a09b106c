#ifndef NBCANVAS_DRIVER_H
#define NBCANVAS_DRIVER_H

/*
 * The contract with the driver that runs inside every notebook sandbox
 * (notebook-images/python/nbcanvas_driver.py), in one place: how it is
 * started, the job it reads, the lines it writes and the status it
 * reports. Nothing else in the service spells a word of it. The protocol
 * is written down in docs/ARCHITECTURE.md ("The driver protocol"), and
 * tests/unit/test_driver.c runs messages recorded from the real driver
 * (tests/data/driver, refreshed by tests/driver/record.py) through these
 * parsers, so a change on one side alone fails a test.
 *
 * The channels are the container's stdin and stdout (the driver points
 * the user's fd 0 and 1 elsewhere before the kernel starts):
 *
 *   driver -> service  "nbcanvas:ready\n"          kernel up
 *   service -> driver  "nbcanvas:job <n> <nonce>\n" + an n-byte tar: the
 *                      request's files, .nbcanvas/input.ipynb,
 *                      .nbcanvas/job.json and any .nbcanvas/wheels/
 *   driver -> stderr   "nbcanvas:cell <i>\n"       cell i has started
 *   driver -> service  "nbcanvas:done <nonce> <n>\n" + an n-byte tar:
 *                      status.json, notebook.ipynb, index.html, artifacts/
 *
 * The user's code runs as the same uid as the driver and the container's
 * init, so it can write into the results channel (/proc/1/fd/1). The
 * nonce, fresh for every job and never written to the sandbox's disk, is
 * what tells the driver's done line from a forged one.
 *
 * The snippet runner's sandboxes say the same ready line (runner.c).
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/err.h"
#include "nbcanvas/tarball.h"

#define DRIVER_READY "nbcanvas:ready"
#define DRIVER_READY_LINE DRIVER_READY "\n"

/* Names inside the job tar and the results tar. */
#define DRIVER_JOB_NOTEBOOK ".nbcanvas/input.ipynb"
#define DRIVER_JOB_SPEC ".nbcanvas/job.json"
#define DRIVER_RESULT_STATUS "status.json"
#define DRIVER_RESULT_NOTEBOOK "notebook.ipynb"
#define DRIVER_RESULT_PAGE "index.html"
#define DRIVER_RESULT_ARTIFACTS "artifacts/"
#define DRIVER_RESULT_FILE "file"

/* What a job asks of the driver. A render is one job in a fresh
 * sandbox; a session's sandbox takes an "open" job, then any number of
 * the others, and keeps its kernel between them. */
enum driver_job_kind {
    DRIVER_RENDER,  /* execute the notebook, export it, stop */
    DRIVER_OPEN,    /* a session starts: the files, nothing executed */
    DRIVER_EXECUTE, /* a session runs the notebook's cells after its own */
    DRIVER_EXPORT,  /* a session's notebook so far as a page */
    DRIVER_FILE     /* a file the session's code wrote ("file" in the tar) */
};

/* What job.json tells the driver. */
struct driver_job {
    enum driver_job_kind kind;
    bool events;      /* send cell and output events as they come */
    const char *path; /* DRIVER_FILE: relative to the working directory */
    const char *kernel;
    long timeout_s;
    bool allow_errors;
    bool include_input;
    const char *template_name;
    long long max_html_bytes;
    bool artifacts; /* send the files the notebook wrote */
    long long max_artifact_bytes;
    bool structured; /* chart and table data beside the figures, frames */
    long table_rows; /* rows of a table's data at most */
    /* The service's buffer for the whole results stream; the driver is
     * given a smaller cap for the files so that the tar's own headers and
     * status.json always fit. */
    long long max_result_bytes;
    /* Requirements to install before the first cell (borrowed JSON array
     * of strings, may be NULL), and their wheels (borrowed, may be NULL),
     * which travel in the job tar under .nbcanvas/wheels/. */
    json_t *packages;
    const struct tar_files *wheels;
};

/* The container's command and environment for a notebook sandbox (new
 * JSON arrays). preload: import the common libraries while waiting. */
json_t *driver_command(void);
json_t *driver_environment(const char *kernel, bool preload);

#define DRIVER_NONCE_LEN 36

/* Appends the job header and the job tar (built from files, borrowed,
 * plus the notebook and job.json) to out, with a fresh random nonce that
 * is also written to nonce (NUL-terminated). */
int driver_write_job(struct buf *out, const struct driver_job *job,
                     json_t *notebook, const struct tar_files *files,
                     char nonce[DRIVER_NONCE_LEN + 1], struct err *err);

/* True once out holds the ready line. */
bool driver_is_ready(const char *out, size_t len);

/* Looks for the job's "nbcanvas:done <nonce> <n>\n" in the driver's
 * stdout, from *from on (start at 0; it is moved on, so that calls made
 * as the output grows scan each byte about once, whatever the user's code
 * wrote into the channel); lines without the nonce are ignored. Returns 1
 * once all n bytes after it are there (*at, *n: where the tar is), 0 while
 * more is to come, ERR_INTERNAL for a malformed line. */
int driver_find_results(const char *out, size_t len, const char *nonce,
                        size_t *from, size_t *at, size_t *n, struct err *err);

/* The next complete event line ("nbcanvas:event <nonce> <json>\n") of
 * the job in out, from *from on, up to end (where the results begin, or
 * len). Lines of anything else are skipped; *from moves past what was
 * read. Returns 1 with *event (a new object with an "event" string), or
 * 0 when no complete event line is left. */
int driver_next_event(const char *out, size_t end, const char *nonce,
                      size_t *from, json_t **event);

/* The index of the last cell the driver said it started (from its
 * stderr), or -1. */
long driver_last_cell(const char *errout, size_t len);

enum driver_outcome {
    DRIVER_OK,
    DRIVER_CELL_ERROR,       /* a cell raised: ename, evalue, traceback */
    DRIVER_TIMEOUT,          /* the deadline passed while cell ran */
    DRIVER_KERNEL_DIED,      /* the kernel ended while cell ran */
    DRIVER_OUTPUT_LIMIT,     /* outputs or results over their caps */
    DRIVER_INVALID_NOTEBOOK, /* nbformat's validator refused it */
    DRIVER_NOT_FOUND,        /* DRIVER_FILE: no such regular file */
    DRIVER_PACKAGE_FAILED,   /* pip could not install the packages */
    DRIVER_FAILED            /* the driver itself failed ("internal") */
};

/* status.json, checked. Strings are borrowed from the JSON it came from. */
struct driver_status {
    enum driver_outcome outcome;
    long cell;           /* the cell concerned, or -1 */
    const char *message; /* "" when absent */
    bool session_over;   /* a session's kernel is gone or unresponsive */
    json_t *timing_ms;   /* borrowed object of phase -> ms, or NULL */
};

/* Reads status.json into out. A status that breaks the contract (an
 * unknown word, a field of the wrong type) is ERR_INTERNAL naming it. */
int driver_parse_status(struct driver_status *out, json_t *status,
                        struct err *err);

#endif

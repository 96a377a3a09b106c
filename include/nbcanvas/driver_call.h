#ifndef NBCANVAS_DRIVER_CALL_H
#define NBCANVAS_DRIVER_CALL_H

/*
 * One job sent to a sandbox's driver and its results read back: the I/O
 * half of the driver protocol (driver.h has the words). A render makes one
 * call in a fresh sandbox; a session makes one per request in the sandbox
 * it keeps. The call attaches to the container, starts it if it is not
 * running yet, writes the job on stdin, reads stdout and stderr apart
 * (each capped), hands each progress event to on_event as it comes, and
 * stops at the job's done line. A caller owns a struct driver_call from
 * driver_call_init to driver_call_release.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/buf.h"
#include "nbcanvas/config.h"
#include "nbcanvas/demux.h"
#include "nbcanvas/driver.h"
#include "nbcanvas/err.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/tarball.h"

/* Receives one event (borrowed) of the running job. */
typedef void (*driver_event_fn)(void *ctx, json_t *event);

struct driver_call {
    struct err *err;   /* borrowed: where failures are described */
    struct buf upload; /* the job as it goes out on stdin */
    char nonce[DRIVER_NONCE_LEN + 1];
    struct buf out, errout; /* the driver's stdout and stderr */
    struct demux demux;
    size_t scan;   /* how far `out` was searched for the done line */
    size_t events; /* how far `out` was read for events */
    size_t results_at, results_len; /* the results tar inside `out` */
    driver_event_fn on_event;       /* may be NULL */
    void *event_ctx;
    const atomic_bool *cancel_too; /* a second reason to stop, may be NULL */
    size_t no_newline;             /* `out` has none before this (events) */
    bool uploaded;                 /* the job reached the sandbox */
    long long t_uploaded;
    long long max_result_bytes;
    /* After driver_call_read: */
    struct tar_files results; /* every member of the results tar */
    json_t *status;           /* status.json */
    json_t *notebook;         /* notebook.ipynb, or NULL */
};

/* Sets up an empty call with the service's caps; err is borrowed. */
void driver_call_init(struct driver_call *c, const struct config *cfg,
                      struct err *err);
void driver_call_release(struct driver_call *c);

/* Writes the job (notebook and files borrowed) into the upload. */
int driver_call_prepare(struct driver_call *c, const struct driver_job *job,
                        json_t *notebook, const struct tar_files *files);

/* Sends the job to sb's driver and waits for its results until
 * deadline_ms (monotonic) or *cancel. Returns 1 when the results are in,
 * 0 when the container's output ended without them (it died), ERR_TIMEOUT,
 * ERR_CANCELLED, ERR_OUTPUT (a stream past its cap) or another ERR_*. */
int driver_call_run(struct driver_call *c, struct sandbox *sb,
                    long long deadline_ms, const atomic_bool *cancel);

/* Reads the results tar: status.json (required), notebook.ipynb. */
int driver_call_read(struct driver_call *c);

/* The last line the sandbox wrote on stderr, escaped, into out. */
const char *driver_call_stderr_tail(const struct driver_call *c, char *out,
                                    size_t out_len);
/* The last cell the driver said it started, or -1. */
long driver_call_last_cell(const struct driver_call *c);

#endif

#ifndef NBCANVAS_EXECUTOR_H
#define NBCANVAS_EXECUTOR_H

/*
 * Executes a notebook's cells on a sandbox's kernel, through its relay,
 * with nbclient 0.7's semantics (what `jupyter nbconvert --execute` does
 * and what real notebooks depend on):
 *
 *   - language_info from kernel_info_reply into the notebook's metadata;
 *   - non-code, empty and "skip-execution" cells left as they are;
 *   - each cell's outputs reset, one output per IOPub message (streams
 *     not merged), transient fields dropped;
 *   - clear_output(wait=True) deferred to the next output; display_id
 *     updates rewrite every earlier output with that id, across cells;
 *   - execution_count from the executor's own counter once the reply
 *     came; metadata.execution with the four IOPub and shell times;
 *   - a cell is done on its execute_reply and its IOPub idle (at most
 *     IOPUB_AFTER_REPLY_MS after the reply);
 *   - an error reply stops the notebook unless allow_errors or the cell's
 *     "raises-exception" tag; widget state into metadata.widgets.
 *
 * And with the service's own rules: one deadline for the whole notebook,
 * an output budget, progress events, a dead kernel named with its cell.
 * The outcome is a status object in the words of job_status.h
 * ("ok", "cell_error", "timeout", "kernel_died", "output_limit").
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/err.h"
#include "nbcanvas/relay_link.h"

/* Receives one event (borrowed): {"event": "cell"|"output", ...}. */
typedef void (*executor_event_fn)(void *ctx, json_t *event);

/* What stops the code when a cell runs past the deadline or the budget. */
enum executor_stop {
    EXECUTOR_KILL,     /* a render: every process ends, nothing after */
    EXECUTOR_INTERRUPT /* a session: SIGINT, the kernel lives on */
};

struct executor {
    struct relay_link *link; /* borrowed, open */
    char session[40];        /* the client's session id */
    long sent;               /* messages sent: the next msg_id */
    long *counter;           /* borrowed: cells executed so far */
    long long deadline_ms;   /* the whole notebook's */
    long deadline_s;         /* the same, as the request gave it */
    bool allow_errors;
    long long output_budget; /* bytes of output in all, at most */
    enum executor_stop stop;
    executor_event_fn on_event; /* may be NULL */
    void *event_ctx;
    /* The code sent for a cell, when it is not the cell's source (which
     * the notebook keeps): NULL, or a new string (freed here); a kernel
     * without a %%sql magic gets its own equivalent (kernel_job.c). */
    char *(*rewrite)(void *ctx, const char *source);
    void *rewrite_ctx;
    json_t *widgets;  /* comm_id -> state, gathered as messages come */
    json_t *displays; /* display_id -> [[cell, output], ...] */
};

/* Sets up ex over an open link; counter is borrowed. */
void executor_init(struct executor *ex, struct relay_link *link,
                   long *counter);
void executor_release(struct executor *ex);

/* Asks the kernel for its info; sets nb's metadata.language_info. */
int executor_kernel_info(struct executor *ex, json_t *nb, struct err *err);

/* Runs code silently (no history, no outputs kept, no count), waiting
 * for its reply until timeout_ms from now. */
int executor_silent(struct executor *ex, const char *code, long timeout_ms,
                    struct err *err);

/* Executes nb's cells from index `from` on (the ones before are a
 * session's, already run), filling their outputs. Writes the outcome
 * into status (an object: "status", "cell", and for errors "ename",
 * "evalue", "traceback", "message"; "sandbox_ended" when the kernel's
 * death may have been the whole container's (its output ended, or the
 * kernel was SIGKILLed: the OOM killer, or a removal from outside);
 * "session_over" when the kernel is
 * gone or does not answer an interrupt). Returns 0 when an outcome was
 * written (whatever it is), or ERR_* when the conversation itself failed
 * (the relay's channel broke, the service is stopping, the client left). */
int executor_run(struct executor *ex, json_t *nb, size_t from, json_t *status,
                 struct err *err);

#endif

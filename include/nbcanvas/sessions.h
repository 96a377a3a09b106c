#ifndef NBCANVAS_SESSIONS_H
#define NBCANVAS_SESSIONS_H

/*
 * Sessions: a live kernel kept between calls. A session is one sandbox,
 * hardened as a render's and taken from the warm pool when one is ready,
 * that belongs to the tenant that made it and serves nothing else; its
 * kernel lives on between calls, and the service keeps the notebook of
 * everything executed so far (kernel_job.h, the session jobs). This module owns the table of sessions
 * and their life: at most max_sessions (service-wide, and a tenant's own
 * max_sessions) live at once, one call at a time each (a second is
 * ERR_SESSION_BUSY), a job slot held while a call runs, an end after
 * idle_timeout_s unused or session_max_lifetime_s in all (a thread checks
 * every second), and an end with the call when its kernel died, it ran
 * out of memory, or the call could not finish (the client went away).
 * Ending a session hands its sandbox to the janitor.
 *
 * Another tenant's session, or one that has ended, is ERR_NOT_FOUND.
 * Thread-safe.
 */

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "nbcanvas/executor.h"
#include "nbcanvas/err.h"
#include "nbcanvas/payload.h"
#include "nbcanvas/request.h"

struct pipeline;
struct sessions;

struct sessions_stats {
    long active;  /* live now */
    long calls;   /* of those, running a call (holding a job slot) */
    long created; /* in all */
    long expired; /* ended for idleness or age */
    long faulted; /* ended by a dead kernel, memory, a lost call */
};

/* The table (deps borrowed: its parts must outlive the table). */
struct sessions *sessions_new(const struct pipeline *deps);
/* Ends every session (their sandboxes go to the janitor). */
void sessions_free(struct sessions *ss);

/* Creates a session for req->tenant; *out: the 201 body. */
int sessions_create(struct sessions *ss, const struct session_request *req,
                    const char *request_id, const atomic_bool *cancel,
                    json_t **out, struct err *err);

/* Runs req in session id of tenant. On 0, *out is the 200 body; on a
 * failure, *details (may be NULL) holds the error's extra fields. Events
 * go to on_event (may be NULL) as they come. */
int sessions_execute(struct sessions *ss, const char *tenant, const char *id,
                     const struct execute_request *req,
                     executor_event_fn on_event, void *event_ctx,
                     const atomic_bool *cancel, json_t **out, json_t **details,
                     struct err *err);

/* The session's notebook so far as req asks, without running it again
 * (*out: release with payload_release). */
int sessions_export(struct sessions *ss, const char *tenant, const char *id,
                    const struct export_request *req,
                    const atomic_bool *cancel, struct payload *out,
                    struct err *err);

/* A file the session's code wrote (path: a request file name). */
int sessions_file(struct sessions *ss, const char *tenant, const char *id,
                  const char *path, const atomic_bool *cancel,
                  struct payload *out, struct err *err);

/* The tenant's sessions (new JSON array). */
json_t *sessions_list(struct sessions *ss, const char *tenant);

/* Gateway kernels (http_gateway.c): sessions made with req->gateway,
 * whose kernel clients drive through its channels. A kernel of another
 * tenant, or a /v1 session, is ERR_NOT_FOUND to all of these. */
struct kernel_channels;
/* The kernel's model (new), or NULL when there is none. */
json_t *sessions_kernel_model(struct sessions *ss, const char *tenant,
                              const char *id);
/* The tenant's kernels' models (new JSON array). */
json_t *sessions_list_kernels(struct sessions *ss, const char *tenant);
/* The kernel's channels, referenced (kernel_channels_unref). */
int sessions_kernel_channels(struct sessions *ss, const char *tenant,
                             const char *id, struct kernel_channels **out,
                             struct err *err);
/* Ends the kernel (a restart under way finishes first, unseen). */
int sessions_kernel_delete(struct sessions *ss, const char *tenant,
                           const char *id, struct err *err);
int sessions_kernel_interrupt(struct sessions *ss, const char *tenant,
                              const char *id, struct err *err);
/* A fresh kernel in a fresh sandbox under the same id (its clients stay
 * connected); *model: the kernel's model. A failed restart ends it. */
int sessions_kernel_restart(struct sessions *ss, const char *tenant,
                            const char *id, const char *request_id,
                            const atomic_bool *cancel, json_t **model,
                            struct err *err);

/* Ends the session (a call under way finishes first, unseen). */
int sessions_delete(struct sessions *ss, const char *tenant, const char *id,
                    struct err *err);

/* Whether session id of tenant is there (else ERR_NOT_FOUND); with
 * kernel, also whether it could take a call now (else ERR_SESSION_BUSY)
 * and its kernel; with info, its listing (new reference). A call can
 * still find it busy a moment later: this is for answering plainly
 * before a stream starts. */
int sessions_check(struct sessions *ss, const char *tenant, const char *id,
                   const struct kernel_info **kernel, json_t **info,
                   struct err *err);

void sessions_stats(struct sessions *ss, struct sessions_stats *out);

#endif

#ifndef NBCANVAS_JANITOR_H
#define NBCANVAS_JANITOR_H

/*
 * Removes used sandboxes in the background, so a client gets its answer
 * without waiting for the engine to kill and delete the container (a good
 * part of a warm render's time); the job's slot is released only when
 * its container is gone. The queue is drained before the service
 * exits; a crash leaves the containers to the start-up sweep and the
 * reaper, which find them by label.
 */

#include "nbcanvas/jobs.h"
#include "nbcanvas/sandbox.h"

struct janitor;

struct janitor *janitor_new(void);
/* Removes everything still queued, then frees the janitor. */
void janitor_free(struct janitor *j);

/* Takes over sb: it will be destroyed soon, and then the job slot of the
 * job that used it (may be NULL) is released: a slot is free only once
 * its container is gone. The caller's *slot is emptied. With j NULL, or a
 * sandbox that was never created, both happen now, in the caller's
 * thread. */
void janitor_dispose(struct janitor *j, struct sandbox *sb,
                     struct job_slot *slot);

/* Containers queued but not yet removed. */
long janitor_pending(struct janitor *j);

#endif

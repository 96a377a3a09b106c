#ifndef NBCANVAS_JOBS_H
#define NBCANVAS_JOBS_H

/*
 * Back-pressure: at most max_running jobs run at once and at most
 * max_waiting wait for a slot; past that, jobs_acquire answers ERR_BUSY at
 * once so the client can retry (429 with Retry-After) instead of piling up
 * threads and memory.
 */

#include <stdatomic.h>
#include <stdbool.h>

#include "nbcanvas/err.h"

struct jobs;

struct jobs *jobs_new(long max_running, long max_waiting);
void jobs_free(struct jobs *j);

/* Waits for a slot. ERR_BUSY when the queue is full, ERR_CANCELLED when
 * *cancel becomes true while waiting. */
int jobs_acquire(struct jobs *j, const atomic_bool *cancel, struct err *err);
void jobs_release(struct jobs *j);

void jobs_counts(struct jobs *j, long *running, long *waiting);

#endif

#ifndef NBCANVAS_POOL_H
#define NBCANVAS_POOL_H

/*
 * The warm pool: notebook sandboxes started ahead of demand, each with its
 * kernel running and numpy, pandas and matplotlib already imported, waiting
 * for a job. Each is used once: a request takes one, runs its notebook in
 * it, and the container is destroyed; the pool refills in the background.
 * When the pool is empty a request falls back to a cold sandbox.
 */

#include <stdbool.h>

#include "nbcanvas/sandbox.h"
#include "nbcanvas/service.h"

struct pool;

struct pool_stats {
    long size;        /* target */
    long idle;        /* ready now */
    long starting;    /* being started */
    long handed_out;  /* requests served warm */
    long misses;      /* requests that found the pool empty */
    long replaced;    /* containers dropped for age or death */
    long last_refill_ms;
};

/* Starts a pool of size sandboxes for svc (borrowed; must outlive it). A
 * size of 0 gives a pool that is always empty. */
struct pool *pool_new(struct service *svc, long size);
/* Stops refilling and removes every idle container. */
void pool_free(struct pool *p);

/* Takes a ready sandbox into *out (the caller destroys it after use).
 * Returns false, leaving *out untouched, when none is ready. */
bool pool_take(struct pool *p, struct sandbox *out);

void pool_stats(struct pool *p, struct pool_stats *out);

/* Creates (does not start) a notebook sandbox running the driver, the same
 * way for the pool and for the cold route; preload makes the driver import
 * the common libraries before its job arrives. */
int pool_create_sandbox(struct sandbox *sb, struct service *svc, bool preload,
                        const char *job_id, long long deadline_s,
                        struct err *err);

#endif

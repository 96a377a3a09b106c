#ifndef NBCANVAS_POOL_H
#define NBCANVAS_POOL_H

/*
 * The warm pool: notebook sandboxes started ahead of demand, each with its
 * kernel running and numpy, pandas and matplotlib already imported, waiting
 * for a job. Each is used once: a request takes one, runs its notebook in
 * it, and the container is destroyed; the pool refills in the background.
 * When the pool is empty a request falls back to a cold sandbox.
 *
 * Its depth follows demand: it starts at pool_size; each request that
 * finds it empty deepens it (up to the most memory allows: pool_max_size,
 * or pool_memory_share of RAM over an idle sandbox's measured footprint);
 * after a quiet while it gives the extra back, one sandbox at a time.
 */

#include <stdbool.h>

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/sandbox.h"

struct pool;

struct pool_stats {
    long size;     /* target now: between min_size and max_size */
    long min_size; /* pool_size */
    long max_size; /* pool_max_size, or from memory once measured */
    long long footprint_bytes; /* an idle sandbox's memory, measured */
    long idle;                 /* ready now */
    long starting;             /* being started */
    long handed_out;           /* requests served warm */
    long waited;   /* of those, served by waiting for a start under way */
    long misses;   /* requests that found the pool empty: cold starts */
    long replaced; /* containers dropped for age or death */
    long last_refill_ms;
};

/* Starts a pool of at least size sandboxes of kernel (more under demand,
 * as cfg allows) made on d from the kernel's image (notebook.h) and cfg's
 * limits, labelled as owner's and kept in live (all borrowed; they must
 * outlive the pool; live may be NULL). A size of 0 gives a pool that is
 * always empty (one-shot commands). */
struct kernel_info;
struct pool *pool_new(struct docker *d, const struct config *cfg,
                      const struct kernel_info *kernel, const char *owner,
                      struct sandbox_set *live, long size);
/* Stops refilling and removes every idle container. */
void pool_free(struct pool *p);

/* Takes a ready sandbox into *out (the caller destroys it after use). When
 * none is idle but one is being started and expected ready within a cold
 * start's time, waits for it (until *cancel, may be NULL). Returns false,
 * leaving *out untouched, when none came: the caller goes cold. */
bool pool_take(struct pool *p, struct sandbox *out, const atomic_bool *cancel);

void pool_stats(struct pool *p, struct pool_stats *out);

struct janitor;

/* The one way a pipeline gets a notebook sandbox: a warm one from the pool
 * when one is ready and still running (one that died while idle goes to
 * janitor), else a cold one made now, not started (the job's first attach
 * starts it). cold: skip the pool. *warm says which it is. deadline_s is
 * the cold one's label (wall clock). */
int pool_sandbox(struct pool *p, struct janitor *janitor, struct sandbox *sb,
                 const char *job_id, long long deadline_s, bool cold,
                 const atomic_bool *cancel, bool *warm, struct err *err);

/* Creates (does not start) a cold notebook sandbox for one job, made the
 * same way as the pool's own (same image, hardening and relay), without
 * the preload. */
int pool_create_cold(struct pool *p, struct sandbox *sb, const char *job_id,
                     long long deadline_s, struct err *err);

#endif

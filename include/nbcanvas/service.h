#ifndef NBCANVAS_SERVICE_H
#define NBCANVAS_SERVICE_H

/*
 * What every request handler shares: the settings, the engine client, the
 * job limiter, the languages and the metrics. Built once by main (serve)
 * or by a one-shot command, the same way, so both run the same pipeline.
 */

#include <jansson.h>

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/jobs.h"

struct cache;
struct janitor;
struct languages;
struct metrics;
struct pool;

struct service {
    struct config cfg;
    struct docker *docker;
    struct jobs *jobs;
    struct languages *languages;
    struct metrics *metrics;
    struct pool *pool;   /* NULL: every render is cold (one-shot commands) */
    struct cache *cache; /* NULL: no result cache */
    struct janitor *janitor; /* NULL: sandboxes are removed in-line */
    json_t *examples;        /* for GET /v1/examples */
};

#endif

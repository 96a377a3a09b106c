#ifndef NBCANVAS_PIPELINE_H
#define NBCANVAS_PIPELINE_H

/*
 * What the pipelines (a render, a session's calls, a snippet's run) need
 * of the service: the settings and the shared parts that hand out
 * sandboxes, job slots, wheels and conversions. They take this small
 * struct instead of the whole struct service, so each pipeline's header
 * says what it may touch (no tenants, no HTTP, no MCP), and a test builds
 * one from fakes. Everything is borrowed: the service owns the parts and
 * outlives every job (service.h embeds one and fills it as it starts).
 */

#include "nbcanvas/notebook.h"

struct cache;
struct cluster_limits;
struct cache_keys;
struct config;
struct datasources;
struct directory;
struct docker;
struct exporters;
struct janitor;
struct jobs;
struct languages;
struct packages;
struct pool;
struct sandbox_set;

struct pipeline {
    const struct config *cfg;
    const char *owner;        /* the label of our containers */
    struct docker *docker;    /* the engine (a run's fresh sandbox) */
    struct sandbox_set *live; /* the containers we hold (sandbox.h) */
    /* warm sandboxes, a pool a kernel (by kernel_info's index); size 0
     * for a one-shot */
    struct pool *pools[NOTEBOOK_KERNELS];
    struct jobs *jobs;               /* job slots, fair between tenants */
    struct janitor *janitor;         /* NULL: sandboxes are removed in-line */
    struct exporters *exporters;     /* warm nbconvert workers */
    struct packages *packages;       /* NULL: no package source */
    struct languages *languages;     /* the runner's languages */
    struct cache *cache;             /* NULL: no result cache */
    struct cache_keys *cache_keys;   /* with cache */
    struct datasources *datasources; /* databases for %%sql (never NULL) */
    struct cluster_limits *limits;   /* tenants' limits across replicas */
    struct directory *directory;     /* what every replica holds */
};

#endif

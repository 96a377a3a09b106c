#ifndef NBCANVAS_SERVICE_H
#define NBCANVAS_SERVICE_H

/*
 * The service's life: what every request handler shares (the settings,
 * the engine client, the job limiter, the languages, the metrics, the
 * pool, the cache), how it is built and torn down, and the serve loop
 * (signals, the reaper's tick, heap trimming, the drain on SIGTERM). A
 * one-shot command builds the same struct the same way, with no pool to
 * fill and no cache, so both run the same pipeline.
 */

#include <jansson.h>
#include <stdbool.h>

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/err.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/pipeline.h"

struct cache;
struct cache_keys;
struct datasources;
struct exporters;
struct janitor;
struct kept_results;
struct languages;
struct mcp;
struct metrics;
struct packages;
struct pool;
struct sandbox_set;
struct sessions;
struct tenants;

struct service {
    struct config cfg;
    char owner[128]; /* the label of our containers (sandbox_spec.owner) */
    /* The parts the pipelines share, handed to them as they are (their
     * cfg and owner point at the two above). The pool and the exporters
     * are set by service_serve (size 0 for one-shot commands). */
    struct pipeline pipe;
    struct tenants *tenants; /* who may call (tenants.h) */
    struct metrics *metrics;
    struct sessions *sessions; /* live kernels; from service_serve */
    struct kept_results *kept; /* streamed renders' results */
    struct mcp *mcp;           /* MCP sessions and calls (mcp.h) */
    json_t *examples;          /* for GET /v1/examples */
};

struct service_options {
    const char *config_path; /* NULL: $NBCANVAS_CONFIG, else defaults */
    const char *listen;      /* NULL: the config's */
    bool one_shot;           /* a CLI command: no pool, cache or janitor */
};

/* Builds svc. The engine is not contacted here: a service may start while
 * the engine is down and become ready later. */
int service_open(struct service *svc, const struct service_options *opts,
                 struct err *err);
void service_close(struct service *svc);

/* Serves HTTP until SIGTERM or SIGINT, then drains; SIGHUP reads the keys
 * file again. Returns the process exit status. */
int service_serve(struct service *svc);

#endif

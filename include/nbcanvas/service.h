#ifndef NBCANVAS_SERVICE_H
#define NBCANVAS_SERVICE_H

/*
 * What every request handler shares: the settings, the engine client, the
 * job limiter, the languages and the metrics. Built once by main (serve)
 * or by a one-shot command, the same way, so both run the same pipeline.
 */

#include "nbcanvas/config.h"
#include "nbcanvas/docker.h"
#include "nbcanvas/jobs.h"

struct languages;
struct metrics;

struct service {
    struct config cfg;
    struct docker *docker;
    struct jobs *jobs;
    struct languages *languages;
    struct metrics *metrics;
};

#endif

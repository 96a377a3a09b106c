#ifndef NBCANVAS_GAUGES_H
#define NBCANVAS_GAUGES_H

/*
 * /metrics' gauges: the state of the service's shared parts at the moment
 * of a scrape, in Prometheus' text format (metrics.h has the counters).
 */

#include "nbcanvas/buf.h"

struct service;

/* Appends the gauges of svc's pool, exporters, cache, sessions, job slots
 * and package source to out. */
void gauges_write(const struct service *svc, struct buf *out);

#endif

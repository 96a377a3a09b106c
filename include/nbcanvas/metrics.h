#ifndef NBCANVAS_METRICS_H
#define NBCANVAS_METRICS_H

/*
 * Counters and latency histograms for GET /metrics, in Prometheus' text
 * format. Thread-safe; cheap enough to call on every request.
 */

#include "nbcanvas/buf.h"

struct metrics;
struct jobs;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Records one answered request: route ("/v1/render"), tenant (from the
 * keys file, or "": the labels stay bounded), status, latency.
 * route is a path of the HTTP layer's route table or "other" (at most 31
 * distinct routes get rows of their own; more are counted as "other"). */
void metrics_request(struct metrics *m, const char *route, const char *tenant,
                     unsigned status, long long ms);
/* Counts an event: "timeouts", "ooms", "reaped", "slow_clients_dropped". */
void metrics_count(struct metrics *m, const char *event, long n);

/* Appends the exposition text to out; jobs (may be NULL) adds gauges. */
void metrics_write(struct metrics *m, struct jobs *jobs, struct buf *out);

#endif

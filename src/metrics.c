/*
 * Metrics: a fixed table of request series (route x status) and events, so
 * a flood of odd paths cannot grow memory: every unknown route is counted
 * as "other".
 */
#include "nbcanvas/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/jobs.h"
#include "nbcanvas/util.h"

#define MAX_SERIES 64
#define MAX_EVENTS 16

static const char *const routes[] = {"/",           "/healthz",
                                     "/readyz",     "/metrics",
                                     "/v1/render",  "/v1/run",
                                     "/v1/kernels", "/v1/languages",
                                     "/v1/examples",
                                     "other"};
static const double buckets_ms[] = {10, 50, 100, 250, 500, 1000,
                                    2500, 5000, 10000, 30000, 60000};
#define NBUCKETS (sizeof(buckets_ms) / sizeof(buckets_ms[0]))
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

struct series {
    const char *route;
    unsigned status;
    long count;
};

struct histogram {
    long buckets[NBUCKETS];
    long count;
    long long sum_ms;
};

struct event {
    char name[32];
    long count;
};

struct metrics {
    pthread_mutex_t lock;
    struct series series[MAX_SERIES];
    size_t nseries;
    struct histogram latency[NROUTES];
    struct event events[MAX_EVENTS];
    size_t nevents;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));

    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static size_t route_index(const char *route)
{
    size_t i;

    for (i = 0; i < NROUTES - 1; i++)
        if (strcmp(routes[i], route) == 0)
            return i;
    return NROUTES - 1;
}

void metrics_request(struct metrics *m, const char *route, unsigned status,
                     long long ms)
{
    size_t r = route_index(route), i;
    struct histogram *h = &m->latency[r];

    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nseries; i++)
        if (m->series[i].route == routes[r] && m->series[i].status == status)
            break;
    if (i == m->nseries && m->nseries < MAX_SERIES)
        m->series[m->nseries++] = (struct series){routes[r], status, 0};
    if (i < m->nseries)
        m->series[i].count++;
    for (i = 0; i < NBUCKETS; i++)
        if ((double)ms <= buckets_ms[i])
            h->buckets[i]++;
    h->count++;
    h->sum_ms += ms;
    pthread_mutex_unlock(&m->lock);
}

void metrics_count(struct metrics *m, const char *event, long n)
{
    size_t i;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nevents; i++)
        if (strcmp(m->events[i].name, event) == 0)
            break;
    if (i == m->nevents && m->nevents < MAX_EVENTS) {
        snprintf(m->events[i].name, sizeof(m->events[i].name), "%s", event);
        m->nevents++;
    }
    if (i < m->nevents)
        m->events[i].count += n;
    pthread_mutex_unlock(&m->lock);
}

static void write_histograms(struct metrics *m, struct buf *out)
{
    size_t r, b;

    buf_puts(out, "# HELP nbcanvas_request_duration_seconds Time to answer "
                  "a request.\n"
                  "# TYPE nbcanvas_request_duration_seconds histogram\n");
    for (r = 0; r < NROUTES; r++) {
        struct histogram *h = &m->latency[r];

        if (!h->count)
            continue;
        for (b = 0; b < NBUCKETS; b++)
            buf_printf(out,
                       "nbcanvas_request_duration_seconds_bucket{route=\"%s\","
                       "le=\"%g\"} %ld\n",
                       routes[r], buckets_ms[b] / 1000, h->buckets[b]);
        buf_printf(out,
                   "nbcanvas_request_duration_seconds_bucket{route=\"%s\","
                   "le=\"+Inf\"} %ld\n"
                   "nbcanvas_request_duration_seconds_sum{route=\"%s\"} %g\n"
                   "nbcanvas_request_duration_seconds_count{route=\"%s\"} "
                   "%ld\n",
                   routes[r], h->count, routes[r], (double)h->sum_ms / 1000,
                   routes[r], h->count);
    }
}

void metrics_write(struct metrics *m, struct jobs *jobs, struct buf *out)
{
    size_t i;

    pthread_mutex_lock(&m->lock);
    buf_puts(out, "# HELP nbcanvas_requests_total Requests answered, by "
                  "route and status.\n"
                  "# TYPE nbcanvas_requests_total counter\n");
    for (i = 0; i < m->nseries; i++)
        buf_printf(out,
                   "nbcanvas_requests_total{route=\"%s\",status=\"%u\"} "
                   "%ld\n",
                   m->series[i].route, m->series[i].status,
                   m->series[i].count);
    write_histograms(m, out);
    for (i = 0; i < m->nevents; i++)
        buf_printf(out,
                   "# TYPE nbcanvas_%s_total counter\n"
                   "nbcanvas_%s_total %ld\n",
                   m->events[i].name, m->events[i].name, m->events[i].count);
    pthread_mutex_unlock(&m->lock);
    if (jobs) {
        long running, waiting;

        jobs_counts(jobs, &running, &waiting);
        buf_printf(out,
                   "# TYPE nbcanvas_jobs_running gauge\n"
                   "nbcanvas_jobs_running %ld\n"
                   "# TYPE nbcanvas_jobs_queued gauge\n"
                   "nbcanvas_jobs_queued %ld\n",
                   running, waiting);
    }
}

/*
 * Metrics: fixed tables of request series (route x status), latency per
 * route and events, so nothing a client sends can grow memory. The routes
 * are whatever the HTTP layer names (its route table, or "other" for any
 * path it does not serve): that table is their one home, and a route is
 * given its row here the first time it is seen.
 */
#include "nbcanvas/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbcanvas/jobs.h"
#include "nbcanvas/tenants.h"
#include "nbcanvas/util.h"

#define MAX_ROUTES 32
#define MAX_SERIES 512
#define MAX_EVENTS 16

static const double buckets_ms[] = {10,   50,   100,   250,   500,  1000,
                                    2500, 5000, 10000, 30000, 60000};
#define NBUCKETS (sizeof(buckets_ms) / sizeof(buckets_ms[0]))

struct histogram {
    long buckets[NBUCKETS];
    long count;
    long long sum_ms;
};

struct route_row {
    char name[48];
    struct histogram latency;
};

struct series {
    size_t route; /* index into routes */
    char tenant[TENANT_NAME_MAX];
    unsigned status;
    long count;
};

struct event {
    char name[32];
    long count;
};

struct metrics {
    pthread_mutex_t lock;
    struct route_row routes[MAX_ROUTES];
    size_t nroutes;
    struct series series[MAX_SERIES];
    size_t nseries;
    struct event events[MAX_EVENTS];
    size_t nevents;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));

    pthread_mutex_init(&m->lock, NULL);
    snprintf(m->routes[0].name, sizeof(m->routes[0].name), "other");
    m->nroutes = 1;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Under the lock: the row of route, added if new ("other" when full). */
static size_t route_index(struct metrics *m, const char *route)
{
    size_t i;

    for (i = 0; i < m->nroutes; i++)
        if (strcmp(m->routes[i].name, route) == 0)
            return i;
    if (m->nroutes == MAX_ROUTES || strlen(route) >= sizeof(m->routes[0].name))
        return 0;
    snprintf(m->routes[i].name, sizeof(m->routes[i].name), "%s", route);
    return m->nroutes++;
}

void metrics_request(struct metrics *m, const char *route, const char *tenant,
                     unsigned status, long long ms)
{
    struct histogram *h;
    size_t r, i;

    pthread_mutex_lock(&m->lock);
    r = route_index(m, route);
    h = &m->routes[r].latency;
    for (i = 0; i < m->nseries; i++)
        if (m->series[i].route == r && m->series[i].status == status &&
            strcmp(m->series[i].tenant, tenant) == 0)
            break;
    if (i == m->nseries && m->nseries < MAX_SERIES) {
        m->series[i] = (struct series){r, "", status, 0};
        snprintf(m->series[i].tenant, sizeof(m->series[i].tenant), "%s",
                 tenant);
        m->nseries++;
    }
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
    for (r = 0; r < m->nroutes; r++) {
        const char *route = m->routes[r].name;
        struct histogram *h = &m->routes[r].latency;

        if (!h->count)
            continue;
        for (b = 0; b < NBUCKETS; b++)
            buf_printf(out,
                       "nbcanvas_request_duration_seconds_bucket{route=\"%s\","
                       "le=\"%g\"} %ld\n",
                       route, buckets_ms[b] / 1000, h->buckets[b]);
        buf_printf(out,
                   "nbcanvas_request_duration_seconds_bucket{route=\"%s\","
                   "le=\"+Inf\"} %ld\n"
                   "nbcanvas_request_duration_seconds_sum{route=\"%s\"} %g\n"
                   "nbcanvas_request_duration_seconds_count{route=\"%s\"} "
                   "%ld\n",
                   route, h->count, route, (double)h->sum_ms / 1000, route,
                   h->count);
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
                   "nbcanvas_requests_total{route=\"%s\",tenant=\"%s\","
                   "status=\"%u\"} %ld\n",
                   m->routes[m->series[i].route].name, m->series[i].tenant,
                   m->series[i].status, m->series[i].count);
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

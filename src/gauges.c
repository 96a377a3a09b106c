/*
 * The gauges /metrics adds to the counters of metrics.c: what the pool,
 * the exporters, the cache, the sessions, the job slots and the package
 * source hold right now, read from each at the moment of the scrape (the
 * counters are kept as events happen; these are asked for).
 */
#include "nbcanvas/gauges.h"

#include "nbcanvas/cache.h"
#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/packages.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/service.h"
#include "nbcanvas/sessions.h"

/* Whether tenants' limits are the stack's (cluster_limits.h). */
static void write_limits(const struct service *svc, struct buf *out)
{
    struct cluster_limits_stats l;

    cluster_limits_stats(svc->pipe.limits, &l);
    buf_printf(out,
               "# TYPE nbcanvas_limits_shared gauge\n"
               "nbcanvas_limits_shared %d\n"
               "# TYPE nbcanvas_limits_fallbacks_total counter\n"
               "nbcanvas_limits_fallbacks_total %lld\n"
               "# TYPE nbcanvas_limits_leases gauge\n"
               "nbcanvas_limits_leases %lld\n"
               "# TYPE nbcanvas_cluster_replicas gauge\n"
               "nbcanvas_cluster_replicas %ld\n",
               l.shared, l.fallbacks, l.leases, l.replicas);
}

void gauges_write(const struct service *svc, struct buf *out)
{
    struct pool_stats p;
    struct cache_stats c = {0, 0, 0, 0, 0};
    struct sessions_stats ss = {0};
    struct packages_stats pk;
    long running, waiting;

    if (svc->sessions)
        sessions_stats(svc->sessions, &ss);
    packages_stats(svc->pipe.packages, &pk);
    buf_printf(out,
               "# TYPE nbcanvas_package_cache_hits_total counter\n"
               "nbcanvas_package_cache_hits_total %ld\n"
               "# TYPE nbcanvas_package_cache_misses_total counter\n"
               "nbcanvas_package_cache_misses_total %ld\n"
               "# TYPE nbcanvas_package_errors_total counter\n"
               "nbcanvas_package_errors_total %ld\n"
               "# TYPE nbcanvas_package_cache_bytes gauge\n"
               "nbcanvas_package_cache_bytes %lld\n",
               pk.hits, pk.misses, pk.errors, pk.bytes);
    pool_stats(svc->pipe.pools[0], &p); /* python3's, as before */
    /* every kernel's pool, one family at a time */
    buf_puts(out, "# TYPE nbcanvas_kernel_pool_idle gauge\n");
    for (int i = 0; i < NOTEBOOK_KERNELS; i++) {
        struct pool_stats k;

        pool_stats(svc->pipe.pools[i], &k);
        buf_printf(out, "nbcanvas_kernel_pool_idle{kernel=\"%s\"} %ld\n",
                   notebook_kernel_at(i)->name, k.idle);
    }
    buf_puts(out, "# TYPE nbcanvas_kernel_pool_size gauge\n");
    for (int i = 0; i < NOTEBOOK_KERNELS; i++) {
        struct pool_stats k;

        pool_stats(svc->pipe.pools[i], &k);
        buf_printf(out, "nbcanvas_kernel_pool_size{kernel=\"%s\"} %ld\n",
                   notebook_kernel_at(i)->name, k.size);
    }
    buf_puts(out, "# TYPE nbcanvas_kernel_pool_sandbox_footprint_bytes "
                  "gauge\n");
    for (int i = 0; i < NOTEBOOK_KERNELS; i++) {
        struct pool_stats k;

        pool_stats(svc->pipe.pools[i], &k);
        buf_printf(
            out,
            "nbcanvas_kernel_pool_sandbox_footprint_bytes{kernel=\"%s\"}"
            " %lld\n",
            notebook_kernel_at(i)->name, k.footprint_bytes);
    }
    if (svc->pipe.exporters) {
        struct exporter_stats x;

        exporters_stats(svc->pipe.exporters, &x);
        buf_printf(out,
                   "# TYPE nbcanvas_exporters gauge\nnbcanvas_exporters %ld\n"
                   "# TYPE nbcanvas_exporters_idle gauge\n"
                   "nbcanvas_exporters_idle %ld\n"
                   "# TYPE nbcanvas_exporters_busy gauge\n"
                   "nbcanvas_exporters_busy %ld\n"
                   "# TYPE nbcanvas_exports_total counter\n"
                   "nbcanvas_exports_total %ld\n"
                   "# TYPE nbcanvas_exporters_failed_total counter\n"
                   "nbcanvas_exporters_failed_total %ld\n"
                   "# TYPE nbcanvas_exporters_recycled_total counter\n"
                   "nbcanvas_exporters_recycled_total %ld\n",
                   x.size, x.idle, x.busy, x.conversions, x.failures,
                   x.recycled);
    }
    if (svc->pipe.cache)
        cache_stats(svc->pipe.cache, &c);
    jobs_counts(svc->pipe.jobs, &running, &waiting);
    /* every container the service holds: in use, warm or starting, or
     * waiting for removal */
    buf_printf(out,
               "# TYPE nbcanvas_containers_alive gauge\n"
               "nbcanvas_containers_alive %ld\n",
               running + p.idle + p.starting +
                   janitor_pending(svc->pipe.janitor) + ss.active - ss.calls);
    buf_printf(out,
               "# TYPE nbcanvas_sessions_active gauge\n"
               "nbcanvas_sessions_active %ld\n"
               "# TYPE nbcanvas_sessions_created_total counter\n"
               "nbcanvas_sessions_created_total %ld\n"
               "# TYPE nbcanvas_sessions_expired_total counter\n"
               "nbcanvas_sessions_expired_total %ld\n"
               "# TYPE nbcanvas_sessions_faulted_total counter\n"
               "nbcanvas_sessions_faulted_total %ld\n",
               ss.active, ss.created, ss.expired, ss.faulted);
    buf_printf(out,
               "# TYPE nbcanvas_pool_size gauge\nnbcanvas_pool_size %ld\n"
               "# TYPE nbcanvas_pool_min_size gauge\n"
               "nbcanvas_pool_min_size %ld\n"
               "# TYPE nbcanvas_pool_max_size gauge\n"
               "nbcanvas_pool_max_size %ld\n"
               "# TYPE nbcanvas_pool_sandbox_footprint_bytes gauge\n"
               "nbcanvas_pool_sandbox_footprint_bytes %lld\n"
               "# TYPE nbcanvas_pool_idle gauge\nnbcanvas_pool_idle %ld\n"
               "# TYPE nbcanvas_pool_starting gauge\n"
               "nbcanvas_pool_starting %ld\n"
               "# TYPE nbcanvas_pool_taken_total counter\n"
               "nbcanvas_pool_taken_total %ld\n"
               "# TYPE nbcanvas_pool_waited_total counter\n"
               "nbcanvas_pool_waited_total %ld\n"
               "# TYPE nbcanvas_pool_empty_total counter\n"
               "nbcanvas_pool_empty_total %ld\n"
               "# TYPE nbcanvas_pool_replaced_total counter\n"
               "nbcanvas_pool_replaced_total %ld\n"
               "# TYPE nbcanvas_pool_refill_seconds gauge\n"
               "nbcanvas_pool_refill_seconds %g\n",
               p.size, p.min_size, p.max_size, p.footprint_bytes, p.idle,
               p.starting, p.handed_out, p.waited, p.misses, p.replaced,
               (double)p.last_refill_ms / 1000);
    buf_printf(out,
               "# TYPE nbcanvas_cache_entries gauge\n"
               "nbcanvas_cache_entries %ld\n"
               "# TYPE nbcanvas_cache_bytes gauge\nnbcanvas_cache_bytes %lld\n"
               "# TYPE nbcanvas_cache_hits_total counter\n"
               "nbcanvas_cache_hits_total %ld\n"
               "# TYPE nbcanvas_cache_misses_total counter\n"
               "nbcanvas_cache_misses_total %ld\n"
               "# TYPE nbcanvas_cache_errors_total counter\n"
               "nbcanvas_cache_errors_total %ld\n"
               "# TYPE nbcanvas_cache_shared gauge\n"
               "nbcanvas_cache_shared %d\n",
               c.entries, c.bytes, c.hits, c.misses, c.errors,
               svc->pipe.cache && cache_is_shared(svc->pipe.cache));
    write_limits(svc, out);
}

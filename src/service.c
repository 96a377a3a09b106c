/*
 * The service's life, from service_open to service_close. Serving starts
 * with a sweep of what a previous run of the same owner left behind, then
 * the main thread only waits for a signal, waking every reaper interval
 * to remove expired containers (whoever made them) and to hand freed
 * memory back to the system. SIGTERM drains: no new connections,
 * in-flight requests get their whole deadline, then the pool, the
 * janitor's queue and every container of ours are removed.
 */
#include "nbcanvas/service.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nbcanvas/cache.h"
#include "nbcanvas/cache_key.h"
#include "nbcanvas/cluster_limits.h"
#include "nbcanvas/examples.h"
#include "nbcanvas/http.h"
#include "nbcanvas/ids.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/kept_results.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/mcp.h"
#include "nbcanvas/datasources.h"
#include "nbcanvas/directory.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/packages.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/sandbox.h"
#include "nbcanvas/sessions.h"
#include "nbcanvas/tenants.h"
#include "nbcanvas/util.h"

/* A warm pool for each notebook kernel, as its config says (empty
 * pools for a one-shot command). */
static void open_pools(struct service *svc, bool one_shot)
{
    for (int i = 0; i < NOTEBOOK_KERNELS; i++) {
        const struct kernel_info *k = notebook_kernel_at(i);

        svc->pipe.pools[i] = pool_new(
            svc->pipe.docker, &svc->cfg, k, svc->owner, svc->pipe.live,
            one_shot ? 0 : notebook_kernel_pool_size(k, &svc->cfg));
    }
}

static void close_pools(struct service *svc)
{
    for (int i = 0; i < NOTEBOOK_KERNELS; i++) {
        pool_free(svc->pipe.pools[i]);
        svc->pipe.pools[i] = NULL;
    }
}

void service_close(struct service *svc)
{
    sessions_free(svc->sessions);
    mcp_free(svc->mcp);
    datasources_free(svc->pipe.datasources);
    kept_results_free(svc->kept);
    packages_free(svc->pipe.packages);
    close_pools(svc);
    exporters_free(svc->pipe.exporters);
    janitor_free(svc->pipe.janitor);
    cache_free(svc->pipe.cache);
    cache_keys_free(svc->pipe.cache_keys);
    json_decref(svc->examples);
    docker_free(svc->pipe.docker);
    jobs_free(svc->pipe.jobs);
    cluster_limits_free(svc->pipe.limits);
    directory_free(svc->pipe.directory);
    languages_free(svc->pipe.languages);
    metrics_free(svc->metrics);
    sandbox_set_free(svc->pipe.live);
    tenants_free(svc->tenants);
    memset(svc, 0, sizeof(*svc));
}

static const char *env(const char *name)
{
    return getenv(name);
}

static int load_config(struct config *cfg, const struct service_options *o,
                       struct err *err)
{
    const char *path = o->config_path ? o->config_path
                                      : getenv("NBCANVAS_CONFIG");
    int rc;

    config_defaults(cfg);
    if (path && path[0]) {
        rc = config_load(cfg, path, err);
        if (rc < 0)
            return rc;
    }
    rc = config_load_env(cfg, env, err); /* the environment wins */
    if (rc < 0)
        return rc;
    if (o->listen)
        snprintf(cfg->listen, sizeof(cfg->listen), "%s", o->listen);
    config_finish(cfg);
    return 0;
}

/* True when the listen address is a loopback one (127.0.0.0/8, localhost). */
static bool listens_on_loopback(const char *listen)
{
    return strncmp(listen, "127.", 4) == 0 ||
           strncmp(listen, "localhost:", 10) == 0;
}

/* Without keys anyone who reaches the port may run code: that is only
 * allowed on loopback, unless the config says so in as many words. */
static int refuse_open_by_accident(const struct config *cfg, struct err *err)
{
    if (cfg->api_keys_file[0] || cfg->allow_unauthenticated ||
        listens_on_loopback(cfg->listen))
        return 0;
    return err_set(err, ERR_INVALID,
                   "refusing to listen on %s without API keys: set "
                   "api_keys_file (see `nbcanvas key new`), or "
                   "allow_unauthenticated: true to serve anyone who can "
                   "reach it",
                   cfg->listen);
}

/* In this process, or in Redis when the config names one; none at 0. */
static int open_cache(struct service *svc, struct err *err)
{
    const struct config *cfg = &svc->cfg;

    if (cfg->cache_bytes == 0)
        return 0;
    if (!cfg->cache_redis_url[0])
        svc->pipe.cache = cache_new(cfg->cache_bytes);
    else if (cache_new_shared(&svc->pipe.cache, cfg->cache_redis_url,
                              cfg->cache_ttl_s, cfg->cache_redis_timeout_ms,
                              cfg->cache_bytes, err) < 0)
        return ERR_INVALID;
    svc->pipe.cache_keys = cache_keys_new(svc->pipe.docker, cfg);
    return 0;
}

/* The signals service_serve waits for, into *stop: blocked in every
 * thread, so none but the serve loop's sigtimedwait takes them. */
static void block_stop_signals(sigset_t *stop)
{
    sigemptyset(stop);
    sigaddset(stop, SIGTERM);
    sigaddset(stop, SIGINT);
    sigaddset(stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, stop, NULL); /* threads inherit the mask */
}

int service_open(struct service *svc, const struct service_options *opts,
                 struct err *err)
{
    struct docker_opts dopts = DOCKER_OPTS_INIT;
    int rc;

    /* before the first thread starts (the janitor's, the limits'): a
     * SIGTERM that found one of those unblocked killed the process
     * instead of draining it, whenever the serve loop was not waiting */
    if (!opts->one_shot) {
        sigset_t stop;

        block_stop_signals(&stop);
    }
    memset(svc, 0, sizeof(*svc));
    rc = load_config(&svc->cfg, opts, err);
    if (rc == 0 && !opts->one_shot)
        rc = refuse_open_by_accident(&svc->cfg, err);
    if (rc == 0 && !ids_route_valid(svc->cfg.replica_route))
        rc = err_set(err, ERR_INVALID,
                     "replica_route: 1 to %d of a-z and 0-9 (\"r1\")",
                     ID_ROUTE_MAX);
    if (rc < 0)
        return rc;
    ids_init(svc->cfg.replica_route);
    if (opts->one_shot)
        snprintf(svc->owner, sizeof(svc->owner), "cli-%ld", (long)getpid());
    else
        snprintf(svc->owner, sizeof(svc->owner), "%s",
                 svc->cfg.replica_id[0] ? svc->cfg.replica_id
                                        : svc->cfg.listen);
    svc->pipe.cfg = &svc->cfg;
    svc->pipe.owner = svc->owner;
    svc->pipe.live = sandbox_set_new();
    dopts.host = svc->cfg.docker_host;
    dopts.call_timeout_ms = svc->cfg.docker_timeout_ms;
    rc = tenants_new(&svc->tenants, svc->cfg.api_keys_file, err);
    if (rc == 0)
        rc = docker_new(&svc->pipe.docker, &dopts, err);
    if (rc == 0)
        rc = languages_load(&svc->pipe.languages, svc->cfg.languages_file,
                            err);
    if (rc == 0)
        rc = datasources_new(&svc->pipe.datasources, svc->cfg.datasources,
                             err);
    if (rc < 0) {
        service_close(svc);
        return rc;
    }
    svc->pipe.jobs = jobs_new(svc->cfg.max_jobs, svc->cfg.max_queue);
    if (!opts->one_shot &&
        cluster_limits_new(&svc->pipe.limits, svc->cfg.cache_redis_url,
                           svc->cfg.cache_redis_timeout_ms, svc->owner,
                           svc->cfg.cluster_replicas, err) < 0) {
        service_close(svc);
        return ERR_INVALID;
    }
    if (!opts->one_shot &&
        directory_new(&svc->pipe.directory, svc->cfg.cache_redis_url,
                      svc->cfg.cache_redis_timeout_ms, DIRECTORY_LAPSE_MS,
                      err) < 0) {
        service_close(svc);
        return ERR_INVALID;
    }
    jobs_share_limits(svc->pipe.jobs, svc->pipe.limits);
    svc->pipe.packages = packages_new(&svc->cfg, svc->pipe.docker);
    svc->metrics = metrics_new();
    /* A service's pool starts filling only after the sweep of what its
     * previous run left (service_serve): the sweep goes by owner. */
    if (opts->one_shot) {
        open_pools(svc, true);
        svc->pipe.exporters = exporters_new(svc->pipe.docker, &svc->cfg,
                                            svc->owner, svc->pipe.live, 1);
    }
    if (!opts->one_shot && open_cache(svc, err) < 0) {
        service_close(svc);
        return ERR_INVALID;
    }
    if (!opts->one_shot) {
        svc->kept = kept_results_new(svc->cfg.kept_results_bytes,
                                     svc->cfg.result_ttl_s);
        svc->pipe.janitor = janitor_new();
        svc->examples = examples_load(svc->cfg.examples_dir);
        svc->mcp = mcp_new(svc);
    }
    return 0;
}

/* What a previous run of this owner left (it crashed, or was killed). */
static void sweep_leftovers(struct service *svc)
{
    struct err err = ERR_INIT;
    int n;

    if (docker_negotiate(svc->pipe.docker, &err) < 0) {
        fprintf(stderr, "nbcanvas: engine not ready: %s\n", err.msg);
        return;
    }
    n = sandbox_reap(svc->pipe.docker, REAP_OWNED, svc->owner, svc->pipe.live,
                     &err);
    if (n > 0)
        fprintf(stderr,
                "nbcanvas: removed %d container(s) left by a previous run\n",
                n);
}

int service_serve(struct service *svc)
{
    struct http_server *srv = NULL;
    struct err err = ERR_INIT;
    sigset_t stop;
    struct timespec tick = {svc->cfg.reaper_interval_s, 0};
    int rc, sig;
    long stuck;

    block_stop_signals(&stop);
    signal(SIGPIPE, SIG_IGN);

    sweep_leftovers(svc);
    open_pools(svc, false);
    svc->pipe.exporters = exporters_new(svc->pipe.docker, &svc->cfg,
                                        svc->owner, svc->pipe.live, 0);
    svc->sessions = sessions_new(&svc->pipe);
    rc = http_start(&srv, svc, &err);
    if (rc < 0) {
        fprintf(stderr, "nbcanvas: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr,
            "nbcanvas: serving on %s://%s as %s (jobs %ld, queue %ld, pool "
            "%ld, cache %s)\n",
            svc->cfg.tls_cert_file[0] ? "https" : "http", svc->cfg.listen,
            svc->owner, svc->cfg.max_jobs, svc->cfg.max_queue,
            svc->cfg.pool_size,
            !svc->pipe.cache                   ? "off"
            : cache_is_shared(svc->pipe.cache) ? "in Redis"
                                               : "in memory");
    for (;;) {
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP) {
            if (tenants_reload(svc->tenants, &err) < 0)
                fprintf(stderr,
                        "nbcanvas: keys not reloaded, the old ones "
                        "stay: %s\n",
                        err.msg);
            else
                fprintf(stderr, "nbcanvas: keys reloaded (%ld)\n",
                        tenants_count(svc->tenants));
            continue;
        }
        /* never what we hold: a wall clock that jumped makes every
         * deadline label read as past */
        rc = sandbox_reap(svc->pipe.docker, REAP_EXPIRED, svc->owner,
                          svc->pipe.live, &err);
        if (rc > 0)
            metrics_count(svc->metrics, "reaped", rc);
        malloc_trim(0); /* hand freed answers back to the system */
    }
    fprintf(stderr, "nbcanvas: stopping: finishing in-flight requests\n");
    /* in-flight requests get their whole deadline plus the grace */
    stuck = http_stop(srv, svc->cfg.render_max_timeout_s + 60);
    if (stuck > 0) {
        /* they still use the service: nothing is freed, the sandboxes go,
         * and the process ends here */
        fprintf(stderr,
                "nbcanvas: %ld stream job(s) did not stop; exiting "
                "without freeing\n",
                stuck);
        sandbox_reap(svc->pipe.docker, REAP_OWNED, svc->owner, NULL, &err);
        fflush(stderr);
        _exit(1);
    }
    sessions_free(svc->sessions); /* their sandboxes go to the janitor */
    svc->sessions = NULL;
    close_pools(svc);
    exporters_free(svc->pipe.exporters);
    svc->pipe.exporters = NULL;
    janitor_free(svc->pipe.janitor); /* removes what is still queued */
    svc->pipe.janitor = NULL;
    sandbox_reap(svc->pipe.docker, REAP_OWNED, svc->owner, NULL, &err);
    return 0;
}

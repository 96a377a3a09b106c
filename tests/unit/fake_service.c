/*
 * A struct service on the fake engine (see fake_service.h). Why here and
 * not service_open: service_open reads the machine (max_jobs from cores
 * and memory) and the real engine's address, and a one-shot service has
 * no cache; the tests want the same parts with known values and the fake.
 */
#include "fake_service.h"

#include <stdio.h>
#include <string.h>

#include "nbcanvas/cache.h"
#include "nbcanvas/cache_key.h"
#include "nbcanvas/exporter.h"
#include "nbcanvas/jobs.h"
#include "nbcanvas/languages.h"
#include "nbcanvas/metrics.h"
#include "nbcanvas/pool.h"
#include "nbcanvas/sandbox.h"

int fake_service_start(struct fake_service *fs)
{
    struct config *cfg = &fs->svc.cfg;

    memset(fs, 0, sizeof(*fs));
    if (fake_engine_start(&fs->engine) < 0)
        return -1;
    config_defaults(cfg);
    snprintf(cfg->docker_host, sizeof(cfg->docker_host), "%s",
             fake_engine_host(&fs->engine));
    snprintf(cfg->languages_file, sizeof(cfg->languages_file),
             "%s/languages.json", NBCANVAS_SOURCE_DIR);
    cfg->max_jobs = 2;
    cfg->max_queue = 4;
    cfg->pool_size = 0;
    cfg->pool_max_size = 0; /* a fixed depth unless a test asks for more */
    return 0;
}

int fake_service_open(struct fake_service *fs, long pool_size, bool cache)
{
    struct service *svc = &fs->svc;
    struct err err = ERR_INIT;

    snprintf(svc->owner, sizeof(svc->owner), "%s", FAKE_SERVICE_OWNER);
    svc->pipe.cfg = &svc->cfg;
    svc->pipe.owner = svc->owner;
    svc->pipe.docker = fake_engine_docker(&fs->engine);
    if (!svc->pipe.docker ||
        languages_load(&svc->pipe.languages, svc->cfg.languages_file, &err) <
            0) {
        fprintf(stderr, "fake_service: %s\n", err.msg);
        return -1;
    }
    svc->pipe.live = sandbox_set_new();
    svc->pipe.jobs = jobs_new(svc->cfg.max_jobs, svc->cfg.max_queue);
    svc->metrics = metrics_new();
    svc->cfg.pool_size = pool_size;
    svc->pipe.pools[0] = pool_new(svc->pipe.docker, &svc->cfg,
                                  notebook_kernel_at(0), svc->owner,
                                  svc->pipe.live, pool_size);
    svc->pipe.pools[1] = pool_new(svc->pipe.docker, &svc->cfg,
                                  notebook_kernel_at(1), svc->owner,
                                  svc->pipe.live, 0);
    if (cache) {
        svc->pipe.cache = cache_new(svc->cfg.cache_bytes);
        svc->pipe.cache_keys = cache_keys_new(svc->pipe.docker, &svc->cfg);
    }
    if (fs->exporters)
        svc->pipe.exporters = exporters_new(svc->pipe.docker, &svc->cfg,
                                            svc->owner, NULL, 1);
    svc->pipe.janitor = NULL; /* used sandboxes are removed in-line */
    return 0;
}

void fake_service_stop(struct fake_service *fs)
{
    service_close(&fs->svc);
    fake_engine_stop(&fs->engine);
}

long fake_service_live(struct fake_service *fs)
{
    return sandbox_set_count(fs->svc.pipe.live);
}

bool fake_service_slots_free(struct fake_service *fs)
{
    long running = -1, waiting = -1;

    jobs_counts(fs->svc.pipe.jobs, &running, &waiting);
    return running == 0 && waiting == 0;
}

long fake_service_log_index(struct fake_service *fs, const char *method,
                            const char *prefix)
{
    size_t i, n = fake_engine_nrequests(&fs->engine);
    long found = -1;

    for (i = 0; i < n && found < 0; i++) {
        struct fake_request r;

        if (!fake_engine_request(&fs->engine, i, &r))
            break;
        if (strcmp(r.method, method) == 0 &&
            strncmp(r.path, prefix, strlen(prefix)) == 0)
            found = (long)i;
        fake_request_release(&r);
    }
    return found;
}

/* How many requests of method under prefix have part in their path
 * (in_body false) or body (true). */
static size_t count_containing(struct fake_service *fs, const char *method,
                               const char *prefix, const char *part,
                               bool in_body)
{
    size_t i, n = 0;
    struct fake_request r;

    for (i = 0; fake_engine_find(&fs->engine, method, prefix, i, &r); i++) {
        if (strstr(in_body ? r.body : r.path, part))
            n++;
        fake_request_release(&r);
    }
    return n;
}

size_t fake_service_count_with(struct fake_service *fs, const char *method,
                               const char *prefix, const char *part)
{
    return count_containing(fs, method, prefix, part, false);
}

size_t fake_service_count_body(struct fake_service *fs, const char *method,
                               const char *prefix, const char *part)
{
    return count_containing(fs, method, prefix, part, true);
}

void fake_gate_init(struct fake_gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    util_cond_init_monotonic(&g->changed);
    g->closed = false;
}

void fake_gate_destroy(struct fake_gate *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->changed);
}

static void set_closed(struct fake_gate *g, bool closed)
{
    pthread_mutex_lock(&g->lock);
    g->closed = closed;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->lock);
}

void fake_gate_close(struct fake_gate *g)
{
    set_closed(g, true);
}

void fake_gate_open(struct fake_gate *g)
{
    set_closed(g, false);
}

void fake_gate_wait(struct fake_gate *g)
{
    long long until = util_now_ms() + 10000;

    pthread_mutex_lock(&g->lock);
    while (g->closed && util_now_ms() < until) {
        struct timespec ts = util_monotonic_in(50);

        pthread_cond_timedwait(&g->changed, &g->lock, &ts);
    }
    pthread_mutex_unlock(&g->lock);
}

bool fake_service_removed(struct fake_service *fs, const char *id)
{
    char path[160];
    struct fake_request r;
    bool asked;

    snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
    asked = fake_engine_find(&fs->engine, "DELETE", path, 0, &r) &&
            strcmp(r.path, path) == 0;
    fake_request_release(&r);
    return id[0] && asked && !fake_engine_has_container(&fs->engine, id);
}

bool fake_service_has_string(json_t *array, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(array, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/*
 * Warm pool policy.
 *
 * Why: a cold render pays for a container, a Python, a kernel and the
 * imports of pandas and matplotlib before the first cell runs (seconds);
 * with them done ahead, a render is only execution and export. Isolation
 * is not traded for it: a pooled container has never run anyone's code,
 * it serves exactly one request and is then destroyed.
 *
 * How: one refill thread keeps `size` containers ready. It creates a
 * container exactly as the cold route does (same hardening, same image)
 * but with NBCANVAS_PRELOAD=1, attaches to its output, starts it, and
 * waits for the driver's "nbcanvas:ready". Every few seconds it checks the
 * idle ones: one that is no longer running (engine restart, OOM, a crash)
 * or has sat longer than POOL_MAX_IDLE_S is removed and replaced. When the
 * engine fails, refills back off (1 s doubling to 30 s) so a dead engine is
 * not hammered; the pool refills by itself when the engine returns.
 *
 * Caveat: a container's deadline label covers its idle time plus the
 * longest render, so another service's reaper does not remove one in use;
 * this service's own reaper never does (the live set, sandbox.h).
 */
#include "nbcanvas/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nbcanvas/demux.h"
#include "nbcanvas/driver.h"
#include "nbcanvas/util.h"

#define POOL_MAX_IDLE_S 600
#define POOL_READY_TIMEOUT_MS 90000
#define POOL_CHECK_EVERY_MS 5000

struct idle_sandbox {
    struct sandbox sb;
    long long ready_at_ms;
};

struct pool {
    struct docker *docker;
    const struct config *cfg;
    char owner[128];
    struct sandbox_set *live;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running;
    atomic_bool stopping;
    struct idle_sandbox *idle;
    struct pool_stats stats;
};

/* A notebook sandbox running the driver, not started yet. */
static int create_sandbox(struct pool *p, struct sandbox *sb, bool preload,
                          const char *job_id, long long deadline_s,
                          struct err *err)
{
    json_t *cmd = driver_command();
    json_t *env = driver_environment("python3", preload);
    struct sandbox_spec spec = {p->cfg->notebook_image,
                                cmd,
                                env,
                                &p->cfg->render_limits,
                                p->cfg->runtime,
                                job_id,
                                p->owner,
                                p->live,
                                deadline_s};
    int rc = sandbox_create(sb, p->docker, &spec, err);

    json_decref(cmd);
    json_decref(env);
    return rc;
}

int pool_create_cold(struct pool *p, struct sandbox *sb, const char *job_id,
                     long long deadline_s, struct err *err)
{
    return create_sandbox(p, sb, false, job_id, deadline_s, err);
}

struct warmup {
    struct sandbox *sb;
    struct buf out, errout;
    struct demux demux;
    struct err *err;
};

static int warm_open(void *ctx)
{
    struct warmup *w = ctx;

    return sandbox_start(w->sb, w->err);
}

static int warm_data(void *ctx, const char *data, size_t len)
{
    struct warmup *w = ctx;

    if (demux_feed(&w->demux, data, len) < 0)
        return ERR_INTERNAL;
    return driver_is_ready(w->out.data, w->out.len) ? 1 : 0;
}

/* Creates and starts one preloaded sandbox and waits until it is ready. */
static int start_one(struct pool *p, struct sandbox *sb, struct err *err)
{
    long long deadline_s = (long long)time(NULL) + POOL_MAX_IDLE_S +
                           p->cfg->render_max_timeout_s + 120;
    struct warmup w = {.sb = sb, .err = err};
    struct docker_stream_cb cb = {warm_open, warm_data, &w, &p->stopping};
    int rc;

    buf_init(&w.out, 64 << 10);
    buf_init(&w.errout, 64 << 10);
    demux_init(&w.demux, &w.out, &w.errout);
    rc = create_sandbox(p, sb, true, "pool", deadline_s, err);
    if (rc == 0)
        rc = sandbox_attach(sb, &cb, util_now_ms() + POOL_READY_TIMEOUT_MS,
                            err);
    if (rc == 0)
        rc = err_set(err, ERR_INTERNAL, "pooled sandbox exited: %.200s",
                     w.errout.data);
    if (rc == 1)
        rc = 0;
    if (rc < 0)
        sandbox_destroy(sb);
    buf_release(&w.out);
    buf_release(&w.errout);
    return rc;
}

/* Removes idle sandboxes that died or waited too long. Called unlocked
 * with a snapshot so engine calls never hold the lock. */
static void check_idle(struct pool *p)
{
    long long now = util_now_ms();
    long i = 0;

    pthread_mutex_lock(&p->lock);
    while (i < p->stats.idle) {
        struct idle_sandbox s = p->idle[i];
        bool old = now - s.ready_at_ms > POOL_MAX_IDLE_S * 1000LL;

        /* Take it out while it is checked, so nobody is handed it. */
        p->idle[i] = p->idle[--p->stats.idle];
        pthread_mutex_unlock(&p->lock);
        if (old || !sandbox_is_running(&s.sb)) {
            sandbox_destroy(&s.sb);
            pthread_mutex_lock(&p->lock);
            p->stats.replaced++;
            continue;
        }
        pthread_mutex_lock(&p->lock);
        p->idle[p->stats.idle++] = s;
        i++;
    }
    pthread_mutex_unlock(&p->lock);
}

static void wait_a_while(struct pool *p, long ms)
{
    struct timespec ts = util_monotonic_in(ms);

    pthread_mutex_lock(&p->lock);
    if (!p->stopping)
        pthread_cond_timedwait(&p->wake, &p->lock, &ts);
    pthread_mutex_unlock(&p->lock);
}

static void *refill(void *arg)
{
    struct pool *p = arg;
    long delay_ms = 1000;
    long long last_check = util_now_ms();

    while (!p->stopping) {
        struct sandbox sb;
        struct err err = ERR_INIT;
        long long t0;
        bool need;
        int rc;

        if (util_now_ms() - last_check > POOL_CHECK_EVERY_MS) {
            check_idle(p);
            last_check = util_now_ms();
        }
        pthread_mutex_lock(&p->lock);
        need = p->stats.idle + p->stats.starting < p->stats.size;
        if (need)
            p->stats.starting++;
        pthread_mutex_unlock(&p->lock);
        if (!need) {
            wait_a_while(p, 1000);
            continue;
        }
        t0 = util_now_ms();
        rc = start_one(p, &sb, &err);
        pthread_mutex_lock(&p->lock);
        p->stats.starting--;
        if (rc == 0) {
            p->idle[p->stats.idle++] = (struct idle_sandbox){sb,
                                                             util_now_ms()};
            p->stats.last_refill_ms = util_now_ms() - t0;
        }
        pthread_mutex_unlock(&p->lock);
        if (rc == 0) {
            delay_ms = 1000;
            continue;
        }
        if (!p->stopping)
            fprintf(stderr, "nbcanvas: pool: %s (retry in %ld ms)\n", err.msg,
                    delay_ms);
        wait_a_while(p, delay_ms);
        delay_ms = delay_ms * 2 > 30000 ? 30000 : delay_ms * 2;
    }
    return NULL;
}

struct pool *pool_new(struct docker *d, const struct config *cfg,
                      const char *owner, struct sandbox_set *live, long size)
{
    struct pool *p = xcalloc(1, sizeof(*p));

    p->docker = d;
    p->cfg = cfg;
    snprintf(p->owner, sizeof(p->owner), "%s", owner);
    p->live = live;
    p->stats.size = size;
    p->idle = xcalloc((size_t)size + 1, sizeof(*p->idle));
    pthread_mutex_init(&p->lock, NULL);
    util_cond_init_monotonic(&p->wake);
    if (size > 0)
        p->running = pthread_create(&p->thread, NULL, refill, p) == 0;
    return p;
}

void pool_free(struct pool *p)
{
    long i;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->running)
        pthread_join(p->thread, NULL);
    for (i = 0; i < p->stats.idle; i++)
        sandbox_destroy(&p->idle[i].sb);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->idle);
    free(p);
}

bool pool_take(struct pool *p, struct sandbox *out)
{
    bool got = false;

    if (!p)
        return false;
    pthread_mutex_lock(&p->lock);
    if (p->stats.idle > 0) {
        /* The most recently readied one: the least time idle. */
        *out = p->idle[--p->stats.idle].sb;
        p->stats.handed_out++;
        got = true;
    } else {
        p->stats.misses++;
    }
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return got;
}

void pool_stats(struct pool *p, struct pool_stats *out)
{
    if (!p) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    pthread_mutex_unlock(&p->lock);
}

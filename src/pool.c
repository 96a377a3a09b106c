/*
 * Warm pool policy.
 *
 * Why: a cold render pays for a container, a Python, a kernel and the
 * imports of pandas and matplotlib before the first cell runs (seconds);
 * with them done ahead, a render is only execution and export. Isolation
 * is not traded for it: a pooled container has never run anyone's code,
 * it serves exactly one request and is then destroyed.
 *
 * How: refill threads, one per core (at most POOL_MAX_THREADS, no more
 * than the pool's size), keep `size` containers ready, several starting
 * at once. Each creates a container exactly as the cold route does (same hardening, same image)
 * but with NBCANVAS_PRELOAD=1, attaches to its output, starts it, and
 * waits for its relay's READY (the kernel up and preloaded). Every few seconds it checks the
 * idle ones: one that is no longer running (engine restart, OOM, a crash)
 * or has sat longer than POOL_MAX_IDLE_S is removed and replaced. When the
 * engine fails, refills back off (1 s doubling to 30 s) so a dead engine is
 * not hammered; the pool refills by itself when the engine returns.
 *
 * A request that finds no idle sandbox while one is being started waits
 * for it, if it is expected ready within a cold start's time (the last
 * refill's duration, less how long the earliest start has already run),
 * instead of starting a cold one that would compete with the refill for
 * the same CPU; no more requests wait than sandboxes are starting.
 *
 * Depth: idle sandboxes cost memory, not CPU, so the pool may hold as many
 * as memory allows, but fills only as deep as demand asks: it starts at
 * pool_size, every request that finds it empty adds POOL_GROW_STEP (up to
 * the ceiling: pool_max_size, or pool_memory_share of RAM over the first
 * ready sandbox's measured footprint), and after POOL_SHRINK_AFTER_MS with
 * no such request it gives one back every POOL_SHRINK_EVERY_MS, removing
 * the idle sandbox that has waited longest.
 *
 * Caveat: a container's deadline label covers its idle time plus the
 * longest render or session it may be taken for, so another service's
 * reaper does not remove one in use; this service's own reaper never does
 * (the live set, sandbox.h).
 */
#include "nbcanvas/pool.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nbcanvas/demux.h"
#include "nbcanvas/janitor.h"
#include "nbcanvas/notebook.h"
#include "nbcanvas/relay_link.h"
#include "nbcanvas/util.h"

#define POOL_MAX_IDLE_S 600
#define POOL_READY_TIMEOUT_MS 90000
/* A pool's sandbox starts with a low CPU weight: its start and preload
 * (about a CPU-second) take what the jobs running leave, instead of
 * halving a job's share of a small machine; once ready (idle, using no
 * CPU) it gets the default weight, before any job takes it. */
#define POOL_IDLE_SHARES 128
/* The floor a default pool_size grows to, memory allowing. */
#define POOL_DEFAULT_FLOOR 8
#define POOL_CHECK_EVERY_MS 5000
#define POOL_MAX_THREADS 8
#define POOL_WAIT_SLICE_MS 100
#define POOL_HARD_MAX 64 /* the ceiling from memory goes no higher */
#define POOL_GROW_STEP 2
#define POOL_SHRINK_AFTER_MS 120000
#define POOL_SHRINK_EVERY_MS 30000

struct idle_sandbox {
    struct sandbox sb;
    long long ready_at_ms;
};

struct pool;

/* What one refill thread is told: its pool and its place. */
struct refiller {
    struct pool *pool;
    int index;         /* 0 also checks the idle ones */
    long long started; /* when its current start began; 0: none */
};

struct pool {
    struct docker *docker;
    const struct config *cfg;
    const struct kernel_info *kernel;
    bool default_floor; /* pool_size's default: grows once measured */
    char owner[128];
    struct sandbox_set *live;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* refill threads: demand, or stopping */
    pthread_cond_t ready; /* waiting requests: a sandbox became idle */
    pthread_t threads[POOL_MAX_THREADS];
    struct refiller refillers[POOL_MAX_THREADS];
    int nthreads;
    long waiting;  /* requests waiting for a start under way */
    long capacity; /* of idle[] */
    long checking; /* idle ones out of idle[] while check_idle looks */
    bool ceiling_from_memory; /* max_size waits for a measured footprint */
    long long last_empty_ms;  /* a request found no idle sandbox */
    long long last_shrink_ms;
    long long retry_at_ms; /* after a failed start, no thread tries before */
    long fail_delay_ms;    /* the next failure's wait: doubles to 30 s */
    atomic_bool stopping;
    struct idle_sandbox *idle;
    struct pool_stats stats;
};

#define RELAY_PATH "/opt/nbcanvas/nbcanvas-relay"

/* The relay, and after it the kernel's command line (notebook.c's). */
static json_t *notebook_command(const struct kernel_info *k)
{
    json_t *cmd = json_pack("[s]", RELAY_PATH);

    for (const char *const *a = k->argv; *a; a++)
        json_array_append_new(cmd, json_string(*a));
    return cmd;
}

static json_t *notebook_environment(const char *kernel, bool preload)
{
    /* The root is read-only: everything Jupyter, IPython and matplotlib
     * write goes to the sandbox's /tmp. Jupyter's per-user data folder
     * would be ~/.local/share/jupyter, which the code can write: one on
     * the read-only root instead. Packages installed at run time go to
     * the working folder's tmpfs, under .nbcanvas (no artifacts). */
    json_t *env = json_pack(
        "[s, s, s, s, s, s]", "JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime",
        "IPYTHONDIR=/tmp/ipython", "MPLCONFIGDIR=/tmp/matplotlib",
        "XDG_CACHE_HOME=/tmp/cache",
        "JUPYTER_DATA_DIR=/opt/nbcanvas/no-user-data",
        "PYTHONUSERBASE=" SANDBOX_WORKDIR "/.nbcanvas/pkgs");

    json_array_append_new(env, json_sprintf("NBCANVAS_KERNEL=%s", kernel));
    json_array_append_new(
        env, json_sprintf("NBCANVAS_PRELOAD=%d", preload ? 1 : 0));
    return env;
}

/* A notebook sandbox (the relay and its kernel), not started yet. */
static int create_sandbox(struct pool *p, struct sandbox *sb, bool preload,
                          const char *job_id, long long deadline_s,
                          struct err *err)
{
    json_t *cmd = notebook_command(p->kernel);
    json_t *env = notebook_environment(p->kernel->name, preload);
    struct sandbox_spec spec = {notebook_kernel_image(p->kernel, p->cfg),
                                cmd,
                                env,
                                &p->cfg->render_limits,
                                p->cfg->runtime,
                                job_id,
                                p->owner,
                                p->live,
                                deadline_s,
                                true,
                                preload ? POOL_IDLE_SHARES : 0};
    int rc = sandbox_create(sb, p->docker, &spec, err);

    json_decref(cmd);
    json_decref(env);
    return rc;
}

int pool_sandbox(struct pool *p, struct janitor *janitor, struct sandbox *sb,
                 const char *job_id, long long deadline_s, bool cold,
                 const atomic_bool *cancel, bool *warm, struct err *err)
{
    *warm = !cold && pool_take(p, sb, cancel);
    if (*warm && sandbox_is_running(sb))
        return 0;
    if (*warm) {
        /* It died while idle (the engine attaches to a stopped container
         * and waits for ever); the pool's own check may not have run yet. */
        janitor_dispose(janitor, sb, NULL);
        *warm = false;
    }
    return pool_create_cold(p, sb, job_id, deadline_s, err);
}

int pool_create_cold(struct pool *p, struct sandbox *sb, const char *job_id,
                     long long deadline_s, struct err *err)
{
    return create_sandbox(p, sb, false, job_id, deadline_s, err);
}

/* Creates and starts one preloaded sandbox and waits until its relay
 * says the kernel is ready (relay_link.c keeps the kernel's key in sb). */
static int start_one(struct pool *p, struct sandbox *sb, struct err *err)
{
    long long longest = p->cfg->render_max_timeout_s >
                                p->cfg->session_max_lifetime_s
                            ? p->cfg->render_max_timeout_s
                            : p->cfg->session_max_lifetime_s;
    long long deadline_s = (long long)time(NULL) + POOL_MAX_IDLE_S + longest +
                           120;
    struct relay_link link;
    int rc;

    rc = create_sandbox(p, sb, true, "pool", deadline_s, err);
    if (rc < 0)
        return rc;
    rc = relay_link_open(&link, sb, 64 << 10,
                         util_now_ms() + POOL_READY_TIMEOUT_MS, &p->stopping,
                         err);
    /* Ready, it uses no CPU until a job takes it: the default weight now,
     * off the request's path (the engine's update takes tens of ms). */
    if (rc == 0 && sandbox_set_cpu_shares(sb, 0, err) < 0)
        fprintf(stderr,
                "nbcanvas: pool: a sandbox's CPU weight stays low: "
                "%s\n",
                err->msg); /* slower, not wrong */
    if (rc < 0 && rc != ERR_CANCELLED)
        rc = err_set(err, rc, "pooled sandbox did not start: %.200s (%.200s)",
                     err->msg, link.errout.data);
    relay_link_close(&link);
    if (rc < 0)
        sandbox_destroy(sb);
    return rc;
}

/* The ceiling from memory, once an idle sandbox has been measured. */
static void measure_footprint(struct pool *p, struct sandbox *sb)
{
    long long ram = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    long long bytes = sandbox_memory_bytes(sb);
    long most;

    if (bytes <= 0) {
        /* the engine cannot say: the sandbox's limit is an upper bound */
        fprintf(stderr, "nbcanvas: pool: an idle sandbox's memory cannot be "
                        "measured; sizing by its limit\n");
        bytes = p->cfg->render_limits.memory_bytes;
    }
    most = (long)(p->cfg->pool_memory_share * (double)ram / (double)bytes);
    if (most > p->capacity)
        most = p->capacity;
    pthread_mutex_lock(&p->lock);
    p->stats.footprint_bytes = bytes;
    p->stats.max_size = most > p->stats.min_size ? most : p->stats.min_size;
    /* A default floor grows to what memory holds, up to a few: a quiet
     * service answers a burst of renders warm, not one refill at a time. */
    if (p->default_floor && p->stats.min_size > 0 &&
        p->stats.min_size < POOL_DEFAULT_FLOOR) {
        long floor = most < POOL_DEFAULT_FLOOR ? most : POOL_DEFAULT_FLOOR;

        if (floor > p->stats.min_size)
            p->stats.min_size = floor;
        if (p->stats.size < p->stats.min_size)
            p->stats.size = p->stats.min_size;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Under the lock: a request found no idle sandbox; deepen the pool (not
 * while starts fail: the engine's return would start them all at once). */
static void grow(struct pool *p)
{
    p->last_empty_ms = util_now_ms();
    if (p->last_empty_ms < p->retry_at_ms)
        return;
    p->stats.size += POOL_GROW_STEP;
    if (p->stats.size > p->stats.max_size)
        p->stats.size = p->stats.max_size;
    pthread_cond_broadcast(&p->wake);
}

/* Under the lock: after a quiet while, one sandbox less to keep. */
static void shrink(struct pool *p, long long now)
{
    if (p->stats.size > p->stats.min_size &&
        now - p->last_empty_ms > POOL_SHRINK_AFTER_MS &&
        now - p->last_shrink_ms > POOL_SHRINK_EVERY_MS) {
        p->stats.size--;
        p->last_shrink_ms = now;
    }
}

/* Removes idle sandboxes that died or waited too long, and those past the
 * pool's depth. Called unlocked with a snapshot so engine calls never hold
 * the lock. */
static void check_idle(struct pool *p)
{
    long long now = util_now_ms();
    long i = 0;

    pthread_mutex_lock(&p->lock);
    shrink(p, now);
    while (p->stats.idle > 0 && p->stats.idle > p->stats.size) {
        /* the one readied first: the longest idle (take uses the last) */
        struct idle_sandbox s = p->idle[0];

        memmove(&p->idle[0], &p->idle[1],
                (size_t)(p->stats.idle - 1) * sizeof(p->idle[0]));
        p->stats.idle--;
        pthread_mutex_unlock(&p->lock);
        sandbox_destroy(&s.sb);
        pthread_mutex_lock(&p->lock);
    }
    while (i < p->stats.idle) {
        struct idle_sandbox s = p->idle[i];
        bool old = now - s.ready_at_ms > POOL_MAX_IDLE_S * 1000LL;

        /* Take it out while it is checked, so nobody is handed it; it
         * still counts, so no other thread starts one in its place. */
        p->idle[i] = p->idle[--p->stats.idle];
        p->checking++;
        pthread_mutex_unlock(&p->lock);
        if (old || !sandbox_is_running(&s.sb)) {
            sandbox_destroy(&s.sb);
            pthread_mutex_lock(&p->lock);
            p->checking--;
            p->stats.replaced++;
            continue;
        }
        pthread_mutex_lock(&p->lock);
        p->checking--;
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
    struct refiller *me = arg;
    struct pool *p = me->pool;
    long long last_check = util_now_ms();

    while (!p->stopping) {
        struct sandbox sb;
        struct err err = ERR_INIT;
        long long t0;
        long delay;
        bool need, measure;
        int rc;

        if (me->index == 0 &&
            util_now_ms() - last_check > POOL_CHECK_EVERY_MS) {
            check_idle(p);
            last_check = util_now_ms();
        }
        t0 = util_now_ms();
        pthread_mutex_lock(&p->lock);
        need = p->stats.idle + p->stats.starting + p->checking <
                   p->stats.size &&
               t0 >= p->retry_at_ms;
        if (need) {
            p->stats.starting++;
            me->started = t0;
        }
        pthread_mutex_unlock(&p->lock);
        if (!need) {
            wait_a_while(p, 1000);
            continue;
        }
        rc = start_one(p, &sb, &err);
        pthread_mutex_lock(&p->lock);
        measure = rc == 0 && p->ceiling_from_memory;
        p->ceiling_from_memory = p->ceiling_from_memory && !measure; /* once */
        pthread_mutex_unlock(&p->lock);
        if (measure)
            measure_footprint(p, &sb);
        pthread_mutex_lock(&p->lock);
        p->stats.starting--;
        me->started = 0;
        if (rc == 0) {
            p->idle[p->stats.idle++] = (struct idle_sandbox){sb,
                                                             util_now_ms()};
            p->stats.last_refill_ms = util_now_ms() - t0;
            p->fail_delay_ms = 1000;
            pthread_cond_signal(&p->ready);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        /* one back-off for the whole pool, however many threads */
        delay = p->fail_delay_ms;
        p->retry_at_ms = util_now_ms() + delay;
        p->fail_delay_ms = delay * 2 > 30000 ? 30000 : delay * 2;
        pthread_mutex_unlock(&p->lock);
        if (!p->stopping)
            fprintf(stderr, "nbcanvas: pool: %s (retry in %ld ms)\n", err.msg,
                    delay);
        wait_a_while(p, delay);
    }
    return NULL;
}

/* Refill threads for a pool of size: one per core, at most
 * POOL_MAX_THREADS, no more than size. */
static int refill_threads(long size)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cores < size ? cores : size;

    if (n > POOL_MAX_THREADS)
        n = POOL_MAX_THREADS;
    return n < 1 ? 1 : (int)n;
}

struct pool *pool_new(struct docker *d, const struct config *cfg,
                      const struct kernel_info *kernel, const char *owner,
                      struct sandbox_set *live, long size)
{
    struct pool *p = xcalloc(1, sizeof(*p));
    int i, want;

    p->docker = d;
    p->cfg = cfg;
    p->kernel = kernel;
    /* pool_size's default (-1) grows to what memory holds; another
     * kernel's floor (r_pool_size) is a plain number */
    p->default_floor = cfg->pool_size_default &&
                       kernel->pool_key == offsetof(struct config, pool_size);
    snprintf(p->owner, sizeof(p->owner), "%s", owner);
    p->live = live;
    p->stats.size = p->stats.min_size = p->stats.max_size = size;
    p->fail_delay_ms = 1000;
    /* until a sandbox is measured, the pool stays at its floor */
    p->ceiling_from_memory = size > 0 && cfg->pool_max_size < 0;
    if (size > 0 && cfg->pool_max_size > size)
        p->stats.max_size = cfg->pool_max_size;
    p->capacity = p->ceiling_from_memory
                      ? (size > POOL_HARD_MAX ? size : POOL_HARD_MAX)
                      : p->stats.max_size;
    p->idle = xcalloc((size_t)p->capacity + 1, sizeof(*p->idle));
    want = size > 0 ? refill_threads(p->capacity) : 0;
    pthread_mutex_init(&p->lock, NULL);
    util_cond_init_monotonic(&p->wake);
    util_cond_init_monotonic(&p->ready);
    for (i = 0; i < want; i++) {
        p->refillers[i] = (struct refiller){p, i, 0};
        if (pthread_create(&p->threads[p->nthreads], NULL, refill,
                           &p->refillers[i]) != 0)
            break;
        p->nthreads++;
    }
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
    pthread_cond_broadcast(&p->ready);
    pthread_mutex_unlock(&p->lock);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (i = 0; i < p->stats.idle; i++)
        sandbox_destroy(&p->idle[i].sb);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->ready);
    free(p->idle);
    free(p);
}

/* Under the lock: how long until the earliest start under way should be
 * ready, from the last refill's duration; -1 when none is starting, or
 * every start is already awaited by a request. */
static long long soonest_ready_in(struct pool *p)
{
    long long earliest = 0, now = util_now_ms();
    int i;

    if (p->stats.starting <= p->waiting || p->stats.last_refill_ms <= 0)
        return -1;
    for (i = 0; i < p->nthreads; i++)
        if (p->refillers[i].started &&
            (!earliest || p->refillers[i].started < earliest))
            earliest = p->refillers[i].started;
    if (!earliest)
        return -1;
    return earliest + p->stats.last_refill_ms > now
               ? earliest + p->stats.last_refill_ms - now
               : 0;
}

bool pool_take(struct pool *p, struct sandbox *out, const atomic_bool *cancel)
{
    long long wait_ms, until;
    bool got = false;

    if (!p)
        return false;
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->wake); /* whatever happens: refill */
    if (p->stats.idle == 0 && p->nthreads > 0)
        grow(p);
    wait_ms = p->stats.idle > 0 ? 0 : soonest_ready_in(p);
    if (wait_ms >= 0 && p->stats.idle == 0) {
        /* A start under way beats a cold one beside it; give it its
         * expected time and half as much again. */
        until = util_now_ms() + wait_ms + wait_ms / 2 + POOL_WAIT_SLICE_MS;
        p->waiting++;
        while (p->stats.idle == 0 && !p->stopping && !(cancel && *cancel) &&
               util_now_ms() < until) {
            struct timespec ts = util_monotonic_in(POOL_WAIT_SLICE_MS);

            pthread_cond_timedwait(&p->ready, &p->lock, &ts);
        }
        p->waiting--;
        if (p->stats.idle > 0)
            p->stats.waited++;
    }
    if (p->stats.idle > 0) {
        /* The most recently readied one: the least time idle. */
        *out = p->idle[--p->stats.idle].sb;
        p->stats.handed_out++;
        got = true;
    } else {
        p->stats.misses++;
    }
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
